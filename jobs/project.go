package jobs

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"

	"mixmaster"
)

// Folder is a cached-artifact project: a folder under the projects path
// holding a Dockerfile (built and run in Docker) or, without one, an
// executable build script (run by the shell executor).
type Folder struct {
	Name   string
	Dir    string
	Docker bool // a Dockerfile is present
}

// reserved are the build root's own directories, which artifact projects
// live beside and so may not be named after.
var reserved = []string{"checkouts", "mirrors", "jobs", "cache", "projects", "repos", "tmp"}

// Folders finds artifact projects in a directory and fingerprints their
// contents. The content hash is kept per project and recomputed only when
// a walk of the folder's metadata (names, types, sizes, modes, times,
// inodes) differs from the last one, so a repeat request reads no file.
type Folders struct {
	Dir string
	// Logger reports a projects folder that cannot be read where Names
	// has no error to return; nil means slog.Default().
	Logger *slog.Logger

	mu    sync.Mutex
	cache map[string]folderHash
}

type folderHash struct {
	stat    string // fingerprint of the metadata
	content string // hash of the content
}

// Folder returns the project named name. Names are one path segment of a
// safe character set; anything else is rejected before touching the disk.
func (f *Folders) Folder(name string) (*Folder, error) {
	if !mixmaster.ValidName(name) || slices.Contains(reserved, name) {
		if name == "" {
			return nil, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "no project given")
		}
		return nil, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "Unknown project %s", quote(name))
	}
	dir := filepath.Join(f.Dir, name)
	fi, err := os.Stat(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, unreadable(err)
	}
	if err != nil || !fi.IsDir() {
		return nil, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "Unknown project %s", quote(name))
	}
	if fi, err := os.Stat(filepath.Join(dir, "Dockerfile")); err == nil && fi.Mode().IsRegular() {
		return &Folder{Name: name, Dir: dir, Docker: true}, nil
	}
	if fi, err := os.Stat(filepath.Join(dir, "build")); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return &Folder{Name: name, Dir: dir}, nil
	}
	return nil, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "project %s has neither a Dockerfile nor an executable build script", quote(name))
}

// unreadable is the error for a projects folder the service may not read:
// the caller is told that projects are unavailable, the log says why.
func unreadable(err error) error {
	return fmt.Errorf("%w: %v", mixmaster.Errorf(mixmaster.EUNAVAILABLE, "the projects folder cannot be read; the service log says why"), err)
}

// List returns the projects in the directory, sorted. A missing directory
// holds no projects; one that cannot be read is an error, never taken for
// an empty one.
func (f *Folders) List() ([]string, error) {
	entries, err := os.ReadDir(f.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, unreadable(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			if _, err := f.Folder(e.Name()); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	return names, nil
}

// Names is List for listings that show what they can: a folder that
// cannot be read lists nothing, and is logged.
func (f *Folders) Names() []string {
	names, err := f.List()
	if err != nil {
		logger := f.Logger
		if logger == nil {
			logger = slog.Default()
		}
		logger.Error("list artifact projects", "dir", f.Dir, "err", err)
	}
	return names
}

// ContentHash returns the hash of a project folder's content: paths, file
// types, permission bits, file bytes and symlink targets, but not times or
// owners, so a checkout or a copy of the same files hashes the same.
func (f *Folders) ContentHash(p *Folder) (string, error) {
	stat, err := statFingerprint(p.Dir)
	if err != nil {
		return "", fmt.Errorf("scan project %s: %w", p.Name, err)
	}
	f.mu.Lock()
	cached, ok := f.cache[p.Name]
	f.mu.Unlock()
	if ok && cached.stat == stat {
		return cached.content, nil
	}
	content, err := contentHash(p.Dir)
	if err != nil {
		return "", fmt.Errorf("hash project %s: %w", p.Name, err)
	}
	// Only trust the hash if nothing changed while it was computed.
	if again, err := statFingerprint(p.Dir); err != nil || again != stat {
		return content, nil
	}
	f.mu.Lock()
	if f.cache == nil {
		f.cache = make(map[string]folderHash)
	}
	f.cache[p.Name] = folderHash{stat: stat, content: content}
	f.mu.Unlock()
	return content, nil
}

// statFingerprint hashes what a change to any file would alter without
// reading contents. The change time catches edits that keep size and
// modification time.
func statFingerprint(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		writeField(h, rel)
		var ino, ctime uint64
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino, ctime = st.Ino, uint64(st.Ctim.Nano())
		}
		var b [40]byte
		binary.BigEndian.PutUint64(b[0:], uint64(fi.Mode()))
		binary.BigEndian.PutUint64(b[8:], uint64(fi.Size()))
		binary.BigEndian.PutUint64(b[16:], uint64(fi.ModTime().UnixNano()))
		binary.BigEndian.PutUint64(b[24:], ino)
		binary.BigEndian.PutUint64(b[32:], ctime)
		h.Write(b[:])
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

// contentHash hashes the folder's content in an unambiguous encoding: every
// field is length-prefixed, entries come in WalkDir's lexical order.
func contentHash(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		mode := fi.Mode()
		switch {
		case mode.IsDir():
			writeField(h, "d", rel, fmt.Sprintf("%o", mode.Perm()))
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			writeField(h, "l", rel, target)
		case mode.IsRegular():
			writeField(h, "f", rel, fmt.Sprintf("%o", mode.Perm()), fmt.Sprint(fi.Size()))
			file, err := os.Open(path)
			if err != nil {
				return err
			}
			_, err = io.Copy(h, file)
			file.Close()
			if err != nil {
				return err
			}
		default:
			writeField(h, "o", rel, mode.Type().String())
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

// writeField writes each string with its length in front, so no two
// different sequences of fields can produce the same bytes.
func writeField(h hash.Hash, fields ...string) {
	for _, s := range fields {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		io.WriteString(h, s)
	}
}

// JobKey is the identity of an artifact build's result: builds with equal
// keys produce equal artifacts. It is the sha256 of a canonical JSON
// encoding of the project, the group, the params that do not start with
// "_" (opaque params are context, not input), and the folder's content.
func JobKey(project, group string, params map[string]string, content string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		if !strings.HasPrefix(k, "_") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	pairs := make([][2]string, len(keys))
	for i, k := range keys {
		pairs[i] = [2]string{k, params[k]}
	}
	b, _ := json.Marshal(struct {
		V       int         `json:"v"`
		Project string      `json:"project"`
		Group   string      `json:"group"`
		Params  [][2]string `json:"params"`
		Content string      `json:"content"`
	}{1, project, group, pairs, content})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// paramRE matches param keys that can name a file in params/: one path
// segment, no leading "-" or ".". A leading "_" marks an opaque param.
var paramRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// ValidateArtifactRequest checks every name in r that becomes a path.
func ValidateArtifactRequest(r *mixmaster.ArtifactRequest) error {
	if r.Group != "" && !mixmaster.ValidName(r.Group) {
		return mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "group %s is not a valid name (letters, digits, '.', '_', '-'; one path segment)", quote(r.Group))
	}
	for k := range r.Params {
		if !paramRE.MatchString(k) {
			return mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "param %s is not a valid name (letters, digits, '.', '_', '-'; one path segment)", quote(k))
		}
	}
	return nil
}
