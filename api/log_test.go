package api

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"mixmaster"
)

// statusStore is a job store holding one job whose status a test changes.
type statusStore struct {
	mu     sync.Mutex
	id     mixmaster.JobID
	status mixmaster.Status
}

func (s *statusStore) set(st mixmaster.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = st
}

func (s *statusStore) fake() *fakeJobStore {
	return &fakeJobStore{JobFn: func(_ context.Context, id mixmaster.JobID) (*mixmaster.Job, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if id != s.id {
			return nil, mixmaster.Errorf(mixmaster.ENOTFOUND, "Job %d not found.", id)
		}
		return &mixmaster.Job{ID: s.id, Status: s.status}, nil
	}}
}

// logDir keeps job logs as <dir>/<id>.log, like the real log store.
func logDir(t *testing.T) (string, *fakeLogStore) {
	dir := t.TempDir()
	return dir, fileLogs(func(id mixmaster.JobID) string { return filepath.Join(dir, id.String()+".log") })
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestJobLogPlain(t *testing.T) {
	store := &statusStore{id: 4, status: mixmaster.StatusSucceeded}
	dir, logs := logDir(t)
	appendFile(t, filepath.Join(dir, "4.log"), "# Build started\nO hello\n")
	e, _ := newEcho(t, &Handler{Jobs: store.fake(), Logs: logs})

	wantText(t, serve(e, http.MethodGet, "/api/v1/jobs/4/log", ""), http.StatusOK, "# Build started\nO hello\n")
	wantText(t, serve(e, http.MethodGet, "/api/v1/jobs/4/log?follow=0", ""), http.StatusOK, "# Build started\nO hello\n")
	// A final job is followed to its end at once.
	wantText(t, serve(e, http.MethodGet, "/api/v1/jobs/4/log?follow=1", ""), http.StatusOK, "# Build started\nO hello\n")

	wantJSONError(t, serve(e, http.MethodGet, "/api/v1/jobs/5/log", ""), http.StatusNotFound, "Job 5 not found.")
	wantJSONError(t, serve(e, http.MethodGet, "/api/v1/jobs/4/log?follow=maybe", ""), http.StatusBadRequest, "")
}

func TestJobLogQueued(t *testing.T) {
	store := &statusStore{id: 4, status: mixmaster.StatusQueued}
	_, logs := logDir(t)
	e, _ := newEcho(t, &Handler{Jobs: store.fake(), Logs: logs})
	rec := serve(e, http.MethodGet, "/api/v1/jobs/4/log", "")
	wantText(t, rec, http.StatusOK, "")
}

// follower reads a followed log line by line in the background.
type follower struct {
	lines chan string
	done  chan error // the error that ended the body; io.EOF when complete
}

func follow(t *testing.T, ctx context.Context, url string) *follower {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	if got := resp.Header.Get("X-Accel-Buffering"); got != "no" {
		t.Errorf("X-Accel-Buffering = %q", got)
	}
	if got := resp.Header.Get("Content-Type"); got != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type = %q", got)
	}
	f := &follower{lines: make(chan string, 100), done: make(chan error, 1)}
	go func() {
		r := bufio.NewReader(resp.Body)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				f.lines <- line
			}
			if err != nil {
				f.done <- err
				return
			}
		}
	}()
	return f
}

func (f *follower) want(t *testing.T, line string) {
	t.Helper()
	select {
	case got := <-f.lines:
		if got != line {
			t.Fatalf("line = %q, want %q", got, line)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no line %q within 10s", line)
	}
}

func (f *follower) wantEnd(t *testing.T) {
	t.Helper()
	select {
	case err := <-f.done:
		if err != io.EOF {
			t.Fatalf("body ended with %v, want EOF", err)
		}
	case line := <-f.lines:
		t.Fatalf("extra line %q", line)
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end within 10s")
	}
}

func TestJobLogFollow(t *testing.T) {
	store := &statusStore{id: 9, status: mixmaster.StatusRunning}
	dir, logs := logDir(t)
	path := filepath.Join(dir, "9.log")
	appendFile(t, path, "# Build started\n")
	events := &broker{}
	// No polling to speak of: only events may wake the follower.
	h := &Handler{Jobs: store.fake(), Logs: logs, Events: events, pollEvery: time.Hour}
	e, _ := newEcho(t, h)
	srv := httptest.NewServer(e)
	defer srv.Close()

	f := follow(t, t.Context(), srv.URL+"/api/v1/jobs/9/log?follow=1")
	f.want(t, "# Build started\n")

	appendFile(t, path, "$ make\n")
	events.Publish(mixmaster.Event{JobID: 9})
	f.want(t, "$ make\n")

	// Events for other jobs are not ours; our line waits for our event.
	events.Publish(mixmaster.Event{JobID: 10})
	appendFile(t, path, "O built\n# Build ended\n")
	store.set(mixmaster.StatusSucceeded)
	events.Publish(mixmaster.Event{JobID: 9, Status: mixmaster.StatusSucceeded})
	f.want(t, "O built\n")
	f.want(t, "# Build ended\n")
	f.wantEnd(t)

	waitFor(t, "unsubscribe", func() bool { return events.subscribers() == 0 })
}

// A queued job has no log yet; the follower waits for it, here woken by
// polling alone.
func TestJobLogFollowQueued(t *testing.T) {
	store := &statusStore{id: 3, status: mixmaster.StatusQueued}
	dir, logs := logDir(t)
	h := &Handler{Jobs: store.fake(), Logs: logs, Events: &broker{}, pollEvery: 10 * time.Millisecond}
	e, _ := newEcho(t, h)
	srv := httptest.NewServer(e)
	defer srv.Close()

	f := follow(t, t.Context(), srv.URL+"/api/v1/jobs/3/log?follow=true")
	store.set(mixmaster.StatusRunning)
	appendFile(t, filepath.Join(dir, "3.log"), "# Build started\n")
	f.want(t, "# Build started\n")
	appendFile(t, filepath.Join(dir, "3.log"), "# Build failed\n")
	store.set(mixmaster.StatusFailed)
	f.want(t, "# Build failed\n")
	f.wantEnd(t)
}

func TestJobLogFollowClientGone(t *testing.T) {
	store := &statusStore{id: 2, status: mixmaster.StatusRunning}
	dir, logs := logDir(t)
	appendFile(t, filepath.Join(dir, "2.log"), "# Build started\n")
	events := &broker{}
	h := &Handler{Jobs: store.fake(), Logs: logs, Events: events, pollEvery: time.Hour}
	e, _ := newEcho(t, h)
	srv := httptest.NewServer(e)
	defer srv.Close()

	ctx, cancel := context.WithCancel(t.Context())
	f := follow(t, ctx, srv.URL+"/api/v1/jobs/2/log?follow=1")
	f.want(t, "# Build started\n")
	if n := events.subscribers(); n != 1 {
		t.Fatalf("subscribers = %d, want 1", n)
	}
	cancel()
	// The handler notices through the request context and lets go.
	waitFor(t, "unsubscribe", func() bool { return events.subscribers() == 0 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
