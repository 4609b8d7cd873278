package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mixmaster/artifacts"
)

func TestParamParsing(t *testing.T) {
	tests := []struct {
		in   []string
		want map[string]string
	}{
		// mistry's TestParseDynamicArgs.
		{[]string{"--a", "b", "c=d", "e=f", "--g", "h"}, map[string]string{"a": "b", "c": "d", "e": "f", "g": "h"}},
		{[]string{"a=b", "--@c", "d", "e=f", "--g", "h"}, map[string]string{"a": "b", "@c": "d", "e": "f", "g": "h"}},
		{[]string{"a=b", "--c", "d"}, map[string]string{"a": "b", "c": "d"}},
		{[]string{"--a", "b", "@c=d"}, map[string]string{"a": "b", "@c": "d"}},
		{[]string{"a=b", "c=d"}, map[string]string{"a": "b", "c": "d"}},
		{[]string{"a", "b", "--c", "d"}, map[string]string{"a": "b", "c": "d"}},
		{[]string{"--a", "b"}, map[string]string{"a": "b"}},
		{[]string{"a=b"}, map[string]string{"a": "b"}},
		// Ours: the value keeps every "=" after the first.
		{[]string{"--a=b=c"}, map[string]string{"a": "b=c"}},
		{[]string{"--url", "http://x/?q=1", "k=="}, map[string]string{"url": "http://x/?q=1", "k": "="}},
		{[]string{"--empty="}, map[string]string{"empty": ""}},
		{[]string{"--a", "--b"}, map[string]string{"a": "--b"}},
		{nil, map[string]string{}},
	}
	for _, tt := range tests {
		got, err := parseParams(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseParams(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range [][]string{{"--a"}, {"a", "b", "c"}, {"--a=b", "--c"}, {"=x"}, {"--=x"}, {"--", "x"}} {
		if got, err := parseParams(in); err == nil {
			t.Errorf("parseParams(%q) = %v, want an error", in, got)
		}
	}
}

func TestRsyncParamPath(t *testing.T) {
	for _, tt := range []struct{ path, project, want string }{
		{"/srv/builds/foo/ready/42/data/artifacts", "foo", "foo/ready/42/data/artifacts"},
		// The build root holds the project's name: mistry cut there.
		{"/home/foo/foo/ready/42/data/artifacts", "foo", "foo/ready/42/data/artifacts"},
		{"/foo/b/foo/ready/7/data/artifacts", "foo", "foo/ready/7/data/artifacts"},
		// Without "ready", the last "/<project>/" is taken.
		{"/foo/x/foo/pending/42/data/artifacts", "foo", "foo/pending/42/data/artifacts"},
	} {
		got, err := rsyncPath(tt.path, tt.project)
		if err != nil || got != tt.want {
			t.Errorf("rsyncPath(%q, %q) = %q, %v; want %q", tt.path, tt.project, got, err, tt.want)
		}
	}
	if _, err := rsyncPath("/srv/bar/ready/1", "foo"); err == nil {
		t.Error("no error for a path without the project")
	}
}

// fakeServer plays the server side of POST /jobs and of the artifacts
// download.
type fakeServer struct {
	*httptest.Server
	// reply answers POST /jobs; nil means a successful BuildInfo.
	reply func(w http.ResponseWriter, r *http.Request)
	// artifacts is the folder served as the job's tar stream.
	artifacts string

	mu    sync.Mutex
	posts []recordedPost
	gets  []string
}

type recordedPost struct {
	query, contentType, auth string
	body                     []byte
}

// buildInfoJSON is a reply as the server sends it, with the build root
// holding the project's name.
func buildInfoJSON(exitCode int, stderr string) string {
	b, _ := json.Marshal(map[string]any{
		"Params": map[string]string{"a": "b"}, "Group": "", "Cached": false, "Coalesced": false,
		"Path":        "/home/foo/builds/foo/ready/42/data/artifacts",
		"Incremental": false, "ExitCode": exitCode, "ErrBuild": "",
		"ContainerStdouterr": "step 1\n hello\n", "ContainerStderr": stderr,
		"TransportMethod": "rsync", "StartedAt": "2026-11-20T23:56:04.321812034Z",
		"Duration": 123000000, "URL": "job/foo/42",
	})
	return string(b)
}

func newFakeServer(t testing.TB, prefix string) *fakeServer {
	t.Helper()
	s := &fakeServer{artifacts: t.TempDir()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /jobs", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.posts = append(s.posts, recordedPost{r.URL.RawQuery, r.Header.Get("Content-Type"), r.Header.Get("Authorization"), body})
		reply := s.reply
		s.mu.Unlock()
		if reply != nil {
			reply(w, r)
			return
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, buildInfoJSON(0, ""))
	})
	mux.HandleFunc("GET /api/v1/jobs/{id}/artifacts", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.gets = append(s.gets, r.PathValue("id")+" "+r.Header.Get("Authorization"))
		s.mu.Unlock()
		if r.PathValue("id") != "42" {
			http.Error(w, "no such job", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/x-tar")
		// Errors are the client hanging up, which some tests want.
		artifacts.WriteTar(w, s.artifacts)
	})
	var h http.Handler = mux
	if prefix != "" {
		h = http.StripPrefix(prefix, mux)
	}
	s.Server = httptest.NewServer(h)
	t.Cleanup(s.Close)
	// Tests see only what they set.
	t.Setenv("MIXMASTER_URL", s.URL+prefix)
	t.Setenv("MIXMASTER_TOKEN", "")
	return s
}

func (s *fakeServer) lastPost(t *testing.T) recordedPost {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.posts) == 0 {
		t.Fatal("nothing was posted")
	}
	return s.posts[len(s.posts)-1]
}

func (s *fakeServer) counts() (posts, gets int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.posts), len(s.gets)
}

// writeTree creates files (name → content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := make(map[string]string)
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.Type()&os.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			got[rel] = "-> " + l
			return nil
		}
		b, err := os.ReadFile(p)
		got[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// runClient runs "mixmaster build args…" in process.
func runClient(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(t.Context(), append([]string{"mixmaster", "build"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestBuildClientHTTP(t *testing.T) {
	s := newFakeServer(t, "")
	writeTree(t, s.artifacts, map[string]string{"out.txt": "zxc", "lib/deep/x.so": "elf"})
	if err := os.Symlink("lib/deep/x.so", filepath.Join(s.artifacts, "x.so")); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "new", "target")
	lock := filepath.Join(t.TempDir(), "yarn.lock")
	writeTree(t, filepath.Dir(lock), map[string]string{"yarn.lock": "lock\ncontent\n"})

	code, stdout, stderr := runClient(t, "--project", "foo", "-g", "grp", "--rebuild", "-t", target+"/",
		"--", "--foo=bar", "--lockfile=@"+lock, "--@c", "d", "--x=y=z")
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if want := "Logs can be found at " + s.URL + "/job/foo/42\n"; stdout != want {
		t.Errorf("stdout %q, want %q", stdout, want)
	}
	if stderr != "" {
		t.Errorf("stderr %q", stderr)
	}
	p := s.lastPost(t)
	wantBody := `{"Project":"foo","Params":{"@c":"d","foo":"bar","lockfile":"lock\ncontent\n","x":"y=z"},"Group":"grp","Rebuild":true}`
	if string(p.body) != wantBody {
		t.Errorf("posted %s\nwant     %s", p.body, wantBody)
	}
	if p.query != "" || p.contentType != "application/json" || p.auth != "" {
		t.Errorf("query %q, content type %q, auth %q", p.query, p.contentType, p.auth)
	}
	want := map[string]string{"out.txt": "zxc", "lib/deep/x.so": "elf", "x.so": "-> lib/deep/x.so"}
	if got := readTree(t, target); !reflect.DeepEqual(got, want) {
		t.Errorf("target holds %v, want %v", got, want)
	}
}

func TestBuildClientToken(t *testing.T) {
	s := newFakeServer(t, "/ci")
	t.Setenv("MIXMASTER_TOKEN", "s3cret")
	code, stdout, stderr := runClient(t, "--project", "foo", "-t", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if p := s.lastPost(t); p.auth != "Bearer s3cret" {
		t.Errorf("POST authorization %q", p.auth)
	}
	s.mu.Lock()
	gets := slices.Clone(s.gets)
	s.mu.Unlock()
	if !slices.Equal(gets, []string{"42 Bearer s3cret"}) {
		t.Errorf("GETs %q", gets)
	}
	// The path prefix of MIXMASTER_URL is kept in every URL.
	if want := "Logs can be found at " + s.URL + "/ci/job/foo/42\n"; stdout != want {
		t.Errorf("stdout %q, want %q", stdout, want)
	}
}

func TestBuildClientHostPortFlags(t *testing.T) {
	s := newFakeServer(t, "")
	t.Setenv("MIXMASTER_URL", "http://unused.invalid:1")
	host, port, _ := strings.Cut(strings.TrimPrefix(s.URL, "http://"), ":")
	code, stdout, stderr := runClient(t, "--host", host, "-p", port, "--project", "foo", "--no-wait")
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if p := s.lastPost(t); p.query != "async" {
		t.Errorf("query %q, want async", p.query)
	}
}

func TestBuildClientDefaults(t *testing.T) {
	for _, tt := range []struct{ env, host, port, base string }{
		{"", "localhost", "8585", "http://localhost:8585"},
		{"https://ci.example.com/mixmaster/", "ci.example.com", "443", "https://ci.example.com:443/mixmaster"},
		{"http://[::1]:9000", "::1", "9000", "http://[::1]:9000"},
		{"http://10.0.0.1", "10.0.0.1", "80", "http://10.0.0.1:80"},
	} {
		t.Setenv("MIXMASTER_URL", tt.env)
		cmd := newBuildCmd()
		host, port := cmd.Flags().Lookup("host").DefValue, cmd.Flags().Lookup("port").DefValue
		if host != tt.host || port != tt.port {
			t.Errorf("MIXMASTER_URL=%q: host %q port %q, want %q %q", tt.env, host, port, tt.host, tt.port)
		}
		o := buildOptions{host: tt.host, port: 0}
		fmt.Sscan(port, &o.port)
		if tt.env != "" {
			o.server, _ = parseServerURL(tt.env)
		}
		if got := o.baseURL(); got != tt.base {
			t.Errorf("MIXMASTER_URL=%q: base %q, want %q", tt.env, got, tt.base)
		}
	}
	cmd := newBuildCmd()
	for name, want := range map[string]string{"transport": "http", "target": ".", "timeout": "60m"} {
		if got := cmd.Flags().Lookup(name).DefValue; got != want {
			t.Errorf("--%s defaults to %q, want %q", name, got, want)
		}
	}
}

func TestBuildClientUsage(t *testing.T) {
	s := newFakeServer(t, "")
	file := filepath.Join(t.TempDir(), "file")
	writeTree(t, filepath.Dir(file), map[string]string{"file": ""})
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no project", []string{}, 2, "project cannot be empty"},
		{"unknown transport", []string{"--project", "foo", "--transport", "ftp"}, 2, "invalid transport argument (ftp)"},
		{"unknown transport no wait", []string{"--project", "foo", "--transport", "ftp", "--no-wait"}, 2, "invalid transport argument (ftp)"},
		{"bad duration", []string{"--project", "foo", "--timeout", "xyz"}, 2, `time: invalid duration "xyz"`},
		{"unknown flag", []string{"--project", "foo", "--nope"}, 2, "unknown flag: --nope"},
		{"empty host", []string{"--project", "foo", "--host", ""}, 2, "host cannot be empty"},
		{"empty target", []string{"--project", "foo", "--target", ""}, 2, "target cannot be empty"},
		{"bad port", []string{"--project", "foo", "--port", "0"}, 2, "invalid port 0"},
		{"dangling key", []string{"--project", "foo", "--", "--a=b", "--c"}, 2, `parameter "--c" has no value`},
		{"bad MIXMASTER_URL", []string{"--project", "foo"}, 2, "MIXMASTER_URL"},
		{"missing param file", []string{"--project", "foo", "--", "--a=@" + file + "-missing"}, 1, "no such file or directory"},
		{"target is a file", []string{"--project", "foo", "--target", file}, 1, "Target path (" + file + ") is not a directory. Aborting."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "bad MIXMASTER_URL" {
				t.Setenv("MIXMASTER_URL", "ftp://x")
			}
			code, stdout, stderr := runClient(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d, stderr %q; want %d with %q", code, stderr, tt.code, tt.stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
		})
	}
	if posts, _ := s.counts(); posts != 0 {
		t.Errorf("%d jobs posted by bad command lines", posts)
	}
}

func TestBuildClientServerErrors(t *testing.T) {
	tests := []struct {
		name   string
		reply  func(w http.ResponseWriter, r *http.Request)
		stderr string
	}{
		{"overloaded", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) },
			"(error: 503) Server is overloaded; try again later"},
		{"unknown project", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "Unknown project 'nope'", http.StatusUnprocessableEntity)
		}, "(error: 422) Error scheduling build: Unknown project 'nope'\n"},
		{"json error", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"a token is required"}`)
		}, "(error: 401) Error scheduling build: a token is required\n"},
		{"garbage", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, "<html>")
		}, "cannot read the server's reply"},
		{"empty sync reply", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) },
			"the server sent no build result"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeServer(t, "")
			s.reply = tt.reply
			target := t.TempDir()
			code, stdout, stderr := runClient(t, "--project", "nope", "-t", target)
			if code != 1 || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d, stderr %q; want 1 with %q", code, stderr, tt.stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
		})
	}
}

func TestBuildClientTimeout(t *testing.T) {
	s := newFakeServer(t, "")
	s.reply = func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}
	start := time.Now()
	code, _, stderr := runClient(t, "--project", "foo", "--timeout", "1s", "-t", t.TempDir(), "--", "--test=client-timeout")
	if code != 1 || !strings.Contains(stderr, "The build did not finish after 1s, Post \""+s.URL+"/jobs\"") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %s", d)
	}
}

func TestBuildClientAsync(t *testing.T) {
	for _, status := range []int{http.StatusCreated, http.StatusAccepted} {
		s := newFakeServer(t, "")
		s.reply = func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }
		target := filepath.Join(t.TempDir(), "absent")
		// The transport is checked for validity only; the target is not made.
		code, stdout, stderr := runClient(t, "--json-result", "--no-wait", "--project", "foo",
			"--transport", "scp", "--transport-user", "", "-t", target, "--", "--test=async")
		if code != 0 || stdout != "" || stderr != "" {
			t.Errorf("%d: exit %d, stdout %q, stderr %q; want 0 and nothing", status, code, stdout, stderr)
		}
		if p := s.lastPost(t); p.query != "async" || string(p.body) != `{"Project":"foo","Params":{"test":"async"},"Group":"","Rebuild":false}` {
			t.Errorf("posted %q %s", p.query, p.body)
		}
		if _, err := os.Stat(target); err == nil {
			t.Error("--no-wait created the target")
		}
		if _, gets := s.counts(); gets != 0 {
			t.Error("--no-wait fetched artifacts")
		}
	}
	newFakeServer(t, "")
	code, stdout, _ := runClient(t, "-v", "--no-wait", "--project", "foo")
	if code != 0 || !strings.HasSuffix(stdout, "Build scheduled successfully\n") {
		t.Errorf("verbose: exit %d, stdout %q", code, stdout)
	}
}

func TestBuildClientExitCode(t *testing.T) {
	for _, tt := range []struct {
		containerStderr string
		stderr          string
	}{
		{" this is stderr\n missing_command: command not found\n",
			"Container error logs:\n  this is stderr\n missing_command: command not found\n\nmixmaster: Build failed with exit code 77\n"},
		{"", "There are no container error logs.\nmixmaster: Build failed with exit code 77\n"},
		// A build's output cannot retitle, clear or rewrite the terminal.
		{"\x1b]0;pwned\x07\x1b[2Jfake\rok\x1b[31m red\n",
			"Container error logs:\n fake\nok red\n\nmixmaster: Build failed with exit code 77\n"},
	} {
		s := newFakeServer(t, "")
		writeTree(t, s.artifacts, map[string]string{"out.txt": "x"})
		reply := buildInfoJSON(77, tt.containerStderr)
		s.reply = func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, reply)
		}
		target := t.TempDir()
		code, stdout, stderr := runClient(t, "--project", "foo", "-t", target)
		if code != 1 || stderr != tt.stderr {
			t.Errorf("exit %d, stderr %q; want 1, %q", code, stderr, tt.stderr)
		}
		if want := "Logs can be found at " + s.URL + "/job/foo/42\n"; stdout != want {
			t.Errorf("stdout %q, want %q", stdout, want)
		}
		// In JSON mode the result is printed before failing.
		code, stdout, _ = runClient(t, "--json-result", "--project", "foo", "-t", target)
		if code != 1 || stdout != reply+"\n" {
			t.Errorf("json: exit %d, stdout %q", code, stdout)
		}
		if _, gets := s.counts(); gets != 0 {
			t.Error("artifacts of a failed build were fetched")
		}
		if got := readTree(t, target); len(got) != 0 {
			t.Errorf("target holds %v", got)
		}
	}
}

func TestBuildClientVerbose(t *testing.T) {
	s := newFakeServer(t, "")
	writeTree(t, s.artifacts, map[string]string{"out.txt": "x"})
	target := filepath.Join(t.TempDir(), "t")
	code, stdout, stderr := runClient(t, "-v", "--project", "foo", "-t", target, "--", "a", "b")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{
		"Target path (" + target + ") does not exist. Creating it..",
		"Scheduling {Project:foo Params:map[a:b] Group: Rebuild:false}...\n",
		"Server response: 201 Created\n",
		"Logs can be found at " + s.URL + "/job/foo/42\n",
		"\nResult:\nStarted at: 2026-11-20T23:56:04.321812034Z ExitCode: 0 Params: map[a:b] Cached: false Coalesced: false\n\nLogs:\nstep 1\n hello\n\n",
		"Copying artifacts to " + target + " ...\n",
		"Artifacts copied to " + target + "\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
}

func TestBuildClientClearTarget(t *testing.T) {
	s := newFakeServer(t, "")
	writeTree(t, s.artifacts, map[string]string{"out.txt": "new", "dir/file2.txt": "new2"})
	target := t.TempDir()
	old := map[string]string{"file.txt": "old", "dir/file2.txt": "old2", "out.txt": "old"}

	writeTree(t, target, old)
	if code, _, stderr := runClient(t, "--project", "foo", "-t", target); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	want := map[string]string{"file.txt": "old", "dir/file2.txt": "new2", "out.txt": "new"}
	if got := readTree(t, target); !reflect.DeepEqual(got, want) {
		t.Errorf("without --clear-target: %v, want %v", got, want)
	}

	writeTree(t, target, map[string]string{"stale/x": "x"})
	if code, _, stderr := runClient(t, "--project", "foo", "-t", target, "--clear-target"); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	want = map[string]string{"dir/file2.txt": "new2", "out.txt": "new"}
	if got := readTree(t, target); !reflect.DeepEqual(got, want) {
		t.Errorf("with --clear-target: %v, want %v", got, want)
	}
}

func TestBuildClientJSONResult(t *testing.T) {
	s := newFakeServer(t, "")
	writeTree(t, s.artifacts, map[string]string{"out.txt": "x"})
	installFakeTransports(t)
	for _, transport := range []string{"http", "rsync", "scp"} {
		code, stdout, stderr := runClient(t, "--json-result", "--project", "foo", "--transport", transport, "-t", t.TempDir())
		if code != 0 {
			t.Fatalf("%s: exit %d, stderr %q", transport, code, stderr)
		}
		if want := buildInfoJSON(0, "") + "\n"; stdout != want {
			t.Errorf("%s: stdout %q, want only the JSON", transport, stdout)
		}
		if transport != "http" && stderr != "fake "+transport+" stdout\nfake "+transport+" stderr\n" {
			t.Errorf("%s: stderr %q", transport, stderr)
		}
	}
}

// installFakeTransports puts testdata/client/fake-transport on PATH as scp
// and rsync, and returns a function reading the argv they recorded.
func installFakeTransports(t *testing.T) func() [][]string {
	t.Helper()
	script, err := os.ReadFile("testdata/client/fake-transport")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	for _, name := range []string{"scp", "rsync"} {
		if err := os.WriteFile(filepath.Join(bin, name), script, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	argvFile := filepath.Join(t.TempDir(), "argv")
	t.Setenv("PATH", bin)
	t.Setenv("FAKE_ARGV", argvFile)
	t.Setenv("FAKE_EXIT", "0")
	return func() [][]string {
		b, err := os.ReadFile(argvFile)
		if err != nil {
			t.Fatal(err)
		}
		var calls [][]string
		for call := range strings.SplitSeq(strings.TrimSuffix(string(b), "::end::\n"), "::end::\n") {
			calls = append(calls, strings.Split(strings.TrimSuffix(call, "\n"), "\n"))
		}
		os.Remove(argvFile)
		return calls
	}
}

func TestBuildClientTransports(t *testing.T) {
	s := newFakeServer(t, "")
	calls := installFakeTransports(t)
	host := strings.TrimPrefix(s.URL, "http://")
	host, _, _ = strings.Cut(host, ":")
	path := "/home/foo/builds/foo/ready/42/data/artifacts"
	target := t.TempDir()
	writeTree(t, target, map[string]string{"stale": "x"})
	tests := []struct {
		args []string
		argv []string
	}{
		{[]string{"--transport", "scp"}, []string{"scp", "-r", "me@" + host + ":" + path + "/.", target}},
		{[]string{"--transport", "rsync"}, []string{"rsync", "-rtlp", "me@" + host + "::mistry/foo/ready/42/data/artifacts/", target + "/"}},
		{[]string{"--transport", "rsync", "--clear-target"}, []string{"rsync", "-rtlp", "--delete", "me@" + host + "::mistry/foo/ready/42/data/artifacts/", target + "/"}},
	}
	for _, tt := range tests {
		args := append([]string{"--project", "foo", "--transport-user", "me", "-t", target + "/"}, tt.args...)
		code, stdout, stderr := runClient(t, args...)
		if code != 0 {
			t.Fatalf("%q: exit %d, stderr %q", tt.args, code, stderr)
		}
		if want := "fake " + tt.argv[0] + " stdout\n"; !strings.HasSuffix(stdout, want) {
			t.Errorf("%q: stdout %q lacks the transport's output", tt.args, stdout)
		}
		if got := calls(); !reflect.DeepEqual(got, [][]string{tt.argv}) {
			t.Errorf("%q: ran\n%q\nwant\n%q", tt.args, got, tt.argv)
		}
	}
	// rsync --delete clears the target itself: nothing is removed before.
	if _, err := os.Stat(filepath.Join(target, "stale")); err != nil {
		t.Errorf("stale file removed before rsync: %v", err)
	}
	// scp gets an emptied target.
	code, _, stderr := runClient(t, "--project", "foo", "--transport", "scp", "--transport-user", "me", "-t", target, "--clear-target")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	calls()
	if entries, _ := os.ReadDir(target); len(entries) != 0 {
		t.Errorf("scp --clear-target left %v", entries)
	}
	// A target that looks like an option is passed as a path.
	t.Chdir(t.TempDir())
	code, _, stderr = runClient(t, "--project", "foo", "--transport", "scp", "--transport-user", "me", "-t", "-dash")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if got := calls(); !reflect.DeepEqual(got, [][]string{{"scp", "-r", "me@" + host + ":" + path + "/.", "./-dash"}}) {
		t.Errorf("ran %q", got)
	}
}

func TestBuildClientTransportFails(t *testing.T) {
	newFakeServer(t, "")
	installFakeTransports(t)
	t.Setenv("FAKE_EXIT", "255")
	code, _, stderr := runClient(t, "--project", "foo", "--transport", "scp", "--transport-user", "me", "-t", t.TempDir())
	if code != 1 || !strings.Contains(stderr, "copying artifacts with scp failed: exit status 255") {
		t.Errorf("exit %d, stderr %q; want 1", code, stderr)
	}
	t.Setenv("PATH", t.TempDir())
	code, _, stderr = runClient(t, "--project", "foo", "--transport", "rsync", "--transport-user", "me", "-t", t.TempDir())
	if code != 1 || !strings.Contains(stderr, `exec: "rsync": executable file not found in $PATH`) {
		t.Errorf("exit %d, stderr %q; want 1", code, stderr)
	}
}

func TestBuildClientBadServerPath(t *testing.T) {
	s := newFakeServer(t, "")
	installFakeTransports(t)
	for _, p := range []string{"relative/foo/ready/1", "/srv/foo/../../etc", "/srv/foo/ready/1\n-oProxyCommand=x"} {
		reply := strings.Replace(buildInfoJSON(0, ""), `/home/foo/builds/foo/ready/42/data/artifacts`, strings.ReplaceAll(p, "\n", `\n`), 1)
		s.reply = func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, reply)
		}
		for _, transport := range []string{"scp", "rsync"} {
			code, _, stderr := runClient(t, "--project", "foo", "--transport", transport, "--transport-user", "me", "-t", t.TempDir())
			if code != 1 || !strings.Contains(stderr, "unusable artifacts path") {
				t.Errorf("%s %q: exit %d, stderr %q", transport, p, code, stderr)
			}
		}
	}
}

func TestBuildClientDownloadErrors(t *testing.T) {
	s := newFakeServer(t, "")
	s.reply = func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, strings.Replace(buildInfoJSON(0, ""), "job/foo/42", "job/foo/43", 1))
	}
	code, _, stderr := runClient(t, "--project", "foo", "-t", t.TempDir())
	if code != 1 || !strings.Contains(stderr, "(error: 404) Error fetching artifacts: no such job") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}

	// A hostile stream cannot write outside the target.
	parent := t.TempDir()
	target := filepath.Join(parent, "target")
	s.reply = nil
	if err := os.Symlink("../..", filepath.Join(s.artifacts, "up")); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runClient(t, "--project", "foo", "-t", target)
	if code != 1 || !strings.Contains(stderr, `symlink "up" points outside the target`) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		t.Errorf("parent holds %v", entries)
	}
}

// A link named mistry runs the client with mistry's command line.
func TestBuildClientAsMistry(t *testing.T) {
	s := newFakeServer(t, "")
	writeTree(t, s.artifacts, map[string]string{"out.txt": "zxc"})
	host, port, _ := strings.Cut(strings.TrimPrefix(s.URL, "http://"), ":")
	target := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"/usr/local/bin/mistry", "build", "--host", host, "--port", port,
		"--project", "params", "--target", target, "--transport", "http", "--", "--foo=zxc"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if got := readTree(t, target); got["out.txt"] != "zxc" {
		t.Errorf("target holds %v", got)
	}
}

func TestBuildClientProgressBar(t *testing.T) {
	var buf bytes.Buffer
	bar := newProgressBar(3<<20, &buf)
	bar.Write(make([]byte, 3<<20))
	bar.Close()
	if out := buf.String(); !strings.Contains(out, "downloading") || !strings.Contains(out, "100%") {
		t.Errorf("progress bar drew %q", out)
	}
	// Output that is not a terminal gets no bar.
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) || isTerminal(&buf) {
		t.Error("a file or buffer counted as a terminal")
	}
}

// BenchmarkBuildClientDownload measures the http transport end to end on
// loopback: tar written by the server, streamed, extracted by the client.
func BenchmarkBuildClientDownload(b *testing.B) {
	s := newFakeServer(b, "")
	chunk := make([]byte, 64<<20)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	for i := range 4 {
		if err := os.WriteFile(filepath.Join(s.artifacts, fmt.Sprintf("f%d", i)), chunk, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	dst := b.TempDir()
	b.SetBytes(4 * int64(len(chunk)))
	b.ResetTimer()
	for i := range b.N {
		target := filepath.Join(dst, fmt.Sprint(i))
		if code, _, stderr := runClient(b, "--project", "foo", "-t", target); code != 0 {
			b.Fatalf("exit %d: %s", code, stderr)
		}
		b.StopTimer()
		os.RemoveAll(target)
		b.StartTimer()
	}
}
