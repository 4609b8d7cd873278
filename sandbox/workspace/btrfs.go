package workspace

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"mixmaster"
)

// btrfsMagic is BTRFS_SUPER_MAGIC, the f_type statfs(2) reports for btrfs.
const btrfsMagic = 0x9123683E

// subvolumeIno is the inode number of the top directory of every btrfs
// subvolume (BTRFS_FIRST_FREE_OBJECTID); no other directory has it.
const subvolumeIno = 256

// ErrDeleteNotPermitted is wrapped by the error of a subvolume deletion that
// the kernel refused to a non-root user.
var ErrDeleteNotPermitted = errors.New("deleting btrfs subvolumes as a non-root user needs the file system mounted with -o user_subvol_rm_allowed")

// Btrfs implements mixmaster.Workspaces with btrfs subvolumes, using the
// btrfs command of btrfs-progs. Create makes a subvolume and Clone a
// writable snapshot, which takes milliseconds whatever the size of the
// tree, because the data is shared until either side changes it. The zero
// value is ready to use and safe for concurrent use.
//
// The workspaces must be on btrfs. Deleting subvolumes as a non-root user
// needs the mount option user_subvol_rm_allowed; Detect checks for it.
// Subvolumes nested in a workspace (a build that made its own) are not part
// of its snapshots, where they show as empty directories, but Remove
// deletes them.
type Btrfs struct {
	// Bin is the btrfs command; empty means "btrfs", looked up in PATH.
	Bin string
}

var _ mixmaster.Workspaces = Btrfs{}

// Create makes an empty subvolume at path. It fails with an error matching
// fs.ErrExist when path exists.
func (b Btrfs) Create(ctx context.Context, path string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := mustNotExist("create", path); err != nil {
		return err
	}
	return b.run(ctx, "subvolume", "create", "--", path)
}

// Clone makes dst a writable snapshot of the subvolume src. When src is an
// ordinary directory (made by Plain, before the build root moved to btrfs)
// it makes dst a subvolume and copies src into it with reflinks. Clone
// fails with an error matching fs.ErrExist when dst exists.
func (b Btrfs) Clone(ctx context.Context, src, dst string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// The existence check is needed, not only tidy: given an existing
	// directory, btrfs puts the snapshot inside it.
	if err := mustNotExist("clone", dst); err != nil {
		return err
	}
	info, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return &fs.PathError{Op: "clone", Path: src, Err: syscall.ENOTDIR}
	}
	if isSubvolume(src, info) {
		return b.run(ctx, "subvolume", "snapshot", "--", src, dst)
	}
	if err := b.Create(ctx, dst); err != nil {
		return err
	}
	if err := copyTree(ctx, src, dst); err != nil {
		if rerr := b.Remove(context.WithoutCancel(ctx), dst); rerr != nil {
			return fmt.Errorf("%w; removing the partial copy: %v", err, rerr)
		}
		return err
	}
	return nil
}

// Remove deletes path: a subvolume with btrfs subvolume delete, after the
// subvolumes nested in it, and anything else like os.RemoveAll, including
// directories a build left without write permission. A missing path is not
// an error. When the kernel refuses a non-root user, the error wraps
// ErrDeleteNotPermitted.
func (b Btrfs) Remove(ctx context.Context, path string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !isSubvolume(path, info) {
		return removeAll(path)
	}
	return b.deleteSubvolume(ctx, path)
}

// deleteSubvolume deletes the subvolume at path. The first attempt usually
// succeeds; only when it fails does it look for what is in the way, so that
// the common case does not walk the whole tree.
func (b Btrfs) deleteSubvolume(ctx context.Context, path string) error {
	err := b.run(ctx, "subvolume", "delete", "--", path)
	if err == nil || ctx.Err() != nil {
		return err
	}
	// The kernel refuses to delete a subvolume that holds other
	// subvolumes (ENOTEMPTY), and a non-root user one whose top directory
	// the user cannot write. prepareRemoval fixes the second and finds the
	// first.
	nested, werr := prepareRemoval(path, true)
	if werr != nil {
		return err
	}
	for _, sub := range nested {
		if err := b.deleteSubvolume(ctx, sub); err != nil {
			return err
		}
	}
	err = b.run(ctx, "subvolume", "delete", "--", path)
	if err != nil && os.Geteuid() != 0 && strings.Contains(err.Error(), "Operation not permitted") {
		return fmt.Errorf("%w (%w)", err, ErrDeleteNotPermitted)
	}
	return err
}

func (b Btrfs) run(ctx context.Context, args ...string) error {
	bin := b.Bin
	if bin == "" {
		bin = "btrfs"
	}
	return run(ctx, bin, args...)
}

// IsBtrfs reports whether path is on a btrfs file system. It is false when
// path cannot be examined.
func IsBtrfs(path string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(path, &st) == nil && uint32(st.Type) == btrfsMagic
}

// isSubvolume reports whether path, described by info, is the top
// directory of a btrfs subvolume.
func isSubvolume(path string, info fs.FileInfo) bool {
	return isSubvolumeInfo(info) && IsBtrfs(path)
}

// isSubvolumeInfo is isSubvolume without the file system check, for trees
// already known to be on btrfs.
func isSubvolumeInfo(info fs.FileInfo) bool {
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && info.IsDir() && st.Ino == subvolumeIno
}

// Detect chooses the Workspaces for the build root dir, an existing
// directory: Btrfs when dir is on btrfs, the btrfs command is installed and
// a probe subvolume can be both created and deleted in dir, Plain
// otherwise. The probe catches a non-root service on a file system mounted
// without user_subvol_rm_allowed, which could create snapshots but never
// delete them. The string names the choice and, for Plain, why, for the
// start-up log: "btrfs", or "plain: /srv/builds is ext4".
func Detect(dir string) (mixmaster.Workspaces, string) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return Plain{}, fmt.Sprintf("plain: %v", &fs.PathError{Op: "statfs", Path: dir, Err: err})
	}
	if magic := uint32(st.Type); magic != btrfsMagic {
		return Plain{}, fmt.Sprintf("plain: %s is %s", dir, fsName(magic))
	}
	bin, err := exec.LookPath("btrfs")
	if err != nil {
		return Plain{}, fmt.Sprintf("plain: %s is btrfs but the btrfs command is missing (install btrfs-progs)", dir)
	}
	b := Btrfs{Bin: bin}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	probe := filepath.Join(dir, fmt.Sprintf(".mixmaster-probe-%d-%x", os.Getpid(), rand.Uint64()))
	if err := b.Create(ctx, probe); err != nil {
		return Plain{}, fmt.Sprintf("plain: cannot create btrfs subvolumes in %s: %v", dir, err)
	}
	if err := b.Remove(ctx, probe); err != nil {
		// Since Linux 4.18 rmdir(2) deletes an empty subvolume, mount
		// option or not, so the probe does not stay behind.
		_ = os.Remove(probe)
		if errors.Is(err, ErrDeleteNotPermitted) {
			return Plain{}, fmt.Sprintf("plain: %s is btrfs, but a non-root user may delete subvolumes only when it is mounted with -o user_subvol_rm_allowed", dir)
		}
		return Plain{}, fmt.Sprintf("plain: cannot delete btrfs subvolumes in %s: %v", dir, err)
	}
	return b, "btrfs"
}

// fsName names the file systems a build root is likely to be on, from
// their statfs magic numbers in <linux/magic.h>.
func fsName(magic uint32) string {
	switch magic {
	case 0xEF53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x01021994:
		return "tmpfs"
	case 0x794C7630:
		return "overlayfs"
	case 0x2FC12FC1:
		return "zfs"
	case 0x6969:
		return "nfs"
	case 0xFF534D42:
		return "cifs"
	case 0x65735546:
		return "fuse"
	case 0xF2F52010:
		return "f2fs"
	case 0x9123683E:
		return "btrfs"
	}
	return fmt.Sprintf("a file system with magic %#x", magic)
}
