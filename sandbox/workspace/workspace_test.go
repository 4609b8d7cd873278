package workspace

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"mixmaster"
)

// past is the mtime given to every file of a test tree, so that a copy
// that does not keep times shows.
var past = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

// testOwner is the owner given to a file of the test tree when the tests
// run as root, to check that clones keep owners.
const testOwner = 4321

// runWorkspaceTests is the conformance suite of mixmaster.Workspaces: every
// implementation runs it. dir is an empty directory on the file system the
// implementation is meant for. Paths have spaces throughout.
func runWorkspaceTests(t *testing.T, ws mixmaster.Workspaces, dir string) {
	root := filepath.Join(dir, "work spaces")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	// The tests leave read-only directories behind, which t.TempDir
	// cannot remove when not running as root.
	t.Cleanup(func() { removeEntries(t, ws, root) })
	var n atomic.Int64
	// fresh returns a new path in root; leading dashes check that paths
	// never pass for options.
	fresh := func(name string) string {
		return filepath.Join(root, fmt.Sprintf("-%s %d", name, n.Add(1)))
	}
	// populated returns a new workspace holding the test tree.
	populated := func(t *testing.T) string {
		t.Helper()
		p := fresh("src")
		if err := ws.Create(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		writeTree(t, p)
		return p
	}

	t.Run("CreateEmpty", func(t *testing.T) {
		t.Parallel()
		p := fresh("empty")
		if err := ws.Create(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Errorf("new workspace holds %v", entries)
		}
		// Builds run as the service's user and write here.
		if err := os.WriteFile(filepath.Join(p, "f"), nil, 0o644); err != nil {
			t.Error(err)
		}
	})

	t.Run("CreateExisting", func(t *testing.T) {
		t.Parallel()
		p := populated(t)
		err := ws.Create(t.Context(), p)
		if !errors.Is(err, fs.ErrExist) {
			t.Errorf("Create on an existing workspace: %v, want fs.ErrExist", err)
		}
		assertTree(t, p, p) // untouched and readable
	})

	t.Run("ClonePreserves", func(t *testing.T) {
		t.Parallel()
		src := populated(t)
		want := readTree(t, src)
		dst := fresh("clone")
		if err := ws.Clone(t.Context(), src, dst); err != nil {
			t.Fatal(err)
		}
		compareTrees(t, want, readTree(t, dst))
		compareTrees(t, want, readTree(t, src))
	})

	t.Run("CloneIndependent", func(t *testing.T) {
		t.Parallel()
		src := populated(t)
		want := readTree(t, src)
		dst := fresh("clone")
		if err := ws.Clone(t.Context(), src, dst); err != nil {
			t.Fatal(err)
		}
		// Change the clone: the source keeps its content.
		mustWrite(t, filepath.Join(dst, "cache", "big"), "changed in clone", 0o644)
		mustWrite(t, filepath.Join(dst, "new in clone"), "x", 0o644)
		if err := os.Remove(filepath.Join(dst, "secret")); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dst, "bin", "tool"), 0o700); err != nil {
			t.Fatal(err)
		}
		compareTrees(t, want, readTree(t, src))

		// Change the source: the clone does not see it.
		cloned := readTree(t, dst)
		mustWrite(t, filepath.Join(src, "name with space.txt"), "changed in source", 0o644)
		if err := os.RemoveAll(filepath.Join(src, "empty dir")); err != nil {
			t.Fatal(err)
		}
		compareTrees(t, cloned, readTree(t, dst))
	})

	t.Run("CloneExistingDst", func(t *testing.T) {
		t.Parallel()
		src := populated(t)
		for _, kind := range []string{"dir", "file", "symlink"} {
			dst := fresh("dst " + kind)
			var err error
			switch kind {
			case "dir":
				err = os.Mkdir(dst, 0o755)
			case "file":
				err = os.WriteFile(dst, []byte("keep"), 0o644)
			case "symlink":
				err = os.Symlink(fresh("elsewhere"), dst)
			}
			if err != nil {
				t.Fatal(err)
			}
			before := readTree(t, dst)
			err = ws.Clone(t.Context(), src, dst)
			if !errors.Is(err, fs.ErrExist) {
				t.Errorf("Clone onto an existing %s: %v, want fs.ErrExist", kind, err)
			}
			// Neither replaced nor filled: cp and btrfs both copy
			// into an existing directory when let.
			compareTrees(t, before, readTree(t, dst))
		}
	})

	t.Run("CloneMissingSrc", func(t *testing.T) {
		t.Parallel()
		dst := fresh("dst")
		if err := ws.Clone(t.Context(), fresh("missing"), dst); err == nil {
			t.Error("Clone of a missing source succeeded")
		}
		assertMissing(t, dst)
	})

	t.Run("CloneCanceled", func(t *testing.T) {
		t.Parallel()
		src := populated(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		dst := fresh("dst")
		if err := ws.Clone(ctx, src, dst); !errors.Is(err, context.Canceled) {
			t.Errorf("Clone with a canceled context: %v, want context.Canceled", err)
		}
		assertMissing(t, dst)
	})

	t.Run("CloneChain", func(t *testing.T) {
		// Successive builds of a group: each starts from the last.
		t.Parallel()
		ctx := t.Context()
		first := populated(t)
		want := readTree(t, first)
		second := fresh("second")
		if err := ws.Clone(ctx, first, second); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, filepath.Join(second, "cache", "big"), "build 2", 0o644)
		mustWrite(t, filepath.Join(second, "cache", "from 2"), "2", 0o644)
		wantSecond := readTree(t, second)
		third := fresh("third")
		if err := ws.Clone(ctx, second, third); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, filepath.Join(third, "cache", "big"), "build 3", 0o644)
		wantThird := readTree(t, third)
		if got := mustRead(t, filepath.Join(third, "cache", "from 2")); got != "2" {
			t.Errorf("third build sees %q from the second, want %q", got, "2")
		}
		compareTrees(t, want, readTree(t, first))
		compareTrees(t, wantSecond, readTree(t, second))

		// Older builds go away while the newest stays whole.
		for _, p := range []string{first, second} {
			if err := ws.Remove(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		compareTrees(t, wantThird, readTree(t, third))
		fourth := fresh("fourth")
		if err := ws.Clone(ctx, third, fourth); err != nil {
			t.Fatal(err)
		}
		compareTrees(t, wantThird, readTree(t, fourth))
	})

	t.Run("CloneConcurrent", func(t *testing.T) {
		t.Parallel()
		src := populated(t)
		want := readTree(t, src)
		var wg sync.WaitGroup
		dsts := make([]string, 4)
		errs := make([]error, len(dsts))
		for i := range dsts {
			dsts[i] = fresh("concurrent")
			wg.Go(func() { errs[i] = ws.Clone(t.Context(), src, dsts[i]) })
		}
		wg.Wait()
		for i, dst := range dsts {
			if errs[i] != nil {
				t.Errorf("Clone %d: %v", i, errs[i])
				continue
			}
			compareTrees(t, want, readTree(t, dst))
		}
	})

	t.Run("RemoveReadOnly", func(t *testing.T) {
		t.Parallel()
		p := populated(t)
		// What chmod -R a-w does, and Go's module cache: directories
		// without write permission, one without any.
		locked := filepath.Join(p, "locked", "deeper")
		if err := os.MkdirAll(locked, 0o755); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, filepath.Join(locked, "f"), "x", 0o444)
		for _, d := range []string{locked, filepath.Dir(locked), filepath.Join(p, "cache")} {
			if err := os.Chmod(d, 0o555); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Mkdir(filepath.Join(p, "closed"), 0o000); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o555); err != nil {
			t.Fatal(err)
		}
		if err := ws.Remove(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		assertMissing(t, p)
	})

	t.Run("RemoveNested", func(t *testing.T) {
		t.Parallel()
		outer := populated(t)
		inner := filepath.Join(outer, "cache", "inner ws")
		if err := ws.Create(t.Context(), inner); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, filepath.Join(inner, "f"), "x", 0o644)
		innermost := filepath.Join(inner, "innermost")
		if err := ws.Create(t.Context(), innermost); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(inner, 0o555); err != nil {
			t.Fatal(err)
		}
		if err := ws.Remove(t.Context(), outer); err != nil {
			t.Fatal(err)
		}
		assertMissing(t, outer)
	})

	t.Run("RemoveMissing", func(t *testing.T) {
		t.Parallel()
		for _, p := range []string{fresh("missing"), filepath.Join(fresh("no parent"), "child")} {
			if err := ws.Remove(t.Context(), p); err != nil {
				t.Errorf("Remove(%q) = %v, want nil", p, err)
			}
		}
		p := populated(t)
		for i := range 2 {
			if err := ws.Remove(t.Context(), p); err != nil {
				t.Errorf("Remove #%d: %v", i+1, err)
			}
		}
		assertMissing(t, p)
	})
}

// removeEntries removes everything in dir with ws.
func removeEntries(t *testing.T, ws mixmaster.Workspaces, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Error(err)
		return
	}
	for _, e := range entries {
		if err := ws.Remove(context.Background(), filepath.Join(dir, e.Name())); err != nil {
			t.Error(err)
		}
	}
}

// writeTree fills dir with files of every kind the suite checks, all with
// mtime past (symlinks aside).
func writeTree(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{"bin", "cache", "empty dir", "ro"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, filepath.Join(dir, "secret"), "only for the owner", 0o600)
	mustWrite(t, filepath.Join(dir, "bin", "tool"), "#!/bin/sh\necho tool\n", 0o755)
	mustWrite(t, filepath.Join(dir, "name with space.txt"), "spaces", 0o644)
	mustWrite(t, filepath.Join(dir, "cache", "big"), strings.Repeat("cached data ", 100_000), 0o644)
	mustWrite(t, filepath.Join(dir, "ro", "file"), "read-only", 0o444)
	if err := os.Symlink("bin/tool", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../nowhere", filepath.Join(dir, "cache", "dangling")); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(filepath.Join(dir, "secret"), testOwner, testOwner); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "ro"), 0o555); err != nil {
		t.Fatal(err)
	}
	// Directories last, deepest first: adding entries changes their mtime.
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink == 0 {
			paths = append(paths, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := len(paths) - 1; i >= 0; i-- {
		if err := os.Chtimes(paths[i], past, past); err != nil {
			t.Fatal(err)
		}
	}
}

// entry is what the suite compares of one file.
type entry struct {
	Mode     fs.FileMode
	ModTime  time.Time // zero for symlinks
	Content  string    // file data or symlink target
	UID, GID uint32
}

// readTree returns every file below dir (and dir itself, as ".") by path
// relative to dir.
func readTree(t *testing.T, dir string) map[string]entry {
	t.Helper()
	tree := map[string]entry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		e := entry{Mode: info.Mode()}
		st := info.Sys().(*syscall.Stat_t)
		e.UID, e.GID = st.Uid, st.Gid
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			e.Content, err = os.Readlink(p)
		case info.Mode().IsRegular():
			e.ModTime = info.ModTime()
			var b []byte
			b, err = os.ReadFile(p)
			e.Content = string(b)
		default:
			e.ModTime = info.ModTime()
		}
		tree[rel] = e
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func compareTrees(t *testing.T, want, got map[string]entry) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			t.Errorf("%s: missing", p)
		case g.Mode != w.Mode:
			t.Errorf("%s: mode %v, want %v", p, g.Mode, w.Mode)
		case !g.ModTime.Equal(w.ModTime):
			t.Errorf("%s: mtime %v, want %v", p, g.ModTime, w.ModTime)
		case g.Content != w.Content:
			t.Errorf("%s: content %.40q, want %.40q", p, g.Content, w.Content)
		case g.UID != w.UID || g.GID != w.GID:
			t.Errorf("%s: owner %d:%d, want %d:%d", p, g.UID, g.GID, w.UID, w.GID)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: unexpected", p)
		}
	}
}

// assertTree checks that the tree at dir equals the test tree as written
// in src.
func assertTree(t *testing.T, src, dir string) {
	t.Helper()
	compareTrees(t, readTree(t, src), readTree(t, dir))
	if got := readTree(t, dir)["secret"]; got.Mode.Perm() != 0o600 || !got.ModTime.Equal(past) {
		t.Errorf("secret: %v %v, want 0600 and %v", got.Mode, got.ModTime, past)
	}
}

func assertMissing(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: %v, want it missing", path, err)
	}
}

func mustWrite(t *testing.T, path, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile leaves the mode of an existing file alone and the new one
	// under the umask; the suite wants exactly mode.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPlain(t *testing.T) {
	runWorkspaceTests(t, Plain{}, t.TempDir())
}

// TestPlainKeepsAttributes checks the test tree itself: with it the suite
// would not notice a Clone that drops modes or times.
func TestPlainKeepsAttributes(t *testing.T) {
	dir := t.TempDir()
	t.Cleanup(func() { removeEntries(t, Plain{}, dir) })
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	if err := (Plain{}).Create(t.Context(), src); err != nil {
		t.Fatal(err)
	}
	writeTree(t, src)
	if err := (Plain{}).Clone(t.Context(), src, dst); err != nil {
		t.Fatal(err)
	}
	tree := readTree(t, dst)
	for p, want := range map[string]fs.FileMode{
		".":         fs.ModeDir | 0o755,
		"secret":    0o600,
		"bin/tool":  0o755,
		"ro":        fs.ModeDir | 0o555,
		"empty dir": fs.ModeDir | 0o755,
		"cache/big": 0o644,
		"ro/file":   0o444,
	} {
		if got := tree[p]; got.Mode != want || !got.ModTime.Equal(past) {
			t.Errorf("%s: %v %v, want %v %v", p, got.Mode, got.ModTime, want, past)
		}
	}
	if got := tree["link"]; got.Mode.Type() != fs.ModeSymlink || got.Content != "bin/tool" {
		t.Errorf("link: %v -> %q, want a symlink to bin/tool", got.Mode, got.Content)
	}
	if os.Geteuid() == 0 {
		if got := tree["secret"]; got.UID != testOwner || got.GID != testOwner {
			t.Errorf("secret owned by %d:%d, want %d:%d", got.UID, got.GID, testOwner, testOwner)
		}
	}
}

func TestPlainCreateMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ws")
	if err := (Plain{}).Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	umask := syscall.Umask(0)
	syscall.Umask(umask)
	if want := fs.FileMode(0o755 &^ umask); info.Mode().Perm() != want {
		t.Errorf("mode %v, want %v", info.Mode().Perm(), want)
	}
	if err := (Plain{}).Create(t.Context(), filepath.Join(t.TempDir(), "no parent", "ws")); err == nil {
		t.Error("Create without a parent succeeded")
	}
}
