package shell

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"mixmaster"
)

// cgroupTimeout bounds how long Run waits for a killed job cgroup to empty
// and be removed.
const cgroupTimeout = 5 * time.Second

// DetectCgroup finds the cgroup v2 directory this process runs in and
// checks that a child cgroup can be created there and a process started in
// it, which is the case under systemd with Delegate=yes and for root with a
// writable cgroup2 mount. It returns the directory for Executor.Cgroup and
// a note saying what was found, or "" and why job cgroups are not used.
func DetectCgroup() (dir, how string) {
	dir, err := ownCgroup()
	if err != nil {
		return "", fmt.Sprintf("no job cgroups: %v", err)
	}
	if err := probeCgroup(dir); err != nil {
		return "", fmt.Sprintf("no job cgroups in %s: %v", dir, err)
	}
	return dir, "job cgroups in " + dir
}

// ownCgroup is the directory of this process's cgroup v2, from
// /proc/self/cgroup and the cgroup2 mount in /proc/self/mountinfo.
func ownCgroup() (string, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	var path string
	found := false
	for line := range strings.Lines(string(data)) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			path, found = p, true
		}
	}
	if !found {
		return "", errors.New("not in a cgroup v2 hierarchy")
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "id parent dev root mountpoint options [optional...] - fstype source superoptions"
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields := strings.Fields(pre)
		if !ok || len(fields) < 5 || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		root, mnt := unescapeMount(fields[3]), unescapeMount(fields[4])
		rel, ok := strings.CutPrefix(path, root)
		if !ok || (rel != "" && root != "/" && !strings.HasPrefix(rel, "/")) {
			continue
		}
		return filepath.Join(mnt, rel), nil
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no cgroup2 mount holds this process's cgroup")
}

// unescapeMount undoes the octal escapes of /proc/self/mountinfo.
var unescapeMount = strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace

// probeCgroup starts /bin/true in a fresh child cgroup of dir.
func probeCgroup(dir string) error {
	cg, err := newJobCgroup(dir, 0)
	if err != nil {
		return err
	}
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = cg.attr(&syscall.SysProcAttr{})
	runErr := cmd.Run()
	return errors.Join(runErr, cg.destroy())
}

// jobCgroup is the cgroup one command runs in.
type jobCgroup struct {
	dir string
	fd  *os.File
}

// newJobCgroup creates a child cgroup of parent for job id.
func newJobCgroup(parent string, id mixmaster.JobID) (*jobCgroup, error) {
	dir, err := os.MkdirTemp(parent, fmt.Sprintf("mixmaster-job-%d-", id))
	if err != nil {
		return nil, err
	}
	fd, err := os.Open(dir)
	if err != nil {
		os.Remove(dir)
		return nil, err
	}
	return &jobCgroup{dir: dir, fd: fd}, nil
}

// attr makes attr start the process in the cgroup, and returns it.
func (c *jobCgroup) attr(attr *syscall.SysProcAttr) *syscall.SysProcAttr {
	attr.UseCgroupFD = true
	attr.CgroupFD = int(c.fd.Fd())
	return attr
}

// destroy kills everything in the cgroup, waits for it to empty and
// removes it.
func (c *jobCgroup) destroy() error {
	defer c.fd.Close()
	deadline := time.Now().Add(cgroupTimeout)
	// cgroup.kill (Linux 5.14) kills at once, and also what forks while
	// it does; older kernels get SIGKILL pid by pid until none is left.
	useKillFile := c.writeKill() == nil
	for {
		pids, err := c.procs()
		if err != nil {
			return fmt.Errorf("cgroup %s: %w", c.dir, err)
		}
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still holds %d processes", c.dir, len(pids))
		}
		if !useKillFile {
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(pollInterval)
	}
	for {
		err := os.Remove(c.dir)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup: %w", err)
		}
		time.Sleep(pollInterval)
	}
}

// writeKill writes cgroup.kill, which older kernels do not have.
func (c *jobCgroup) writeKill() error {
	f, err := os.OpenFile(filepath.Join(c.dir, "cgroup.kill"), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString("1")
	return errors.Join(err, f.Close())
}

// procs lists the processes in the cgroup.
func (c *jobCgroup) procs() ([]int, error) {
	data, err := os.ReadFile(filepath.Join(c.dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
