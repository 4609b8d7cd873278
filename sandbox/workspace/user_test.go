package workspace

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"mixmaster/internal/testenv"
)

// The tests run as root in CI, where permissions never get in the way. To
// see what a service running as an ordinary user sees, they run this test
// binary again as nobody, with helperEnv set: it then does one action
// (helperMain) instead of running tests.
const (
	helperEnv = "MIXMASTER_WORKSPACE_HELPER"
	nobody    = 65534
)

var (
	helperOnce sync.Once
	helperBin  string
	helperErr  error
	helperDir  string
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain(os.Args[1:]))
	}
	code := m.Run()
	if helperDir != "" {
		os.RemoveAll(helperDir)
	}
	os.Exit(code)
}

// helperMain does one action as the current user and prints its outcome.
func helperMain(args []string) int {
	if len(args) != 2 {
		fmt.Println("usage: action path")
		return 2
	}
	ctx := context.Background()
	action, path := args[0], args[1]
	var err error
	switch action {
	case "btrfs-create":
		// A workspace as a build leaves it: a locked-up tree, a
		// subvolume nested in it, its top directory read-only.
		err = Btrfs{}.Create(ctx, path)
		if err == nil {
			err = lockedTree(path)
		}
		if err == nil {
			err = Btrfs{}.Create(ctx, filepath.Join(path, "nested"))
		}
		if err == nil {
			err = os.Chmod(path, 0o555)
		}
	case "btrfs-remove":
		err = Btrfs{}.Remove(ctx, path)
	case "plain-create":
		err = Plain{}.Create(ctx, path)
		if err == nil {
			err = lockedTree(path)
		}
		if err == nil {
			err = os.Chmod(path, 0o555)
		}
	case "plain-remove":
		err = Plain{}.Remove(ctx, path)
	case "os-removeall":
		err = os.RemoveAll(path)
	case "detect":
		ws, why := Detect(path)
		fmt.Printf("%T %s\n", ws, why)
	default:
		err = fmt.Errorf("unknown action %q", action)
	}
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	return 0
}

// lockedTree writes into dir a tree that a non-root user cannot simply
// remove: what Go's module cache or chmod -R a-w leave behind.
func lockedTree(dir string) error {
	deep := filepath.Join(dir, "modcache", "pkg@v1", "internal")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(deep, "f.go"), []byte("package f\n"), 0o444); err != nil {
		return err
	}
	for p := deep; p != dir; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o555); err != nil {
			return err
		}
	}
	return os.Mkdir(filepath.Join(dir, "closed"), 0o000)
}

// asNobody runs helperMain(action, path) as the user nobody and returns
// its output and whether it succeeded.
func asNobody(t *testing.T, action, path string) (string, bool) {
	t.Helper()
	testenv.Need(t, "root", os.Geteuid() == 0, "running as another user needs root")
	helperOnce.Do(func() { helperBin, helperErr = copyTestBinary() })
	if helperErr != nil {
		t.Fatal(helperErr)
	}
	cmd := exec.CommandContext(t.Context(), helperBin, action, path)
	cmd.Env = []string{helperEnv + "=1", "PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out)), err == nil
}

// copyTestBinary copies the running test binary where nobody can run it:
// go test builds it in a directory only its owner can enter.
func copyTestBinary() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	helperDir, err = os.MkdirTemp("", "workspace-helper-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(helperDir, 0o755); err != nil {
		return "", err
	}
	in, err := os.Open(self)
	if err != nil {
		return "", err
	}
	defer in.Close()
	bin := filepath.Join(helperDir, "workspace.test")
	out, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return bin, err
}

// nobodyDir returns a new directory inside parent that nobody owns, after
// opening up parent and its ancestors below the temporary directory, which
// t.TempDir makes for root only.
func nobodyDir(t *testing.T, parent string) string {
	t.Helper()
	tmp := filepath.Clean(os.TempDir())
	for p := parent; strings.HasPrefix(p, tmp+"/"); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(parent, "nobody's")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPlainRemoveAsUser removes, as an ordinary user, a tree with
// directories without write or any permission.
func TestPlainRemoveAsUser(t *testing.T) {
	ws := filepath.Join(nobodyDir(t, t.TempDir()), "ws 1")
	if out, ok := asNobody(t, "plain-create", ws); !ok {
		t.Fatal(out)
	}
	// The tree is a fair test: plain os.RemoveAll fails on it.
	if out, ok := asNobody(t, "os-removeall", ws); ok {
		t.Fatalf("os.RemoveAll removed the locked tree: %s", out)
	}
	if out, ok := asNobody(t, "plain-remove", ws); !ok {
		t.Fatal(out)
	}
	assertMissing(t, ws)
}
