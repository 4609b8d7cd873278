package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mixmaster"
	"mixmaster/store"
)

// pruneSetup writes a config keeping the newest job of [w/app] and a
// store with three finished jobs of it, each with a job directory.
func pruneSetup(t *testing.T) (cfgPath, root string, jobIDs []mixmaster.JobID) {
	t.Helper()
	root = t.TempDir()
	cfgPath = filepath.Join(root, "mixmaster.ini")
	cfg := "[_]\nbuildRoot = " + root + "\nkeepLast = 1\n[w/app]\nmain = make\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(root, "mixmaster.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.Now = func() time.Time { return time.Now().Add(-72 * time.Hour) }
	ctx := context.Background()
	for _, status := range []mixmaster.Status{mixmaster.StatusFailed, mixmaster.StatusCanceled, mixmaster.StatusFailed} {
		j, _, err := db.CreateJob(ctx, &mixmaster.Job{Kind: mixmaster.KindWebhook, Trigger: mixmaster.TriggerAPI, Project: "w/app", Target: "main"})
		if err != nil {
			t.Fatal(err)
		}
		if status == mixmaster.StatusCanceled {
			_, err = db.CancelQueued(ctx, j.ID, "test")
		} else {
			db.Claim(ctx, nil)
			_, err = db.Finish(ctx, j.ID, mixmaster.Outcome{Status: status})
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, "jobs", j.ID.String(), "artifacts"), 0o750); err != nil {
			t.Fatal(err)
		}
		jobIDs = append(jobIDs, j.ID)
	}
	return cfgPath, root, jobIDs
}

func TestPruneCommandDryRun(t *testing.T) {
	cfgPath, root, jobIDs := pruneSetup(t)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"mixmaster", "prune", "--config", cfgPath, "--dry-run"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	got := out.String()
	for _, want := range []string{"ID", "PROJECT", "TARGET/GROUP", "STATUS", "AGE", "w/app", "main", "failed", "canceled", "3d", "2 jobs would be removed"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, id := range jobIDs {
		if _, err := os.Stat(filepath.Join(root, "jobs", id.String())); err != nil {
			t.Errorf("dry run removed job %d: %v", id, err)
		}
	}

	out.Reset()
	if code := run(context.Background(), []string{"mixmaster", "prune", "--config", cfgPath}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "removed 2 jobs") {
		t.Errorf("output = %q, want removed 2 jobs", out.String())
	}
	for i, id := range jobIDs {
		_, err := os.Stat(filepath.Join(root, "jobs", id.String()))
		if kept := i == len(jobIDs)-1; kept != (err == nil) {
			t.Errorf("job %d: directory kept %v, want %v", id, err == nil, kept)
		}
	}
	out.Reset()
	run(context.Background(), []string{"mixmaster", "prune", "--config", cfgPath, "--dry-run"}, &out, &errb)
	if !strings.Contains(out.String(), "nothing to prune") {
		t.Errorf("after prune, dry run says %q", out.String())
	}
}

// TestPruneCommandWhileServiceRuns: a dry run plans on a copy from the
// running service and changes nothing; a real prune is refused.
func TestPruneCommandWhileServiceRuns(t *testing.T) {
	cfgPath, root, jobIDs := pruneSetup(t)
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("MIXMASTER_DOCKER", "off")
	m := &Main{Config: cfg, Listener: ln, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := m.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	t.Setenv("MIXMASTER_URL", "http://"+m.Addr())

	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"mixmaster", "prune", "--config", cfgPath, "--dry-run"}, &out, &errb); code != 0 {
		t.Fatalf("dry run while the service runs: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "2 jobs would be removed") {
		t.Errorf("dry run says %q", out.String())
	}
	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"mixmaster", "prune", "--config", cfgPath}, &out, &errb); code != 1 {
		t.Fatalf("prune while the service runs: exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), "the service is running: it prunes by itself every hour; stop it to prune by hand") {
		t.Errorf("stderr = %q", errb.String())
	}
	for _, id := range jobIDs {
		if _, err := m.DB.Job(t.Context(), id); err != nil {
			t.Errorf("job %d: %v", id, err)
		}
		if _, err := os.Stat(filepath.Join(root, "jobs", id.String())); err != nil {
			t.Errorf("job %d: %v", id, err)
		}
	}
}

func TestPruneCommandWithoutRetention(t *testing.T) {
	root := t.TempDir()
	cfgPath := filepath.Join(root, "mixmaster.ini")
	os.WriteFile(cfgPath, []byte("[_]\nbuildRoot = "+root+"\n"), 0o600)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"mixmaster", "prune", "--config", cfgPath}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "every job is kept") {
		t.Errorf("output = %q", out.String())
	}
}
