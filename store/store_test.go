package store_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"mixmaster"
	"mixmaster/store"
)

// The helper process: when MIXMASTER_STORE_HELPER is set, the test binary
// re-executed by a test acts on the store at MIXMASTER_STORE_PATH instead
// of running tests, so that locking and crashes involve a real second
// process.
func TestMain(m *testing.M) {
	if mode := os.Getenv("MIXMASTER_STORE_HELPER"); mode != "" {
		os.Exit(helper(mode, os.Getenv("MIXMASTER_STORE_PATH")))
	}
	os.Exit(m.Run())
}

func helper(mode, path string) int {
	db, err := store.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch mode {
	case "hold":
		// Hold the lock until the parent closes our stdin.
		fmt.Println("ready")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		db.Close()
		return 0
	case "crash":
		// Queue jobs, then die without closing the store.
		for i := range 3 {
			job := webhookJob("crash")
			job.DeliveryID = fmt.Sprint("d", i)
			if _, _, err := db.CreateJob(context.Background(), job); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		if _, err := db.Claim(context.Background(), nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
	return 2
}

// startHelper runs the test binary as a helper process in mode.
func startHelper(t *testing.T, mode, path string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "MIXMASTER_STORE_HELPER="+mode, "MIXMASTER_STORE_PATH="+path)
	cmd.Stderr = os.Stderr
	return cmd
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mixmaster.db")
	wantMsg := "open " + path + ": database is locked by another process (is mixmaster already running?)"
	const timeout = 400 * time.Millisecond

	check := func(t *testing.T) {
		t.Helper()
		start := time.Now()
		db, err := store.Open(path, store.Options{Timeout: timeout})
		elapsed := time.Since(start)
		if err == nil {
			db.Close()
			t.Fatal("second Open succeeded")
		}
		if !errors.Is(err, store.ErrLocked) || err.Error() != wantMsg {
			t.Errorf("error = %q, want %q", err, wantMsg)
		}
		// It waited for the lock, but not much longer than asked.
		if elapsed < timeout/2 || elapsed > timeout+2*time.Second {
			t.Errorf("Open gave up after %v with a timeout of %v", elapsed, timeout)
		}
	}

	t.Run("same process", func(t *testing.T) {
		db, err := store.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		check(t)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("other process", func(t *testing.T) {
		cmd := startHelper(t, "hold", path)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer stdin.Close()
		if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
			t.Fatalf("helper said %q, %v", line, err)
		}
		check(t)

		// Once the other process lets go, Open works again.
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
		db, err := store.Open(path, store.Options{Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
	})
}

func TestOpenDefaultTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the default timeout")
	}
	path := filepath.Join(t.TempDir(), "mixmaster.db")
	MustOpenPath(t, path)
	start := time.Now()
	if _, err := store.Open(path); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second Open = %v", err)
	}
	if elapsed := time.Since(start); elapsed < store.DefaultTimeout-time.Second || elapsed > store.DefaultTimeout+2*time.Second {
		t.Errorf("gave up after %v, default timeout %v", elapsed, store.DefaultTimeout)
	}
}

func TestOpenFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mixmaster.db")
	MustOpenPath(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("file mode %v is readable by others", perm)
	}
}

func TestSchemaVersion(t *testing.T) {
	dir := t.TempDir()

	// setVersion writes a raw schema version into a closed store file.
	setVersion := func(t *testing.T, path, version string) {
		t.Helper()
		bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer bdb.Close()
		err = bdb.Update(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), []byte(version))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	readVersion := func(t *testing.T, path string) string {
		t.Helper()
		bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer bdb.Close()
		var v string
		bdb.View(func(tx *bolt.Tx) error {
			v = string(tx.Bucket([]byte("meta")).Get([]byte("schema_version")))
			return nil
		})
		return v
	}
	newStore := func(t *testing.T, name string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		db, err := store.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		MustCreate(t, db, webhookJob("p"))
		db.Close()
		return path
	}

	t.Run("written", func(t *testing.T) {
		path := newStore(t, "written.db")
		if v := readVersion(t, path); v != fmt.Sprint(store.SchemaVersion) {
			t.Errorf("schema_version = %q, want %d", v, store.SchemaVersion)
		}
	})

	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		want    string // substring of the error; "" for success
	}{
		{"current", func(t *testing.T, path string) {}, ""},
		{"newer", func(t *testing.T, path string) { setVersion(t, path, fmt.Sprint(store.SchemaVersion+1)) },
			fmt.Sprintf("schema version %d is newer than this mixmaster supports (%d)", store.SchemaVersion+1, store.SchemaVersion)},
		{"version zero", func(t *testing.T, path string) { setVersion(t, path, "0") },
			"not a mixmaster database"},
		{"garbage version", func(t *testing.T, path string) { setVersion(t, path, "one") }, `bad schema version "one"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := newStore(t, tt.name+".db")
			tt.prepare(t, path)
			db, err := store.Open(path)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				MustJob(t, db, 1)
				db.Close()
				return
			}
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.HasPrefix(err.Error(), "open "+path+": ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}

	t.Run("foreign bbolt file", func(t *testing.T) {
		path := filepath.Join(dir, "foreign.db")
		bdb, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		bdb.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket([]byte("key"))
			return err
		})
		bdb.Close()
		if db, err := store.Open(path); err == nil || !strings.Contains(err.Error(), "not a mixmaster database") {
			if db != nil {
				db.Close()
			}
			t.Errorf("Open = %v", err)
		}
	})

	t.Run("not a bbolt file", func(t *testing.T) {
		path := filepath.Join(dir, "text.db")
		if err := os.WriteFile(path, bytes.Repeat([]byte("not a database\n"), 1000), 0o600); err != nil {
			t.Fatal(err)
		}
		if db, err := store.Open(path); err == nil {
			db.Close()
			t.Error("Open succeeded")
		}
	})
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mixmaster.db")
	db := MustOpenPath(t, path)

	a := webhookJob("a")
	a.DeliveryID = "d-a"
	a = MustCreate(t, db, a)
	b := MustCreate(t, db, &mixmaster.Job{Kind: mixmaster.KindArtifact, Project: "b", Key: "k", Params: map[string]string{"x": "y"}})
	c := MustCreate(t, db, webhookJob("a"))
	MustClaimID(t, db, b.ID)
	MustFinish(t, db, b.ID, mixmaster.Outcome{Status: mixmaster.StatusSucceeded, ExitCode: intp(0)})
	MustClaimID(t, db, c.ID)
	before := MustJobs(t, db, mixmaster.JobFilter{})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = MustOpenPath(t, path)
	if after := MustJobs(t, db, mixmaster.JobFilter{}); !reflect.DeepEqual(after, before) {
		t.Errorf("after reopen:\n%+v\nwant\n%+v", after, before)
	}
	if n := MustQueueLen(t, db); n != 1 {
		t.Errorf("QueueLen = %d, want 1", n)
	}
	if got := ids(MustJobs(t, db, mixmaster.JobFilter{Project: "a"})); !reflect.DeepEqual(got, []mixmaster.JobID{c.ID, a.ID}) {
		t.Errorf("project a = %v", got)
	}
	if got := ids(MustJobs(t, db, mixmaster.JobFilter{Status: mixmaster.StatusRunning})); !reflect.DeepEqual(got, []mixmaster.JobID{c.ID}) {
		t.Errorf("running = %v", got)
	}
	if j, err := db.LatestByKey(ctx, "k"); err != nil || j == nil || j.ID != b.ID {
		t.Errorf("LatestByKey = %v, %v", j, err)
	}
	dup := webhookJob("a")
	dup.DeliveryID = "d-a"
	if got, created, err := db.CreateJob(ctx, dup); err != nil || created || got.ID != a.ID {
		t.Errorf("redelivery after reopen = %v, %v, %v", got, created, err)
	}
	if d := MustCreate(t, db, webhookJob("a")); d.ID != 4 {
		t.Errorf("next ID after reopen = %d, want 4", d.ID)
	}
	if got := MustClaim(t, db, nil); got.ID != a.ID {
		t.Errorf("claimed %d after reopen, want %d", got.ID, a.ID)
	}
}

func TestCrashKeepsCommittedJobs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mixmaster.db")
	cmd := startHelper(t, "crash", path)
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper did not die by SIGKILL: %v", err)
	}

	db := MustOpenPath(t, path)
	jobs := MustJobs(t, db, mixmaster.JobFilter{})
	if got := ids(jobs); !reflect.DeepEqual(got, []mixmaster.JobID{3, 2, 1}) {
		t.Fatalf("jobs after crash = %v", got)
	}
	if jobs[2].Status != mixmaster.StatusRunning {
		t.Errorf("job 1 is %s, want running", jobs[2].Status)
	}
	interrupted, err := db.Recover(context.Background(), "restart")
	if err != nil || len(interrupted) != 1 || interrupted[0].ID != 1 {
		t.Fatalf("Recover = %v, %v", ids(interrupted), err)
	}
	for _, want := range []mixmaster.JobID{2, 3, 4} {
		if got := MustClaim(t, db, nil); got.ID != want {
			t.Errorf("claimed %d, want %d", got.ID, want)
		}
	}
}

func TestBackup(t *testing.T) {
	dir := t.TempDir()
	db := MustOpen(t)
	job := MustCreate(t, db, webhookJob("p"))

	var buf bytes.Buffer
	n, err := db.Backup(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) || n == 0 {
		t.Fatalf("Backup wrote %d bytes, reported %d", buf.Len(), n)
	}
	path := filepath.Join(dir, "backup.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	restored := MustOpenPath(t, path)
	if got := MustJob(t, restored, job.ID); !reflect.DeepEqual(got, job) {
		t.Errorf("restored job = %+v\nwant %+v", got, job)
	}
	if n := MustQueueLen(t, restored); n != 1 {
		t.Errorf("restored QueueLen = %d, want 1", n)
	}
}
