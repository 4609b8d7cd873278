package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mixmaster"
	"mixmaster/store"
)

// A service whose database was cut short refuses to start with one line
// naming the file and how to restore a backup, and exit status 1: no
// panic, no stack trace.
func TestServeRefusesDamagedDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	root := t.TempDir()
	path := filepath.Join(root, "mixmaster.db")
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		job := &mixmaster.Job{Kind: mixmaster.KindWebhook, Project: "test-org/test-repo", Target: "master",
			Message: strings.Repeat("a commit message ", 20), DeliveryID: fmt.Sprint("d", i)}
		if _, _, err := db.CreateJob(context.Background(), job); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(root, "mixmaster.ini")
	if err := os.WriteFile(config, []byte("[_]\nbuildRoot = "+root+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), "serve", "--config", config, "--listen", "127.0.0.1:0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("serve: %v, want exit status 1; stderr:\n%s", err, &stderr)
	}
	out := stdout.String() + stderr.String()
	if strings.Contains(out, "panic") || strings.Contains(out, "goroutine") {
		t.Fatalf("output shows a crash:\n%s", out)
	}
	t.Log(stderr.String())
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	msg := lines[len(lines)-1]
	if len(lines) != 1 || !strings.Contains(msg, path+" is damaged (") ||
		!strings.Contains(msg, `copy a file made by "mixmaster backup" to `+path) {
		t.Errorf("stderr %q, want one line naming %s and how to restore a backup", stderr.String(), path)
	}
}
