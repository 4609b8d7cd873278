package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mixmaster"
	"mixmaster/store"
)

func TestCreateJob(t *testing.T) {
	db := MustOpen(t)
	ctx := context.Background()

	in := webhookJob("owner/repo")
	in.ID = 99 // ignored: the store assigns IDs
	in.Params = map[string]string{"a": "1"}
	in.Key = "k1"
	stored, created, err := db.CreateJob(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Fatal("created = false")
	}
	if stored.ID != 1 || stored.Status != mixmaster.StatusQueued || stored.QueuedAt.IsZero() {
		t.Fatalf("stored = %+v", stored)
	}
	if in.Status != "" || in.ID != 99 {
		t.Errorf("caller's job was modified: %+v", in)
	}
	in.Params["a"] = "changed"
	if stored.Params["a"] != "1" {
		t.Error("stored job shares Params with the caller")
	}

	got := MustJob(t, db, stored.ID)
	if !reflect.DeepEqual(got, stored) {
		t.Errorf("Job() = %+v\nwant %+v", got, stored)
	}
	if n := MustQueueLen(t, db); n != 1 {
		t.Errorf("QueueLen = %d, want 1", n)
	}
	if n, err := db.CountJobs(ctx); err != nil || n != 1 {
		t.Errorf("CountJobs = %d, %v, want 1", n, err)
	}

	second := MustCreate(t, db, webhookJob("owner/repo"))
	if second.ID != 2 {
		t.Errorf("second ID = %d, want 2", second.ID)
	}
}

func TestCreateJobKeepsQueuedAt(t *testing.T) {
	db := MustOpen(t)
	at := time.Date(2025, 5, 6, 7, 8, 9, 10, time.FixedZone("X", 3600))
	job := webhookJob("p")
	job.QueuedAt = at
	stored := MustCreate(t, db, job)
	if !stored.QueuedAt.Equal(at) {
		t.Errorf("QueuedAt = %v, want %v", stored.QueuedAt, at)
	}
	if got := MustJob(t, db, stored.ID); !reflect.DeepEqual(got, stored) {
		t.Errorf("Job() = %+v\nwant %+v", got, stored)
	}
}

func TestCreateJobInvalid(t *testing.T) {
	tests := []struct {
		name string
		edit func(*mixmaster.Job) *mixmaster.Job
	}{
		{"nil", func(*mixmaster.Job) *mixmaster.Job { return nil }},
		{"running", func(j *mixmaster.Job) *mixmaster.Job { j.Status = mixmaster.StatusRunning; return j }},
		{"succeeded", func(j *mixmaster.Job) *mixmaster.Job { j.Status = mixmaster.StatusSucceeded; return j }},
		{"no project", func(j *mixmaster.Job) *mixmaster.Job { j.Project = ""; return j }},
		{"no kind", func(j *mixmaster.Job) *mixmaster.Job { j.Kind = ""; return j }},
		{"bad kind", func(j *mixmaster.Job) *mixmaster.Job { j.Kind = "cron"; return j }},
		{"long project", func(j *mixmaster.Job) *mixmaster.Job { j.Project = strings.Repeat("x", 2000); return j }},
		{"long delivery", func(j *mixmaster.Job) *mixmaster.Job { j.DeliveryID = strings.Repeat("x", 2000); return j }},
	}
	db := MustOpen(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := db.CreateJob(context.Background(), tt.edit(webhookJob("p")))
			wantCode(t, err, mixmaster.EINVALID)
		})
	}
	if n, _ := db.CountJobs(context.Background()); n != 0 {
		t.Errorf("%d jobs written by invalid requests", n)
	}
	// An explicit queued status is fine.
	job := webhookJob("p")
	job.Status = mixmaster.StatusQueued
	MustCreate(t, db, job)
}

func TestJobNotFound(t *testing.T) {
	db := MustOpen(t)
	_, err := db.Job(context.Background(), 42)
	wantCode(t, err, mixmaster.ENOTFOUND)
	if msg := mixmaster.ErrorMessage(err); msg != "job 42 not found" {
		t.Errorf("message = %q", msg)
	}
}

func TestClaimFIFO(t *testing.T) {
	db := MustOpen(t)
	for range 3 {
		MustCreate(t, db, webhookJob("p"))
	}
	for want := mixmaster.JobID(1); want <= 3; want++ {
		job := MustClaim(t, db, nil)
		if job.ID != want {
			t.Fatalf("claimed %d, want %d", job.ID, want)
		}
		if job.Status != mixmaster.StatusRunning || job.StartedAt.IsZero() {
			t.Errorf("claimed job = %+v", job)
		}
		if got := MustJob(t, db, job.ID); !reflect.DeepEqual(got, job) {
			t.Errorf("Job() = %+v\nwant %+v", got, job)
		}
		if n := MustQueueLen(t, db); n != int(3-want) {
			t.Errorf("QueueLen = %d, want %d", n, 3-want)
		}
	}
	job, err := db.Claim(context.Background(), nil)
	if job != nil || err != nil {
		t.Fatalf("Claim on empty queue = %v, %v", job, err)
	}
}

func TestClaimAcceptSkipsBusy(t *testing.T) {
	db := MustOpen(t)
	a1 := MustCreate(t, db, webhookJob("a"))
	a2 := MustCreate(t, db, webhookJob("a"))
	b1 := MustCreate(t, db, webhookJob("b"))

	// Project a is busy: the runner skips it without losing its place.
	notA := func(j *mixmaster.Job) bool { return j.Project != "a" }
	if got := MustClaim(t, db, notA); got.ID != b1.ID {
		t.Fatalf("claimed %d, want %d", got.ID, b1.ID)
	}
	if job, err := db.Claim(context.Background(), notA); job != nil || err != nil {
		t.Fatalf("claim with nothing acceptable = %v, %v", job, err)
	}
	if n := MustQueueLen(t, db); n != 2 {
		t.Fatalf("QueueLen = %d, want 2", n)
	}
	for _, want := range []mixmaster.JobID{a1.ID, a2.ID} {
		if got := MustClaim(t, db, nil); got.ID != want {
			t.Fatalf("claimed %d, want %d", got.ID, want)
		}
	}
}

func TestClaimDropsStaleEntries(t *testing.T) {
	db := MustOpen(t)
	done := MustCreate(t, db, webhookJob("p"))
	MustClaim(t, db, nil)
	MustFinish(t, db, done.ID, mixmaster.Outcome{Status: mixmaster.StatusSucceeded})
	queued := MustCreate(t, db, webhookJob("p"))
	// Entries for a finished job and for a job that does not exist.
	if err := db.EnqueueForTest(done.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.EnqueueForTest(1000); err != nil {
		t.Fatal(err)
	}
	if n := MustQueueLen(t, db); n != 3 {
		t.Fatalf("QueueLen = %d, want 3", n)
	}
	var seen []mixmaster.JobID
	job, err := db.Claim(context.Background(), func(j *mixmaster.Job) bool {
		seen = append(seen, j.ID)
		return false
	})
	if job != nil || err != nil {
		t.Fatalf("Claim = %v, %v", job, err)
	}
	if !slices.Equal(seen, []mixmaster.JobID{queued.ID}) {
		t.Errorf("accept saw %v, want only %d", seen, queued.ID)
	}
	if n := MustQueueLen(t, db); n != 1 {
		t.Errorf("QueueLen after dropping stale entries = %d, want 1", n)
	}
	if got := MustClaim(t, db, nil); got.ID != queued.ID {
		t.Errorf("claimed %d, want %d", got.ID, queued.ID)
	}
	if got := MustJob(t, db, done.ID); got.Status != mixmaster.StatusSucceeded {
		t.Errorf("stale job changed to %s", got.Status)
	}
}

func TestFinish(t *testing.T) {
	tests := []struct {
		name  string
		from  mixmaster.Status
		o     mixmaster.Outcome
		code  string // "" for success
		queue int    // queue length afterwards
	}{
		{"running to succeeded", mixmaster.StatusRunning, mixmaster.Outcome{Status: mixmaster.StatusSucceeded, ExitCode: intp(0), Commit: "feedface"}, "", 0},
		{"running to failed", mixmaster.StatusRunning, mixmaster.Outcome{Status: mixmaster.StatusFailed, ExitCode: intp(2)}, "", 0},
		{"running to errored", mixmaster.StatusRunning, mixmaster.Outcome{Status: mixmaster.StatusErrored, Error: "disk full"}, "", 0},
		{"running to canceled", mixmaster.StatusRunning, mixmaster.Outcome{Status: mixmaster.StatusCanceled, Error: "canceled by user"}, "", 0},
		{"queued to canceled", mixmaster.StatusQueued, mixmaster.Outcome{Status: mixmaster.StatusCanceled, Error: "canceled by user"}, "", 0},
		{"queued to succeeded", mixmaster.StatusQueued, mixmaster.Outcome{Status: mixmaster.StatusSucceeded}, mixmaster.ECONFLICT, 1},
		{"succeeded to failed", mixmaster.StatusSucceeded, mixmaster.Outcome{Status: mixmaster.StatusFailed}, mixmaster.ECONFLICT, 0},
		{"canceled to succeeded", mixmaster.StatusCanceled, mixmaster.Outcome{Status: mixmaster.StatusSucceeded}, mixmaster.ECONFLICT, 0},
		{"running to running", mixmaster.StatusRunning, mixmaster.Outcome{Status: mixmaster.StatusRunning}, mixmaster.EINVALID, 0},
		{"running to queued", mixmaster.StatusRunning, mixmaster.Outcome{Status: mixmaster.StatusQueued}, mixmaster.EINVALID, 0},
		{"running to unknown", mixmaster.StatusRunning, mixmaster.Outcome{Status: "done"}, mixmaster.EINVALID, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := MustOpen(t)
			job := MustCreate(t, db, webhookJob("p"))
			switch tt.from {
			case mixmaster.StatusRunning:
				MustClaim(t, db, nil)
			case mixmaster.StatusSucceeded, mixmaster.StatusCanceled:
				MustClaim(t, db, nil)
				MustFinish(t, db, job.ID, mixmaster.Outcome{Status: tt.from})
			}
			before := MustJob(t, db, job.ID)

			got, err := db.Finish(context.Background(), job.ID, tt.o)
			if n := MustQueueLen(t, db); n != tt.queue {
				t.Errorf("QueueLen = %d, want %d", n, tt.queue)
			}
			if tt.code != "" {
				wantCode(t, err, tt.code)
				if after := MustJob(t, db, job.ID); !reflect.DeepEqual(after, before) {
					t.Errorf("refused Finish changed the job:\n%+v\n%+v", before, after)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tt.o.Status || got.Error != tt.o.Error || got.FinishedAt.IsZero() {
				t.Errorf("finished job = %+v", got)
			}
			if !reflect.DeepEqual(got.ExitCode, tt.o.ExitCode) {
				t.Errorf("ExitCode = %v, want %v", got.ExitCode, tt.o.ExitCode)
			}
			wantCommit := job.Commit
			if tt.o.Commit != "" {
				wantCommit = tt.o.Commit
			}
			if got.Commit != wantCommit {
				t.Errorf("Commit = %q, want %q", got.Commit, wantCommit)
			}
			if stored := MustJob(t, db, job.ID); !reflect.DeepEqual(stored, got) {
				t.Errorf("Job() = %+v\nwant %+v", stored, got)
			}
			for _, s := range mixmaster.Statuses {
				want := []mixmaster.JobID{}
				if s == tt.o.Status {
					want = []mixmaster.JobID{job.ID}
				}
				if got := ids(MustJobs(t, db, mixmaster.JobFilter{Status: s})); !slices.Equal(got, want) {
					t.Errorf("status index %s lists %v, want %v", s, got, want)
				}
			}
		})
	}

	t.Run("unknown job", func(t *testing.T) {
		db := MustOpen(t)
		_, err := db.Finish(context.Background(), 7, mixmaster.Outcome{Status: mixmaster.StatusFailed})
		wantCode(t, err, mixmaster.ENOTFOUND)
	})
}

func TestCancelQueued(t *testing.T) {
	db := MustOpen(t)
	ctx := context.Background()
	running := MustCreate(t, db, webhookJob("p"))
	MustClaim(t, db, nil)
	queued := MustCreate(t, db, webhookJob("p"))

	got, err := db.CancelQueued(ctx, queued.ID, "superseded")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != mixmaster.StatusCanceled || got.Error != "superseded" || got.FinishedAt.IsZero() {
		t.Errorf("canceled job = %+v", got)
	}
	if n := MustQueueLen(t, db); n != 0 {
		t.Errorf("QueueLen = %d, want 0", n)
	}
	if job, err := db.Claim(ctx, nil); job != nil || err != nil {
		t.Errorf("Claim after cancel = %v, %v", job, err)
	}
	if got := ids(MustJobs(t, db, mixmaster.JobFilter{Status: mixmaster.StatusCanceled})); !slices.Equal(got, []mixmaster.JobID{queued.ID}) {
		t.Errorf("canceled jobs = %v", got)
	}
	if got := MustJobs(t, db, mixmaster.JobFilter{Status: mixmaster.StatusQueued}); len(got) != 0 {
		t.Errorf("queued jobs = %v", ids(got))
	}

	tests := []struct {
		name string
		id   mixmaster.JobID
		code string
	}{
		{"already canceled", queued.ID, mixmaster.ECONFLICT},
		{"running", running.ID, mixmaster.ECONFLICT},
		{"unknown", 99, mixmaster.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := db.CancelQueued(ctx, tt.id, "x")
			wantCode(t, err, tt.code)
		})
	}
}

func TestUpdate(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t)
	job := MustCreate(t, db, &mixmaster.Job{Kind: mixmaster.KindArtifact, Project: "p", Key: "old"})
	MustClaim(t, db, nil)

	got, err := db.Update(ctx, job.ID, func(j *mixmaster.Job) {
		j.Commit = "abc"
		j.Image = "img:1"
		j.Incremental = true
		j.Key = "new"
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Commit != "abc" || got.Image != "img:1" || !got.Incremental || got.Status != mixmaster.StatusRunning {
		t.Errorf("updated job = %+v", got)
	}
	if stored := MustJob(t, db, job.ID); !reflect.DeepEqual(stored, got) {
		t.Errorf("Job() = %+v\nwant %+v", stored, got)
	}
	if j, err := db.LatestByKey(ctx, "old"); j != nil || err != nil {
		t.Errorf("LatestByKey(old) = %v, %v; want nothing", j, err)
	}
	if j, err := db.LatestByKey(ctx, "new"); err != nil || j == nil || j.ID != job.ID {
		t.Errorf("LatestByKey(new) = %v, %v", j, err)
	}

	refused := []struct {
		name string
		fn   func(*mixmaster.Job)
	}{
		{"status", func(j *mixmaster.Job) { j.Status = mixmaster.StatusSucceeded }},
		{"id", func(j *mixmaster.Job) { j.ID = 77 }},
		{"project", func(j *mixmaster.Job) { j.Project = "q" }},
		{"delivery", func(j *mixmaster.Job) { j.DeliveryID = "d" }},
	}
	for _, tt := range refused {
		t.Run("refuse "+tt.name, func(t *testing.T) {
			_, err := db.Update(ctx, job.ID, func(j *mixmaster.Job) {
				j.Commit = "should not be written"
				tt.fn(j)
			})
			if err == nil {
				t.Fatal("no error")
			}
			if stored := MustJob(t, db, job.ID); !reflect.DeepEqual(stored, got) {
				t.Errorf("refused update was written: %+v", stored)
			}
		})
	}

	t.Run("finished", func(t *testing.T) {
		MustFinish(t, db, job.ID, mixmaster.Outcome{Status: mixmaster.StatusSucceeded})
		_, err := db.Update(ctx, job.ID, func(j *mixmaster.Job) { j.Incremental = true })
		wantCode(t, err, mixmaster.ECONFLICT)
	})
	t.Run("unknown", func(t *testing.T) {
		_, err := db.Update(ctx, 99, func(*mixmaster.Job) {})
		wantCode(t, err, mixmaster.ENOTFOUND)
	})
}

func TestLatestByKey(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t)
	if j, err := db.LatestByKey(ctx, "k"); j != nil || err != nil {
		t.Fatalf("LatestByKey on empty store = %v, %v", j, err)
	}
	_, err := db.LatestByKey(ctx, "")
	wantCode(t, err, mixmaster.EINVALID)

	artifact := func(key string) *mixmaster.Job {
		return &mixmaster.Job{Kind: mixmaster.KindArtifact, Project: "p", Key: key}
	}
	first := MustCreate(t, db, artifact("k"))
	MustCreate(t, db, artifact("other"))
	MustClaimID(t, db, first.ID)
	MustFinish(t, db, first.ID, mixmaster.Outcome{Status: mixmaster.StatusSucceeded})
	if j, _ := db.LatestByKey(ctx, "k"); j == nil || j.ID != first.ID || j.Status != mixmaster.StatusSucceeded {
		t.Fatalf("LatestByKey = %+v, want job %d succeeded", j, first.ID)
	}
	newest := MustCreate(t, db, artifact("k"))
	if j, _ := db.LatestByKey(ctx, "k"); j == nil || j.ID != newest.ID {
		t.Fatalf("LatestByKey = %+v, want job %d", j, newest.ID)
	}
}

func TestDeliveryIdempotency(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t)
	first := webhookJob("p")
	first.DeliveryID = "delivery-1"
	stored := MustCreate(t, db, first)
	<-db.Notify()

	again := webhookJob("p")
	again.DeliveryID = "delivery-1"
	again.Commit = "different"
	got, created, err := db.CreateJob(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Error("created = true for a repeated delivery")
	}
	if !reflect.DeepEqual(got, stored) {
		t.Errorf("repeated delivery returned %+v\nwant %+v", got, stored)
	}
	if n, _ := db.CountJobs(ctx); n != 1 {
		t.Errorf("CountJobs = %d, want 1", n)
	}
	if n := MustQueueLen(t, db); n != 1 {
		t.Errorf("QueueLen = %d, want 1", n)
	}
	select {
	case <-db.Notify():
		t.Error("repeated delivery woke the runner")
	default:
	}

	// The delivery stays known after the job has finished.
	MustClaim(t, db, nil)
	MustFinish(t, db, stored.ID, mixmaster.Outcome{Status: mixmaster.StatusFailed, ExitCode: intp(1)})
	got, created, err = db.CreateJob(ctx, again)
	if err != nil || created || got.ID != stored.ID || got.Status != mixmaster.StatusFailed {
		t.Errorf("after finish: %+v, %v, %v", got, created, err)
	}

	// Racing redeliveries create exactly one job.
	var wg sync.WaitGroup
	var mu sync.Mutex
	createdN := 0
	var seen []mixmaster.JobID
	for range 20 {
		wg.Go(func() {
			job := webhookJob("p")
			job.DeliveryID = "delivery-2"
			got, created, err := db.CreateJob(ctx, job)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if created {
				createdN++
			}
			seen = append(seen, got.ID)
		})
	}
	wg.Wait()
	if createdN != 1 {
		t.Errorf("%d racing redeliveries created a job, want 1", createdN)
	}
	if slices.Sort(seen); seen[0] != seen[len(seen)-1] {
		t.Errorf("racing redeliveries returned different jobs: %v", seen)
	}
}

func TestNotify(t *testing.T) {
	db := MustOpen(t)
	select {
	case <-db.Notify():
		t.Fatal("notified before anything was queued")
	default:
	}
	// A burst must not block though nobody receives.
	for range 5 {
		MustCreate(t, db, webhookJob("p"))
	}
	select {
	case <-db.Notify():
	case <-time.After(time.Second):
		t.Fatal("no notification after CreateJob")
	}
	select {
	case <-db.Notify():
		t.Fatal("a burst left more than one notification")
	default:
	}
}

// listFixture builds 30 jobs: IDs 1–30, project "p<id%3>", with statuses
// running (3, 6), succeeded (multiples of 4), failed (multiples of 5 that
// are not multiples of 4) and queued for the rest.
func listFixture(t *testing.T) (*store.DB, map[mixmaster.JobID]*mixmaster.Job) {
	t.Helper()
	db := MustOpen(t)
	all := make(map[mixmaster.JobID]*mixmaster.Job)
	for i := 1; i <= 30; i++ {
		job := MustCreate(t, db, webhookJob(fmt.Sprintf("p%d", i%3)))
		all[job.ID] = job
	}
	for id, job := range all {
		var o mixmaster.Outcome
		switch {
		case id == 3 || id == 6:
		case id%4 == 0:
			o.Status = mixmaster.StatusSucceeded
		case id%5 == 0:
			o.Status = mixmaster.StatusFailed
		default:
			continue
		}
		claimed := MustClaimID(t, db, id)
		all[id] = claimed
		if o.Status != "" {
			all[id] = MustFinish(t, db, job.ID, o)
		}
	}
	return db, all
}

// expect lists the fixture IDs matching keep, newest first.
func expect(all map[mixmaster.JobID]*mixmaster.Job, keep func(*mixmaster.Job) bool) []mixmaster.JobID {
	var out []mixmaster.JobID
	for id := mixmaster.JobID(len(all)); id >= 1; id-- {
		if keep(all[id]) {
			out = append(out, id)
		}
	}
	return out
}

func TestJobs(t *testing.T) {
	db, all := listFixture(t)
	everything := func(*mixmaster.Job) bool { return true }
	status := func(s mixmaster.Status) func(*mixmaster.Job) bool {
		return func(j *mixmaster.Job) bool { return j.Status == s }
	}
	tests := []struct {
		name string
		f    mixmaster.JobFilter
		want []mixmaster.JobID
	}{
		{"all", mixmaster.JobFilter{}, expect(all, everything)},
		{"limit", mixmaster.JobFilter{Limit: 5}, []mixmaster.JobID{30, 29, 28, 27, 26}},
		{"before", mixmaster.JobFilter{Before: 10, Limit: 3}, []mixmaster.JobID{9, 8, 7}},
		{"before past the end", mixmaster.JobFilter{Before: 1000, Limit: 2}, []mixmaster.JobID{30, 29}},
		{"before the first", mixmaster.JobFilter{Before: 1}, nil},
		{"project", mixmaster.JobFilter{Project: "p1"}, expect(all, func(j *mixmaster.Job) bool { return j.Project == "p1" })},
		{"project before", mixmaster.JobFilter{Project: "p1", Before: 20, Limit: 2}, []mixmaster.JobID{19, 16}},
		{"unknown project", mixmaster.JobFilter{Project: "nope"}, nil},
		{"queued", mixmaster.JobFilter{Status: mixmaster.StatusQueued}, expect(all, status(mixmaster.StatusQueued))},
		{"queued before", mixmaster.JobFilter{Status: mixmaster.StatusQueued, Before: 20, Limit: 3}, []mixmaster.JobID{19, 18, 17}},
		{"running", mixmaster.JobFilter{Status: mixmaster.StatusRunning}, []mixmaster.JobID{6, 3}},
		{"running before", mixmaster.JobFilter{Status: mixmaster.StatusRunning, Before: 6}, []mixmaster.JobID{3}},
		{"succeeded", mixmaster.JobFilter{Status: mixmaster.StatusSucceeded}, expect(all, status(mixmaster.StatusSucceeded))},
		{"failed", mixmaster.JobFilter{Status: mixmaster.StatusFailed}, []mixmaster.JobID{30, 25, 15, 10, 5}},
		{"canceled", mixmaster.JobFilter{Status: mixmaster.StatusCanceled}, nil},
		{"project and status", mixmaster.JobFilter{Project: "p0", Status: mixmaster.StatusRunning}, []mixmaster.JobID{6, 3}},
		{"project and failed", mixmaster.JobFilter{Project: "p1", Status: mixmaster.StatusFailed}, []mixmaster.JobID{25, 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MustJobs(t, db, tt.f)
			if got == nil {
				t.Error("Jobs returned a nil slice")
			}
			if !slices.Equal(ids(got), tt.want) {
				t.Errorf("Jobs(%+v) = %v, want %v", tt.f, ids(got), tt.want)
			}
			for _, j := range got {
				if !reflect.DeepEqual(j, all[j.ID]) {
					t.Errorf("job %d = %+v\nwant %+v", j.ID, j, all[j.ID])
				}
			}
		})
	}

	// Every combination of filters against a plain scan of the fixture.
	t.Run("combinations", func(t *testing.T) {
		for _, project := range []string{"", "p0", "p1", "p2"} {
			for _, st := range append([]mixmaster.Status{""}, mixmaster.Statuses...) {
				for _, before := range []mixmaster.JobID{0, 1, 4, 7, 16, 30, 31} {
					f := mixmaster.JobFilter{Project: project, Status: st, Before: before, Limit: store.MaxLimit}
					want := expect(all, func(j *mixmaster.Job) bool {
						return (project == "" || j.Project == project) &&
							(st == "" || j.Status == st) &&
							(before == 0 || j.ID < before)
					})
					if got := ids(MustJobs(t, db, f)); !slices.Equal(got, want) {
						t.Errorf("Jobs(%+v) = %v, want %v", f, got, want)
					}
				}
			}
		}
	})

	t.Run("invalid status", func(t *testing.T) {
		_, err := db.Jobs(context.Background(), mixmaster.JobFilter{Status: "done"})
		wantCode(t, err, mixmaster.EINVALID)
	})
}

func TestJobsPagination(t *testing.T) {
	db, all := listFixture(t)
	filters := []mixmaster.JobFilter{
		{Limit: 4},
		{Limit: 1, Project: "p2"},
		{Limit: 3, Status: mixmaster.StatusQueued},
		{Limit: 2, Status: mixmaster.StatusSucceeded},
		{Limit: 2, Project: "p1", Status: mixmaster.StatusQueued},
		{Limit: 1, Project: "p0", Status: mixmaster.StatusSucceeded},
	}
	for _, f := range filters {
		t.Run(fmt.Sprintf("%+v", f), func(t *testing.T) {
			want := expect(all, func(j *mixmaster.Job) bool {
				return (f.Project == "" || j.Project == f.Project) && (f.Status == "" || j.Status == f.Status)
			})
			var got []mixmaster.JobID
			for page := 0; ; page++ {
				if page > len(all) {
					t.Fatal("pagination does not end")
				}
				jobs := MustJobs(t, db, f)
				if len(jobs) > f.Limit {
					t.Fatalf("page of %d, limit %d", len(jobs), f.Limit)
				}
				if len(jobs) == 0 {
					break
				}
				got = append(got, ids(jobs)...)
				f.Before = jobs[len(jobs)-1].ID
			}
			if !slices.Equal(got, want) {
				t.Errorf("pages = %v, want %v", got, want)
			}
		})
	}
}

func TestJobsLimits(t *testing.T) {
	db := MustOpen(t)
	jobs := make([]*mixmaster.Job, 600)
	for i := range jobs {
		jobs[i] = webhookJob("p")
		jobs[i].Status = mixmaster.StatusSucceeded
	}
	if err := db.ImportForTest(jobs); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		limit, want int
	}{
		{0, store.DefaultLimit},
		{-1, store.DefaultLimit},
		{10, 10},
		{store.MaxLimit, store.MaxLimit},
		{100000, store.MaxLimit},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			if got := MustJobs(t, db, mixmaster.JobFilter{Limit: tt.limit}); len(got) != tt.want {
				t.Errorf("got %d jobs, want %d", len(got), tt.want)
			}
		})
	}
}

func TestRecover(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t)

	first := webhookJob("p")
	first.DeliveryID = "d1"
	first.Notify = true
	first.Key = "k"
	first.Params = map[string]string{"x": "1"}
	first = MustCreate(t, db, first) // 1: running, first attempt → retried
	retry := webhookJob("p")
	retry.Attempt = 1
	retry = MustCreate(t, db, retry)             // 2: running, already a retry → not retried
	done := MustCreate(t, db, webhookJob("p"))   // 3: succeeded
	queued := MustCreate(t, db, webhookJob("q")) // 4: queued

	MustClaimID(t, db, first.ID)
	if _, err := db.Update(ctx, first.ID, func(j *mixmaster.Job) { j.Incremental = true; j.Commit = "resolved" }); err != nil {
		t.Fatal(err)
	}
	MustClaimID(t, db, retry.ID)
	MustClaimID(t, db, done.ID)
	MustFinish(t, db, done.ID, mixmaster.Outcome{Status: mixmaster.StatusSucceeded, ExitCode: intp(0)})
	doneBefore := MustJob(t, db, done.ID)
	queuedBefore := MustJob(t, db, queued.ID)
	for len(db.Notify()) > 0 {
		<-db.Notify()
	}

	interrupted, err := db.Recover(ctx, "interrupted by restart")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(interrupted), []mixmaster.JobID{first.ID, retry.ID}) {
		t.Fatalf("interrupted = %v", ids(interrupted))
	}
	for _, j := range interrupted {
		if j.Status != mixmaster.StatusErrored || j.Error != "interrupted by restart" || j.FinishedAt.IsZero() {
			t.Errorf("interrupted job = %+v", j)
		}
		if stored := MustJob(t, db, j.ID); !reflect.DeepEqual(stored, j) {
			t.Errorf("Job() = %+v\nwant %+v", stored, j)
		}
	}
	if got := ids(MustJobs(t, db, mixmaster.JobFilter{Status: mixmaster.StatusErrored})); !slices.Equal(got, []mixmaster.JobID{retry.ID, first.ID}) {
		t.Errorf("errored = %v", got)
	}
	if got := MustJobs(t, db, mixmaster.JobFilter{Status: mixmaster.StatusRunning}); len(got) != 0 {
		t.Errorf("running = %v", ids(got))
	}
	if got := MustJob(t, db, done.ID); !reflect.DeepEqual(got, doneBefore) {
		t.Errorf("finished job changed: %+v", got)
	}
	if got := MustJob(t, db, queued.ID); !reflect.DeepEqual(got, queuedBefore) {
		t.Errorf("queued job changed: %+v", got)
	}

	// Exactly one new job: the retry of job 1, behind the queued job.
	if n, _ := db.CountJobs(ctx); n != 5 {
		t.Fatalf("CountJobs = %d, want 5", n)
	}
	again := MustJob(t, db, 5)
	want := *MustJob(t, db, first.ID)
	want.ID = 5
	want.Status = mixmaster.StatusQueued
	want.Trigger = mixmaster.TriggerRetry
	want.Attempt = 1
	want.RetryOf = first.ID
	want.DeliveryID = ""
	want.Error = ""
	want.Incremental = false
	want.StartedAt, want.FinishedAt = time.Time{}, time.Time{}
	want.QueuedAt = again.QueuedAt
	if !reflect.DeepEqual(again, &want) {
		t.Errorf("retry = %+v\nwant  %+v", again, &want)
	}
	if again.Commit != "resolved" || again.Params["x"] != "1" || !again.Notify {
		t.Errorf("retry lost request details: %+v", again)
	}
	select {
	case <-db.Notify():
	default:
		t.Error("Recover queued a job without waking the runner")
	}
	if got := ids(MustJobs(t, db, mixmaster.JobFilter{Status: mixmaster.StatusQueued})); !slices.Equal(got, []mixmaster.JobID{5, 4}) {
		t.Errorf("queued = %v, want [5 4]", got)
	}
	for _, want := range []mixmaster.JobID{queued.ID, 5} {
		if got := MustClaim(t, db, nil); got.ID != want {
			t.Errorf("claimed %d, want %d", got.ID, want)
		}
	}
	if j, _ := db.LatestByKey(ctx, "k"); j == nil || j.ID != 5 {
		t.Errorf("LatestByKey = %+v, want the retry", j)
	}
	// The original delivery still names the original job.
	dup := webhookJob("p")
	dup.DeliveryID = "d1"
	if got, created, err := db.CreateJob(ctx, dup); err != nil || created || got.ID != first.ID {
		t.Errorf("redelivery after recover = %v, %v, %v", got, created, err)
	}

	// A second start-up finds the two claimed jobs (4 and 5): 4 is retried
	// once more as a first attempt, 5 is a retry and is not.
	interrupted, err = db.Recover(ctx, "again")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(interrupted), []mixmaster.JobID{4, 5}) {
		t.Errorf("second Recover interrupted %v", ids(interrupted))
	}
	if n, _ := db.CountJobs(ctx); n != 6 {
		t.Errorf("CountJobs = %d, want 6", n)
	}
	if interrupted, err = db.Recover(ctx, "third"); err != nil || len(interrupted) != 0 {
		t.Errorf("third Recover = %v, %v", ids(interrupted), err)
	}
}

func TestConcurrentCreateAndClaim(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t)
	const writers, perWriter = 16, 20
	const total = writers * perWriter

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				job := webhookJob(fmt.Sprintf("p%d", w))
				job.Message = fmt.Sprint(i)
				if _, _, err := db.CreateJob(ctx, job); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// Claimers run at the same time; every job must be claimed once.
	var mu sync.Mutex
	claimed := make(map[mixmaster.JobID]int)
	stop := make(chan struct{})
	var claimers sync.WaitGroup
	for range 4 {
		claimers.Go(func() {
			for {
				job, err := db.Claim(ctx, nil)
				if err != nil {
					t.Error(err)
					return
				}
				if job == nil {
					select {
					case <-stop:
						return
					case <-db.Notify():
					case <-time.After(10 * time.Millisecond):
					}
					continue
				}
				mu.Lock()
				claimed[job.ID]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for MustQueueLen(t, db) > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	claimers.Wait()

	if len(claimed) != total {
		t.Fatalf("%d jobs claimed, want %d", len(claimed), total)
	}
	for id := mixmaster.JobID(1); id <= total; id++ {
		if claimed[id] != 1 {
			t.Errorf("job %d claimed %d times", id, claimed[id])
		}
	}
	for w := range writers {
		// Each writer's jobs are in its own project, in the order it wrote them.
		jobs := MustJobs(t, db, mixmaster.JobFilter{Project: fmt.Sprintf("p%d", w)})
		if len(jobs) != perWriter {
			t.Fatalf("project p%d has %d jobs", w, len(jobs))
		}
		for i, j := range jobs {
			if want := fmt.Sprint(len(jobs) - 1 - i); j.Message != want {
				t.Errorf("p%d: job %d has message %q, want %s", w, j.ID, j.Message, want)
			}
		}
	}
}

func TestCanceledContext(t *testing.T) {
	db := MustOpen(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := db.CreateJob(ctx, webhookJob("p")); !errors.Is(err, context.Canceled) {
		t.Errorf("CreateJob = %v", err)
	}
	if _, err := db.Claim(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Claim = %v", err)
	}
	if n, _ := db.CountJobs(context.Background()); n != 0 {
		t.Errorf("%d jobs written with a canceled context", n)
	}
}

func TestGroupHead(t *testing.T) {
	db := MustOpen(t)
	ctx := context.Background()
	build := func(group string, status mixmaster.Status) mixmaster.JobID {
		t.Helper()
		j, _, err := db.CreateJob(ctx, &mixmaster.Job{Kind: mixmaster.KindArtifact, Project: "p", Group: group, Key: "k"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Claim(ctx, func(c *mixmaster.Job) bool { return c.ID == j.ID }); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Finish(ctx, j.ID, mixmaster.Outcome{Status: status}); err != nil {
			t.Fatal(err)
		}
		return j.ID
	}
	if head, err := db.GroupHead(ctx, "p", "g"); head != nil || err != nil {
		t.Fatalf("empty group: %+v, %v", head, err)
	}
	good := build("g", mixmaster.StatusSucceeded)
	build("g", mixmaster.StatusFailed)
	build("g", mixmaster.StatusErrored)
	build("other", mixmaster.StatusSucceeded)
	build("", mixmaster.StatusSucceeded)
	head, err := db.GroupHead(ctx, "p", "g")
	if err != nil || head == nil || head.ID != good {
		t.Fatalf("head = %+v, %v; want job %d: failed builds must not move it", head, err, good)
	}
	next := build("g", mixmaster.StatusSucceeded)
	if head, _ := db.GroupHead(ctx, "p", "g"); head.ID != next {
		t.Fatalf("head = %d, want %d", head.ID, next)
	}
}
