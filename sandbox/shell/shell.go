// Package shell runs build commands on the host with /bin/sh, each in its
// own process group and with a minimal environment, and makes sure nothing
// the command started is still running when Run returns.
package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"mixmaster"
)

// DefaultKillGrace is how long a stopped command gets between SIGTERM and
// SIGKILL when Executor.KillGrace is zero.
const DefaultKillGrace = 5 * time.Second

// drainTimeout bounds how long Run keeps reading output once the process
// group is gone. Only a process that left the group (setsid, setpgid) can
// still hold the pipes then, and it must not keep Run waiting forever.
const drainTimeout = 2 * time.Second

// pollInterval is how often Run checks whether a signalled group is empty.
const pollInterval = 20 * time.Millisecond

// defaultPath is the PATH given to commands when the service has none.
const defaultPath = "/usr/local/bin:/usr/bin:/bin"

// Executor runs commands with /bin/sh -c on the host. The zero value is
// ready to use. It is safe for concurrent use as long as its fields are not
// changed.
//
// Each command runs in a new process group. When ctx is done or
// spec.Timeout passes, the group gets SIGTERM and, KillGrace later, SIGKILL.
// When the shell exits on its own, whatever it left behind in its group
// (background children) gets the same treatment, so nothing of the job keeps
// running after Run returns. Processes that move to another process group
// or session escape this; the systemd cgroup and start-up cleanup cover
// those.
type Executor struct {
	// BaseEnv replaces the environment that ExecSpec.Env is added to. Nil
	// means MinimalEnv(); an empty, non-nil slice means no base at all.
	BaseEnv []string
	// KillGrace is the time between SIGTERM and SIGKILL. Zero means
	// DefaultKillGrace.
	KillGrace time.Duration
	// DryRun makes Run print the command it would run instead of running
	// it, like the original's mode=dryrun.
	DryRun bool
}

var _ mixmaster.Executor = (*Executor)(nil)

// MinimalEnv returns the base environment for commands: PATH, HOME, USER,
// LANG, LC_ALL and TMPDIR from the service's own environment, those that
// are set. The rest of the service's environment (NOTIFY_SOCKET,
// LISTEN_FDS, credentials) is deliberately left out. PATH falls back to a
// standard search path when unset, so that plain commands still resolve.
func MinimalEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR"} {
		v, ok := os.LookupEnv(k)
		if k == "PATH" && v == "" {
			v, ok = defaultPath, true
		}
		if ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// errTimedOut is the cancel cause that tells a timeout from the caller's
// own cancellation.
var errTimedOut = errors.New("timed out")

// Run runs spec.Command with /bin/sh -c in spec.Dir and copies its output
// to stdout and stderr. The two writers may be the same: writes to them are
// serialized, never concurrent.
//
// A command that runs to completion returns its exit status and a nil
// error; a command killed by a signal it did not get from Run reports 128
// plus the signal number, as shells do. When the command is stopped, Run
// returns -1 and an error: one wrapping context.DeadlineExceeded that says
// "timed out after <timeout>" when spec.Timeout passed, or one wrapping
// ctx.Err() (and the cancel cause, if any) when ctx was done. A missing
// spec.Dir or a shell that cannot start is also an error with -1. If the
// command completed but its output could not be written, Run returns the
// exit status together with the write error.
func (e *Executor) Run(ctx context.Context, spec mixmaster.ExecSpec, stdout, stderr io.Writer) (int, error) {
	if e.DryRun {
		if _, err := fmt.Fprintf(stdout, "dry run: would run: %s\n", spec.Command); err != nil {
			return 0, fmt.Errorf("write output: %w", err)
		}
		return 0, nil
	}
	if ctx.Err() != nil {
		return -1, stoppedError(ctx)
	}
	if spec.Dir == "" {
		return -1, errors.New("shell: no working directory given")
	}
	if fi, err := os.Stat(spec.Dir); err != nil {
		return -1, fmt.Errorf("shell: working directory: %w", err)
	} else if !fi.IsDir() {
		return -1, fmt.Errorf("shell: working directory %s is not a directory", spec.Dir)
	}

	grace := e.KillGrace
	if grace <= 0 {
		grace = DefaultKillGrace
	}
	runCtx := ctx
	if spec.Timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeoutCause(ctx, spec.Timeout, errTimedOut)
		defer cancel()
	}

	// Our own pipes rather than exec's copying goroutines: cmd.Wait then
	// returns as soon as the shell exits, which is when leftover children
	// must be killed; exec would first wait for them to close the pipes.
	outR, outW, err := os.Pipe()
	if err != nil {
		return -1, fmt.Errorf("shell: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return -1, fmt.Errorf("shell: %w", err)
	}
	defer outR.Close()
	defer errR.Close()

	cmd := exec.CommandContext(runCtx, "/bin/sh", "-c", spec.Command)
	cmd.Dir = spec.Dir
	cmd.Env = e.env(spec.Env)
	cmd.Stdout = outW
	cmd.Stderr = errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stop stopMark
	cmd.Cancel = func() error {
		now := time.Now()
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		stop.set(now)
		return err
	}
	// After the grace period exec kills the shell; the rest of the group
	// is killed below once Wait returns.
	cmd.WaitDelay = grace

	err = cmd.Start()
	// The child has its own copies of the write ends; ours would keep the
	// readers from ever seeing EOF.
	outW.Close()
	errW.Close()
	if err != nil {
		return -1, fmt.Errorf("shell: start: %w", err)
	}

	var mu sync.Mutex
	var wg sync.WaitGroup
	var outErr, errErr error
	wg.Go(func() { outErr = drain(outR, &lockedWriter{mu: &mu, w: stdout}) })
	wg.Go(func() { errErr = drain(errR, &lockedWriter{mu: &mu, w: stderr}) })

	waitErr := cmd.Wait()
	stoppedAt, stopped := stop.get()
	if stopped {
		killGroup(cmd.Process.Pid, stoppedAt.Add(grace), false)
	} else {
		killGroup(cmd.Process.Pid, time.Now().Add(grace), true)
	}
	deadline := time.Now().Add(drainTimeout)
	outR.SetReadDeadline(deadline)
	errR.SetReadDeadline(deadline)
	wg.Wait()

	if stopped {
		if errors.Is(context.Cause(runCtx), errTimedOut) {
			return -1, fmt.Errorf("command timed out after %v: %w", spec.Timeout, context.DeadlineExceeded)
		}
		return -1, stoppedError(ctx)
	}
	if cmd.ProcessState == nil {
		return -1, fmt.Errorf("shell: wait: %w", waitErr)
	}
	code := exitStatus(cmd.ProcessState)
	if err := errors.Join(outErr, errErr); err != nil {
		return code, fmt.Errorf("write output: %w", err)
	}
	return code, nil
}

func (e *Executor) env(extra []string) []string {
	base := e.BaseEnv
	if base == nil {
		base = MinimalEnv()
	}
	// Never nil: a nil Env would make exec pass the whole service
	// environment.
	env := make([]string, 0, len(base)+len(extra))
	env = append(env, base...)
	return append(env, extra...)
}

// stoppedError describes a command stopped because ctx is done, keeping
// both ctx.Err() and a custom cause visible to errors.Is.
func stoppedError(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("command stopped: %w: %w", err, cause)
	}
	return fmt.Errorf("command stopped: %w", err)
}

// exitStatus is the exit code, or 128+signal for a signalled process, the
// way sh reports it in $?.
func exitStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// killGroup makes sure process group pgid is empty when it returns. With
// term it first sends SIGTERM; then it waits until the group is empty or
// deadline passes, and sends SIGKILL to whatever is left.
func killGroup(pgid int, deadline time.Time, term bool) {
	if !groupAlive(pgid) {
		return
	}
	if term {
		syscall.Kill(-pgid, syscall.SIGTERM)
	}
	for groupAlive(pgid) {
		if time.Now().After(deadline) {
			syscall.Kill(-pgid, syscall.SIGKILL)
			return
		}
		time.Sleep(pollInterval)
	}
}

// groupAlive reports whether process group pgid has a member that is not a
// zombie. Orphaned children are reaped by init, which some containers'
// init never does, so kill(-pgid, 0) alone would count their zombies.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); err != nil {
		return !errors.Is(err, syscall.ESRCH)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, ent := range entries {
		if _, err := strconv.Atoi(ent.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + ent.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) state ppid pgrp ..."; comm may hold spaces and ')'.
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if f[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}

// drain copies r to w until EOF or the read deadline. After a write error
// it keeps reading and discarding, so a broken log never blocks the
// command on a full pipe. It returns the first write error.
func drain(r *os.File, w io.Writer) error {
	buf := make([]byte, 32*1024)
	var werr error
	for {
		n, err := r.Read(buf)
		if n > 0 && werr == nil {
			_, werr = w.Write(buf[:n])
		}
		if err != nil {
			return werr
		}
	}
}

// lockedWriter serializes writes from the stdout and stderr readers, which
// may share one writer that is not safe for concurrent use.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// stopMark records when Run's Cancel function signalled the group.
type stopMark struct {
	mu sync.Mutex
	at time.Time
}

func (s *stopMark) set(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.at.IsZero() {
		s.at = t
	}
}

func (s *stopMark) get() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.at, !s.at.IsZero()
}
