package artifacts

import (
	"archive/tar"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"mixmaster"
)

// specialFiles puts a FIFO, a listening unix socket and, as root, a
// character device (the null device's numbers) into dir, and returns their
// names. Opening the FIFO for reading would block until a writer came.
func specialFiles(t *testing.T, dir string) []string {
	t.Helper()
	names := []string{"fifo", "sock"}
	must(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	must(t, err)
	t.Cleanup(func() { l.Close() })
	if os.Geteuid() == 0 {
		must(t, syscall.Mknod(filepath.Join(dir, "null"), syscall.S_IFCHR|0o666, 1<<8|3))
		names = append(names, "null")
	}
	return names
}

// within runs fn and fails the test if it has not returned by a generous
// deadline: what it must not do is block forever on a special file.
func within(t *testing.T, what string, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("%s is still blocked", what)
		return nil
	}
}

func TestTarSkipsSpecialFiles(t *testing.T) {
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "a.txt"), []byte("alpha"), 0o644))
	must(t, os.Mkdir(filepath.Join(src, "sub"), 0o755))
	specials := specialFiles(t, filepath.Join(src, "sub"))

	r, w := io.Pipe()
	go func() { w.CloseWithError(WriteTar(w, src)) }()
	var names []string
	err := within(t, "reading the tar stream", func() error {
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			names = append(names, h.Name)
		}
	})
	if err != nil {
		t.Fatalf("tar stream with %q in it: %v", specials, err)
	}
	if want := []string{"a.txt", "sub/"}; !slices.Equal(names, want) {
		t.Errorf("entries %q, want %q (no special files)", names, want)
	}
}

// A file that was regular when the walk saw it but is a FIFO, a socket or
// a link by the time it is opened is refused without blocking.
func TestOpenRegularRefusesReplacedFile(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "other.txt"), []byte("other"), 0o644))
	root, err := os.OpenRoot(dir)
	must(t, err)
	defer root.Close()

	replace := map[string]func(path string) error{
		"fifo": func(path string) error { return syscall.Mkfifo(path, 0o644) },
		"socket": func(path string) error {
			l, err := net.Listen("unix", path)
			if err == nil {
				t.Cleanup(func() { l.Close() })
			}
			return err
		},
		"link": func(path string) error { return os.Symlink("other.txt", path) },
	}
	for kind, mk := range replace {
		t.Run(kind, func(t *testing.T) {
			path := filepath.Join(dir, kind)
			must(t, os.WriteFile(path, []byte("regular"), 0o644))
			lfi, err := root.Lstat(kind)
			must(t, err)
			must(t, os.Remove(path))
			must(t, mk(path))
			err = within(t, "opening the replaced file", func() error {
				f, err := openRegular(root, kind, lfi)
				if err == nil {
					f.Close()
				}
				return err
			})
			if !errors.Is(err, errNotRegular) {
				t.Errorf("open after replacing with a %s: %v, want %v", kind, err, errNotRegular)
			}
		})
	}

	lfi, err := root.Lstat("other.txt")
	must(t, err)
	f, err := openRegular(root, "other.txt", lfi)
	must(t, err)
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil || string(b) != "other" {
		t.Errorf("regular file read %q, %v", b, err)
	}
}

// A FIFO or a link in the place of a job's log is refused, not waited on
// or followed.
func TestOpenLogRefusesSpecialFile(t *testing.T) {
	f := newFiles(t)
	must(t, os.MkdirAll(f.JobDir(1), 0o755))
	must(t, syscall.Mkfifo(f.LogPath(1), 0o644))
	must(t, os.MkdirAll(f.JobDir(2), 0o755))
	must(t, os.WriteFile(filepath.Join(f.Root, "elsewhere"), []byte("not a log"), 0o644))
	must(t, os.Symlink(filepath.Join(f.Root, "elsewhere"), f.LogPath(2)))
	for _, id := range []mixmaster.JobID{1, 2} {
		err := within(t, "opening the log", func() error {
			r, err := f.Open(id)
			if err == nil {
				r.Close()
			}
			return err
		})
		if err == nil {
			t.Errorf("job %d: the log opened", id)
		}
	}
}
