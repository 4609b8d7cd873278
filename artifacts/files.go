package artifacts

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"mixmaster"
)

// DefaultLogLimit is the log size used when Files.LogLimit is not set.
// Beyond it, command output is dropped so that one chatty build cannot
// fill the disk.
const DefaultLogLimit = 32 << 20

// MaxLine is the longest text one log line carries. Longer output lines are
// split into pieces of at most this size, so a command printing megabytes
// without a newline costs bounded memory here and in every reader.
const MaxLine = 64 << 10

// Permissions of what Files creates. Logs can hold secrets a build printed,
// so they are not world-readable.
const (
	dirPerm  fs.FileMode = 0o750
	filePerm fs.FileMode = 0o640
)

// Files stores job logs and artifacts as plain files under Root. Set the
// fields before first use; it is safe for concurrent use afterwards.
type Files struct {
	// Root is the build root; everything lives below Root/jobs.
	Root string
	// LogLimit caps the bytes of a job log; zero or less means
	// DefaultLogLimit. Status and command lines are still written past it.
	LogLimit int64
	// Events, when set, receives an Event after each write to a log so
	// that live viewers wake up.
	Events mixmaster.EventService
	// Now returns the time stamped on log lines; nil means time.Now.
	Now func() time.Time
}

var _ mixmaster.LogStore = (*Files)(nil)

// JobDir returns the folder holding everything about job id.
func (f *Files) JobDir(id mixmaster.JobID) string {
	return filepath.Join(f.Root, "jobs", id.String())
}

// LogPath returns the path of the log of job id.
func (f *Files) LogPath(id mixmaster.JobID) string {
	return filepath.Join(f.JobDir(id), "log")
}

// ArtifactsDir returns the folder holding the files kept from job id. It is
// not created by Files.
func (f *Files) ArtifactsDir(id mixmaster.JobID) string {
	return filepath.Join(f.JobDir(id), "artifacts")
}

// Create opens the log of job id for appending, creating the job folder as
// needed. An existing log is appended to, not replaced, so that a line
// added after a restart does not erase what the job printed.
func (f *Files) Create(id mixmaster.JobID) (mixmaster.Log, error) {
	if err := os.MkdirAll(f.JobDir(id), dirPerm); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	file, err := os.OpenFile(f.LogPath(id), os.O_WRONLY|os.O_CREATE|os.O_APPEND, filePerm)
	if err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	st, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("create log: %w", err)
	}
	limit := f.LogLimit
	if limit <= 0 {
		limit = DefaultLogLimit
	}
	now := f.Now
	if now == nil {
		now = time.Now
	}
	l := &fileLog{
		id:      id,
		file:    file,
		events:  f.Events,
		now:     now,
		limit:   limit,
		written: st.Size(),
	}
	l.stdout = &stream{log: l, mark: markStdout}
	l.stderr = &stream{log: l, mark: markStderr}
	return l, nil
}

// Open opens the log of job id for reading. It returns an ENOTFOUND error
// when the job has no log. The log may still be growing. Anything but a
// regular file in the log's place (a build can write there) is refused:
// O_NONBLOCK keeps a FIFO from blocking the open, and a link is not
// followed.
func (f *Files) Open(id mixmaster.JobID) (io.ReadSeekCloser, error) {
	file, err := os.OpenFile(f.LogPath(id), os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, mixmaster.Errorf(mixmaster.ENOTFOUND, "Job %d has no log.", id)
	}
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	if fi, err := file.Stat(); err != nil || !fi.Mode().IsRegular() {
		file.Close()
		return nil, fmt.Errorf("open log of job %d: %w", id, errNotRegular)
	}
	return file, nil
}

// Tail returns at most the last n bytes of the log of job id, starting at
// a line boundary so that no partial line comes first. A log smaller than
// n is returned whole. It returns ENOTFOUND when the job has no log.
func (f *Files) Tail(id mixmaster.JobID, n int64) ([]byte, error) {
	r, err := f.Open(id)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	_, text, err := mixmaster.TailLines(r, n)
	if err != nil {
		return nil, fmt.Errorf("tail log: %w", err)
	}
	return text, nil
}
