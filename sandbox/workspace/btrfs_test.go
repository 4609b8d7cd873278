package workspace

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mixmaster/internal/testenv"
)

func TestBtrfs(t *testing.T) {
	runWorkspaceTests(t, Btrfs{}, testenv.BtrfsMount(t))
}

// TestPlainOnBtrfs runs Plain where cp makes reflinks.
func TestPlainOnBtrfs(t *testing.T) {
	runWorkspaceTests(t, Plain{}, testenv.BtrfsMount(t))
}

func assertSubvolume(t *testing.T, path string, want bool) {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := isSubvolume(path, info); got != want {
		t.Errorf("%s: subvolume %v, want %v", path, got, want)
	}
	// Ask btrfs-progs too, so that isSubvolume is checked as well.
	err = exec.Command("btrfs", "subvolume", "show", "--", path).Run()
	if got := err == nil; got != want {
		t.Errorf("%s: btrfs subvolume show says subvolume %v, want %v", path, got, want)
	}
}

func TestBtrfsMakesSubvolumes(t *testing.T) {
	ctx := t.Context()
	mnt := testenv.BtrfsMount(t)
	ws := Btrfs{}
	src, dst := filepath.Join(mnt, "src"), filepath.Join(mnt, "dst")
	if err := ws.Create(ctx, src); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(src, "f"), "data", 0o644)
	if err := ws.Clone(ctx, src, dst); err != nil {
		t.Fatal(err)
	}
	assertSubvolume(t, src, true)
	assertSubvolume(t, dst, true)
	out, err := exec.Command("btrfs", "subvolume", "show", "--", dst).CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	// A snapshot has its source as parent; and it must be writable,
	// or builds could not use it.
	if !strings.Contains(string(out), "Parent UUID:") || strings.Contains(string(out), "Parent UUID: \t\t-") {
		t.Errorf("dst is not a snapshot:\n%s", out)
	}
	if strings.Contains(string(out), "readonly") {
		t.Errorf("dst is a read-only snapshot:\n%s", out)
	}
	mustWrite(t, filepath.Join(dst, "f"), "changed", 0o644)
	if got := mustRead(t, filepath.Join(src, "f")); got != "data" {
		t.Errorf("src sees %q", got)
	}
}

// TestBtrfsClonePlainDir clones a directory that Plain made, as after the
// build root moved to btrfs.
func TestBtrfsClonePlainDir(t *testing.T) {
	ctx := t.Context()
	mnt := testenv.BtrfsMount(t)
	src, dst := filepath.Join(mnt, "plain src"), filepath.Join(mnt, "dst")
	if err := (Plain{}).Create(ctx, src); err != nil {
		t.Fatal(err)
	}
	writeTree(t, src)
	if err := (Btrfs{}).Clone(ctx, src, dst); err != nil {
		t.Fatal(err)
	}
	assertSubvolume(t, src, false)
	assertSubvolume(t, dst, true)
	compareTrees(t, readTree(t, src), readTree(t, dst))

	// A failed copy leaves nothing behind.
	bad := filepath.Join(mnt, "bad")
	if err := (Btrfs{}).Clone(ctx, filepath.Join(mnt, "missing"), bad); err == nil {
		t.Error("Clone of a missing source succeeded")
	}
	assertMissing(t, bad)

	// Removing the plain directory goes the os.RemoveAll way.
	if err := (Btrfs{}).Remove(ctx, src); err != nil {
		t.Fatal(err)
	}
	assertMissing(t, src)
}

func TestBtrfsErrors(t *testing.T) {
	ctx := t.Context()
	mnt := testenv.BtrfsMount(t)

	err := Btrfs{Bin: "/nonexistent/btrfs"}.Create(ctx, filepath.Join(mnt, "x"))
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/btrfs subvolume create") {
		t.Errorf("Create with a missing binary: %v", err)
	}

	// The command's own words reach the error.
	if !IsBtrfs(t.TempDir()) {
		err := Btrfs{}.Create(ctx, filepath.Join(t.TempDir(), "ws"))
		if err == nil || !strings.Contains(err.Error(), "btrfs subvolume create --") || !strings.Contains(err.Error(), "ERROR") {
			t.Errorf("Create off btrfs: %v", err)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	cancel()
	p := filepath.Join(mnt, "canceled")
	if err := (Btrfs{}).Create(ctx, p); !errors.Is(err, context.Canceled) {
		t.Errorf("Create with a canceled context: %v", err)
	}
	assertMissing(t, p)
}

func TestIsBtrfs(t *testing.T) {
	mnt := testenv.BtrfsMount(t)
	if !IsBtrfs(mnt) {
		t.Errorf("IsBtrfs(%s) = false", mnt)
	}
	if IsBtrfs(filepath.Join(mnt, "missing")) {
		t.Error("IsBtrfs of a missing path = true")
	}
	if tmp := t.TempDir(); IsBtrfs(tmp) {
		t.Logf("%s is on btrfs itself; skipping the negative case", tmp)
	} else if IsBtrfs("/proc") {
		t.Error("IsBtrfs(/proc) = true")
	}
}

func TestDetect(t *testing.T) {
	mnt := testenv.BtrfsMount(t)
	ws, why := Detect(mnt)
	if _, ok := ws.(Btrfs); !ok || why != "btrfs" {
		t.Errorf("Detect(btrfs mount) = %T, %q; want Btrfs, \"btrfs\"", ws, why)
	}
	assertNoProbe(t, mnt)

	ws, why = Detect("/proc")
	if _, ok := ws.(Plain); !ok || why != "plain: /proc is a file system with magic 0x9fa0" {
		t.Errorf("Detect(/proc) = %T, %q", ws, why)
	}
	if tmp := t.TempDir(); !IsBtrfs(tmp) {
		ws, why = Detect(tmp)
		if _, ok := ws.(Plain); !ok || !strings.HasPrefix(why, "plain: "+tmp+" is ") {
			t.Errorf("Detect(%s) = %T, %q", tmp, ws, why)
		}
		t.Logf("Detect(%s): %s", tmp, why)
	}
	missing := filepath.Join(mnt, "missing")
	ws, why = Detect(missing)
	if _, ok := ws.(Plain); !ok || !strings.Contains(why, "statfs "+missing) {
		t.Errorf("Detect(missing) = %T, %q", ws, why)
	}

	t.Setenv("PATH", t.TempDir())
	ws, why = Detect(mnt)
	if _, ok := ws.(Plain); !ok || !strings.Contains(why, "btrfs command is missing") {
		t.Errorf("Detect without btrfs-progs = %T, %q", ws, why)
	}
}

func assertNoProbe(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".mixmaster-probe") {
			t.Errorf("probe %s left behind", e.Name())
		}
	}
}

// TestBtrfsAsUser checks what a service running as an ordinary user meets:
// without user_subvol_rm_allowed it can make subvolumes but not delete
// them, which Detect must notice and Remove must explain; with it, Remove
// must get through read-only directories and nested subvolumes.
func TestBtrfsAsUser(t *testing.T) {
	mnt := testenv.BtrfsMount(t)
	dir := nobodyDir(t, mnt)
	ws := filepath.Join(dir, "ws 1")
	if out, ok := asNobody(t, "btrfs-create", ws); !ok {
		t.Fatal(out)
	}
	out, ok := asNobody(t, "btrfs-remove", ws)
	if ok || !strings.Contains(out, "Operation not permitted") || !strings.Contains(out, ErrDeleteNotPermitted.Error()) {
		t.Errorf("Remove without user_subvol_rm_allowed: ok=%v %s", ok, out)
	}
	out, _ = asNobody(t, "detect", dir)
	if !strings.HasPrefix(out, "workspace.Plain plain: ") || !strings.Contains(out, "user_subvol_rm_allowed") {
		t.Errorf("Detect without user_subvol_rm_allowed: %s", out)
	}
	assertNoProbe(t, dir)

	if out, err := exec.Command("mount", "-o", "remount,user_subvol_rm_allowed", "--", mnt).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
	if out, _ := asNobody(t, "detect", dir); out != "workspace.Btrfs btrfs" {
		t.Errorf("Detect with user_subvol_rm_allowed: %s", out)
	}
	assertNoProbe(t, dir)
	if out, ok := asNobody(t, "btrfs-remove", ws); !ok {
		t.Errorf("Remove with user_subvol_rm_allowed: %s", out)
	}
	assertMissing(t, ws)
}
