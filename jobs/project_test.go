package jobs

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mixmaster"
)

func TestJobKey(t *testing.T) {
	base := JobKey("p", "", map[string]string{"foo": "bar"}, "c")
	same := []string{
		JobKey("p", "", map[string]string{"foo": "bar", "_opaque": "x"}, "c"),
		JobKey("p", "", map[string]string{"foo": "bar", "_opaque": "y"}, "c"),
	}
	for _, k := range same {
		if k != base {
			t.Error("an opaque param changed the key")
		}
	}
	// Inputs that plain concatenation would confuse.
	distinct := [][2]string{
		{JobKey("p", "", map[string]string{"a": "bc"}, "c"), JobKey("p", "", map[string]string{"ab": "c"}, "c")},
		{JobKey("p", "x", map[string]string{"yz": "1"}, "c"), JobKey("p", "xy", map[string]string{"z": "1"}, "c")},
		{JobKey("pa", "", nil, "c"), JobKey("p", "a", nil, "c")},
		{JobKey("p", "", map[string]string{"foo": "bar"}, "c"), JobKey("p", "", map[string]string{"foo": "bar"}, "d")},
		{JobKey("p", "", nil, "c"), JobKey("p", "", map[string]string{}, "c") + "x"},
	}
	for i, pair := range distinct {
		if pair[0] == pair[1] {
			t.Errorf("case %d: different inputs share a key", i)
		}
	}
	if JobKey("p", "", map[string]string{"b": "2", "a": "1"}, "c") != JobKey("p", "", map[string]string{"a": "1", "b": "2"}, "c") {
		t.Error("param order changed the key")
	}
}

func writeProject(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(path), 0o755)
		mode := os.FileMode(0o644)
		if name == "build" {
			mode = 0o755
		}
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFolders(t *testing.T) {
	root := t.TempDir()
	writeProject(t, filepath.Join(root, "docker"), map[string]string{"Dockerfile": "FROM x\n", "koko/lala.txt": "hi"})
	writeProject(t, filepath.Join(root, "shell"), map[string]string{"build": "#!/bin/sh\n"})
	writeProject(t, filepath.Join(root, "empty"), map[string]string{"README": "nothing to build"})
	os.MkdirAll(filepath.Join(root, "jobs"), 0o755)
	writeProject(t, filepath.Join(root, "jobs"), map[string]string{"build": "#!/bin/sh\n"})
	f := &Folders{Dir: root}

	if p, err := f.Folder("docker"); err != nil || !p.Docker {
		t.Errorf("docker: %+v, %v", p, err)
	}
	if p, err := f.Folder("shell"); err != nil || p.Docker {
		t.Errorf("shell: %+v, %v", p, err)
	}
	for name, msg := range map[string]string{
		"empty": "neither a Dockerfile nor an executable build script",
		"../x":  "Unknown project '../x'",
		"a/b":   "Unknown project 'a/b'",
		"":      "no project given",
		"nope":  "Unknown project 'nope'",
		".":     "Unknown project",
		"-rf":   "Unknown project",
		"jobs":  "Unknown project",
	} {
		_, err := f.Folder(name)
		if mixmaster.ErrorCode(err) != mixmaster.EUNPROCESSABLE || !strings.Contains(err.Error(), msg) {
			t.Errorf("Folder(%q) = %v, want 422 %q", name, err, msg)
		}
	}
	if names := f.Names(); strings.Join(names, ",") != "docker,shell" {
		t.Errorf("Names() = %v", names)
	}
}

// TestFoldersUnreadable: a projects folder that cannot be read is an
// error that says so, not a folder without projects; a missing one holds
// none.
func TestFoldersUnreadable(t *testing.T) {
	missing := &Folders{Dir: filepath.Join(t.TempDir(), "none")}
	if names, err := missing.List(); err != nil || len(names) != 0 {
		t.Errorf("missing folder: List() = %v, %v; want none", names, err)
	}
	if _, err := missing.Folder("p"); mixmaster.ErrorCode(err) != mixmaster.EUNPROCESSABLE {
		t.Errorf("missing folder: Folder() = %v, want 422", err)
	}

	// A file where the folder should be cannot be read as one, even by
	// root; without root, a folder without permissions neither.
	file := filepath.Join(t.TempDir(), "projects")
	os.WriteFile(file, []byte("not a folder"), 0o644)
	dirs := []string{file}
	if os.Geteuid() != 0 {
		closed := filepath.Join(t.TempDir(), "closed")
		writeProject(t, filepath.Join(closed, "p"), map[string]string{"build": "#!/bin/sh\n"})
		os.Chmod(closed, 0)
		t.Cleanup(func() { os.Chmod(closed, 0o755) })
		dirs = append(dirs, closed)
	}
	for _, dir := range dirs {
		var logs bytes.Buffer
		f := &Folders{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
		names, err := f.List()
		if mixmaster.ErrorCode(err) != mixmaster.EUNAVAILABLE || !strings.Contains(mixmaster.ErrorMessage(err), "projects folder cannot be read") || names != nil {
			t.Errorf("%s: List() = %v, %v; want 503", dir, names, err)
		}
		if _, err := f.Folder("p"); mixmaster.ErrorCode(err) != mixmaster.EUNAVAILABLE {
			t.Errorf("%s: Folder() = %v, want 503", dir, err)
		}
		if names := f.Names(); names != nil || !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), dir) {
			t.Errorf("%s: Names() = %v, log %q; want none and an error logged", dir, names, logs.String())
		}
	}
}

func TestContentHash(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "p")
	writeProject(t, dir, map[string]string{"Dockerfile": "FROM x\n", "sub/a.txt": "a"})
	f := &Folders{Dir: root}
	p, _ := f.Folder("p")
	hash := func() string {
		t.Helper()
		h, err := f.ContentHash(p)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	first := hash()
	if hash() != first {
		t.Fatal("hash changed without a change")
	}
	// A touch changes metadata only: the content hash stays.
	future := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(dir, "sub/a.txt"), future, future)
	if hash() != first {
		t.Error("a touch changed the hash")
	}
	// A copy of the folder hashes the same.
	g := &Folders{Dir: t.TempDir()}
	writeProject(t, filepath.Join(g.Dir, "p"), map[string]string{"Dockerfile": "FROM x\n", "sub/a.txt": "a"})
	gp, _ := g.Folder("p")
	if h, _ := g.ContentHash(gp); h != first {
		t.Error("an identical copy hashes differently")
	}

	changes := []func(){
		func() { os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644) },
		func() { os.WriteFile(filepath.Join(dir, "empty"), []byte("x"), 0o644) },
		func() { os.Chmod(filepath.Join(dir, "empty"), 0o755) },
		func() { os.Symlink("sub/a.txt", filepath.Join(dir, "link")) },
		func() { os.Mkdir(filepath.Join(dir, "emptydir"), 0o755) },
		func() { os.Rename(filepath.Join(dir, "sub/a.txt"), filepath.Join(dir, "sub/b.txt")) },
	}
	seen := map[string]bool{first: true}
	for i, change := range changes {
		change()
		h := hash()
		if seen[h] {
			t.Errorf("change %d did not change the hash", i)
		}
		seen[h] = true
	}
}

func TestValidateArtifactRequest(t *testing.T) {
	for _, bad := range []mixmaster.ArtifactRequest{
		{Params: map[string]string{"a/b": "x"}},
		{Params: map[string]string{"../../escape.txt": "x"}},
		{Params: map[string]string{"..": "x"}},
		{Params: map[string]string{"a\x00b": "x"}},
		{Params: map[string]string{"-rf": "x"}},
		{Params: map[string]string{"": "x"}},
		{Group: "../../grp-escape"},
		{Group: "a/b"},
		{Group: "-x"},
		{Group: ".."},
	} {
		if err := ValidateArtifactRequest(&bad); mixmaster.ErrorCode(err) != mixmaster.EUNPROCESSABLE {
			t.Errorf("%+v accepted: %v", bad, err)
		}
	}
	ok := mixmaster.ArtifactRequest{Group: "foo", Params: map[string]string{"foo": "bar", "_opaque": "1", "a.b-c_d": "x"}}
	if err := ValidateArtifactRequest(&ok); err != nil {
		t.Error(err)
	}
}
