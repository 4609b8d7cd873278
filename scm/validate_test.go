package scm

import (
	"strings"
	"testing"
)

func TestStripCredentials(t *testing.T) {
	tests := map[string]string{
		"https://user:s3cret@host/repo":     "https://host/repo",
		"https://tok3n@host/repo":           "https://host/repo",
		"https://host/repo":                 "https://host/repo",
		"ssh://git:s3cret@host/repo":        "ssh://git@host/repo",
		"ssh://git@host/repo":               "ssh://git@host/repo",
		"git@host:repo":                     "git@host:repo",
		"file:///srv/repo.git":              "file:///srv/repo.git",
		"https://u:p%zz@host/repo":          "https://xxxxx@host/repo",
		"http://oauth2:glpat-x@gitlab/o/r/": "http://gitlab/o/r/",
	}
	for in, want := range tests {
		if got := stripCredentials(in); got != want {
			t.Errorf("stripCredentials(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedactText(t *testing.T) {
	tests := map[string]string{
		"fatal: unable to access 'https://user:s3cret@host/r/': 403": "fatal: unable to access 'https://xxxxx@host/r/': 403",
		"From http://tok3n@host/r\n":                                 "From http://xxxxx@host/r\n",
		"a https://h/x and ssh://git:pw@h/y, then git@h:z":           "a https://h/x and ssh://xxxxx@h/y, then git@h:z",
		"no URL here": "no URL here",
		"://":         "://",
	}
	for in, want := range tests {
		if got := redactText(in); got != want {
			t.Errorf("redactText(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCommandLine(t *testing.T) {
	got := commandLine([]string{"--git-dir=/m.git", "fetch", "--end-of-options", "https://u:p@h/r",
		"+refs/heads/*:refs/heads/*", "it's"})
	want := `git --git-dir=/m.git fetch --end-of-options https://xxxxx@h/r '+refs/heads/*:refs/heads/*' 'it'\''s'`
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
