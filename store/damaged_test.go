package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mixmaster"
	"mixmaster/store"

	bolt "go.etcd.io/bbolt"
)

// populated writes a store of a few hundred jobs, spread over many pages,
// closes it and returns its path.
func populated(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mixmaster.db")
	db := MustOpenPath(t, path)
	jobs := make([]*mixmaster.Job, 500)
	for i := range jobs {
		jobs[i] = webhookJob(fmt.Sprintf("owner/repo%02d", i%20))
		jobs[i].Message = strings.Repeat("a commit message ", 20)
		jobs[i].Status = mixmaster.StatusSucceeded
	}
	// Two commits, so that the state one commit back holds jobs too.
	for _, part := range [][]*mixmaster.Job{jobs[:499], jobs[499:]} {
		if err := db.ImportForTest(part); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// pageSize is the page size of files this package creates.
var pageSize = int64(os.Getpagesize())

// rewrite applies damage to the file at path.
func rewrite(t *testing.T, path string, damage func(b []byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, damage(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// zero clears n bytes at off.
func zero(b []byte, off, n int64) []byte {
	clear(b[off : off+n])
	return b
}

// flip inverts every byte of b[off:off+n].
func flip(b []byte, off, n int64) []byte {
	for i := off; i < off+n; i++ {
		b[i] ^= 0xff
	}
	return b
}

// A damaged file is refused with one line naming it and how to restore a
// backup, never with a panic or a crash, and the file is left as it was.
func TestOpenDamaged(t *testing.T) {
	for _, tt := range []struct {
		name   string
		damage func(b []byte) []byte
		reason string
	}{
		{"truncated to half", func(b []byte) []byte { return b[:len(b)/2] }, "it was cut short"},
		{"truncated to one page", func(b []byte) []byte { return b[:pageSize] }, ""},
		{"both header pages flipped", func(b []byte) []byte {
			return flip(flip(b, 16, 64), pageSize+16, 64)
		}, "it is not a database file, or both of its header pages"},
		{"both header pages zeroed", func(b []byte) []byte {
			return zero(b, 0, 2*pageSize)
		}, "it is not a database file, or both of its header pages"},
		{"empty", func([]byte) []byte { return nil }, "the file is empty"},
		{"text", func([]byte) []byte {
			return []byte(strings.Repeat("this is not a database\n", 1000))
		}, "it is not a database file"},
		{"data pages zeroed", func(b []byte) []byte {
			return zero(b, 4*pageSize, int64(len(b))-4*pageSize)
		}, ""},
		{"data pages flipped", func(b []byte) []byte {
			return flip(b, 4*pageSize, int64(len(b))-4*pageSize)
		}, ""},
		{"one page in the middle zeroed", func(b []byte) []byte {
			return zero(b, 40*pageSize, pageSize)
		}, ""},
		{"one page in the middle flipped", func(b []byte) []byte {
			return flip(b, 40*pageSize+16, pageSize-16)
		}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := populated(t)
			rewrite(t, path, tt.damage)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			db, err := store.Open(path)
			if err == nil {
				db.Close()
				t.Fatal("a damaged file opened")
			}
			if !errors.Is(err, store.ErrDamaged) {
				t.Errorf("error %q does not wrap ErrDamaged", err)
			}
			msg := err.Error()
			t.Log(msg)
			if strings.Contains(msg, "\n") {
				t.Errorf("message is more than one line: %q", msg)
			}
			want := path + ` is damaged (` + tt.reason
			if !strings.HasPrefix(msg, want) || !strings.HasSuffix(msg,
				`); restore it from a backup: stop the service and its socket, copy a file made by "mixmaster backup" to `+path+`, and start the socket again`) {
				t.Errorf("message %q, want it to start %q and say how to restore", msg, want)
			}
			if after, err := os.ReadFile(path); err != nil || string(after) != string(before) {
				t.Errorf("the damaged file was changed (%v)", err)
			}
			// A backup copy is checked the same way, without the advice
			// to restore it.
			if err := store.Verify(path); !errors.Is(err, store.ErrDamaged) || strings.Contains(err.Error(), "restore") {
				t.Errorf("Verify = %v, want ErrDamaged without advice", err)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	path := populated(t)
	if err := store.Verify(path); err != nil {
		t.Fatalf("Verify of a sound store: %v", err)
	}
	other := filepath.Join(t.TempDir(), "other.db")
	bdb, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("x")); return err }); err != nil {
		t.Fatal(err)
	}
	bdb.Close()
	if err := store.Verify(other); err == nil || !strings.Contains(err.Error(), "not a mixmaster database") {
		t.Errorf("Verify of another program's bbolt file = %v", err)
	}
}

// bbolt keeps two header pages so that a torn write of one is survived:
// with either one damaged, the store opens from the other, at worst one
// commit behind, and the damaged page is written afresh.
func TestOpenOneHeaderPageDamaged(t *testing.T) {
	for _, page := range []int64{0, 1} {
		t.Run(fmt.Sprint("page ", page), func(t *testing.T) {
			path := populated(t)
			rewrite(t, path, func(b []byte) []byte { return zero(b, page*pageSize, pageSize) })
			db := MustOpenPath(t, path)
			ctx := context.Background()
			if job, err := db.Job(ctx, 499); err != nil || job.Project != "owner/repo18" {
				t.Errorf("job 499 = %+v, %v", job, err)
			}
			if _, _, err := db.CreateJob(ctx, webhookJob("owner/new")); err != nil {
				t.Fatal(err)
			}
			db.Close()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(b[page*pageSize:(page+1)*pageSize], func(c byte) bool { return c != 0 }) {
				t.Errorf("header page %d is still zero", page)
			}
			MustOpenPath(t, path)
		})
	}
}

// A good file still opens with everything in it, a new one is created
// whole under another name and leaves nothing else behind.
func TestOpenGoodAndNew(t *testing.T) {
	path := populated(t)
	db := MustOpenPath(t, path)
	jobs, err := db.Jobs(context.Background(), mixmaster.JobFilter{Limit: 500})
	if err != nil || len(jobs) != 500 {
		t.Fatalf("%d jobs, %v; want 500", len(jobs), err)
	}

	dir := t.TempDir()
	fresh := filepath.Join(dir, "mixmaster.db")
	MustOpenPath(t, fresh)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "mixmaster.db" {
		t.Errorf("folder holds %v, want only mixmaster.db", entries)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Errorf("new file: %v, %v", fi, err)
	}
}
