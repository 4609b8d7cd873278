package shell

import "testing"

// A directory that is not a cgroup fails the probe: DetectCgroup finds out
// rather than assumes.
func TestProbeCgroupNotACgroup(t *testing.T) {
	t.Parallel()
	if err := probeCgroup(t.TempDir()); err == nil {
		t.Fatal("probing a plain directory succeeded")
	}
}
