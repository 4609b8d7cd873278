package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"mixmaster"
	"mixmaster/artifacts"
	"mixmaster/jobs"
	"mixmaster/store"
)

// stack is the handler over a real store, the real submitter and log
// files, and a runner that is never started: it cancels queued jobs.
type stack struct {
	db   *store.DB
	logs *artifacts.Files
	e    *echo.Echo
}

// newStack serves project, whose secret (if any) signs its deliveries.
func newStack(t *testing.T, project *mixmaster.Project) *stack {
	t.Helper()
	root := t.TempDir()
	db, err := store.Open(filepath.Join(root, "mixmaster.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	projects := func(name string) (*mixmaster.Project, bool) { return project, name == project.Name }
	svc := &jobs.Service{Store: db, Projects: projects}
	logs := &artifacts.Files{Root: root}
	h := &Handler{
		Jobs: db, Submitter: svc, Rerunner: svc, Canceler: &jobs.Runner{Store: db}, Logs: logs,
		Secrets: func(name string) string {
			if name == project.Name {
				return project.Secret
			}
			return ""
		},
	}
	e, _ := newEcho(t, h)
	return &stack{db: db, logs: logs, e: e}
}

// finish runs the oldest queued job to success, as a runner would.
func (s *stack) finish(t *testing.T) *mixmaster.Job {
	t.Helper()
	ctx := context.Background()
	job, err := s.db.Claim(ctx, func(*mixmaster.Job) bool { return true })
	if err != nil || job == nil {
		t.Fatalf("claim: %v, %v", job, err)
	}
	code := 0
	if job, err = s.db.Finish(ctx, job.ID, mixmaster.Outcome{Status: mixmaster.StatusSucceeded, ExitCode: &code}); err != nil {
		t.Fatal(err)
	}
	return job
}

// A clone URL's credentials appear in no reply about its job.
func TestRepliesHideCloneURLCredentials(t *testing.T) {
	const url = "https://user:secret@git.example.com/test-org/test-repo.git"
	s := newStack(t, &mixmaster.Project{Name: "test-org/test-repo", Repository: url,
		Targets: map[string]string{"production": "make deploy"}})
	check := func(what string, rec *httptest.ResponseRecorder, status int, shown bool) {
		t.Helper()
		if rec.Code != status {
			t.Fatalf("%s: %d %q, want %d", what, rec.Code, rec.Body, status)
		}
		if strings.Contains(rec.Body.String(), "secret") {
			t.Errorf("%s shows the password: %s", what, rec.Body)
		}
		if shown && !strings.Contains(rec.Body.String(), "https://xxxxx@git.example.com/test-org/test-repo.git") {
			t.Errorf("%s lacks the redacted URL: %s", what, rec.Body)
		}
	}
	body := `{"project":"test-org/test-repo","target":"production"}`
	check("webhook reply", postJSON(s.e, "/", body), http.StatusAccepted, false)
	if job, err := s.db.Job(context.Background(), 1); err != nil || job.RepositoryURL != url {
		t.Fatalf("stored job: %+v, %v; want the URL as configured", job, err)
	}
	check("job list", serve(s.e, http.MethodGet, "/api/v1/jobs", ""), http.StatusOK, true)
	check("job", serve(s.e, http.MethodGet, "/api/v1/jobs/1", ""), http.StatusOK, true)
	check("mistry job", serve(s.e, http.MethodGet, "/job/test-org/test-repo/1", "", "Accept", "application/json"), http.StatusOK, true)
	check("mistry job page", serve(s.e, http.MethodGet, "/job/test-org/test-repo/1", ""), http.StatusOK, false)
	check("index", serve(s.e, http.MethodGet, "/index/", ""), http.StatusOK, false)
	check("cancel", serve(s.e, http.MethodPost, "/api/v1/jobs/1/cancel", ""), http.StatusOK, true)
	check("rerun", serve(s.e, http.MethodPost, "/api/v1/jobs/1/rerun", ""), http.StatusAccepted, true)
	s.finish(t)
	check("rerun of a finished job", serve(s.e, http.MethodPost, "/api/v1/jobs/2/rerun", ""), http.StatusAccepted, true)
}

// A forge that delivers again with the same delivery id gets the first
// job back, for every header forges name the id in.
func TestSignedRedeliveryReturnsFirstJob(t *testing.T) {
	for _, header := range []string{"X-Gitea-Delivery", "X-Forgejo-Delivery", "X-GitHub-Delivery", "X-Gitlab-Event-UUID"} {
		t.Run(header, func(t *testing.T) {
			s := newStack(t, &mixmaster.Project{Name: "test-org/test-repo", Secret: "s3cret",
				Targets: map[string]string{"production": "make deploy"}})
			body := `{"ref":"refs/heads/production","after":"9f2c4e1ab3d5f60718293a4b5c6d7e8f90a1b2c3",` +
				`"repository":{"full_name":"test-org/test-repo","clone_url":"https://git.example.com/test-org/test-repo.git"}}`
			deliver := func() *httptest.ResponseRecorder {
				return postJSON(s.e, "/gitea", body, "X-Gitea-Signature", sign("s3cret", body), header, "7e1c5a9e-0d6b-4f5e-9a2b-3c4d5e6f7a8b")
			}
			first := mustAccepted(t, deliver(), http.StatusAccepted)
			again := mustAccepted(t, deliver(), http.StatusOK)
			if again.ID != first.ID {
				t.Errorf("redelivery answered job %d, want %d", again.ID, first.ID)
			}
			if n, err := s.db.QueueLen(context.Background()); err != nil || n != 1 {
				t.Errorf("%d jobs queued (%v), want 1", n, err)
			}
		})
	}
}

// startBody serves h and sends it the headers of a 1000-byte JSON POST and
// the first bytes of its body, on a connection that gives up after wait.
func startBody(t *testing.T, h *Handler, wait time.Duration, first string) net.Conn {
	t.Helper()
	e, _ := newEcho(t, h)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(wait))
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n%s", first)
	return conn
}

// A client that trickles its body is answered 408 and cut off once the
// body's time is up, instead of holding the connection for as long as it
// likes.
func TestTrickledBodyTimesOut(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a body deadline")
	}
	// The deadline is far longer than the body's bound: a server without
	// one answers nothing before it.
	conn := startBody(t, &Handler{Submitter: refusingSubmitter(t), BodyTimeout: 300 * time.Millisecond}, 10*time.Second, "")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()

	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %d, want 408", resp.StatusCode)
	}
	if !resp.Close {
		t.Error("the connection is kept open for more of the trickle")
	}
}

// A body whose Content-Length is over the limit is refused at once, not
// after the server has read on through it as the client trickles it.
func TestOversizedBodyRefusedUnread(t *testing.T) {
	conn := startBody(t, &Handler{Submitter: refusingSubmitter(t), BodyLimit: 64}, 5*time.Second, "{")
	// The rest of the body never comes: the answer must not wait for it.
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
}

// Once the body is in, its deadline is lifted: a request that waits for a
// build keeps its context long after.
func TestBodyDeadlineLiftedAfterRead(t *testing.T) {
	if testing.Short() {
		t.Skip("waits past a body deadline")
	}
	const bound = 200 * time.Millisecond
	done := &mixmaster.Job{ID: 1, Kind: mixmaster.KindArtifact, Project: "p", Status: mixmaster.StatusSucceeded}
	queued := *done
	queued.Status = mixmaster.StatusQueued
	arts := &fakeArtifacts{
		SubmitArtifactFn: func(context.Context, mixmaster.ArtifactRequest) (mixmaster.ArtifactResult, error) {
			return mixmaster.ArtifactResult{Job: &queued}, nil
		},
		WaitFn: func(ctx context.Context, id mixmaster.JobID) (*mixmaster.Job, error) {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(5 * bound): // a build that outlasts the body's bound
				return done, nil
			}
		},
		ArtifactsDirFn: func(*mixmaster.Job) string { return "/srv/artifacts/1" },
	}
	h := &Handler{Artifacts: arts, Logs: fileLogs(func(mixmaster.JobID) string { return filepath.Join(t.TempDir(), "none") }), BodyTimeout: bound}
	e, _ := newEcho(t, h)
	srv := httptest.NewServer(e)
	defer srv.Close()

	resp, err := http.Post(srv.URL+"/jobs", "application/json", strings.NewReader(`{"project":"p"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var bi BuildInfo
	if err := json.NewDecoder(resp.Body).Decode(&bi); err != nil || resp.StatusCode != http.StatusCreated || bi.Path != "/srv/artifacts/1" {
		t.Fatalf("status %d, %+v, %v; want the finished build", resp.StatusCode, bi, err)
	}
}

// Plain-text logs reach a terminal: whatever the build printed cannot drive
// it. Colours stay when asked for.
func TestJobLogNeutralisesTerminalControls(t *testing.T) {
	s := newStack(t, &mixmaster.Project{Name: "test-org/test-repo", Repository: "https://git.example.com/test-org/test-repo.git",
		Targets: map[string]string{"production": "make deploy"}})
	mustAccepted(t, postJSON(s.e, "/", `{"project":"test-org/test-repo","target":"production"}`), http.StatusAccepted)
	log, err := s.logs.Create(1)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(log.Stdout(), "\x1b]0;owned\x07\x1b[1;32mok\x1b[0m\x1b[2Ahidden\x07\bsecret\rpublic\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\\n")
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	s.finish(t)

	for _, tc := range []struct {
		query      string
		want, lose []string
	}{
		{"", []string{"okhiddensecret\n", "public", "link\n"}, []string{"\x1b", "\x07", "\b", "\r", "owned", "evil.example"}},
		{"?follow=1", []string{"okhiddensecret\n", "public", "link\n"}, []string{"\x1b", "\x07", "\b", "\r", "owned"}},
		{"?color=1", []string{"\x1b[1;32mok\x1b[0mhiddensecret\n", "link\n"}, []string{"\x1b]", "\x1b[2A", "\x07", "\b", "\r", "owned"}},
		{"?follow=1&color=true", []string{"\x1b[1;32mok\x1b[0mhiddensecret\n"}, []string{"\x1b]", "\x1b[2A", "\x07", "\r"}},
	} {
		rec := serve(s.e, http.MethodGet, "/api/v1/jobs/1/log"+tc.query, "")
		body := rec.Body.String()
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %q", tc.query, rec.Code, body)
		}
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: %q lacks %q", tc.query, body, w)
			}
		}
		for _, l := range tc.lose {
			if strings.Contains(body, l) {
				t.Errorf("%s: %q holds %q", tc.query, body, l)
			}
		}
	}
	wantJSONError(t, serve(s.e, http.MethodGet, "/api/v1/jobs/1/log?color=maybe", ""), http.StatusBadRequest, "color must be 1, 0, true or false.")
}
