package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"mixmaster"
)

// SchemaVersion is the layout version this package reads and writes. See
// the package documentation before changing it.
const SchemaVersion = 1

// DefaultTimeout is how long Open waits for the file lock when
// Options.Timeout is zero.
const DefaultTimeout = 3 * time.Second

// batchDelay is how long a CreateJob that found at least two others in
// flight waits for more to share its commit. bbolt's default of 10 ms
// would add that to every webhook of a burst; jobs that arrive while a
// commit is being fsynced gather for the next one anyway.
const batchDelay = time.Millisecond

// ErrLocked is returned by Open, wrapped with the path, when another
// process holds the database.
var ErrLocked = errors.New("database is locked by another process (is mixmaster already running?)")

// Bucket names; the tree is drawn in doc.go.
var (
	bucketMeta        = []byte("meta")
	bucketJobs        = []byte("jobs")
	bucketQueue       = []byte("queue")
	bucketStatuses    = []byte("statuses")
	bucketProjectJobs = []byte("project_jobs")
	bucketDeliveries  = []byte("deliveries")
	bucketKeys        = []byte("keys")
	bucketGroups      = []byte("groups")

	keySchemaVersion = []byte("schema_version")
)

// topBuckets are created by Open on a new file.
var topBuckets = [][]byte{
	bucketMeta, bucketJobs, bucketQueue, bucketStatuses,
	bucketProjectJobs, bucketDeliveries, bucketKeys, bucketGroups,
}

// migrations upgrade a file in place inside Open's transaction. The key is
// the version a migration upgrades from; it must leave the file at key+1.
var migrations = map[uint64]func(tx *bolt.Tx) error{}

// Options tunes Open. The zero value is ready to use.
type Options struct {
	// Timeout is how long Open waits for another process to release the
	// file lock; zero means DefaultTimeout. bbolt itself would wait forever.
	Timeout time.Duration
}

// DB is a job store in one bbolt file. It is safe for concurrent use.
type DB struct {
	// Now returns the current time. It defaults to time.Now; tests replace
	// it right after Open, before the DB is shared.
	Now func() time.Time

	path     string
	bolt     *bolt.DB
	notify   chan struct{}
	creating atomic.Int32 // CreateJob calls in flight
}

var _ mixmaster.JobStore = (*DB)(nil)

// Open opens or creates the store at path with mode 0600, creates missing
// buckets and checks the schema version, upgrading older files. If several
// Options are given the last one is used. Open returns an error wrapping
// ErrLocked when another process has the file open, an error wrapping
// ErrDamaged, one line saying how to restore a backup, when the file is
// not a sound database (an empty file included: a new one is created
// whole under another name first, so a crash never leaves one), and an
// error when the file was written by a newer schema.
func Open(path string, opts ...Options) (*DB, error) {
	var o Options
	if len(opts) > 0 {
		o = opts[len(opts)-1]
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err = create(path); err == nil {
			fi, err = os.Stat(path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if fi.Size() == 0 {
		return nil, damaged(path, "the file is empty")
	}
	if err := check(path, fi.Size(), o.Timeout); err != nil {
		return nil, err
	}
	var bdb *bolt.DB
	err = guard(path, func() error {
		// NoSync stays false: every commit must reach the disk before a
		// webhook is acknowledged.
		b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.Timeout})
		if err != nil {
			return openErr(path, err)
		}
		defer func() {
			if bdb == nil {
				b.Close() // initSchema failed or panicked
			}
		}()
		if err := b.Update(initSchema); err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		if err := consistent(path, b); err != nil {
			return err
		}
		bdb = b
		return nil
	})
	if err != nil {
		return nil, err
	}
	bdb.MaxBatchDelay = batchDelay
	return &DB{
		Now:    time.Now,
		path:   path,
		bolt:   bdb,
		notify: make(chan struct{}, 1),
	}, nil
}

// initSchema creates a new file's buckets or checks and upgrades an
// existing file's schema version.
func initSchema(tx *bolt.Tx) error {
	version := uint64(0)
	if meta := tx.Bucket(bucketMeta); meta != nil {
		if v := meta.Get(keySchemaVersion); v != nil {
			n, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				return fmt.Errorf("bad schema version %q", v)
			}
			version = n
		}
	}
	if version == 0 {
		// Refuse to write into some other program's bbolt file.
		foreign := false
		if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			if string(name) != string(bucketMeta) {
				foreign = true
			}
			return nil
		}); err != nil {
			return err
		}
		if foreign {
			return errors.New("not a mixmaster database: no schema version")
		}
		version = SchemaVersion
	}
	if version > SchemaVersion {
		return fmt.Errorf("schema version %d is newer than this mixmaster supports (%d): run a newer mixmaster or restore a backup", version, SchemaVersion)
	}
	for ; version < SchemaVersion; version++ {
		m := migrations[version]
		if m == nil {
			return fmt.Errorf("no migration from schema version %d", version)
		}
		if err := m(tx); err != nil {
			return fmt.Errorf("migrate schema version %d: %w", version, err)
		}
	}
	for _, name := range topBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	// One index bucket per status, so a status added to the domain later
	// gets its bucket without a migration.
	for _, s := range mixmaster.Statuses {
		if _, err := tx.Bucket(bucketStatuses).CreateBucketIfNotExists([]byte(s)); err != nil {
			return fmt.Errorf("create status bucket %s: %w", s, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	if string(meta.Get(keySchemaVersion)) == strconv.FormatUint(version, 10) {
		return nil
	}
	return meta.Put(keySchemaVersion, []byte(strconv.FormatUint(version, 10)))
}

// Close waits for running transactions and closes the file.
func (db *DB) Close() error {
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Path returns the file the store was opened from.
func (db *DB) Path() string { return db.path }

// Backup writes a consistent copy of the whole database to w while the
// store stays in use; writers are not blocked. It returns the bytes written.
func (db *DB) Backup(w io.Writer) (int64, error) {
	var n int64
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("store: backup: %w", err)
	}
	return n, nil
}

// now returns the current time in UTC without the monotonic reading, so a
// job returned from a write equals the same job read back.
func (db *DB) now() time.Time {
	now := time.Now
	if db.Now != nil {
		now = db.Now
	}
	return now().UTC().Round(0)
}

// wake tells a waiting runner that jobs were queued. The buffer of one
// means a burst of jobs costs one wake-up and the sender never blocks.
func (db *DB) wake() {
	select {
	case db.notify <- struct{}{}:
	default:
	}
}

// itob encodes an ID or sequence as a big-endian key.
func itob(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// btoi decodes a big-endian key; anything but 8 bytes gives 0.
func btoi(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// wrap adds the operation to internal errors and leaves user-facing
// errors alone, so that their message reaches the user unchanged.
func wrap(op string, err error) error {
	var e *mixmaster.Error
	if err == nil || errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("store: %s: %w", op, err)
}
