package artifacts

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// ent is one entry of a hand-made tar stream.
type ent struct {
	name string
	typ  byte
	body string
	link string
	mode int64
}

func file(name, body string) ent {
	return ent{name: name, typ: tar.TypeReg, body: body, mode: 0o644}
}

func dir(name string) ent {
	return ent{name: name, typ: tar.TypeDir, mode: 0o755}
}

func symlink(name, link string) ent {
	return ent{name: name, typ: tar.TypeSymlink, link: link, mode: 0o777}
}

func hardlink(name, link string) ent {
	return ent{name: name, typ: tar.TypeLink, link: link, mode: 0o644}
}

func mkTar(tb testing.TB, ents ...ent) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode,
			Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0)}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			tb.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// tree describes every entry below dir: kind, mode and content or link
// target, so that two trees compare with one ==.
func tree(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	out := make(map[string]string)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link -> " + l
		case fi.IsDir():
			out[rel] = fmt.Sprintf("dir %v %d", fi.Mode(), fi.ModTime().Unix())
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file %v %d %q", fi.Mode(), fi.ModTime().Unix(), b)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func diffTrees(tb testing.TB, got, want map[string]string) {
	tb.Helper()
	keys := make([]string, 0, len(got)+len(want))
	for k := range got {
		keys = append(keys, k)
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if got[k] != want[k] {
			tb.Errorf("%s: got %q, want %q", k, got[k], want[k])
		}
	}
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// sandbox makes parent/target plus a file outside it, and returns a check
// that nothing but target changed.
func sandbox(t *testing.T) (target string, unchanged func()) {
	t.Helper()
	parent := t.TempDir()
	target = filepath.Join(parent, "target")
	must(t, os.MkdirAll(filepath.Join(parent, "outside"), 0o755))
	must(t, os.WriteFile(filepath.Join(parent, "outside", "keep"), []byte("keep"), 0o644))
	// Let a test cleanup remove what an archive made unwritable.
	t.Cleanup(func() { unlock(target) })
	before := tree(t, filepath.Join(parent, "outside"))
	return target, func() {
		t.Helper()
		entries, err := os.ReadDir(parent)
		must(t, err)
		for _, e := range entries {
			if e.Name() != "target" && e.Name() != "outside" {
				t.Errorf("written outside the target: %s", e.Name())
			}
		}
		diffTrees(t, tree(t, filepath.Join(parent, "outside")), before)
	}
}

func unlock(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
}

func TestTarRoundTrip(t *testing.T) {
	src := t.TempDir()
	mtime := time.Unix(1600000000, 0)
	writeFile := func(name, body string, mode fs.FileMode) {
		p := filepath.Join(src, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(body), 0o600))
		must(t, os.Chmod(p, mode))
		must(t, os.Chtimes(p, mtime, mtime))
	}
	writeFile("top.txt", "top", 0o644)
	writeFile("run.sh", "#!/bin/sh\n", 0o755)
	writeFile("secret", "s", 0o600)
	writeFile("a/b/c/deep.txt", strings.Repeat("deep", 100000), 0o640)
	writeFile("setuid", "x", 0o755|fs.ModeSetuid)
	must(t, os.MkdirAll(filepath.Join(src, "empty"), 0o700))
	must(t, os.Symlink("b/c/deep.txt", filepath.Join(src, "a", "link")))
	must(t, os.Symlink("a", filepath.Join(src, "dirlink")))
	must(t, os.Symlink("../top.txt", filepath.Join(src, "a", "up")))
	writeFile("ro/inside.txt", "in", 0o444)
	must(t, os.Chmod(filepath.Join(src, "ro"), 0o555))
	for _, d := range []string{"a/b/c", "a/b", "a", "empty", "ro"} {
		must(t, os.Chtimes(filepath.Join(src, d), mtime, mtime))
	}
	t.Cleanup(func() { unlock(src) })

	var buf bytes.Buffer
	must(t, WriteTar(&buf, src))
	target, unchanged := sandbox(t)
	must(t, ExtractTar(bytes.NewReader(buf.Bytes()), target, Limits{}))
	unchanged()

	want := tree(t, src)
	// Extraction drops setuid, setgid and sticky bits.
	want["setuid"] = strings.Replace(want["setuid"], "urwx", "-rwx", 1)
	diffTrees(t, tree(t, target), want)

	// A second extraction over the first replaces everything in place,
	// read-only files and folders included.
	must(t, ExtractTar(bytes.NewReader(buf.Bytes()), target, Limits{}))
	diffTrees(t, tree(t, target), want)
}

func TestTarNamesAreRelative(t *testing.T) {
	src := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(src, "d", "e"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "d", "e", "f"), nil, 0o644))
	must(t, os.Symlink("/etc/passwd", filepath.Join(src, "abs")))
	var buf bytes.Buffer
	must(t, WriteTar(&buf, src))
	tr := tar.NewReader(&buf)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		names = append(names, h.Name)
		if h.Uname != "" || h.Uid != 0 {
			t.Errorf("%s: owner %q/%d leaked", h.Name, h.Uname, h.Uid)
		}
	}
	want := []string{"abs", "d/", "d/e/", "d/e/f"}
	if !slices.Equal(names, want) {
		t.Errorf("names %q, want %q", names, want)
	}
}

func TestTarWriteMissingDir(t *testing.T) {
	if err := WriteTar(io.Discard, filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("no error for a missing folder")
	}
}

func TestExtractTarRejectsTraversal(t *testing.T) {
	for _, name := range []string{"../x", "/ABS/x", "a/../../x", "a/..", "..", "./../x", "a/b/../../../x"} {
		t.Run(name, func(t *testing.T) {
			target, unchanged := sandbox(t)
			parent := filepath.Dir(target)
			name := strings.ReplaceAll(name, "/ABS", parent)
			for _, e := range []ent{file(name, "pwned"), dir(name), hardlink("h", name)} {
				err := ExtractTar(bytes.NewReader(mkTar(t, e)), target, Limits{})
				if err == nil {
					t.Fatalf("%c %s: no error", e.typ, name)
				}
				if !strings.Contains(err.Error(), "not allowed") {
					t.Errorf("%c %s: unclear error: %v", e.typ, name, err)
				}
				unchanged()
			}
		})
	}
}

func TestExtractTarSymlinks(t *testing.T) {
	for _, c := range []struct {
		name, link string
		err        string // "" means allowed
	}{
		{"l", "../../etc/passwd", "points outside the target"},
		{"l", "/etc/passwd", "points outside the target"},
		{"l", "..", "points outside the target"},
		{"a/l", "../../x", "points outside the target"},
		{"a/b/l", "../../../x", "points outside the target"},
		{"a/l", "b/../../..", "'..' after a name"},
		{"l", "", "empty target"},
		{"a/l", "../x", ""},
		{"a/b/l", "../../x/y", ""},
		{"l", ".", ""},
		{"l", "./a/./x", ""},
	} {
		t.Run(c.name+"->"+c.link, func(t *testing.T) {
			target, unchanged := sandbox(t)
			err := ExtractTar(bytes.NewReader(mkTar(t, symlink(c.name, c.link))), target, Limits{})
			unchanged()
			if c.err == "" {
				must(t, err)
				got, err := os.Readlink(filepath.Join(target, c.name))
				must(t, err)
				if got != c.link {
					t.Errorf("link is %q, want %q", got, c.link)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("error %v, want one with %q", err, c.err)
			}
			if _, err := os.Lstat(filepath.Join(target, c.name)); err == nil {
				t.Error("the symlink was created")
			}
		})
	}
}

// A link to a folder followed by an entry below the link must not put the
// entry where the link points, whether the link came in the stream or was
// in the target before.
func TestExtractTarThroughSymlink(t *testing.T) {
	t.Run("outside in stream", func(t *testing.T) {
		target, unchanged := sandbox(t)
		outside := filepath.Join(filepath.Dir(target), "outside")
		for _, link := range []string{outside, "../outside"} {
			err := ExtractTar(bytes.NewReader(mkTar(t,
				symlink("link", link), file("link/file", "pwned"))), target, Limits{})
			if err == nil || !strings.Contains(err.Error(), "points outside the target") {
				t.Errorf("%s: error %v", link, err)
			}
			unchanged()
		}
	})
	t.Run("outside already in target", func(t *testing.T) {
		target, unchanged := sandbox(t)
		must(t, os.MkdirAll(target, 0o755))
		must(t, os.Symlink("../outside", filepath.Join(target, "link")))
		for _, e := range []ent{file("link/file", "pwned"), dir("link/sub"), symlink("link/l", "x"), hardlink("link/h", "x")} {
			err := ExtractTar(bytes.NewReader(mkTar(t, e)), target, Limits{})
			if err == nil || !strings.Contains(err.Error(), "symlink") {
				t.Errorf("%s: error %v", e.name, err)
			}
			unchanged()
		}
		// Overwriting the link itself replaces the link, not its target.
		must(t, ExtractTar(bytes.NewReader(mkTar(t, file("link", "mine"))), target, Limits{}))
		unchanged()
		if b, _ := os.ReadFile(filepath.Join(target, "link")); string(b) != "mine" {
			t.Errorf("link: %q", b)
		}
	})
	t.Run("inside", func(t *testing.T) {
		target, unchanged := sandbox(t)
		err := ExtractTar(bytes.NewReader(mkTar(t,
			dir("d"), symlink("link", "d"), file("link/file", "x"))), target, Limits{})
		if err == nil || !strings.Contains(err.Error(), "link is a symlink") {
			t.Errorf("error %v", err)
		}
		unchanged()
	})
	t.Run("hard link to outside file", func(t *testing.T) {
		target, unchanged := sandbox(t)
		must(t, os.MkdirAll(target, 0o755))
		must(t, os.Symlink("../outside", filepath.Join(target, "link")))
		err := ExtractTar(bytes.NewReader(mkTar(t, hardlink("h", "link/keep"))), target, Limits{})
		if err == nil {
			t.Error("hard link through a symlink to outside was made")
		}
		unchanged()
	})
}

func TestExtractTarEntryKinds(t *testing.T) {
	target, unchanged := sandbox(t)
	must(t, ExtractTar(bytes.NewReader(mkTar(t,
		ent{name: "fifo", typ: tar.TypeFifo, mode: 0o644},
		ent{name: "dev", typ: tar.TypeChar, mode: 0o644},
		file("a", "shared"),
		hardlink("b", "a"),
		file("implicit/parent/f", "x"),
	)), target, Limits{}))
	unchanged()
	for _, name := range []string{"fifo", "dev"} {
		if _, err := os.Lstat(filepath.Join(target, name)); err == nil {
			t.Errorf("%s was created", name)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(target, "b")); string(b) != "shared" {
		t.Errorf("hard link b: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "implicit/parent/f")); string(b) != "x" {
		t.Errorf("implicit/parent/f: %q", b)
	}
	err := ExtractTar(bytes.NewReader(mkTar(t, file(".", "x"))), target, Limits{})
	if err == nil {
		t.Error("a file named . was accepted")
	}
}

func TestExtractTarReplacesExisting(t *testing.T) {
	target, unchanged := sandbox(t)
	must(t, os.MkdirAll(filepath.Join(target, "wasdir", "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(target, "wasdir", "sub", "f"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(target, "wasfile"), []byte("old"), 0o644))
	must(t, os.WriteFile(filepath.Join(target, "readonly"), []byte("old"), 0o444))
	must(t, os.Symlink("readonly", filepath.Join(target, "waslink")))
	must(t, os.WriteFile(filepath.Join(target, "untouched"), []byte("u"), 0o644))
	must(t, ExtractTar(bytes.NewReader(mkTar(t,
		file("wasdir", "now a file"),
		file("wasfile/inner", "now a folder"),
		file("readonly", "new"),
		file("waslink", "now a file"),
	)), target, Limits{}))
	unchanged()
	for name, want := range map[string]string{
		"wasdir": "now a file", "wasfile/inner": "now a folder", "readonly": "new",
		"waslink": "now a file", "untouched": "u",
	} {
		b, err := os.ReadFile(filepath.Join(target, name))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", name, b, err, want)
		}
	}
	if fi, err := os.Lstat(filepath.Join(target, "waslink")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("waslink is still a link: %v", err)
	}
}

func TestExtractTarLimits(t *testing.T) {
	stream := mkTar(t, file("a", "123456"), file("b", "123456"), file("c", ""))
	for _, c := range []struct {
		lim Limits
		err string
	}{
		{Limits{MaxFiles: 2}, "more than 2 entries"},
		{Limits{MaxBytes: 10}, "more than 10 bytes"},
		{Limits{MaxFiles: 3, MaxBytes: 12}, ""},
	} {
		target, unchanged := sandbox(t)
		err := ExtractTar(bytes.NewReader(stream), target, c.lim)
		unchanged()
		if c.err == "" {
			must(t, err)
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%+v: error %v, want %q", c.lim, err, c.err)
		}
	}
}

func TestExtractTarTruncated(t *testing.T) {
	stream := mkTar(t, file("a", strings.Repeat("x", 4096)))
	target, _ := sandbox(t)
	if err := ExtractTar(bytes.NewReader(stream[:1024]), target, Limits{}); err == nil {
		t.Error("no error for a cut stream")
	}
}

func FuzzExtractTar(f *testing.F) {
	for _, seed := range [][]ent{
		{file("a", "x"), dir("d"), file("d/e/f", "y"), symlink("d/l", "../a"), hardlink("h", "a")},
		{file("../x", "x")},
		{file("/abs", "x")},
		{symlink("l", "../../etc/passwd"), file("l/f", "x")},
		{dir("d"), symlink("d/l", ".."), file("d/l/f", "x")},
		{symlink("l", "."), file("l/l/f", "x")},
		{file("a", "x"), dir("a"), file("a", "y"), dir("a/b")},
		{{name: "ro", typ: tar.TypeDir, mode: 0}, file("ro/f", "x")},
		{hardlink("h", "../outside/keep")},
	} {
		f.Add(mkTar(f, seed...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		target, unchanged := sandbox(t)
		ExtractTar(bytes.NewReader(data), target, Limits{MaxBytes: 1 << 20, MaxFiles: 100})
		unchanged()
	})
}

// BenchmarkTarRoundTrip streams 256 MiB in four files from WriteTar to
// ExtractTar through a pipe, as a download does.
func BenchmarkTarRoundTrip(b *testing.B) {
	src := b.TempDir()
	chunk := make([]byte, 64<<20)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	var total int64
	for i := range 4 {
		must(b, os.WriteFile(filepath.Join(src, fmt.Sprintf("f%d", i)), chunk, 0o644))
		total += int64(len(chunk))
	}
	dst := b.TempDir()
	b.SetBytes(total)
	b.ResetTimer()
	for i := range b.N {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(WriteTar(pw, src)) }()
		target := filepath.Join(dst, fmt.Sprint(i))
		if err := ExtractTar(pr, target, Limits{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		must(b, os.RemoveAll(target))
		b.StartTimer()
	}
}
