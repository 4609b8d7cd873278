package artifacts

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Defaults for the zero fields of Limits. They are far above what a build
// leaves behind, yet stop a broken or hostile stream from filling the disk.
const (
	DefaultMaxBytes = 16 << 30
	DefaultMaxFiles = 1_000_000
)

// copyBufSize is the chunk size of file data copies. io.Copy's 32 KiB
// buffer costs a syscall (and a pipe hand-over) per 32 KiB, which caps a
// download well below disk and loopback speed.
const copyBufSize = 1 << 20

// Limits caps what ExtractTar writes. A zero field means its default.
type Limits struct {
	// MaxBytes caps the summed size of the regular files.
	MaxBytes int64
	// MaxFiles caps the number of entries of every kind.
	MaxFiles int
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	return l
}

// WriteTar writes the tree under dir to w as a tar stream. Names are
// relative to dir with forward slashes (directories end in "/"). Symlinks
// are written as symlinks and never followed, modes and modification times
// are kept, and owners are left out: they mean nothing on the receiving
// machine. Sockets, devices and fifos are skipped. All reads go through an
// os.Root, so nothing outside dir is read even if the tree changes.
func WriteTar(w io.Writer, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	defer root.Close()
	bw := bufio.NewWriterSize(w, 256<<10)
	tw := tar.NewWriter(bw)
	buf := make([]byte, copyBufSize)
	err = fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h := &tar.Header{
			Name:    name,
			Mode:    tarMode(fi.Mode()),
			ModTime: fi.ModTime(),
			Format:  tar.FormatUnknown,
		}
		var f *os.File
		switch mode := fi.Mode(); {
		case mode.IsRegular():
			f, err = openRegular(root, name, fi)
			if errors.Is(err, errNotRegular) {
				return nil // replaced by a special file since the walk saw it
			}
			if err != nil {
				return err
			}
			defer f.Close()
			h.Typeflag = tar.TypeReg
			h.Size = fi.Size()
		case mode.IsDir():
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		case mode&fs.ModeSymlink != 0:
			h.Typeflag = tar.TypeSymlink
			if h.Linkname, err = root.Readlink(name); err != nil {
				return err
			}
		default:
			return nil
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if f == nil {
			return nil
		}
		return copyFileTo(tw, f, name, h.Size, buf)
	})
	if err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	return nil
}

// copyFileTo writes exactly size bytes of the file f to tw, the size the
// header already announced.
func copyFileTo(tw *tar.Writer, f *os.File, name string, size int64, buf []byte) error {
	// LimitReader also hides *os.File's WriteTo, which would ignore buf.
	n, err := io.CopyBuffer(tw, io.LimitReader(f, size), buf)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s shrank while being archived", name)
	}
	return nil
}

// errNotRegular is returned by openRegular for anything but the regular
// file expected.
var errNotRegular = errors.New("not a regular file")

// openRegular opens name for reading only if it is still the regular file
// that lfi, from an lstat, describes; callers lstat first so that no
// special file is ever opened. A FIFO swapped in meanwhile would block a
// plain open until some writer came, and a link would be followed:
// O_NONBLOCK and O_NOFOLLOW prevent both, a socket fails to open (ENXIO),
// and the fstat of what was opened must be the file lfi describes.
func openRegular(root *os.Root, name string, lfi fs.FileInfo) (*os.File, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, syscall.ENXIO) {
		return nil, fmt.Errorf("%s: %w", name, errNotRegular)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && (!fi.Mode().IsRegular() || !os.SameFile(fi, lfi)) {
		err = fmt.Errorf("%s: %w", name, errNotRegular)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// tarMode converts permission and special bits to the tar header's Unix
// mode.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// ExtractTar writes the tar stream r into the folder target, creating it
// if needed. Every write goes through an os.Root of target, so no entry
// can create or change anything outside it, whatever symlinks the stream
// or the target already hold. Besides that guarantee:
//   - absolute names and names with a ".." component are refused;
//   - a symlink is created only if its target, taken from the link's
//     folder, stays inside target; it may not hold ".." after a name,
//     because a symlink in between could turn that ".." anywhere;
//   - entries below a symlink are refused rather than written through it;
//   - hard links must name an entry inside target;
//   - devices and fifos are skipped;
//   - modes are kept without setuid, setgid and sticky bits, and
//     modification times are kept;
//   - an existing file, link or folder in the way of an entry is replaced;
//   - the entries and the bytes of regular files are counted against lim.
//
// On error, what was extracted so far stays in place.
func ExtractTar(r io.Reader, target string, lim Limits) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	root, err := os.OpenRoot(target)
	if err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	defer root.Close()
	x := &extractor{
		root:     root,
		lim:      lim.withDefaults(),
		known:    make(map[string]bool),
		explicit: make(map[string]dirMeta),
		buf:      make([]byte, copyBufSize),
	}
	tr := tar.NewReader(bufio.NewReaderSize(r, copyBufSize))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("extract: read tar: %w", err)
		}
		if err := x.entry(h, tr); err != nil {
			return fmt.Errorf("extract: %w", err)
		}
	}
	if err := x.finish(); err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	return nil
}

// dirMeta is what a folder entry asks for; it is applied after everything
// is written, because writing into a folder changes its time and a
// read-only mode would stop the writes.
type dirMeta struct {
	mode    fs.FileMode
	modTime time.Time
}

type extractor struct {
	root  *os.Root
	lim   Limits
	files int
	bytes int64
	// known caches folders checked or made to be real folders, to save a
	// stat per component for every entry. It is cleared whenever a folder
	// is removed.
	known    map[string]bool
	explicit map[string]dirMeta
	buf      []byte
}

func (x *extractor) entry(h *tar.Header, r io.Reader) error {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	x.files++
	if x.files > x.lim.MaxFiles {
		return fmt.Errorf("more than %d entries", x.lim.MaxFiles)
	}
	name, err := cleanName(h.Name)
	if err != nil {
		return err
	}
	mode := fs.FileMode(h.Mode & 0o777)
	if name == "." {
		// The target itself: its mode and time are the caller's, and
		// nothing else may take its place.
		if h.Typeflag == tar.TypeDir {
			return nil
		}
		return fmt.Errorf("%s: only a folder may have the target's name", h.Name)
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if err := x.mkdirs(name); err != nil {
			return err
		}
		x.explicit[name] = dirMeta{mode: mode, modTime: h.ModTime}
		return nil
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		return x.file(name, h, mode, r)
	case tar.TypeSymlink:
		return x.symlink(name, h.Linkname)
	case tar.TypeLink:
		return x.hardlink(name, h.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		// Not artifacts, and creating devices is no business of a client.
		return nil
	default:
		return fmt.Errorf("%s: unsupported entry type %q", name, h.Typeflag)
	}
}

// cleanName checks a name from the stream and returns it cleaned.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", errors.New("entry with an empty name")
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%s: absolute names are not allowed", name)
	}
	for part := range strings.SplitSeq(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("%s: names with '..' are not allowed", name)
		}
	}
	return path.Clean(name), nil
}

// mkdirs makes dir and its parents real folders, replacing files in the
// way. A symlink in the way is an error: writing through it could put the
// entry anywhere inside the target but where its name says.
func (x *extractor) mkdirs(dir string) error {
	if dir == "." || x.known[dir] {
		return nil
	}
	if err := x.mkdirs(path.Dir(dir)); err != nil {
		return err
	}
	fi, err := x.root.Lstat(dir)
	switch {
	case err == nil && fi.IsDir():
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symlink; refusing to write below it", dir)
	case err == nil:
		if err := x.root.Remove(dir); err != nil {
			return err
		}
		delete(x.explicit, dir)
		fallthrough
	case errors.Is(err, fs.ErrNotExist):
		if err := x.root.Mkdir(dir, 0o755); err != nil {
			return err
		}
	default:
		return err
	}
	x.known[dir] = true
	return nil
}

// remove clears name so that a new entry can take its place.
func (x *extractor) remove(name string) error {
	fi, err := x.root.Lstat(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	delete(x.explicit, name)
	if !fi.IsDir() {
		return x.root.Remove(name)
	}
	// Cached folders below it are gone; cheaper to forget them all than
	// to find them.
	clear(x.known)
	return x.root.RemoveAll(name)
}

// create runs mk, and if something already has the name, removes it and
// runs mk once more. Trying first saves a stat per entry in the usual case
// of an empty target.
func (x *extractor) create(name string, mk func() error) error {
	err := mk()
	if !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := x.remove(name); err != nil {
		return err
	}
	return mk()
}

func (x *extractor) file(name string, h *tar.Header, mode fs.FileMode, r io.Reader) error {
	if h.Size < 0 || h.Size > x.lim.MaxBytes-x.bytes {
		return fmt.Errorf("%s: more than %d bytes in all", name, x.lim.MaxBytes)
	}
	x.bytes += h.Size
	if err := x.mkdirs(path.Dir(name)); err != nil {
		return err
	}
	var f *os.File
	// O_EXCL: never write into whatever already has the name, such as a
	// hard link to a file elsewhere.
	err := x.create(name, func() (err error) {
		f, err = x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		return err
	})
	if err != nil {
		return err
	}
	// Wrapping f hides its ReadFrom, which would ignore the big buffer.
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, r, x.buf)
	if err == nil && n != h.Size {
		err = fmt.Errorf("%s: %d bytes short", name, h.Size-n)
	}
	if err == nil {
		// Chmod on the open file: the mode is exact (no umask) and goes to
		// the file written, whatever happens to the name meanwhile.
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if !h.ModTime.IsZero() {
		return x.root.Chtimes(name, time.Time{}, h.ModTime)
	}
	return nil
}

func (x *extractor) symlink(name, target string) error {
	if err := checkLinkTarget(name, target); err != nil {
		return err
	}
	if err := x.mkdirs(path.Dir(name)); err != nil {
		return err
	}
	return x.create(name, func() error { return x.root.Symlink(target, name) })
}

// checkLinkTarget reports whether the symlink name → target stays inside
// the extraction folder, judged by the names alone. Entries are never
// written below a symlink (see mkdirs), so the link's folder is a real one
// at the depth its name says. Leading ".." components climb real folders;
// a ".." after a name could climb out of a symlinked folder, so it is
// refused outright.
func checkLinkTarget(name, target string) error {
	if target == "" {
		return fmt.Errorf("symlink %q has an empty target", name)
	}
	if strings.HasPrefix(target, "/") {
		return fmt.Errorf("symlink %q points outside the target (-> %q)", name, target)
	}
	depth := strings.Count(name, "/") // components of the link's folder
	up, named := 0, false
	for part := range strings.SplitSeq(target, "/") {
		switch part {
		case "", ".":
		case "..":
			if named {
				return fmt.Errorf("symlink %q -> %q: '..' after a name is not allowed", name, target)
			}
			up++
		default:
			named = true
		}
	}
	if up > depth {
		return fmt.Errorf("symlink %q points outside the target (-> %q)", name, target)
	}
	return nil
}

func (x *extractor) hardlink(name, old string) error {
	old, err := cleanName(old)
	if err != nil {
		return fmt.Errorf("hard link %q: %w", name, err)
	}
	if old == "." {
		return fmt.Errorf("hard link %q to the target folder", name)
	}
	if err := x.mkdirs(path.Dir(name)); err != nil {
		return err
	}
	return x.create(name, func() error { return x.root.Link(old, name) })
}

// finish gives folders their modes and times, deepest first: a folder
// made read-only or unsearchable must not block its children.
func (x *extractor) finish() error {
	names := make([]string, 0, len(x.explicit))
	for name := range x.explicit {
		names = append(names, name)
	}
	// A child sorts after its parent, so reversed order is deepest first.
	slices.Sort(names)
	slices.Reverse(names)
	for _, name := range names {
		fi, err := x.root.Lstat(name)
		if err != nil || !fi.IsDir() {
			// Replaced or removed by a later entry.
			continue
		}
		m := x.explicit[name]
		if err := x.root.Chmod(name, m.mode); err != nil {
			return err
		}
		if !m.modTime.IsZero() {
			if err := x.root.Chtimes(name, time.Time{}, m.modTime); err != nil {
				return err
			}
		}
	}
	return nil
}
