package workspace

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"mixmaster"
)

// Plain implements mixmaster.Workspaces with ordinary directories. Clone
// runs GNU cp -a --reflink=auto, which keeps modes, times, symbolic links
// and (as root) owners, and shares the data blocks on file systems with
// reflinks (XFS, btrfs) instead of copying them. The zero value is ready to
// use and safe for concurrent use.
type Plain struct{}

var _ mixmaster.Workspaces = Plain{}

// Create makes an empty directory with mode 0755 (less the umask) at path.
// It fails with an error matching fs.ErrExist when path exists.
func (Plain) Create(ctx context.Context, path string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return os.Mkdir(path, 0o755)
}

// Clone copies the directory src to dst. It fails with an error matching
// fs.ErrExist when dst exists; on any failure it leaves no dst behind.
func (Plain) Clone(ctx context.Context, src, dst string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// Making dst first is the atomic "must not exist" check; cp then
	// copies src's contents into it and gives it src's mode and times.
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	if err := copyTree(ctx, src, dst); err != nil {
		if rerr := removeAll(dst); rerr != nil {
			return fmt.Errorf("%w; removing the partial copy: %v", err, rerr)
		}
		return err
	}
	return nil
}

// Remove deletes path and everything below it, including directories a
// build left without write permission. A missing path is not an error.
func (Plain) Remove(ctx context.Context, path string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return removeAll(path)
}

// copyTree copies the contents, modes and times of directory src onto the
// existing directory dst.
func copyTree(ctx context.Context, src, dst string) error {
	// --no-target-directory: copy src as dst rather than into
	// dst/<name of src>, which is what cp does when dst is a directory.
	return run(ctx, "cp", "-a", "--reflink=auto", "--no-target-directory", "--", src, dst)
}

// removeAll is os.RemoveAll that also copes with directories lacking write
// or search permission, such as the read-only trees of Go's module cache:
// a non-root service cannot empty those until it gives itself access.
func removeAll(path string) error {
	err := os.RemoveAll(path)
	if err == nil {
		return nil
	}
	if _, werr := prepareRemoval(path, false); werr != nil {
		return err
	}
	return os.RemoveAll(path)
}

// prepareRemoval walks the tree at root and gives the owner read, write and
// search permission on every directory lacking it. With subvolumes set it
// also returns the btrfs subvolumes nested below root (not root itself),
// without descending into them. Errors below root are ignored: whatever
// stays in the way is reported by the removal that follows.
func prepareRemoval(root string, subvolumes bool) (nested []string, err error) {
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root {
				return err
			}
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if subvolumes && path != root && isSubvolumeInfo(info) {
			nested = append(nested, path)
			return fs.SkipDir
		}
		if perm := info.Mode().Perm(); perm&0o700 != 0o700 {
			// Chmod runs before WalkDir reads the directory, so
			// the walk then also gets into it.
			_ = os.Chmod(path, perm|0o700)
		}
		return nil
	})
	return nested, err
}

// run runs a command with argv (never a shell) and returns an error that
// holds the command line and its output when it fails.
func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	// The C locale keeps messages in English, so errors read the same in
	// every log and deleteSubvolume can recognize EPERM.
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%v)", cerr, err)
	}
	msg := strings.TrimSpace(string(out))
	line := strings.Join(append([]string{name}, args...), " ")
	if msg == "" {
		return fmt.Errorf("%s: %w", line, err)
	}
	return fmt.Errorf("%s: %w: %s", line, err, msg)
}

// errExist is the error for a path that must not exist but does.
func errExist(op, path string) error {
	return &fs.PathError{Op: op, Path: path, Err: fs.ErrExist}
}

// mustNotExist returns errExist when path exists.
func mustNotExist(op, path string) error {
	_, err := os.Lstat(path)
	if err == nil {
		return errExist(op, path)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
