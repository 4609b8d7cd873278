package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mixmaster"
	"mixmaster/internal/testenv"
)

// testRepo is a real git repository with the branches the tests push.
type testRepo struct {
	Dir     string
	Commits map[string]string // branch → head SHA
}

func gitIn(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=Test User", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test User", "GIT_COMMITTER_EMAIL=test@example.com",
		"GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// newTestRepo makes a repository with production, staging/x and master,
// each with a file naming its branch.
func newTestRepo(t testing.TB) *testRepo {
	t.Helper()
	_, err := exec.LookPath("git")
	testenv.Need(t, "git", err == nil, "git not on PATH")
	dir := filepath.Join(t.TempDir(), "test-repo")
	os.MkdirAll(dir, 0o755)
	gitIn(t, dir, "init", "--quiet", "--initial-branch=master")
	r := &testRepo{Dir: dir, Commits: map[string]string{}}
	for _, branch := range []string{"master", "production", "staging/x"} {
		if branch != "master" {
			gitIn(t, dir, "checkout", "--quiet", "-b", branch, "master")
		}
		os.WriteFile(filepath.Join(dir, "branch.txt"), []byte(branch+"\n"), 0o644)
		gitIn(t, dir, "add", ".")
		gitIn(t, dir, "commit", "--quiet", "-m", "Commit on "+branch)
		r.Commits[branch] = gitIn(t, dir, "rev-parse", "HEAD")
	}
	gitIn(t, dir, "checkout", "--quiet", "master")
	return r
}

// server is a service started in-process on a loopback port.
type server struct {
	*Main
	URL string
}

func startServer(t testing.TB, cfgText string) *server {
	t.Helper()
	root := t.TempDir()
	path := filepath.Join(root, "mixmaster.ini")
	text := strings.ReplaceAll(cfgText, "@ROOT@", root)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	m := &Main{Config: cfg, Listener: ln, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	if err := m.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if t.Failed() {
			t.Logf("service log:\n%s", logs.String())
		}
	})
	return &server{Main: m, URL: "http://" + m.Addr()}
}

// post sends body to path and decodes a JSON reply into out (when set).
func (s *server) post(t testing.TB, path, body string, header map[string]string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("POST %s: %d %s: %v", path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

func (s *server) get(t testing.TB, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(s.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type accepted struct {
	ID  mixmaster.JobID `json:"id"`
	URL string          `json:"url"`
}

// submit posts a lightweight payload and expects 202.
func (s *server) submit(t testing.TB, payload map[string]any) accepted {
	t.Helper()
	b, _ := json.Marshal(payload)
	var a accepted
	if code := s.post(t, "/", string(b), nil, &a); code != http.StatusAccepted || a.ID == 0 {
		t.Fatalf("POST / %s: status %d, reply %+v", b, code, a)
	}
	return a
}

// wait polls the API until the job is final.
func (s *server) wait(t testing.TB, id mixmaster.JobID) *mixmaster.Job {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		code, body := s.get(t, fmt.Sprintf("/api/v1/jobs/%d", id))
		if code != http.StatusOK {
			t.Fatalf("GET job %d: %d %s", id, code, body)
		}
		var j mixmaster.Job
		if err := json.Unmarshal([]byte(body), &j); err != nil {
			t.Fatal(err)
		}
		if j.Status.Done() {
			return &j
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("job %d did not finish", id)
	return nil
}

func (s *server) log(t testing.TB, id mixmaster.JobID) string {
	t.Helper()
	code, body := s.get(t, fmt.Sprintf("/api/v1/jobs/%d/log", id))
	if code != http.StatusOK {
		t.Fatalf("GET log %d: %d %s", id, code, body)
	}
	return body
}

func TestWebhookBuildEndToEnd(t *testing.T) {
	repo := newTestRepo(t)
	s := startServer(t, `
[_]
buildRoot = @ROOT@/builds
jobConcurrency = 2

[test-org/test-repo]
.repository = file://`+repo.Dir+`
production = echo "building $MIXMASTER_TARGET"; cat branch.txt; env | grep ^MIXMASTER_ | sort; echo oops >&2
staging = cat branch.txt; echo out > "$MIXMASTER_ARTIFACTS/result.txt"
master = exit 3
master/docs = echo "docs task on $(cat branch.txt)"
`)

	t.Run("production", func(t *testing.T) {
		a := s.submit(t, map[string]any{"scm": "git", "project": "test-org/test-repo", "target": "production",
			"commit": repo.Commits["production"], "viewUrl": "http://example.com/view"})
		if !strings.HasSuffix(a.URL, fmt.Sprintf("/job/test-org/test-repo/%d", a.ID)) {
			t.Errorf("url = %q", a.URL)
		}
		j := s.wait(t, a.ID)
		if j.Status != mixmaster.StatusSucceeded || j.ExitCode == nil || *j.ExitCode != 0 {
			t.Fatalf("job = %+v", j)
		}
		log := s.log(t, a.ID)
		for _, want := range []string{
			" # Build started for test-org/test-repo production",
			" O building production",
			" O production",
			" O MIXMASTER_COMMIT=" + repo.Commits["production"],
			" O MIXMASTER_JOB_ID=" + a.ID.String(),
			" O MIXMASTER_PROJECT=test-org/test-repo",
			" O MIXMASTER_TARGET=production",
			" O MIXMASTER_VIEW_URL=http://example.com/view",
			" O MIXMASTER_REPOSITORY_URL=file://" + repo.Dir,
			" O MIXMASTER_ARTIFACTS=" + s.Config.BuildRoot,
			" O oops", // stderr shares stdout's stream, so the order holds
			" $ echo \"building $MIXMASTER_TARGET\"",
			" # Build finished",
		} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
	})

	t.Run("branch below a prefix", func(t *testing.T) {
		a := s.submit(t, map[string]any{"project": "test-org/test-repo", "target": "staging/x"})
		j := s.wait(t, a.ID)
		if j.Status != mixmaster.StatusSucceeded || j.Commit != repo.Commits["staging/x"] {
			t.Fatalf("job = %+v, want commit %s", j, repo.Commits["staging/x"])
		}
		if log := s.log(t, a.ID); !strings.Contains(log, " O staging/x\n") {
			t.Errorf("staging/x was not checked out:\n%s", log)
		}
		artifact := filepath.Join(s.Config.BuildRoot, "jobs", a.ID.String(), "artifacts", "result.txt")
		if b, err := os.ReadFile(artifact); err != nil || string(b) != "out\n" {
			t.Errorf("artifact: %q, %v", b, err)
		}
	})

	t.Run("task", func(t *testing.T) {
		a := s.submit(t, map[string]any{"project": "test-org/test-repo", "target": "master", "task": "docs"})
		j := s.wait(t, a.ID)
		if j.Status != mixmaster.StatusSucceeded || j.Task != "docs" {
			t.Fatalf("job = %+v", j)
		}
		if log := s.log(t, a.ID); !strings.Contains(log, " O docs task on master") {
			t.Errorf("log:\n%s", log)
		}
	})

	t.Run("failing command", func(t *testing.T) {
		a := s.submit(t, map[string]any{"project": "test-org/test-repo", "target": "master"})
		j := s.wait(t, a.ID)
		if j.Status != mixmaster.StatusFailed || j.ExitCode == nil || *j.ExitCode != 3 {
			t.Fatalf("job = %+v", j)
		}
		if log := s.log(t, a.ID); !strings.Contains(log, " # Build failed: command exited with status 3") {
			t.Errorf("log:\n%s", log)
		}
	})

	t.Run("unknown commit errors", func(t *testing.T) {
		a := s.submit(t, map[string]any{"project": "test-org/test-repo", "target": "production", "commit": strings.Repeat("0", 39) + "1"})
		j := s.wait(t, a.ID)
		if j.Status != mixmaster.StatusErrored || !strings.Contains(j.Error, "not found") {
			t.Fatalf("job = %+v", j)
		}
	})
}
