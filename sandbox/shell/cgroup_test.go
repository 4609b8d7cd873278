package shell_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mixmaster"
	"mixmaster/internal/testenv"
	"mixmaster/sandbox/sandboxtest"
	"mixmaster/sandbox/shell"
)

// needCgroup is the directory job cgroups go in, when this machine lets
// the tests create them.
func needCgroup(t *testing.T) string {
	t.Helper()
	dir, how := shell.DetectCgroup()
	testenv.Need(t, "cgroup", dir != "", how)
	return dir
}

func TestConformanceCgroup(t *testing.T) {
	dir := needCgroup(t)
	sandboxtest.RunExecutorTests(t, func(t *testing.T) mixmaster.Executor {
		return &shell.Executor{Cgroup: dir}
	}, sandboxtest.MergedOutput())
}

// The command runs in a cgroup of its own, which is gone when Run returns.
func TestJobCgroup(t *testing.T) {
	t.Parallel()
	parent := needCgroup(t)
	const id mixmaster.JobID = 424242
	for name, ex := range map[string]*shell.Executor{
		"cgroup":        {Cgroup: parent},
		"reaper+cgroup": {Cgroup: parent, Reaper: reaper(t)},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, _, err := run(t.Context(), t, ex, mixmaster.ExecSpec{JobID: id, Command: "cat /proc/self/cgroup"})
			if err != nil || code != 0 {
				t.Fatalf("got (%d, %v), want (0, nil)", code, err)
			}
			var cg string
			for line := range strings.Lines(out) {
				if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
					cg = p
				}
			}
			if !strings.HasPrefix(filepath.Base(cg), "mixmaster-job-424242-") {
				t.Fatalf("the command ran in cgroup %q; /proc/self/cgroup:\n%s", cg, out)
			}
			left, err := filepath.Glob(filepath.Join(parent, "mixmaster-job-424242-*"))
			if err != nil || len(left) > 0 {
				t.Fatalf("job cgroups left behind: %q, %v", left, err)
			}
		})
	}
}

// Not parallel: other tests' probes would be in the glob below.
func TestDetectCgroup(t *testing.T) {
	dir := needCgroup(t)
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		t.Fatalf("%s is not a cgroup directory: %v", dir, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "mixmaster-job-0-*")); len(left) > 0 {
		t.Fatalf("the probe left %q behind", left)
	}
}
