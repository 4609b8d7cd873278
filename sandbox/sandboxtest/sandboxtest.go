// Package sandboxtest is a conformance suite for mixmaster.Executor
// implementations, so that the shell and Docker executors behave the same
// towards the runner. The commands are POSIX sh and use only tools a
// busybox image has.
package sandboxtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mixmaster"
)

// stopSlack is how long after a timeout or cancel Run may take to return.
// The commands here die on SIGTERM, so no executor needs its kill grace.
const stopSlack = 3 * time.Second

// safetyTimeout keeps a broken executor from hanging the suite.
const safetyTimeout = time.Minute

// Option changes what RunExecutorTests expects of the executors.
type Option func(*options)

type options struct {
	merged bool
}

// MergedOutput is for executors that give the command one pipe for its
// standard output and standard error, so that its lines keep the order it
// wrote them in: all output is then expected on the stdout writer, and
// nothing on stderr.
func MergedOutput() Option {
	return func(o *options) { o.merged = true }
}

// RunExecutorTests checks that the executors made by newExec honour the
// mixmaster.Executor contract: exit codes, output streams (separate, or
// merged in order with MergedOutput), environment, working directory,
// timeout, cancellation, clean-up of background children and large output.
// newExec is called once per subtest; an executor that needs more than
// ExecSpec gives (an image, say) must be configured with defaults by
// newExec. spec.Dir is a host directory from t.TempDir that the command must
// see as its working directory. The subtests run in parallel.
func RunExecutorTests(t *testing.T, newExec func(t *testing.T) mixmaster.Executor, opts ...Option) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	t.Run("ExitCodes", func(t *testing.T) {
		t.Parallel()
		for _, want := range []int{0, 1, 77} {
			t.Run(strconv.Itoa(want), func(t *testing.T) {
				t.Parallel()
				r := run(t, newExec(t), spec(t, fmt.Sprintf("exit %d", want)))
				if r.err != nil || r.code != want {
					t.Fatalf("got (%d, %v), want (%d, nil)", r.code, r.err, want)
				}
			})
		}
	})

	t.Run("Streams", func(t *testing.T) {
		t.Parallel()
		r := run(t, newExec(t), spec(t, "echo out; echo err >&2; echo out2"))
		r.ok(t)
		wantOut, wantErr := "out\nout2\n", "err\n"
		if o.merged {
			wantOut, wantErr = "out\nerr\nout2\n", ""
		}
		if r.stdout != wantOut || r.stderr != wantErr {
			t.Fatalf("stdout %q, stderr %q; want %q, %q", r.stdout, r.stderr, wantOut, wantErr)
		}
	})

	t.Run("Order", func(t *testing.T) {
		t.Parallel()
		// Lines alternate between the streams; each stream keeps its own
		// order, and merged output keeps the order across both.
		const n = 20
		var wantOut, wantErr, wantMerged strings.Builder
		for i := range n {
			fmt.Fprintf(&wantOut, "out%d\n", i)
			fmt.Fprintf(&wantErr, "err%d\n", i)
			fmt.Fprintf(&wantMerged, "out%d\nerr%d\n", i, i)
		}
		r := run(t, newExec(t), spec(t, fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo out$i; echo err$i >&2; i=$((i+1)); done`, n)))
		r.ok(t)
		want := [2]string{wantOut.String(), wantErr.String()}
		if o.merged {
			want = [2]string{wantMerged.String(), ""}
		}
		if r.stdout != want[0] || r.stderr != want[1] {
			t.Fatalf("stdout %q, stderr %q; want %q, %q", r.stdout, r.stderr, want[0], want[1])
		}
	})

	t.Run("SharedWriter", func(t *testing.T) {
		t.Parallel()
		// Both streams into one writer that is not safe for concurrent
		// use; the executor must serialize the writes.
		const n = 500
		w := &exclusiveWriter{}
		s := spec(t, fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo ooooooo; echo eeeeeee >&2; i=$((i+1)); done`, n))
		ctx, cancel := context.WithTimeout(t.Context(), safetyTimeout)
		defer cancel()
		code, err := newExec(t).Run(ctx, s, w, w)
		if err != nil || code != 0 {
			t.Fatalf("got (%d, %v), want (0, nil)", code, err)
		}
		if w.concurrent.Load() {
			t.Fatal("Write was called concurrently")
		}
		out := w.buf.String()
		if o, e := strings.Count(out, "o"), strings.Count(out, "e"); o != 7*n || e != 7*n {
			t.Fatalf("got %d o and %d e, want %d of each", o, e, 7*n)
		}
	})

	t.Run("Env", func(t *testing.T) {
		t.Parallel()
		s := spec(t, `printf '%s|%s|%s|' "$SANDBOXTEST_VAR" "${SANDBOXTEST_EMPTY-unset}" "${SANDBOXTEST_NOT_SET-unset}"; [ -n "$PATH" ] && echo path`)
		s.Env = []string{"SANDBOXTEST_VAR=hello 'world' $HOME", "SANDBOXTEST_EMPTY="}
		r := run(t, newExec(t), s)
		r.ok(t)
		if want := "hello 'world' $HOME||unset|path\n"; r.stdout != want {
			t.Fatalf("stdout %q, want %q", r.stdout, want)
		}
	})

	t.Run("Dir", func(t *testing.T) {
		t.Parallel()
		s := spec(t, "cat input.txt; echo made > output.txt")
		writeFile(t, filepath.Join(s.Dir, "input.txt"), "from the host\n")
		r := run(t, newExec(t), s)
		r.ok(t)
		if r.stdout != "from the host\n" {
			t.Fatalf("stdout %q, want the content of input.txt", r.stdout)
		}
		got, err := os.ReadFile(filepath.Join(s.Dir, "output.txt"))
		if err != nil || string(got) != "made\n" {
			t.Fatalf("output.txt: %q, %v; want %q", got, err, "made\n")
		}
	})

	t.Run("MissingDir", func(t *testing.T) {
		t.Parallel()
		s := spec(t, "echo ran")
		s.Dir = filepath.Join(s.Dir, "does-not-exist")
		r := run(t, newExec(t), s)
		if r.err == nil {
			t.Fatalf("got (%d, nil), want an error for a missing directory", r.code)
		}
		if r.stdout != "" {
			t.Fatalf("the command ran: stdout %q", r.stdout)
		}
	})

	t.Run("Timeout", func(t *testing.T) {
		t.Parallel()
		// The pipeline keeps children besides the shell alive, so killing
		// only the shell is not enough for Run to return.
		s := spec(t, "sleep 1000 | cat; echo after")
		s.Timeout = time.Second
		r := run(t, newExec(t), s)
		if !errors.Is(r.err, context.DeadlineExceeded) {
			t.Fatalf("got (%d, %v), want an error wrapping context.DeadlineExceeded", r.code, r.err)
		}
		if !strings.Contains(r.err.Error(), "timed out after 1s") {
			t.Errorf("error %q does not say %q", r.err, "timed out after 1s")
		}
		if r.code != -1 {
			t.Errorf("exit code %d, want -1", r.code)
		}
		if r.elapsed > s.Timeout+stopSlack {
			t.Errorf("Run took %v with a timeout of %v", r.elapsed, s.Timeout)
		}
		if strings.Contains(r.stdout, "after") {
			t.Errorf("the command went on after the timeout: stdout %q", r.stdout)
		}
	})

	t.Run("Cancel", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(500*time.Millisecond, cancel)
		s := spec(t, "sleep 1000; echo after")
		start := time.Now()
		code, err := runCtx(ctx, t, newExec(t), s)
		elapsed := time.Since(start)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got (%d, %v), want an error wrapping context.Canceled", code, err)
		}
		if code != -1 {
			t.Errorf("exit code %d, want -1", code)
		}
		if elapsed > 500*time.Millisecond+stopSlack {
			t.Errorf("Run took %v to return after cancel", elapsed)
		}
	})

	t.Run("AlreadyCanceled", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		s := spec(t, "echo ran > ran.txt")
		code, err := runCtx(ctx, t, newExec(t), s)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got (%d, %v), want an error wrapping context.Canceled", code, err)
		}
		if _, err := os.Stat(filepath.Join(s.Dir, "ran.txt")); err == nil {
			t.Fatal("the command ran with a canceled context")
		}
	})

	t.Run("BackgroundChildren", func(t *testing.T) {
		t.Parallel()
		// The sleep keeps stdout open; the subshell would write a file a
		// second later. Neither may outlive the job or keep Run waiting.
		s := spec(t, "sleep 1000 & echo $! > bg.pid; (sleep 1; echo late > late.txt) & echo done")
		r := run(t, newExec(t), s)
		r.ok(t)
		if r.stdout != "done\n" {
			t.Errorf("stdout %q, want %q", r.stdout, "done\n")
		}
		if r.elapsed > stopSlack {
			t.Errorf("Run took %v; a background child kept it waiting", r.elapsed)
		}
		returned := time.Now()
		data, err := os.ReadFile(filepath.Join(s.Dir, "bg.pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			t.Fatalf("bg.pid: %v", err)
		}
		for deadline := time.Now().Add(5 * time.Second); liveSleep(pid); {
			if time.Now().After(deadline) {
				t.Fatalf("background sleep (pid %d) still runs after the job", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Until(returned.Add(2 * time.Second)))
		if _, err := os.Stat(filepath.Join(s.Dir, "late.txt")); err == nil {
			t.Fatal("a background subshell went on running after the job")
		}
	})

	t.Run("LargeOutput", func(t *testing.T) {
		t.Parallel()
		// 16384 lines of 64 bytes on each stream: 1 MiB each, numbered so
		// that a lost or reordered chunk shows.
		const lines = 16384
		pad := strings.Repeat("x", 56)
		var each strings.Builder
		for i := range lines {
			fmt.Fprintf(&each, "%06d %s\n", i, pad)
			if o.merged {
				fmt.Fprintf(&each, "%06d %s\n", i, pad)
			}
		}
		wantOut, wantErr := each.String(), each.String()
		if o.merged {
			wantErr = ""
		}
		s := spec(t, fmt.Sprintf(`i=0; while [ $i -lt %d ]; do printf '%%06d %%s\n' $i %s; printf '%%06d %%s\n' $i %s >&2; i=$((i+1)); done`, lines, pad, pad))
		r := run(t, newExec(t), s)
		r.ok(t)
		if r.stdout != wantOut {
			t.Errorf("stdout: got %d bytes, want %d bytes; differs at byte %d", len(r.stdout), len(wantOut), firstDiff(r.stdout, wantOut))
		}
		if r.stderr != wantErr {
			t.Errorf("stderr: got %d bytes, want %d bytes; differs at byte %d", len(r.stderr), len(wantErr), firstDiff(r.stderr, wantErr))
		}
	})
}

// result is what one Run gave back.
type result struct {
	code           int
	err            error
	stdout, stderr string
	elapsed        time.Duration
}

func (r result) ok(t *testing.T) {
	t.Helper()
	if r.err != nil || r.code != 0 {
		t.Fatalf("got (%d, %v), want (0, nil); stderr: %s", r.code, r.err, r.stderr)
	}
}

func spec(t *testing.T, command string) mixmaster.ExecSpec {
	return mixmaster.ExecSpec{
		JobID:   1,
		Project: "sandboxtest",
		Command: command,
		Dir:     t.TempDir(),
	}
}

func run(t *testing.T, ex mixmaster.Executor, s mixmaster.ExecSpec) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), safetyTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code, err := ex.Run(ctx, s, &stdout, &stderr)
	return result{code: code, err: err, stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
}

func runCtx(ctx context.Context, t *testing.T, ex mixmaster.Executor, s mixmaster.ExecSpec) (int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, safetyTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	return ex.Run(ctx, s, &stdout, &stderr)
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// liveSleep reports whether pid is a running (not zombie) sleep process on
// this host. For an executor with its own PID namespace the pid means
// nothing here; checking the name keeps an unrelated host process with
// that pid from failing the test.
func liveSleep(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return false
	}
	if f := strings.Fields(s[i+1:]); len(f) == 0 || f[0] == "Z" || f[0] == "X" {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv0, _, _ := strings.Cut(string(cmdline), "\x00")
	return filepath.Base(argv0) == "sleep"
}

// exclusiveWriter is a buffer that notices concurrent writes. Each Write
// lingers a little so that overlapping calls are caught reliably; the
// atomics would hide the race from the race detector.
type exclusiveWriter struct {
	busy       atomic.Bool
	concurrent atomic.Bool
	buf        bytes.Buffer
}

func (w *exclusiveWriter) Write(p []byte) (int, error) {
	if !w.busy.CompareAndSwap(false, true) {
		w.concurrent.Store(true)
		return len(p), nil
	}
	defer w.busy.Store(false)
	time.Sleep(200 * time.Microsecond)
	return w.buf.Write(p)
}
