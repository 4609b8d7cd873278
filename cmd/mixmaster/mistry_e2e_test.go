package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mixmaster"
	"mixmaster/api"
	"mixmaster/artifacts"
	"mixmaster/internal/testenv"
)

// mistry's original suite (its cmd/mistryd tests and testdata projects),
// re-run against the real service and the real client. Every scenario runs
// twice: on project folders with a build script (shell executor) and on
// folders with a Dockerfile (Docker executor, on the local busybox image).

func TestMistryShell(t *testing.T) {
	t.Parallel()
	testMistry(t, "shell")
}

func TestMistryDocker(t *testing.T) {
	t.Parallel()
	testenv.BusyboxImage(t)
	testMistry(t, "docker")
}

func testMistry(t *testing.T, kind string) {
	s := startMistry(t, kind, "jobConcurrency = 4\n")
	docker := kind == "docker"

	t.Run("simple build", func(t *testing.T) {
		// A target that does not exist yet: the client creates it.
		target := filepath.Join(t.TempDir(), "target")
		r := mistryCLI(t, s, target, "--project", "simple")
		r.wantCode(t, 0)
		mistryExists(t, filepath.Join(target, "out.txt"))
		if want := "Logs can be found at " + s.URL + "/job/simple/"; !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	})

	t.Run("params", func(t *testing.T) {
		target := t.TempDir()
		mistryCLI(t, s, target, "--project", "params", "--", "--foo=zxc").wantCode(t, 0)
		if got := mistryRead(t, filepath.Join(target, "out.txt")); got != "zxc" {
			t.Errorf("out.txt = %q, want %q", got, "zxc")
		}
	})

	t.Run("exit code", func(t *testing.T) {
		r := mistryCLI(t, s, t.TempDir(), "--json-result", "--project", "exit-code")
		r.wantCode(t, 1)
		if !strings.Contains(r.stderr, "Build failed with exit code 77") {
			t.Errorf("stderr:\n%s", r.stderr)
		}
		if bi := r.buildInfo(t); bi.ExitCode != 77 {
			t.Errorf("ExitCode = %d, want 77", bi.ExitCode)
		}
	})

	t.Run("container error logs", func(t *testing.T) {
		r := mistryCLI(t, s, t.TempDir(), "--project", "bad_entrypoint", "--", "--test=error-logs")
		r.wantCode(t, 1)
		// sh words a missing command "missing_command: not found".
		for _, want := range []string{"Container error logs:", "this is stderr", "missing_command: not found", "Build failed with exit code 127"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
			}
		}
		// Docker keeps the two streams apart; the shell gives the command
		// one stream, so that its lines keep their order, and shows all of
		// it.
		if docker && strings.Contains(r.stderr, "this is stdout") {
			t.Errorf("stdout output among the error logs:\n%s", r.stderr)
		}
	})

	t.Run("result cache", func(t *testing.T) {
		var infos []api.BuildInfo
		var outs []string
		for range 2 {
			target := t.TempDir()
			r := mistryCLI(t, s, target, "--json-result", "--group", "foo", "--project", "result-cache")
			r.wantCode(t, 0)
			infos = append(infos, r.buildInfo(t))
			outs = append(outs, mistryRead(t, filepath.Join(target, "out.txt")))
		}
		if infos[0].Cached || !infos[1].Cached {
			t.Errorf("Cached = %v then %v, want false then true", infos[0].Cached, infos[1].Cached)
		}
		if infos[0].ExitCode != 0 || infos[1].ExitCode != 0 {
			t.Errorf("exit codes %d, %d", infos[0].ExitCode, infos[1].ExitCode)
		}
		if outs[0] != outs[1] || outs[0] == "" {
			t.Errorf("out.txt differs: %q vs %q", outs[0], outs[1])
		}
	})

	t.Run("same group different params", func(t *testing.T) {
		var outs []string
		for _, v := range []string{"bar", "bar2"} {
			target := t.TempDir()
			mistryCLI(t, s, target, "--group", "foo", "--project", "result-cache", "--", "--foo="+v).wantCode(t, 0)
			outs = append(outs, mistryRead(t, filepath.Join(target, "out.txt")))
		}
		if outs[0] == outs[1] {
			t.Errorf("different params gave the same result %q", outs[0])
		}
	})

	t.Run("opaque params", func(t *testing.T) {
		// Params starting with "_" are context, not input: the second
		// request is the first one's result, params included.
		first := mistryBuild(t, s, `{"Project": "params", "Params": {"foo": "op", "_note": "one"}}`)
		second := mistryBuild(t, s, `{"Project": "params", "Params": {"foo": "op", "_note": "two"}}`)
		if first.Cached || !second.Cached || second.URL != first.URL || second.Params["_note"] != "one" {
			t.Errorf("%+v then %+v", first, second)
		}
	})

	t.Run("rerun failed build", func(t *testing.T) {
		var infos []api.BuildInfo
		for range 2 {
			r := mistryCLI(t, s, t.TempDir(), "--json-result", "--project", "exit-code", "--", "--test=rerun")
			r.wantCode(t, 1)
			infos = append(infos, r.buildInfo(t))
		}
		for _, bi := range infos {
			if bi.ExitCode != 77 || bi.Cached || bi.Coalesced {
				t.Errorf("build info = %+v", bi)
			}
		}
		if infos[0].StartedAt.Equal(infos[1].StartedAt) || infos[0].URL == infos[1].URL {
			t.Errorf("the failed build was not run again: %v %s, %v %s", infos[0].StartedAt, infos[0].URL, infos[1].StartedAt, infos[1].URL)
		}
	})

	t.Run("build cache", func(t *testing.T) {
		// The files are read where BuildInfo.Path says, as mistry's test
		// did: the artifacts dir and its sibling cache dir.
		read := func(bi api.BuildInfo, dir string) string {
			return mistryRead(t, filepath.Join(filepath.Dir(bi.Path), dir, "out.txt"))
		}
		b1 := mistryBuild(t, s, `{"Project": "build-cache", "Group": "baz", "Params": {"foo": "bar"}}`)
		art1, cache1 := read(b1, "artifacts"), read(b1, "cache")
		if b1.ExitCode != 0 || b1.Incremental || art1 != cache1 {
			t.Fatalf("run 1: %+v, artifacts %q, cache %q", b1, art1, cache1)
		}
		b2 := mistryBuild(t, s, `{"Project": "build-cache", "Group": "baz", "Params": {"foo": "bar2"}}`)
		if b2.ExitCode != 0 || !b2.Incremental {
			t.Errorf("run 2: %+v, want exit 0 and incremental", b2)
		}
		if b1.Path == b2.Path {
			t.Errorf("both runs in %s", b1.Path)
		}
		if got := read(b2, "cache"); got != cache1 {
			t.Errorf("run 2 cache = %q, want run 1's %q", got, cache1)
		}
		if got := read(b2, "artifacts"); got == art1 {
			t.Errorf("run 2 artifacts = run 1's %q", got)
		}
	})

	t.Run("build cache when failed", func(t *testing.T) {
		good := mistryBuild(t, s, `{"Project": "failed-build-link", "Group": "ppp", "Params": {"_exitcode": "0"}}`)
		if good.ExitCode != 0 {
			t.Fatalf("good build: %+v", good)
		}
		bad := `{"Project": "failed-build-link", "Group": "ppp", "Params": {"_exitcode": "1", "foo": "bar"}}`
		first := mistryBuild(t, s, bad)
		again := mistryBuild(t, s, bad)
		if first.ExitCode != 1 || again.ExitCode != 1 || again.Cached || first.URL == again.URL {
			t.Fatalf("failed builds: %+v then %+v", first, again)
		}
		// The failure did not move the group's pointer: the rerun starts
		// from the good build.
		if !again.Incremental {
			t.Errorf("rerun of the failed build is not incremental")
		}
		want := fmt.Sprintf("Starting from build %d, the last good build of group ppp", mistryJobID(t, good))
		if log := s.log(t, mistryJobID(t, again)); !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	})

	coalesce := func(t *testing.T, project string, exit, code int) {
		results := make([]mistryRun, 2)
		targets := []string{t.TempDir(), t.TempDir()}
		var wg sync.WaitGroup
		for i := range results {
			wg.Go(func() {
				results[i] = mistryCLI(t, s, targets[i], "--json-result", "--group", "foo", "--project", project)
			})
		}
		wg.Wait()
		coalesced := 0
		for i, r := range results {
			r.wantCode(t, code)
			bi := r.buildInfo(t)
			if bi.ExitCode != exit || bi.Cached {
				t.Errorf("build info = %+v, want exit %d, not cached", bi, exit)
			}
			if bi.Coalesced {
				coalesced++
			}
			if exit == 0 {
				if got := mistryRead(t, filepath.Join(targets[i], "out.txt")); got != "coalescing!\n" {
					t.Errorf("out.txt = %q", got)
				}
			}
		}
		if coalesced != 1 {
			t.Errorf("%d of 2 requests coalesced, want 1", coalesced)
		}
		if jobs := mistryJobs(t, s, project); len(jobs) != 1 {
			t.Errorf("%d jobs for two identical requests, want 1", len(jobs))
		}
	}
	t.Run("coalescing", func(t *testing.T) { coalesce(t, "build-coalescing", 0, 0) })
	t.Run("coalescing exit code", func(t *testing.T) { coalesce(t, "build-coalescing-exitcode", 35, 1) })

	t.Run("100 identical requests", func(t *testing.T) {
		const n = 100
		infos := make([]api.BuildInfo, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { infos[i], errs[i] = mistryTryBuild(s, `{"Project": "concurrent"}`) })
		}
		wg.Wait()
		fresh := 0
		for i, bi := range infos {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if bi.ExitCode != 0 || bi.URL != infos[0].URL {
				t.Errorf("request %d: %+v", i, bi)
			}
			if !bi.Cached && !bi.Coalesced {
				fresh++
			}
		}
		if fresh != 1 {
			t.Errorf("%d requests built, want 1", fresh)
		}
		if jobs := mistryJobs(t, s, "concurrent"); len(jobs) != 1 {
			t.Errorf("%d jobs for %d identical requests, want 1", len(jobs), n)
		}
	})

	t.Run("unknown project", func(t *testing.T) {
		r := mistryCLI(t, s, t.TempDir(), "--project", "Idontexist")
		r.wantCode(t, 1)
		if !strings.Contains(r.stderr, "Unknown project 'Idontexist'") {
			t.Errorf("stderr:\n%s", r.stderr)
		}
	})

	t.Run("logs", func(t *testing.T) {
		r := mistryCLI(t, s, t.TempDir(), "--json-result", "--project", "simple", "--", "--testing=logs")
		r.wantCode(t, 0)
		bi := r.buildInfo(t)
		log := s.log(t, mistryJobID(t, bi))
		if bi.ContainerStdouterr != log || !strings.Contains(log, "# Build started") {
			t.Errorf("ContainerStdouterr:\n%s\nlog:\n%s", bi.ContainerStdouterr, log)
		}
		// In particular Docker's JSON build progress is rendered as text.
		for line := range strings.Lines(log) {
			if json.Valid([]byte(line)) {
				t.Errorf("log line is JSON: %s", line)
			}
		}
	})

	t.Run("copy folder", func(t *testing.T) {
		target := t.TempDir()
		r := mistryCLI(t, s, target, "--json-result", "--project", "copy-folder")
		r.wantCode(t, 0)
		if bi := r.buildInfo(t); bi.ExitCode != 0 {
			t.Errorf("ExitCode = %d", bi.ExitCode)
		}
		if got := mistryRead(t, filepath.Join(target, "lala.txt")); got != "lala from koko\n" {
			t.Errorf("lala.txt = %q", got)
		}
	})

	t.Run("clear target", func(t *testing.T) {
		target := t.TempDir()
		os.WriteFile(filepath.Join(target, "file.txt"), []byte("old"), 0o644)
		os.MkdirAll(filepath.Join(target, "dir"), 0o755)
		os.WriteFile(filepath.Join(target, "dir", "file2.txt"), []byte("old"), 0o644)
		mistryCLI(t, s, target, "--clear-target", "--project", "simple").wantCode(t, 0)
		for _, name := range []string{"file.txt", "dir"} {
			if _, err := os.Lstat(filepath.Join(target, name)); err == nil {
				t.Errorf("%s survived --clear-target", name)
			}
		}
		mistryExists(t, filepath.Join(target, "out.txt"))
	})

	t.Run("async", func(t *testing.T) {
		r := mistryCLI(t, s, t.TempDir(), "--no-wait", "--json-result", "--project", "simple", "--", "--test=async")
		r.wantCode(t, 0)
		if r.stdout != "" || r.stderr != "" {
			t.Errorf("stdout %q, stderr %q; want both empty", r.stdout, r.stderr)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			var job *mixmaster.Job
			for _, j := range mistryJobs(t, s, "simple") {
				if j.Params["test"] == "async" {
					job = j
				}
			}
			if job != nil && job.Status.Done() {
				if job.Status != mixmaster.StatusSucceeded {
					t.Fatalf("async job = %+v", job)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the async build did not finish within 10s: %+v", job)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	if docker {
		t.Run("image build failure", func(t *testing.T) {
			r := mistryCLI(t, s, t.TempDir(), "--json-result", "--project", "image-build-failure")
			r.wantCode(t, 1)
			if !strings.Contains(r.stderr, "could not build docker image") {
				t.Errorf("stderr:\n%s", r.stderr)
			}
			bi := r.buildInfo(t)
			if bi.ExitCode != -999 || !strings.Contains(bi.ErrBuild, "could not build docker image") {
				t.Errorf("build info = %+v", bi)
			}
			log := s.log(t, mistryJobID(t, bi))
			for _, want := range []string{"RUN echo image-step-runs && exit 3", " O image-step-runs\n"} {
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %q:\n%s", want, log)
				}
			}
		})

		t.Run("failed build cleanup", func(t *testing.T) {
			// A failed image build must not block the next attempt.
			seen := map[string]bool{}
			for range 3 {
				bi := mistryBuild(t, s, `{"Project": "failed-build-cleanup"}`)
				if bi.ExitCode != -999 || !strings.Contains(bi.ErrBuild, "unknown instruction: INVALIDCOMMAND") {
					t.Errorf("build info = %+v", bi)
				}
				if seen[bi.URL] {
					t.Errorf("%s answered twice", bi.URL)
				}
				seen[bi.URL] = true
			}
		})
	}

	t.Run("10 MB line", func(t *testing.T) {
		bi := mistryBuild(t, s, `{"Project": "bigline"}`)
		if bi.ExitCode != 0 {
			t.Fatalf("build info: exit %d, %s", bi.ExitCode, bi.ErrBuild)
		}
		// The line is kept, cut into pieces of at most MaxLine bytes.
		total, pieces := 0, 0
		for line := range strings.Lines(s.log(t, mistryJobID(t, bi))) {
			text, ok := strings.CutPrefix(strings.TrimSuffix(line[min(len(line), len(artifacts.TimeLayout)):], "\n"), " O ")
			if !ok || strings.Trim(text, "a") != "" || text == "" {
				continue
			}
			if len(text) > artifacts.MaxLine {
				t.Errorf("a log line of %d bytes", len(text))
			}
			total += len(text)
			pieces++
		}
		if total != 10<<20 || pieces < (10<<20)/artifacts.MaxLine {
			t.Errorf("the log holds %d bytes of the line in %d pieces, want %d", total, pieces, 10<<20)
		}
		if code, _ := s.get(t, "/api/v1/jobs"); code != http.StatusOK {
			t.Errorf("GET /api/v1/jobs after the big line: %d", code)
		}
	})

	t.Run("symlinks out of the artifacts", func(t *testing.T) {
		parent := filepath.Join(t.TempDir(), "parent")
		target := filepath.Join(parent, "target")
		os.MkdirAll(parent, 0o755)
		r := mistryCLI(t, s, target, "--json-result", "--project", "symlinks")
		bi := r.buildInfo(t)
		if bi.ExitCode != 0 {
			t.Fatalf("build info = %+v", bi)
		}
		// Refusing the download is fine when it says why; following a link
		// out of the target is not.
		if r.code != 0 && !strings.Contains(r.stderr, "points outside the target") {
			t.Errorf("exit %d without a clear reason:\n%s", r.code, r.stderr)
		}
		t.Logf("client exit %d: %s", r.code, strings.TrimSpace(r.stderr))
		if entries, _ := os.ReadDir(parent); len(entries) != 1 || entries[0].Name() != "target" {
			t.Errorf("the download wrote beside the target: %v", entries)
		}
		realTarget, _ := filepath.EvalSymlinks(target)
		filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink == 0 {
				return nil
			}
			if dst, err := filepath.EvalSymlinks(p); err == nil && !mistryWithin(realTarget, dst) {
				t.Errorf("%s leads out of the target to %s", p, dst)
			}
			return nil
		})
		// Nor does the server follow them.
		for _, p := range []string{"evil", "up/etc/passwd", "up"} {
			code, body := s.get(t, fmt.Sprintf("/api/v1/jobs/%d/artifacts?path=%s", mistryJobID(t, bi), url.QueryEscape(p)))
			if code == http.StatusOK || strings.Contains(body, "root:") {
				t.Errorf("artifact %s: %d %.100q", p, code, body)
			}
		}
	})

	t.Run("bad input", func(t *testing.T) {
		before := len(mistryJobs(t, s, ""))
		tests := []struct {
			name, body string
			status     int
			msg        string
		}{
			{"param key with a slash", `{"Project": "simple", "Params": {"a/b": "x"}}`, 422, "param 'a/b' is not a valid name"},
			{"param key ..", `{"Project": "simple", "Params": {"..": "x"}}`, 422, "param '..' is not a valid name"},
			{"param key climbing out", `{"Project": "simple", "Params": {"../../escape.txt": "x"}}`, 422, "is not a valid name"},
			{"param key with a leading dash", `{"Project": "simple", "Params": {"-rf": "x"}}`, 422, "param '-rf' is not a valid name"},
			{"group climbing out", `{"Project": "simple", "Group": "../../grp-escape"}`, 422, "group '../../grp-escape' is not a valid name"},
			{"project climbing out", `{"Project": "../x"}`, 422, "Unknown project '../x'"},
			{"project with a slash", `{"Project": "a/b"}`, 422, "Unknown project 'a/b'"},
			{"no project", `{"Project": ""}`, 422, "no project given"},
			{"param that is not a string", `{"Project": "simple", "Params": {"a": 1}}`, 400, "Params must be an object of string values."},
			{"malformed JSON", `{"Project": `, 400, ""},
			{"body over 64 KiB", `{"Project": "simple", "Params": {"a": "` + strings.Repeat("x", 64<<10) + `"}}`, 413, "too large"},
			{"folder that is no project", `{"Project": "not-a-project"}`, 422, "neither a Dockerfile nor an executable build script"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				for _, p := range []string{"/jobs", "/jobs?async"} {
					code, body := mistryPost(t, s, p, tt.body)
					if code != tt.status || !strings.Contains(body, tt.msg) {
						t.Errorf("POST %s: %d %.200q; want %d with %q", p, code, body, tt.status, tt.msg)
					}
				}
			})
		}
		if after := len(mistryJobs(t, s, "")); after != before {
			t.Errorf("bad requests queued %d jobs", after-before)
		}
		// Still serving: a good build runs.
		bi := mistryBuild(t, s, `{"Project": "params", "Params": {"foo": "after-bad-input"}}`)
		if got := mistryRead(t, filepath.Join(bi.Path, "out.txt")); bi.ExitCode != 0 || got != "after-bad-input" {
			t.Errorf("good build: %+v, out.txt %q", bi, got)
		}
		mistryNoEscape(t, s.Config.BuildRoot, "escape.txt", "grp-escape")
	})

	t.Run("backlog limit", func(t *testing.T) {
		s := startMistry(t, kind, "jobConcurrency = 1\njobBacklog = 1\n")
		// One build runs and one waits; the next request is refused.
		var refused *mistryRun
		for i := range 10 {
			r := mistryCLI(t, s, t.TempDir(), "--no-wait", "--project", "slow", "--", "--n="+strconv.Itoa(i))
			if r.code != 0 {
				refused = &r
				break
			}
		}
		if refused == nil {
			t.Fatal("10 requests accepted with a backlog of 1")
		}
		refused.wantCode(t, 1)
		if !strings.Contains(refused.stderr, "(error: 503) Server is overloaded; try again later") {
			t.Errorf("stderr:\n%s", refused.stderr)
		}
		if code, body := mistryPost(t, s, "/jobs?async", `{"Project": "slow", "Params": {"n": "http"}}`); code != http.StatusServiceUnavailable {
			// The running build may have ended meanwhile; say so rather than fail.
			t.Logf("a later request got %d %q", code, body)
		}
		// The service is closed at the end of the test; stop the builds.
		for _, j := range mistryJobs(t, s, "slow") {
			if !j.Status.Done() {
				mistryPost(t, s, fmt.Sprintf("/api/v1/jobs/%d/cancel", j.ID), "")
			}
		}
	})

	t.Run("build that never ends", func(t *testing.T) {
		s := startMistry(t, kind, "jobTimeout = 2s\n")
		start := time.Now()
		bi := mistryBuild(t, s, `{"Project": "hang"}`)
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("the build was stopped after %s", d)
		}
		if bi.ExitCode != -999 || bi.ErrBuild != "timed out after 2s" {
			t.Errorf("build info = %+v, want ExitCode -999 and the reason in ErrBuild", bi)
		}
		job := mistryJob(t, s, mistryJobID(t, bi))
		if job.Status != mixmaster.StatusFailed || job.Error != "timed out after 2s" {
			t.Errorf("job = %s %q, want failed %q", job.Status, job.Error, "timed out after 2s")
		}
		if bi := mistryBuild(t, s, `{"Project": "simple", "Params": {"after": "timeout"}}`); bi.ExitCode != 0 {
			t.Errorf("build after the timeout: %+v", bi)
		}
	})
}

// TestMistryRsync fetches artifacts with --transport rsync from a real rsync
// daemon serving the build root, as mistry's deployments do.
func TestMistryRsync(t *testing.T) {
	_, err := exec.LookPath("rsync")
	testenv.Need(t, "rsync", err == nil, "rsync not on PATH")
	// The client names no daemon port, and the rsync client takes one only
	// from --port or an rsync:// URL: it never reads RSYNC_PORT. It does
	// run RSYNC_CONNECT_PROG instead of connecting, so a netcat reaches a
	// daemon on a free port.
	nc := mistryNetcat()
	testenv.Need(t, "rsync", nc != "", "neither nc nor busybox to reach a daemon on a free port")
	s := startMistry(t, "shell", "")

	dir := t.TempDir()
	port := mistryFreePort(t)
	conf := filepath.Join(dir, "rsyncd.conf")
	os.WriteFile(conf, fmt.Appendf(nil, `use chroot = no
address = 127.0.0.1
uid = %d
gid = %d
log file = %s

[mistry]
path = %s
read only = yes
`, os.Getuid(), os.Getgid(), filepath.Join(dir, "rsyncd.log"), s.Config.BuildRoot), 0o600)
	daemon := exec.Command("rsync", "--daemon", "--no-detach", "--port="+port, "--config="+conf)
	daemon.Stdout, daemon.Stderr = io.Discard, io.Discard
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { daemon.Wait(); close(exited) }()
	t.Cleanup(func() {
		daemon.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "rsyncd.log"))
			t.Logf("rsyncd log:\n%s", b)
		}
	})
	mistryWaitListening(t, "127.0.0.1:"+port, exited)
	t.Setenv("RSYNC_CONNECT_PROG", nc+" %H "+port)

	target := t.TempDir()
	os.WriteFile(filepath.Join(target, "stale.txt"), []byte("old"), 0o644)
	r := mistryCLI(t, s, target, "--transport", "rsync", "--transport-user", currentUser(),
		"--clear-target", "--project", "params", "--", "--foo=zxc")
	r.wantCode(t, 0)
	if got := mistryRead(t, filepath.Join(target, "out.txt")); got != "zxc" {
		t.Errorf("out.txt = %q", got)
	}
	if _, err := os.Stat(filepath.Join(target, "stale.txt")); err == nil {
		t.Error("stale.txt survived --clear-target")
	}
	// The files came through the daemon, not over HTTP.
	if log := mistryRead(t, filepath.Join(dir, "rsyncd.log")); !strings.Contains(log, "rsync on mistry/params/ready/") {
		t.Errorf("the daemon served no transfer:\n%s", log)
	}

	// A folder in the artifacts comes over too.
	target = t.TempDir()
	mistryCLI(t, s, target, "--transport", "rsync", "--transport-user", currentUser(), "--project", "copy-folder").wantCode(t, 0)
	if got := mistryRead(t, filepath.Join(target, "lala.txt")); got != "lala from koko\n" {
		t.Errorf("lala.txt = %q", got)
	}
}

// startMistry starts a service whose projects path holds a copy of the
// kind's testdata projects, with extra [_] settings.
func startMistry(t *testing.T, kind, settings string) *server {
	t.Helper()
	projects := t.TempDir()
	if err := os.CopyFS(projects, os.DirFS(filepath.Join("testdata", "mistry", kind))); err != nil {
		t.Fatal(err)
	}
	// A checkout may have lost the executable bit of the build scripts.
	filepath.WalkDir(projects, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "build" && d.Type().IsRegular() {
			err = os.Chmod(p, 0o755)
		}
		return err
	})
	s := startServer(t, "[_]\nbuildRoot = @ROOT@/builds\nprojectsPath = "+projects+"\n"+settings)
	if kind == "docker" && s.docker != nil {
		// Each build root is an instance of its own, with its own images:
		// remove them (before the service closes) so that runs do not pile up.
		t.Cleanup(func() {
			if _, err := s.docker.PruneImages(context.Background(), func(string) bool { return false }); err != nil {
				t.Logf("remove images: %v", err)
			}
		})
	}
	return s
}

// mistryRun is what one run of the client did.
type mistryRun struct {
	code           int
	stdout, stderr string
}

// mistryCLI runs the real client against s, fetching artifacts over HTTP
// into target unless args name another transport (the last flag wins).
func mistryCLI(t testing.TB, s *server, target string, args ...string) mistryRun {
	u, _ := url.Parse(s.URL)
	argv := append([]string{"mixmaster", "build", "--host", u.Hostname(), "--port", u.Port(),
		"--transport", "http", "--target", target}, args...)
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), argv, &stdout, &stderr)
	return mistryRun{code, stdout.String(), stderr.String()}
}

func (r mistryRun) wantCode(t testing.TB, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("client exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

// buildInfo reads the --json-result output.
func (r mistryRun) buildInfo(t testing.TB) api.BuildInfo {
	t.Helper()
	var bi api.BuildInfo
	if err := json.Unmarshal([]byte(r.stdout), &bi); err != nil {
		t.Fatalf("client output is not a build info: %v\nstdout:\n%s\nstderr:\n%s", err, r.stdout, r.stderr)
	}
	return bi
}

func mistryPost(t testing.TB, s *server, path, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(s.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// mistryTryBuild posts a synchronous job; it is safe in any goroutine.
func mistryTryBuild(s *server, body string) (api.BuildInfo, error) {
	var bi api.BuildInfo
	resp, err := http.Post(s.URL+"/jobs", "application/json", strings.NewReader(body))
	if err != nil {
		return bi, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return bi, fmt.Errorf("POST /jobs %s: %d %s", body, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &bi); err != nil {
		return bi, fmt.Errorf("POST /jobs %s: %w: %s", body, err, b)
	}
	return bi, nil
}

func mistryBuild(t testing.TB, s *server, body string) api.BuildInfo {
	t.Helper()
	bi, err := mistryTryBuild(s, body)
	if err != nil {
		t.Fatal(err)
	}
	return bi
}

// mistryJobID is the job a build info describes: the last segment of its URL.
func mistryJobID(t testing.TB, bi api.BuildInfo) mixmaster.JobID {
	t.Helper()
	n, err := strconv.ParseUint(path.Base(bi.URL), 10, 64)
	if err != nil {
		t.Fatalf("no job id in URL %q", bi.URL)
	}
	return mixmaster.JobID(n)
}

func mistryJob(t testing.TB, s *server, id mixmaster.JobID) *mixmaster.Job {
	t.Helper()
	code, body := s.get(t, fmt.Sprintf("/api/v1/jobs/%d", id))
	var j mixmaster.Job
	if err := json.Unmarshal([]byte(body), &j); code != http.StatusOK || err != nil {
		t.Fatalf("GET job %d: %d %s", id, code, body)
	}
	return &j
}

// mistryJobs lists the jobs of project, or all jobs when it is "".
func mistryJobs(t testing.TB, s *server, project string) []*mixmaster.Job {
	t.Helper()
	code, body := s.get(t, "/api/v1/jobs?limit=500&project="+url.QueryEscape(project))
	var page struct{ Jobs []*mixmaster.Job }
	if err := json.Unmarshal([]byte(body), &page); code != http.StatusOK || err != nil {
		t.Fatalf("GET /api/v1/jobs: %d %s", code, body)
	}
	return page.Jobs
}

func mistryRead(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mistryExists(t testing.TB, name string) {
	t.Helper()
	if _, err := os.Stat(name); err != nil {
		t.Error(err)
	}
}

// mistryWithin reports whether p is dir or below it.
func mistryWithin(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// mistryNoEscape looks for files named after bad request values in the test
// folder holding root, and right in each folder above it.
func mistryNoEscape(t testing.TB, root string, names ...string) {
	t.Helper()
	tree := filepath.Dir(filepath.Dir(root))
	filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		for _, name := range names {
			if err == nil && strings.Contains(d.Name(), name) {
				t.Errorf("a request value became a file: %s", p)
			}
		}
		return nil
	})
	for dir := filepath.Dir(tree); ; dir = filepath.Dir(dir) {
		for _, name := range names {
			if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
				t.Errorf("a request value became a file: %s", filepath.Join(dir, name))
			}
		}
		if dir == filepath.Dir(dir) {
			break
		}
	}
}

func mistryFreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// mistryWaitListening waits until addr accepts connections or the daemon exits.
func mistryWaitListening(t testing.TB, addr string, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatal("rsync daemon exited")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsync daemon not listening on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mistryNetcat is a command that joins its stdin and stdout to a TCP address
// given as its last two arguments, or "" when there is none.
func mistryNetcat() string {
	if p, err := exec.LookPath("nc"); err == nil {
		return p
	}
	if p, err := exec.LookPath("busybox"); err == nil {
		if list, err := exec.Command(p, "--list").Output(); err == nil && slices.Contains(strings.Fields(string(list)), "nc") {
			return p + " nc"
		}
	}
	return ""
}

// TestMistryBtrfs runs group builds on a build root on a real btrfs file
// system: each build's directory is a subvolume, and a build in a group
// starts from a snapshot of the group's last good build.
func TestMistryBtrfs(t *testing.T) {
	mount := testenv.BtrfsMount(t)
	projects := t.TempDir()
	if err := os.CopyFS(projects, os.DirFS(filepath.Join("testdata", "mistry", "shell"))); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(projects, "build-cache", "build"), 0o755)
	s := startServer(t, "[_]\nbuildRoot = "+mount+"/builds\nprojectsPath = "+projects+"\n")

	first := mistryBuild(t, s, `{"Project": "build-cache", "Group": "baz", "Params": {"foo": "bar"}}`)
	second := mistryBuild(t, s, `{"Project": "build-cache", "Group": "baz", "Params": {"foo": "bar2"}}`)
	if first.ExitCode != 0 || second.ExitCode != 0 || first.Incremental || !second.Incremental {
		t.Fatalf("builds: %+v\n%+v", first, second)
	}
	cache := func(bi api.BuildInfo) string {
		return mistryRead(t, filepath.Join(filepath.Dir(bi.Path), "cache", "out.txt"))
	}
	if cache(first) != cache(second) {
		t.Error("the cache did not carry over")
	}
	for _, bi := range []api.BuildInfo{first, second} {
		dir := filepath.Dir(filepath.Dir(bi.Path)) // <root>/<project>/ready/<id>
		var st syscall.Stat_t
		if err := syscall.Stat(dir, &st); err != nil || st.Ino != 256 {
			t.Errorf("%s is not a btrfs subvolume (inode %d, %v)", dir, st.Ino, err)
		}
	}
}
