#!/bin/sh
# The demo build: prints what it knows and leaves an artifact behind.
set -e
echo "building $MIXMASTER_PROJECT at ${MIXMASTER_COMMIT%"${MIXMASTER_COMMIT#????????}"} on $MIXMASTER_TARGET"
for step in compile link package; do
	echo "$step..."
	sleep 1
done
echo "hello from job $MIXMASTER_JOB_ID" > "$MIXMASTER_ARTIFACTS/hello.txt"
echo "done: artifact hello.txt"
