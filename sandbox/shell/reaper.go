package shell

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// parentPoll is how often the reaper checks that the service still runs.
const parentPoll = time.Second

// ReaperMain is the child subreaper a command runs under when
// Executor.Reaper is set. args are "-grace=DURATION", "--" and the command's
// argv. It marks itself a child subreaper, so that everything the command
// starts, even what double-forks or calls setsid, stays its descendant;
// starts the command in a new process group; forwards SIGTERM and SIGINT to
// that group; and once the command exits or is signalled, gives every
// remaining descendant SIGTERM and, the grace period later, SIGKILL, until
// none is left. It returns the command's exit status, 128 plus the signal
// number for a signalled command, or 127 when it could not start it. When
// its parent dies, it stops the command as if it had got SIGTERM.
func ReaperMain(args []string) int {
	fs := flag.NewFlagSet("reap", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	grace := fs.Duration("grace", DefaultKillGrace, "time between SIGTERM and SIGKILL")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 || *grace <= 0 {
		fmt.Fprintln(os.Stderr, "reap: usage: reap -grace=DURATION -- COMMAND [ARG...]")
		return 127
	}
	code, err := reap(fs.Args(), *grace)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reap:", err)
	}
	return code
}

// reap runs argv as described on ReaperMain.
func reap(argv []string, grace time.Duration) (int, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return 127, fmt.Errorf("become a child subreaper: %w", err)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return 127, err
	}
	// Both channels are set up before the fork, so that no exit or stop
	// signal can be missed.
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, syscall.SIGCHLD)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		return 127, fmt.Errorf("start %s: %w", argv[0], err)
	}

	// A service killed outright cannot stop the build; the reaper notices
	// that its parent is gone and stops it itself.
	parent := os.Getppid()
	orphaned := time.NewTicker(parentPoll)
	defer orphaned.Stop()
	var (
		status    = -1
		killAt    time.Time // zero until the command exits or is stopped
		killTimer <-chan time.Time
	)
	// ending starts the end of the job: SIGTERM (or the stop signal) now,
	// SIGKILL at killAt for whatever is left.
	ending := func(sig syscall.Signal) {
		if !killAt.IsZero() {
			return
		}
		killAt = time.Now().Add(grace)
		killTimer = time.After(grace)
		// The group outlives the shell while a member lives, and its id is
		// not reused until then, so signalling it stays safe.
		syscall.Kill(-pid, sig)
		signalChildren(sig)
	}
	for {
		select {
		case s := <-stop:
			ending(s.(syscall.Signal))
		case <-killTimer:
		case <-chld:
		case <-orphaned.C:
			if os.Getppid() != parent {
				ending(syscall.SIGTERM)
			}
		}
		killing := !killAt.IsZero() && !time.Now().Before(killAt)
		if killing {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
		for {
			var ws syscall.WaitStatus
			got, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if errors.Is(err, syscall.ECHILD) {
				return status, nil
			}
			if err != nil {
				return status, fmt.Errorf("wait: %w", err)
			}
			if got <= 0 {
				break
			}
			if got == pid {
				status = waitStatus(ws)
				ending(syscall.SIGTERM)
			}
		}
		// Orphans of the processes just reaped are our children now; past
		// the grace period they get SIGKILL as they appear.
		if killing {
			signalChildren(syscall.SIGKILL)
		}
	}
}

// waitStatus is the exit code, or 128+signal for a signalled process, the
// way sh reports it in $?.
func waitStatus(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// signalChildren sends sig to every child of this process.
func signalChildren(sig syscall.Signal) {
	self := os.Getpid()
	scanProcs(func(p procStat) {
		if p.ppid == self {
			syscall.Kill(p.pid, sig)
		}
	})
}
