package store_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"mixmaster"
	"mixmaster/store"
)

// clock is a fake time source that moves one second per reading, so every
// timestamp a test sees is distinct and predictable.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

// MustOpen opens a store in a fresh temporary directory with a fake clock
// and closes it when the test ends.
func MustOpen(tb testing.TB) *store.DB {
	tb.Helper()
	return MustOpenPath(tb, filepath.Join(tb.TempDir(), "mixmaster.db"))
}

// MustOpenPath opens the store at path with a fake clock and closes it when
// the test ends (a store closed earlier by the test is fine).
func MustOpenPath(tb testing.TB, path string) *store.DB {
	tb.Helper()
	db, err := store.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	db.Now = newClock().Now
	tb.Cleanup(func() { db.Close() })
	return db
}

// webhookJob returns a minimal valid job for project.
func webhookJob(project string) *mixmaster.Job {
	return &mixmaster.Job{
		Kind:    mixmaster.KindWebhook,
		Trigger: mixmaster.TriggerWebhook,
		Project: project,
		Target:  "master",
		Command: "make",
		Commit:  "0123456789abcdef",
	}
}

// MustCreate stores job and fails the test if it was not created.
func MustCreate(tb testing.TB, db *store.DB, job *mixmaster.Job) *mixmaster.Job {
	tb.Helper()
	stored, created, err := db.CreateJob(context.Background(), job)
	if err != nil {
		tb.Fatal(err)
	}
	if !created {
		tb.Fatalf("job for %s was not created", job.Project)
	}
	return stored
}

// MustClaim claims the next job accepted by accept and fails the test when
// there is none.
func MustClaim(tb testing.TB, db *store.DB, accept func(*mixmaster.Job) bool) *mixmaster.Job {
	tb.Helper()
	job, err := db.Claim(context.Background(), accept)
	if err != nil {
		tb.Fatal(err)
	}
	if job == nil {
		tb.Fatal("claim: no job")
	}
	return job
}

// MustClaimID claims jobs until it has claimed id, failing if it gets
// another one first.
func MustClaimID(tb testing.TB, db *store.DB, id mixmaster.JobID) *mixmaster.Job {
	tb.Helper()
	return MustClaim(tb, db, func(j *mixmaster.Job) bool { return j.ID == id })
}

// MustFinish records an outcome and fails the test on error.
func MustFinish(tb testing.TB, db *store.DB, id mixmaster.JobID, o mixmaster.Outcome) *mixmaster.Job {
	tb.Helper()
	job, err := db.Finish(context.Background(), id, o)
	if err != nil {
		tb.Fatal(err)
	}
	return job
}

// MustJob reads a job and fails the test on error.
func MustJob(tb testing.TB, db *store.DB, id mixmaster.JobID) *mixmaster.Job {
	tb.Helper()
	job, err := db.Job(context.Background(), id)
	if err != nil {
		tb.Fatal(err)
	}
	return job
}

// MustQueueLen returns the queue length and fails the test on error.
func MustQueueLen(tb testing.TB, db *store.DB) int {
	tb.Helper()
	n, err := db.QueueLen(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// MustJobs lists jobs and fails the test on error.
func MustJobs(tb testing.TB, db *store.DB, f mixmaster.JobFilter) []*mixmaster.Job {
	tb.Helper()
	jobs, err := db.Jobs(context.Background(), f)
	if err != nil {
		tb.Fatal(err)
	}
	return jobs
}

// ids returns the IDs of jobs in order.
func ids(jobs []*mixmaster.Job) []mixmaster.JobID {
	out := make([]mixmaster.JobID, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

// wantCode fails the test unless err carries code.
func wantCode(tb testing.TB, err error, code string) {
	tb.Helper()
	if got := mixmaster.ErrorCode(err); got != code {
		tb.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

// intp returns a pointer to n.
func intp(n int) *int { return &n }
