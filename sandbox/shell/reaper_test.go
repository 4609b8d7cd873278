package shell_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mixmaster"
	"mixmaster/internal/testenv"
	"mixmaster/sandbox/shell"
)

// escapes starts processes that leave the command's process group: one
// with setsid, one that ignores SIGTERM as well, and one double fork,
// whose parent exits at once. It writes their pids to escaped.pids and
// returns once all three are written.
const escapes = `setsid sh -c 'echo $$ > a.pid; exec sleep 300' &
setsid sh -c 'trap "" TERM; echo $$ > b.pid; exec sleep 300' &
(sh -c 'echo $$ > c.pid; exec sleep 300' &)
while ! [ -s a.pid ] || ! [ -s b.pid ] || ! [ -s c.pid ]; do sleep 0.01; done
cat a.pid b.pid c.pid > escaped.pids
`

func needSetsid(t *testing.T) {
	t.Helper()
	_, err := os.Stat("/usr/bin/setsid")
	testenv.Need(t, "setsid", err == nil, "util-linux's setsid is not installed")
}

// Nothing a build starts outlives it, whether the command exits, is
// canceled or times out.
func TestEscapedProcessesDie(t *testing.T) {
	needSetsid(t)
	if testing.Short() {
		t.Skip("starts and stops several builds")
	}
	t.Parallel()
	cases := map[string]func(t *testing.T, ex *shell.Executor, dir string) (int, error){
		"exit": func(t *testing.T, ex *shell.Executor, dir string) (int, error) {
			code, _, _, err := run(t.Context(), t, ex, mixmaster.ExecSpec{Command: escapes + "exit 0", Dir: dir})
			if err != nil || code != 0 {
				t.Errorf("got (%d, %v), want (0, nil)", code, err)
			}
			return code, err
		},
		"cancel": func(t *testing.T, ex *shell.Executor, dir string) (int, error) {
			ctx, cancel := context.WithCancel(t.Context())
			go func() {
				defer cancel()
				waitFile(ctx, filepath.Join(dir, "escaped.pids"))
			}()
			code, _, _, err := run(ctx, t, ex, mixmaster.ExecSpec{Command: escapes + "sleep 300", Dir: dir})
			if !errors.Is(err, context.Canceled) || code != -1 {
				t.Errorf("got (%d, %v), want (-1, canceled)", code, err)
			}
			return code, err
		},
		"timeout": func(t *testing.T, ex *shell.Executor, dir string) (int, error) {
			code, _, _, err := run(t.Context(), t, ex, mixmaster.ExecSpec{Command: escapes + "sleep 300", Dir: dir, Timeout: 2 * time.Second})
			if !errors.Is(err, context.DeadlineExceeded) || code != -1 {
				t.Errorf("got (%d, %v), want (-1, deadline exceeded)", code, err)
			}
			return code, err
		},
	}
	setups := map[string]func(t *testing.T) *shell.Executor{
		"reaper": func(t *testing.T) *shell.Executor { return &shell.Executor{Reaper: reaper(t)} },
		"cgroup": func(t *testing.T) *shell.Executor { return &shell.Executor{Cgroup: needCgroup(t)} },
		"reaper+cgroup": func(t *testing.T) *shell.Executor {
			return &shell.Executor{Reaper: reaper(t), Cgroup: needCgroup(t)}
		},
	}
	for setup, newExec := range setups {
		for name, runIt := range cases {
			t.Run(setup+"/"+name, func(t *testing.T) {
				t.Parallel()
				ex := newExec(t)
				ex.KillGrace = 300 * time.Millisecond
				dir := t.TempDir()
				runIt(t, ex, dir)
				for _, pid := range readPIDs(t, filepath.Join(dir, "escaped.pids")) {
					if !gone(pid) {
						t.Errorf("pid %d outlived the build", pid)
					}
				}
			})
		}
	}
}

// waitFile returns once name is not empty or ctx is done.
func waitFile(ctx context.Context, name string) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if fi, err := os.Stat(name); err == nil && fi.Size() > 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// readPIDs reads one pid a line, and kills them all when the test ends so
// that a failure leaves nothing behind.
func readPIDs(t *testing.T, name string) []int {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pids = append(pids, pid)
		t.Cleanup(func() {
			if !gone(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		})
	}
	if len(pids) == 0 {
		t.Fatalf("%s holds no pids", name)
	}
	return pids
}

// gone reports whether pid no longer runs: it does not exist, or it is a
// zombie that some other process has yet to reap.
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 1 && f[0] == "Z" && f[1] != strconv.Itoa(os.Getpid())
}

// A service killed outright leaves no build running: the reaper stops the
// command when its parent is gone.
func TestReaperStopsWhenServiceDies(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the reaper to notice")
	}
	t.Parallel()
	dir := t.TempDir()
	// sh stands in for the service: it starts the reaper and is killed.
	service := exec.Command("/bin/sh", "-c", `"$0" "$1" -grace=300ms -- /bin/sh -c 'echo $$ > cmd.pid; exec sleep 300' & wait`, reaper(t)[0], reaper(t)[1])
	service.Dir = dir
	if err := service.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	waitFile(ctx, filepath.Join(dir, "cmd.pid"))
	pids := readPIDs(t, filepath.Join(dir, "cmd.pid"))
	service.Process.Kill()
	service.Wait()
	for deadline := time.Now().Add(10 * time.Second); !gone(pids[0]); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the command (pid %d) still runs after its service died", pids[0])
		}
	}
}
