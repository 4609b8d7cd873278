package main

import (
	"strings"
	"testing"
)

// FuzzParseParams checks the client's param parsing on any argument list.
// The keys become file names under params/ on the server, which checks
// them again; the client must still never panic, and must never hand on a
// key that still holds the "=" or leading dashes it was meant to strip.
//
// The fuzzer gives one string; NUL splits it into arguments, since no
// command-line argument can hold a NUL.
func FuzzParseParams(f *testing.F) {
	for _, seed := range []string{
		"--foo=bar",
		"--foo=bar\x00--baz\x00qux",
		"foo\x00bar",
		"--a=b=c",
		"--key=@file",
		"--key",
		"--",
		"--=v",
		"---x=\x00-y\x00z",
		"--x\x00--y=1",
		"=\x00=",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var args []string
		if in != "" {
			args = strings.Split(in, "\x00")
		}
		params, err := parseParams(args)
		if err != nil {
			if params != nil {
				t.Errorf("%q: error %v with params %v", args, err, params)
			}
			return
		}
		// Each param takes one or two arguments.
		if len(params) > len(args) {
			t.Errorf("%q gave %d params", args, len(params))
		}
		for k := range params {
			if k == "" || strings.Contains(k, "=") || strings.HasPrefix(k, "-") {
				t.Errorf("%q gave key %q", args, k)
			}
		}
	})
}
