package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// DefaultBtrfsSize is the size of the sparse image behind BtrfsMount.
const DefaultBtrfsSize = 300 << 20

// Loop device numbers and the loop-control ioctl, from <linux/loop.h> and
// Documentation/admin-guide/devices.txt.
const (
	loopMajor        = 7
	loopControlMajor = 10
	loopControlMinor = 237
	loopCtlGetFree   = 0x4C82
)

// BtrfsMount mounts a new, empty btrfs file system of DefaultBtrfsSize on a
// loop device and returns its mount point. See BtrfsMountSize.
func BtrfsMount(t testing.TB) string {
	t.Helper()
	return BtrfsMountSize(t, DefaultBtrfsSize)
}

// BtrfsMountSize mounts a new, empty btrfs file system on a loop device
// backed by a sparse image of size bytes in t.TempDir(), and returns its
// mount point, a directory owned by root with mode 0755. The file system is
// unmounted (lazily, when something still holds it) and the loop device
// detached when the test ends.
//
// It needs root, mkfs.btrfs, losetup and a kernel with btrfs and loop
// support; without them it skips the test, or fails it when
// MIXMASTER_TEST_REQUIRE names btrfs.
func BtrfsMountSize(t testing.TB, size int64) string {
	t.Helper()
	Need(t, "btrfs", os.Geteuid() == 0, "mounting a loop device needs root")
	for _, bin := range []string{"mkfs.btrfs", "btrfs", "losetup", "mount", "umount"} {
		_, err := exec.LookPath(bin)
		Need(t, "btrfs", err == nil, bin+" not found (install btrfs-progs)")
	}

	img := filepath.Join(t.TempDir(), "btrfs.img")
	mnt := t.TempDir()
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.btrfs", "-q", "--", img).CombinedOutput(); err != nil {
		Need(t, "btrfs", false, fmt.Sprintf("mkfs.btrfs: %v: %s", err, out))
	}

	dev, err := attachLoop(img)
	Need(t, "btrfs", err == nil, fmt.Sprint(err))
	if out, err := exec.Command("mount", "-t", "btrfs", "--", dev, mnt).CombinedOutput(); err != nil {
		detachLoop(t, dev)
		Need(t, "btrfs", false, fmt.Sprintf("mount %s: %v: %s", dev, err, out))
	}
	// Registered after t.TempDir, so this runs before the directories are
	// removed.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "--", mnt).CombinedOutput(); err != nil {
			// Something (a leftover process, an open file) still uses
			// the mount: detach it now, the kernel frees it later.
			if out2, err := exec.Command("umount", "-l", "--", mnt).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %s; umount -l: %v: %s", mnt, out, err, out2)
			}
		}
		detachLoop(t, dev)
	})
	return mnt
}

// attachLoop sets up a free loop device for img and returns its path.
// losetup --find is racy when several test processes attach at once, so it
// is retried. Containers often have a static /dev holding only a few loop
// nodes (or none); then the kernel is asked for a free device number and
// its node is made here.
func attachLoop(img string) (string, error) {
	var lastErr error
	for attempt := range 10 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
		}
		out, err := exec.Command("losetup", "--find", "--show", "--", img).CombinedOutput()
		if err == nil {
			return strings.TrimSpace(string(out)), nil
		}
		lastErr = fmt.Errorf("losetup --find: %v: %s", err, trim(out))
		n, err := freeLoop()
		if err != nil {
			lastErr = fmt.Errorf("%v; %v", lastErr, err)
			continue
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		if err := mknod(dev, syscall.S_IFBLK|0o660, loopMajor, n); err != nil {
			lastErr = fmt.Errorf("%v; %v", lastErr, err)
			continue
		}
		out, err = exec.Command("losetup", "--", dev, img).CombinedOutput()
		if err == nil {
			return dev, nil
		}
		lastErr = fmt.Errorf("losetup %s: %v: %s", dev, err, trim(out))
	}
	return "", lastErr
}

// freeLoop asks /dev/loop-control for a free loop device number, making
// the control node first when it is missing. The kernel creates the device
// if needed.
func freeLoop() (int, error) {
	const ctl = "/dev/loop-control"
	if err := mknod(ctl, syscall.S_IFCHR|0o660, loopControlMajor, loopControlMinor); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(ctl, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), loopCtlGetFree, 0)
	if errno != 0 {
		return 0, fmt.Errorf("LOOP_CTL_GET_FREE: %w", errno)
	}
	return int(n), nil
}

// mknod makes a device node unless path already exists.
func mknod(path string, mode uint32, major, minor int) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	dev := (major&0xfff)<<8 | minor&0xff | (minor&^0xff)<<12
	err := syscall.Mknod(path, mode, dev)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("mknod %s: %w", path, err)
	}
	return nil
}

func detachLoop(t testing.TB, dev string) {
	// With the file system lazily unmounted and still busy, the kernel
	// marks the device to detach itself once released.
	if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
		t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
	}
}

func trim(b []byte) string { return strings.TrimSpace(string(b)) }
