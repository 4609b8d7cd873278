package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mixmaster"
	"mixmaster/internal/testenv"
)

// TestBadInputKeepsServing sends each kind of bad request to a real
// service: each gets a clear 4xx, nothing is queued or run, and the service
// then builds a good request as usual.
func TestBadInputKeepsServing(t *testing.T) {
	repo := newTestRepo(t)
	s := startServer(t, `
[_]
buildRoot = @ROOT@

[test-org/test-repo]
production = touch ran-production
staging = touch ran-staging

[test-org/pinned]
.repository = `+repo.Dir+`
production = echo built
`)
	// test-org/test-repo has no .repository, so payloads must name one.
	url := "file://" + repo.Dir
	pwned := filepath.Join(t.TempDir(), "pwned")
	tests := []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"malformed JSON", "POST", "/", `{"project": `, 400, ""},
		{"not an object", "POST", "/", `[1,2]`, 400, ""},
		{"number as project", "POST", "/", `{"project": 1, "target": "production"}`, 400, "project"},
		{"missing project", "POST", "/", `{"target": "production"}`, 422, "project not specified"},
		{"missing target", "POST", "/", `{"project": "test-org/test-repo"}`, 422, "target not specified"},
		{"unknown project", "POST", "/", `{"project": "nope/nope", "target": "production", "repositoryUrl": "https://h/r"}`, 422, "Unknown project"},
		{"dot-dot project", "POST", "/", `{"project": "../../etc", "target": "production", "repositoryUrl": "https://h/r"}`, 422, "Unknown project"},
		{"slashes project", "POST", "/", `{"project": "test-org//test-repo", "target": "production", "repositoryUrl": "https://h/r"}`, 422, "Unknown project"},
		{"unknown branch", "POST", "/", `{"project": "test-org/test-repo", "target": "feature", "repositoryUrl": "https://h/r"}`, 422, "Not set up to build feature"},
		{"unknown task", "POST", "/", `{"project": "test-org/test-repo", "target": "production", "task": "docs", "repositoryUrl": "https://h/r"}`, 422, "Not set up for docs task."},
		{"shell in branch", "POST", "/", `{"project": "test-org/test-repo", "target": "$(touch ` + pwned + `)", "repositoryUrl": "https://h/r"}`, 422, "not a valid branch name"},
		{"option as branch", "POST", "/", `{"project": "test-org/test-repo", "target": "--upload-pack=touch ` + pwned + `", "repositoryUrl": "https://h/r"}`, 422, "not a valid branch name"},
		{"ext url", "POST", "/", `{"project": "test-org/test-repo", "target": "production", "repositoryUrl": "ext::sh -c touch% ` + pwned + `"}`, 422, "invalid repository URL"},
		{"option url", "POST", "/", `{"project": "test-org/test-repo", "target": "production", "repositoryUrl": "--upload-pack=touch ` + pwned + `"}`, 422, "invalid repository URL"},
		{"file url", "POST", "/", `{"project": "test-org/test-repo", "target": "production", "repositoryUrl": "` + url + `"}`, 422, "only allowed in the configuration"},
		{"option as commit", "POST", "/", `{"project": "test-org/test-repo", "target": "production", "commit": "-c core.sshCommand=touch ` + pwned + `", "repositoryUrl": "https://h/r"}`, 422, "neither a full SHA nor a ref"},
		{"body over the limit", "POST", "/", `{"project": "` + strings.Repeat("a", 2<<20) + `"}`, 413, ""},
		{"GET where only POST is allowed", "GET", "/gitea", "", 405, ""},
		{"DELETE", "DELETE", "/", "", 405, ""},
		{"unknown route", "POST", "/nope", "{}", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, s.URL+tt.path, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body bytes.Buffer
			body.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || !strings.Contains(body.String(), tt.msg) {
				t.Errorf("%s %s: %d %q; want %d containing %q", tt.method, tt.path, resp.StatusCode, body.String(), tt.status, tt.msg)
			}
		})
	}
	if jobs, _ := s.DB.Jobs(t.Context(), mixmaster.JobFilter{}); len(jobs) != 0 {
		t.Fatalf("bad requests queued %d jobs", len(jobs))
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Fatal("a request value reached a command line")
	}
	// Still serving: a good request builds.
	a := s.submit(t, map[string]any{"project": "test-org/pinned", "target": "production"})
	if j := s.wait(t, a.ID); j.Status != mixmaster.StatusSucceeded {
		t.Fatalf("job = %+v", j)
	}
}

func TestCommandLine(t *testing.T) {
	repo := newTestRepo(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "mixmaster.ini")
	os.WriteFile(config, []byte(fmt.Sprintf("[_]\nbuildRoot = %s\n\n[test-org/test-repo]\n.repository = %s\nproduction = make deploy\nmaster/docs = make docs\n\n[other/repo]\nmaster = make\n", dir, repo.Dir)), 0o600)
	payload := filepath.Join(dir, "payload.json")
	os.WriteFile(payload, []byte(`{"project": "test-org/test-repo", "target": "master", "task": "docs"}`), 0o600)
	withURL := filepath.Join(dir, "url.json")
	os.WriteFile(withURL, []byte(`{"project": "other/repo", "target": "master", "repositoryUrl": "https://ci:s3cret@git.example.com/other/repo.git"}`), 0o600)
	bad := filepath.Join(dir, "bad.ini")
	os.WriteFile(bad, []byte("[_]\nbildRoot = /x\n"), 0o600)

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr string
	}{
		{"version", []string{"version"}, 0, []string{"mixmaster dev"}, ""},
		{"recipe", []string{"recipe", "--config", config, payload}, 0, []string{
			"project:    test-org/test-repo", "task:       docs", "config key: master/docs", "command:    make docs",
			"clone URL:  " + repo.Dir, "checkout:   " + filepath.Join(dir, "checkouts"),
		}, ""},
		{"recipe hides the URL's password", []string{"recipe", "--config", config, withURL}, 0, []string{
			"clone URL:  https://xxxxx@git.example.com/other/repo.git\n",
		}, ""},
		{"gitea recipe", []string{"recipe", "--config", config, "testdata/gitea.json"}, 0, []string{"target:     production", "command:    make deploy"}, ""},
		{"recipe without payload", []string{"recipe", "--config", config}, 2, nil, "accepts 1 arg"},
		{"recipe's usage", []string{"recipe"}, 2, nil, "Usage:\n  mixmaster recipe [--config FILE] PAYLOAD.json"},
		{"passwd's usage", []string{"passwd"}, 2, nil, "Usage:\n  mixmaster passwd NAME"},
		{"config that does not parse", []string{"recipe", "--config", bad, payload}, 1, nil, `bad.ini:2: unknown key "bildRoot" in [_]`},
		{"missing config", []string{"serve", "--config", filepath.Join(dir, "none.ini")}, 1, nil, "none.ini"},
		{"unknown flag", []string{"serve", "--nope"}, 2, nil, "unknown flag"},
		{"no command", nil, 2, nil, "a command is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), append([]string{"mixmaster"}, tt.args...), &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.stderr) {
				t.Fatalf("exit %d, stderr %q; want %d with %q", code, stderr.String(), tt.code, tt.stderr)
			}
			for _, want := range tt.stdout {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
				}
			}
		})
	}
	// recipe runs nothing and creates nothing.
	if _, err := os.Stat(filepath.Join(dir, "checkouts")); err == nil {
		t.Error("recipe created a checkout")
	}
}

// TestMissingConfigSaysWhere: a command that finds no config names the
// file it looked for, and the demo's config when there is one.
func TestMissingConfigSaysWhere(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("MIXMASTER_CONFIG", "")
	dir := t.TempDir()
	t.Chdir(dir)
	os.WriteFile("payload.json", []byte(`{"project": "demo/hello", "target": "master"}`), 0o600)
	want := "no config at " + filepath.Join(home, ".config", "mixmaster.ini") + "; "
	for _, args := range [][]string{{"recipe", "payload.json"}, {"prune", "--dry-run"}, {"serve"}} {
		code, text := runCmd(t, args...)
		if code != 1 || !strings.Contains(text, want+"write one with mixmaster setup, or name one with --config FILE") {
			t.Errorf("%v: exit %d: %s", args, code, text)
		}
	}
	_, err := exec.LookPath("git")
	testenv.Need(t, "git", err == nil, "git not on PATH: the demo is a git repository")
	if _, err := setUpDemo(t.Context(), ".demo"); err != nil {
		t.Fatal(err)
	}
	code, text := runCmd(t, "recipe", "payload.json")
	if code != 1 || !strings.Contains(text, want+"for the demo use --config .demo/mixmaster.ini") {
		t.Errorf("with the demo here: exit %d: %s", code, text)
	}
	code, text = runCmd(t, "recipe", "--config", ".demo/mixmaster.ini", "payload.json")
	if code != 0 || !strings.Contains(text, "command:    sh build.sh") {
		t.Errorf("recipe against the demo's config: exit %d: %s", code, text)
	}
}

// TestOriginalsAttacks replays attacks that worked against the original
// Mixmaster: INI injection through a payload field (S3), path traversal in
// log and job routes (S4), and secrets echoed back from a stored payload
// (S6).
func TestOriginalsAttacks(t *testing.T) {
	repo := newTestRepo(t)
	s := startServer(t, `
[_]
buildRoot = @ROOT@

[test-org/test-repo]
.repository = `+repo.Dir+`
production = echo safe
`)
	pwned := filepath.Join(t.TempDir(), "pwned")
	os.WriteFile(filepath.Join(s.Config.BuildRoot, "..", "secret.log"), []byte("top secret"), 0o600)

	// S3: a newline in a field must not add a command.
	a := s.submit(t, map[string]any{"project": "test-org/test-repo", "target": "production",
		"viewUrl": "http://x\nbuildCommand = touch " + pwned + "\nproduction = touch " + pwned,
		"secret":  "hunter2"})
	j := s.wait(t, a.ID)
	if j.Status != mixmaster.StatusSucceeded || j.Command != "echo safe" {
		t.Fatalf("job = %+v", j)
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Fatal("an injected command ran")
	}
	// S6: what the API shows of a job holds no field the payload smuggled.
	if _, body := s.get(t, fmt.Sprintf("/api/v1/jobs/%d", a.ID)); strings.Contains(body, "hunter2") {
		t.Errorf("the job record repeats the payload's secret: %s", body)
	}
	// S4: traversal in the log and job routes reads nothing outside.
	for _, path := range []string{
		"/log/../secret.log", "/log/..%2F..%2Fsecret.log", "/job/..%2F..%2Fsecret.log",
		"/api/v1/jobs/..%2Fsecret.log/log", "/static/..%2F..%2Fsecret.log", "/project/..%2F..%2F",
	} {
		code, body := s.get(t, path)
		if strings.Contains(body, "top secret") || code == http.StatusInternalServerError {
			t.Errorf("GET %s: %d %q", path, code, body)
		}
	}
}
