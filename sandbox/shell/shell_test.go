package shell_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mixmaster"
	"mixmaster/internal/testenv"
	"mixmaster/sandbox/sandboxtest"
	"mixmaster/sandbox/shell"
)

// reapArg, as the test binary's first argument, makes it the reaper, the
// way the service's hidden reap command does. An argument rather than an
// environment variable: the reaper hands its environment to the command,
// and the tests check that environment.
const reapArg = "__reap"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == reapArg {
		os.Exit(shell.ReaperMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// reaper is the Executor.Reaper prefix that runs this test binary as the
// reaper.
func reaper(t *testing.T) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{exe, reapArg}
}

func TestConformance(t *testing.T) {
	sandboxtest.RunExecutorTests(t, func(t *testing.T) mixmaster.Executor {
		return &shell.Executor{}
	}, sandboxtest.MergedOutput())
}

func TestConformanceReaper(t *testing.T) {
	sandboxtest.RunExecutorTests(t, func(t *testing.T) mixmaster.Executor {
		return &shell.Executor{Reaper: reaper(t)}
	}, sandboxtest.MergedOutput())
}

func run(ctx context.Context, t *testing.T, ex *shell.Executor, s mixmaster.ExecSpec) (code int, stdout, stderr string, err error) {
	t.Helper()
	if s.Dir == "" {
		s.Dir = t.TempDir()
	}
	var o, e bytes.Buffer
	code, err = ex.Run(ctx, s, &o, &e)
	return code, o.String(), e.String(), err
}

func envLines(out string) []string {
	return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
}

// The service's environment holds sockets and tokens a build must not see.
func TestEnvironmentIsMinimal(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("LISTEN_FDS", "1")
	t.Setenv("MIXMASTER_TOKEN", "secret")
	t.Setenv("HOME", "/home/builder")
	t.Setenv("LANG", "C.UTF-8")
	code, out, _, err := run(t.Context(), t, &shell.Executor{}, mixmaster.ExecSpec{
		Command: "env",
		Env:     []string{"CI_COMMIT=abc", "HOME=/override"},
	})
	if err != nil || code != 0 {
		t.Fatalf("got (%d, %v)", code, err)
	}
	env := envLines(out)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "NOTIFY_SOCKET", "LISTEN_FDS", "MIXMASTER_TOKEN":
			t.Errorf("%s leaked into the command's environment", k)
		}
	}
	for _, want := range []string{"CI_COMMIT=abc", "HOME=/override", "LANG=C.UTF-8"} {
		if !slices.Contains(env, want) {
			t.Errorf("environment lacks %s: %q", want, env)
		}
	}
	if slices.Contains(env, "HOME=/home/builder") {
		t.Error("spec.Env did not override the base HOME")
	}
}

func TestMinimalEnvDefaultPath(t *testing.T) {
	t.Setenv("PATH", "")
	t.Setenv("TMPDIR", "/var/tmp/x")
	t.Setenv("SOMETHING_ELSE", "1")
	env := shell.MinimalEnv()
	if !slices.Contains(env, "PATH=/usr/local/bin:/usr/bin:/bin") {
		t.Errorf("no default PATH in %q", env)
	}
	if !slices.Contains(env, "TMPDIR=/var/tmp/x") {
		t.Errorf("no TMPDIR in %q", env)
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "SOMETHING_ELSE=") {
			t.Errorf("unexpected %s", kv)
		}
	}
}

func TestBaseEnvOverride(t *testing.T) {
	t.Parallel()
	ex := &shell.Executor{BaseEnv: []string{"PATH=/usr/bin:/bin", "BASE=1"}}
	_, out, _, err := run(t.Context(), t, ex, mixmaster.ExecSpec{Command: "env", Env: []string{"EXTRA=2"}})
	if err != nil {
		t.Fatal(err)
	}
	env := envLines(out)
	for _, want := range []string{"PATH=/usr/bin:/bin", "BASE=1", "EXTRA=2"} {
		if !slices.Contains(env, want) {
			t.Errorf("environment lacks %s: %q", want, env)
		}
	}
	if slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "HOME=") }) {
		t.Errorf("HOME came from the service although BaseEnv was set: %q", env)
	}
}

// An empty BaseEnv must mean "no base", not "inherit everything".
func TestEmptyBaseEnv(t *testing.T) {
	t.Setenv("MIXMASTER_TOKEN", "secret")
	_, out, _, err := run(t.Context(), t, &shell.Executor{BaseEnv: []string{}}, mixmaster.ExecSpec{Command: "echo ${MIXMASTER_TOKEN-unset}"})
	if err != nil || out != "unset\n" {
		t.Fatalf("got %q, %v; want %q", out, err, "unset\n")
	}
}

// A group that ignores SIGTERM gets SIGKILL after the grace period.
func TestKillEscalation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ex := &shell.Executor{KillGrace: 300 * time.Millisecond}
	start := time.Now()
	code, _, _, err := run(t.Context(), t, ex, mixmaster.ExecSpec{
		Command: "trap '' TERM; sleep 1000 & echo $! > pid; wait; wait",
		Dir:     dir,
		Timeout: 300 * time.Millisecond,
	})
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || code != -1 {
		t.Fatalf("got (%d, %v), want (-1, deadline exceeded)", code, err)
	}
	if elapsed > 3*time.Second {
		t.Errorf("Run took %v with timeout 300ms and grace 300ms", elapsed)
	}
	pid := readPID(t, filepath.Join(dir, "pid"))
	waitGone(t, pid)
}

// A child that leaves the process group and keeps stdout open cannot be
// killed by group, but must not keep Run waiting forever.
func TestEscapedChildDoesNotHang(t *testing.T) {
	t.Parallel()
	_, err := exec.LookPath("setsid")
	testenv.Need(t, "setsid", err == nil, "setsid not installed (util-linux)")
	dir := t.TempDir()
	start := time.Now()
	code, out, _, err := run(t.Context(), t, &shell.Executor{}, mixmaster.ExecSpec{
		Command: "setsid sleep 1000 & echo $! > pid; echo done",
		Dir:     dir,
	})
	elapsed := time.Since(start)
	pid := readPID(t, filepath.Join(dir, "pid"))
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if err != nil || code != 0 || out != "done\n" {
		t.Fatalf("got (%d, %q, %v), want (0, %q, nil)", code, out, err, "done\n")
	}
	if elapsed > 5*time.Second {
		t.Errorf("Run took %v; an escaped child kept it waiting", elapsed)
	}
}

func TestSignalledCommand(t *testing.T) {
	t.Parallel()
	code, _, _, err := run(t.Context(), t, &shell.Executor{}, mixmaster.ExecSpec{Command: "kill -KILL $$"})
	if err != nil || code != 128+9 {
		t.Fatalf("got (%d, %v), want (137, nil)", code, err)
	}
}

func TestCancelCause(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancelCause(t.Context())
	time.AfterFunc(200*time.Millisecond, func() { cancel(errors.New("canceled by alice")) })
	code, _, _, err := run(ctx, t, &shell.Executor{}, mixmaster.ExecSpec{Command: "sleep 1000"})
	if !errors.Is(err, context.Canceled) || code != -1 {
		t.Fatalf("got (%d, %v), want (-1, canceled)", code, err)
	}
	if !strings.Contains(err.Error(), "canceled by alice") {
		t.Errorf("error %q lacks the cause", err)
	}
}

func TestDirIsAFile(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := run(t.Context(), t, &shell.Executor{}, mixmaster.ExecSpec{Command: "true", Dir: f}); err == nil {
		t.Fatal("no error for a file as working directory")
	}
	var ex shell.Executor
	if _, err := ex.Run(t.Context(), mixmaster.ExecSpec{Command: "true"}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Fatal("no error for an empty working directory")
	}
}

func TestDryRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	code, out, _, err := run(t.Context(), t, &shell.Executor{DryRun: true}, mixmaster.ExecSpec{Command: "touch ran", Dir: dir})
	if err != nil || code != 0 {
		t.Fatalf("got (%d, %v), want (0, nil)", code, err)
	}
	if out != "dry run: would run: touch ran\n" {
		t.Errorf("stdout %q", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Error("the command ran in dry-run mode")
	}
}

// A failing writer must not block the command or hide its exit code.
func TestWriteError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	code, err := (&shell.Executor{}).Run(t.Context(), mixmaster.ExecSpec{
		Command: "i=0; while [ $i -lt 20000 ]; do echo line; i=$((i+1)); done; echo end >&2; touch ended; exit 3",
		Dir:     dir,
	}, failWriter{}, failWriter{})
	if code != 3 || err == nil || !errors.Is(err, errDiskFull) {
		t.Fatalf("got (%d, %v), want (3, disk full)", code, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ended")); err != nil {
		t.Errorf("the command did not run to its end: %v", err)
	}
}

var errDiskFull = errors.New("disk full")

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errDiskFull }

func readPID(t *testing.T, name string) int {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// waitGone waits for pid to be gone or a zombie.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		s := string(data)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && f[0] == "Z" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still runs", pid)
		}
	}
}
