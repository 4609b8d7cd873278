package scm

import (
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	tests := map[string]string{
		"https://user:s3cret@host/repo": "https://user:xxxxx@host/repo",
		"https://user@host/repo":        "https://user@host/repo",
		"git@host:repo":                 "git@host:repo",
		"--prune":                       "--prune",
	}
	for in, want := range tests {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := stripPassword("https://user:s3cret@host/repo"); got != "https://user@host/repo" {
		t.Errorf("stripPassword = %q", got)
	}
}

func TestCommandLine(t *testing.T) {
	got := commandLine([]string{"--git-dir=/m.git", "fetch", "--end-of-options", "https://u:p@h/r",
		"+refs/heads/*:refs/heads/*", "it's"})
	want := `git --git-dir=/m.git fetch --end-of-options https://u:xxxxx@h/r '+refs/heads/*:refs/heads/*' 'it'\''s'`
	if got != want {
		t.Errorf("commandLine:\n got %s\nwant %s", got, want)
	}
}

func TestMirrorName(t *testing.T) {
	a, b := MirrorName("https://h/a"), MirrorName("https://h/b")
	if a == b || len(a) != 20 || !strings.HasSuffix(a, ".git") || a != MirrorName("https://h/a") {
		t.Errorf("MirrorName: %q, %q", a, b)
	}
}
