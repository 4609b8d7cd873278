// Package shell runs build commands on the host with /bin/sh, each in its
// own process group and with a minimal environment, and makes sure nothing
// the command started is still running when Run returns: under a child
// subreaper (ReaperMain) when the executor has one, and in a cgroup of its
// own when the service may create one (DetectCgroup).
package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"

	"mixmaster"
)

// DefaultKillGrace is how long a stopped command gets between SIGTERM and
// SIGKILL when Executor.KillGrace is zero.
const DefaultKillGrace = 5 * time.Second

// drainTimeout bounds how long Run keeps reading output once the command
// has ended. Without a reaper or a cgroup, a process that left the group
// (setsid, setpgid) can still hold the pipe then, and it must not keep Run
// waiting forever.
const drainTimeout = 2 * time.Second

// reaperSlack is how long past the grace period Run gives the reaper to
// kill the command and its descendants before killing the reaper itself.
const reaperSlack = 5 * time.Second

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
// or session escape the group; with Reaper set they are still the
// reaper's descendants and get the same treatment, and with Cgroup set
// whatever is left in the job's cgroup is killed at the end.
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
	// Reaper is the argv prefix that runs ReaperMain, for example the
	// service's own binary and its hidden reap command. Each command then
	// runs under that child subreaper. Empty means only the process group
	// is cleaned up.
	Reaper []string
	// Cgroup is a cgroup v2 directory the service may create children in,
	// as DetectCgroup finds it. Each command then runs in a child cgroup of
	// its own, killed and removed when the command ends. Empty means no
	// cgroups.
	Cgroup string
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
// to stdout. The command's standard output and standard error are one pipe,
// so its lines reach stdout in the order it wrote them; stderr is not used.
// Two pipes read apart cannot keep that order, and a build log in the wrong
// order misleads more than one whose error lines are not marked as such.
//
// A command that runs to completion returns its exit status and a nil
// error; a command killed by a signal it did not get from Run reports 128
// plus the signal number, as shells do. When the command is stopped, Run
// returns -1 and an error: one wrapping context.DeadlineExceeded that says
// "timed out after <timeout>" when spec.Timeout passed, or one wrapping
// ctx.Err() (and the cancel cause, if any) when ctx was done. A missing
// spec.Dir, a job cgroup that cannot be created or a shell (or reaper) that
// cannot start is also an error with -1; a reaper that cannot start the
// shell exits 127, as sh does for a missing command. If the command
// completed but its output could not be written, or its cgroup could not be
// emptied and removed, Run returns the exit status together with that
// error.
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

	// Our own pipe rather than exec's copying goroutines: cmd.Wait then
	// returns as soon as the shell exits, which is when leftover children
	// must be killed; exec would first wait for them to close the pipe.
	outR, outW, err := os.Pipe()
	if err != nil {
		return -1, fmt.Errorf("shell: %w", err)
	}
	defer outR.Close()

	var stop stopMark
	cmd := e.command(runCtx, spec, grace, outW, &stop)
	var cg *jobCgroup
	if e.Cgroup != "" {
		if cg, err = newJobCgroup(e.Cgroup, spec.JobID); err != nil {
			outW.Close()
			return -1, fmt.Errorf("shell: job cgroup: %w", err)
		}
		cg.attr(cmd.SysProcAttr)
	}
	err = cmd.Start()
	// The child has its own copy of the write end; ours would keep the
	// reader from ever seeing EOF.
	outW.Close()
	if err != nil {
		if cg != nil {
			cg.destroy()
		}
		return -1, fmt.Errorf("shell: start: %w", err)
	}

	var wg sync.WaitGroup
	var outErr error
	wg.Go(func() { outErr = drain(outR, stdout) })

	waitErr := cmd.Wait()
	stoppedAt, stopped := stop.get()
	if stopped {
		killGroup(cmd.Process.Pid, stoppedAt.Add(grace), false)
	} else {
		killGroup(cmd.Process.Pid, time.Now().Add(grace), true)
	}
	var cgErr error
	if cg != nil {
		// Without a reaper, what left the group is still in the cgroup;
		// with one, only what a reaper killed as a last resort left behind.
		cgErr = cg.destroy()
	}
	outR.SetReadDeadline(time.Now().Add(drainTimeout))
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
	if outErr != nil {
		return code, fmt.Errorf("write output: %w", outErr)
	}
	if cgErr != nil {
		return code, fmt.Errorf("shell: %w", cgErr)
	}
	return code, nil
}

// command is the process that runs spec.Command, writing both its output
// streams to out: /bin/sh in a new process group, under the reaper if
// there is one. Its Cancel sends SIGTERM to that group and records the time
// in stop.
func (e *Executor) command(ctx context.Context, spec mixmaster.ExecSpec, grace time.Duration, out *os.File, stop *stopMark) *exec.Cmd {
	argv := []string{"/bin/sh", "-c", spec.Command}
	// After the grace period exec kills the shell; the rest of the group
	// is killed once Wait returns.
	waitDelay := grace
	if len(e.Reaper) > 0 {
		argv = slices.Concat(e.Reaper, []string{"-grace=" + grace.String(), "--"}, argv)
		// The reaper escalates to SIGKILL itself. Killing the reaper would
		// orphan what it watches, so exec's kill is only a last resort.
		waitDelay = grace + reaperSlack
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = spec.Dir
	cmd.Env = e.env(spec.Env)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		now := time.Now()
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		stop.set(now)
		return err
	}
	cmd.WaitDelay = waitDelay
	return cmd
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
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
		return waitStatus(ws)
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
	alive := false
	err := scanProcs(func(p procStat) {
		alive = alive || (p.pgrp == pgid && !p.dead())
	})
	return alive || err != nil
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
