package store

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrDamaged is wrapped by Open's error when the file is not a sound bbolt
// file: cut short, overwritten, or not a database at all.
var ErrDamaged = errors.New("database is damaged")

// damagedError names the file and says how to restore it, on one line,
// since it is what the service prints when it refuses to start.
type damagedError struct {
	path, reason string
	copy         bool // a backup being checked: no advice to restore it
}

func (e *damagedError) Error() string {
	if e.copy {
		return fmt.Sprintf("%s is damaged (%s)", e.path, e.reason)
	}
	return fmt.Sprintf("%s is damaged (%s); restore it from a backup: stop the service and its socket, "+
		"copy a file made by \"mixmaster backup\" to %s, and start the socket again", e.path, e.reason, e.path)
}

func (e *damagedError) Is(target error) bool { return target == ErrDamaged }

// maxReason bounds the reason quoted from bbolt, which can describe a
// corrupt page at length.
const maxReason = 200

func damaged(path, reason string) error {
	reason = strings.Join(strings.Fields(reason), " ")
	if len(reason) > maxReason {
		reason = reason[:maxReason] + "…"
	}
	return &damagedError{path: path, reason: reason}
}

// openErr wraps an error of bolt.Open. Failing to open, lock or map the
// file says nothing about its contents; anything else bbolt refuses (bad
// header pages, a file too small for them) is damage.
func openErr(path string, err error) error {
	var pe *fs.PathError
	var errno syscall.Errno
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("open %s: %w", path, ErrLocked)
	case errors.As(err, &pe), errors.As(err, &errno):
		return fmt.Errorf("open %s: %w", path, err)
	case errors.Is(err, berrors.ErrInvalid):
		return damaged(path, "it is not a database file, or both of its header pages are overwritten")
	case errors.Is(err, berrors.ErrChecksum):
		return damaged(path, "both of its header pages fail their checksum")
	case errors.Is(err, berrors.ErrVersionMismatch):
		return damaged(path, "its header pages name an unknown format version")
	}
	return damaged(path, err.Error())
}

// guard runs fn, turning a panic in bbolt, or a fault reading a page the
// file does not hold, into a damage error. bbolt reads pages through a
// memory map and trusts what it finds there: a damaged file can make it
// panic, or touch memory past the end of the file, which without
// SetPanicOnFault would kill the process.
func guard(path string, fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = damaged(path, fmt.Sprint("a page cannot be read: ", p))
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return fn()
}

// check reads every bucket, key and value of the file, read-only, before
// it is opened for writing, and makes sure the file holds all the pages
// its header counts. The cost is one pass over the file at start, about
// 70 ms for 100 000 jobs.
func check(path string, size int64, timeout time.Duration) error {
	return guard(path, func() error {
		bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: timeout})
		if err != nil {
			return openErr(path, err)
		}
		defer bdb.Close()
		return bdb.View(func(tx *bolt.Tx) error { return readable(path, tx, size) })
	})
}

// readable makes sure the file holds every page tx counts and reads them.
func readable(path string, tx *bolt.Tx, size int64) error {
	if tx.Size() > size {
		return damaged(path, fmt.Sprintf("it was cut short: %d bytes of %d", size, tx.Size()))
	}
	if err := readAll(tx.Cursor()); err != nil {
		return damaged(path, err.Error())
	}
	return nil
}

// Verify checks, read-only, that the file at path is a whole mixmaster
// database, with the checks Open makes: every page there and readable,
// bbolt's consistency check clean, the store's own bucket present. It is
// how a backup copy is checked before it takes the place of an older one.
func Verify(path string) (err error) {
	defer func() {
		if de := (*damagedError)(nil); errors.As(err, &de) {
			de.copy = true
		}
	}()
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return damaged(path, "the file is empty")
	}
	return guard(path, func() error {
		bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: DefaultTimeout})
		if err != nil {
			return openErr(path, err)
		}
		defer bdb.Close()
		if err := bdb.View(func(tx *bolt.Tx) error {
			if err := readable(path, tx, fi.Size()); err != nil {
				return err
			}
			if tx.Bucket(bucketMeta) == nil {
				return fmt.Errorf("%s is not a mixmaster database", path)
			}
			return nil
		}); err != nil {
			return err
		}
		return consistent(path, bdb)
	})
}

// consistent runs bbolt's own consistency check, which finds pages lost,
// used twice or out of order. It runs after the first write: bbolt keeps
// two header pages so that a torn write of one is survived, and that
// write replaces the damaged one, which the check would refuse. Every page
// it reads was read by check already, so none can fault in the goroutine
// of the check, beyond the reach of guard.
func consistent(path string, bdb *bolt.DB) error {
	return bdb.View(func(tx *bolt.Tx) error {
		var first error
		for err := range tx.Check() {
			if first == nil {
				first = err
			}
		}
		if first != nil {
			return damaged(path, first.Error())
		}
		return nil
	})
}

// readAll reads every key and value below c, descending into nested
// buckets, so that a page bbolt cannot read faults here, under guard,
// rather than later. The checksum makes sure the bytes are read.
func readAll(c *bolt.Cursor) error {
	var sum uint32
	for k, v := c.First(); k != nil; k, v = c.Next() {
		sum = crc32.Update(sum, crc32.IEEETable, k)
		if v != nil {
			sum = crc32.Update(sum, crc32.IEEETable, v)
			continue
		}
		b := c.Bucket().Bucket(k)
		if b == nil {
			return fmt.Errorf("bucket %q cannot be read", k)
		}
		if err := readAll(b.Cursor()); err != nil {
			return err
		}
	}
	_ = sum
	return nil
}

// create makes a new store file at path in full before it takes the name,
// so that a crash while creating it never leaves an empty or partial file
// there; Open can then treat any such file as damage. A link, unlike a
// rename, fails if another process created the file meanwhile.
func create(path string) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".new-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name)
	if err := tmp.Close(); err != nil {
		return err
	}
	bdb, err := bolt.Open(name, 0o600, nil)
	if err != nil {
		return err
	}
	err = bdb.Update(initSchema)
	if cerr := bdb.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(name, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(dir)
}

// syncDir makes the new name durable: a job acknowledged after Open must
// not vanish with the folder entry of the file holding it.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
