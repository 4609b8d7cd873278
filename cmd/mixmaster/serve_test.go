package main

import (
	"context"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mixmaster/internal/testenv"
)

var servingRE = regexp.MustCompile(`mixmaster: serving on (http://127\.0\.0\.1:\d+) — open it in a browser; first build: curl --json '\{"project": "demo/hello", "target": "master"\}' (http://\S+)/`)

// serveDemo runs `serve --demo` with extra flags, sends one request once
// it says where it serves, stops it and returns what it wrote to stderr.
func serveDemo(t *testing.T, flags ...string) string {
	t.Helper()
	_, err := exec.LookPath("git")
	testenv.Need(t, "git", err == nil, "git not on PATH: the demo is a git repository")
	t.Setenv("MIXMASTER_DOCKER", "off")
	t.Setenv("MIXMASTER_LOG_LEVEL", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	args := append([]string{"mixmaster", "serve", "--demo", "--build-root", filepath.Join(t.TempDir(), ".demo"), "--listen", "127.0.0.1:0"}, flags...)
	exited := make(chan int, 1)
	go func() { exited <- run(ctx, args, &stderr, &stderr) }()

	deadline := time.Now().Add(30 * time.Second)
	var m []string
	for m == nil {
		if m = servingRE.FindStringSubmatch(stderr.String()); m != nil {
			break
		}
		select {
		case code := <-exited:
			t.Fatalf("serve exited %d:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve never said where it serves:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m[1] != m[2] {
		t.Errorf("the page is %s, the first build goes to %s", m[1], m[2])
	}
	resp, err := http.Get(m[1] + "/api/v1/jobs")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if code := <-exited; code != 0 {
		t.Fatalf("serve exited %d:\n%s", code, stderr.String())
	}
	return stderr.String()
}

// TestServeSaysWhereAndLogsRequestsAtDebug: the demo says which address to
// open and how to start its first build; by default no line per request
// is logged, with --log-level debug each request is.
func TestServeSaysWhereAndLogsRequestsAtDebug(t *testing.T) {
	if log := serveDemo(t); strings.Contains(log, "msg=request") {
		t.Errorf("a request was logged at the default level:\n%s", log)
	}
	if log := serveDemo(t, "--log-level", "debug"); !strings.Contains(log, `msg=request method=GET uri=/api/v1/jobs status=200`) {
		t.Errorf("--log-level debug did not log the request:\n%s", log)
	}
	if log := serveDemo(t, "--log-level", "warn"); strings.Contains(log, "level=INFO") {
		t.Errorf("--log-level warn logged info:\n%s", log)
	}
	code, text := runCmd(t, "serve", "--demo", "--log-level", "loud")
	if code != 2 || !strings.Contains(text, `log level "loud": expected debug, info, warn or error`) {
		t.Errorf("a bad level: exit %d: %s", code, text)
	}
}

func TestServingMessage(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:8585": "mixmaster: serving on http://127.0.0.1:8585 — open it in a browser",
		"[::]:9000":      "mixmaster: serving on http://127.0.0.1:9000 — open it in a browser",
		"0.0.0.0:80":     "mixmaster: serving on http://127.0.0.1:80 — open it in a browser",
		"10.1.2.3:8585":  "mixmaster: serving on http://10.1.2.3:8585 — open it in a browser",
	} {
		if got := servingMessage(addr, false); got != want {
			t.Errorf("servingMessage(%q) = %q, want %q", addr, got, want)
		}
	}
}
