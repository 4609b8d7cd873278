#!/bin/sh
# The demo task: a test run that reports to stdout and stderr.
echo "running 3 tests"
echo "ok 1 - greets" ; echo "ok 2 - counts" ; echo "ok 3 - exits"
echo "all tests passed" >&2
