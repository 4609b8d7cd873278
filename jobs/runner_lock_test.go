package jobs

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mixmaster"
	"mixmaster/internal/testenv"
	"mixmaster/store"
)

// gatedStore is the real store whose first Claim waits for release, before
// or after it claims, so a test can act while the dispatcher is in it.
type gatedStore struct {
	*store.DB
	after   bool // wait once the job is claimed, not before
	once    sync.Once
	entered chan struct{}
	release chan struct{}
	opened  sync.Once
}

func gate(t *testing.T, h *harness, after bool) *gatedStore {
	g := &gatedStore{DB: h.db, after: after, entered: make(chan struct{}), release: make(chan struct{})}
	h.runner.Store = g
	t.Cleanup(g.open)
	return g
}

// open lets the gated claim go on.
func (g *gatedStore) open() { g.opened.Do(func() { close(g.release) }) }

func (g *gatedStore) Claim(ctx context.Context, accept func(*mixmaster.Job) bool) (*mixmaster.Job, error) {
	first := false
	g.once.Do(func() { first = true })
	if first && !g.after {
		g.wait()
	}
	j, err := g.DB.Claim(ctx, accept)
	if first && g.after {
		g.wait()
	}
	return j, err
}

func (g *gatedStore) wait() {
	close(g.entered)
	<-g.release
}

// promptly fails the test unless fn returns within a generous deadline.
func promptly(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s waited for the store's claim", what)
	}
}

// TestRunnerLockNotHeldAcrossClaim checks that the runner's lock is free
// while the store commits a claim: asking what runs and canceling a queued
// job do not wait for it.
func TestRunnerLockNotHeldAcrossClaim(t *testing.T) {
	h := newHarness(t, 1, testProject, func(context.Context, mixmaster.ExecSpec, io.Writer) (int, error) { return 0, nil })
	g := gate(t, h, false)
	id := h.submit(t, "production")
	h.start(t)
	<-g.entered

	promptly(t, "Running", func() { h.runner.Running() })
	promptly(t, "Cancel", func() {
		j, err := h.runner.Cancel(context.Background(), id)
		if err != nil || j.Status != mixmaster.StatusCanceled {
			t.Errorf("Cancel = %+v, %v", j, err)
		}
	})
	g.open()
	h.wait(t, id, mixmaster.StatusCanceled)
}

// TestRunnerCancelDuringClaim cancels a job that the store has claimed but
// that the runner has not started yet: it must be stopped, not refused
// as "not queued".
func TestRunnerCancelDuringClaim(t *testing.T) {
	ran := make(chan struct{}, 1)
	h := newHarness(t, 1, testProject, func(ctx context.Context, _ mixmaster.ExecSpec, _ io.Writer) (int, error) {
		ran <- struct{}{}
		<-ctx.Done()
		return -1, ctx.Err()
	})
	g := gate(t, h, true)
	id := h.submit(t, "production")
	h.start(t)
	<-g.entered

	canceled := make(chan error, 1)
	go func() {
		_, err := h.runner.Cancel(context.Background(), id)
		canceled <- err
	}()
	g.open()
	if err := <-canceled; err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	h.wait(t, id, mixmaster.StatusCanceled)
}

// undeletable makes os.RemoveAll fail on dir: an immutable file as root,
// who ignores permissions, and a read-only directory otherwise.
func undeletable(t *testing.T, dir string) {
	t.Helper()
	file := filepath.Join(dir, "stuck")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		return
	}
	out, err := exec.Command("chattr", "+i", file).CombinedOutput()
	testenv.Need(t, "chattr", err == nil, "cannot make a file immutable: "+strings.TrimSpace(string(out)))
	t.Cleanup(func() { exec.Command("chattr", "-i", file).Run() })
}

// TestRunnerReportsArtifactsItCannotDrop checks that a job over the
// artifact limit whose files cannot be removed says so.
func TestRunnerReportsArtifactsItCannotDrop(t *testing.T) {
	h := newHarness(t, 1, testProject, func(_ context.Context, spec mixmaster.ExecSpec, _ io.Writer) (int, error) {
		dir := filepath.Join(env(spec, "MIXMASTER_ARTIFACTS"), "out")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return -1, err
		}
		undeletable(t, dir)
		return 0, os.WriteFile(filepath.Join(env(spec, "MIXMASTER_ARTIFACTS"), "big"), make([]byte, 4096), 0o644)
	})
	h.runner.ArtifactLimit = 1024
	h.runner.Logger = slog.New(slog.DiscardHandler)
	h.start(t)
	j := h.wait(t, h.submit(t, "production"), mixmaster.StatusFailed)
	if !strings.Contains(j.Error, "more than 1.0 KiB") || !strings.Contains(j.Error, "removing them failed") {
		t.Errorf("error = %q, want the limit and the failed removal", j.Error)
	}
}

// env returns the value of a variable of spec.
func env(spec mixmaster.ExecSpec, key string) string {
	for _, kv := range spec.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}
