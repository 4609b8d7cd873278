package store_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"mixmaster"
	"mixmaster/store"
)

// BenchmarkCreateJob measures durable CreateJob commits, the rate at which
// webhooks can be accepted. Each commit fsyncs, so the disk sets the pace;
// concurrent callers queue for bbolt's single writer.
func BenchmarkCreateJob(b *testing.B) {
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		db := MustOpen(b)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			job := webhookJob("owner/repo")
			job.DeliveryID = fmt.Sprint("delivery-", i)
			if _, _, err := db.CreateJob(ctx, job); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	})
	b.Run("parallel", func(b *testing.B) {
		db := MustOpen(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, _, err := db.CreateJob(ctx, webhookJob("owner/repo")); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	})
}

// jobsFixture is the size of the store BenchmarkJobsPage lists from.
const jobsFixture = 100_000

// BenchmarkJobsPage lists one page from the fixture's store.
func BenchmarkJobsPage(b *testing.B) {
	db := MustOpen(b)
	importFixture(b, db)

	ctx := context.Background()
	mid := mixmaster.JobID(jobsFixture / 2)
	bench := []struct {
		name string
		f    mixmaster.JobFilter
	}{
		{"first", mixmaster.JobFilter{}},
		{"before", mixmaster.JobFilter{Before: mid}},
		{"max limit", mixmaster.JobFilter{Limit: 500}},
		{"project", mixmaster.JobFilter{Project: "owner/repo07"}},
		{"project before", mixmaster.JobFilter{Project: "owner/repo07", Before: mid}},
		{"status running", mixmaster.JobFilter{Status: mixmaster.StatusRunning}},
		{"status queued", mixmaster.JobFilter{Status: mixmaster.StatusQueued}},
		{"status failed", mixmaster.JobFilter{Status: mixmaster.StatusFailed}},
		{"status failed before", mixmaster.JobFilter{Status: mixmaster.StatusFailed, Before: mid}},
		{"status errored (rare)", mixmaster.JobFilter{Status: mixmaster.StatusErrored}},
		{"project and errored", mixmaster.JobFilter{Project: "owner/repo07", Status: mixmaster.StatusErrored}},
	}
	for _, bb := range bench {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				jobs, err := db.Jobs(ctx, bb.f)
				if err != nil {
					b.Fatal(err)
				}
				if len(jobs) == 0 {
					b.Fatal("empty page")
				}
			}
		})
	}
}

// importFixture fills db with 100 000 jobs in 20 projects: mostly
// succeeded, one in ten failed, one in a thousand errored, and a few
// running and queued at the end.
func importFixture(b *testing.B, db *store.DB) {
	b.Helper()
	const batch = 10_000
	for start := 0; start < jobsFixture; start += batch {
		jobs := make([]*mixmaster.Job, batch)
		for i := range jobs {
			n := start + i
			job := webhookJob(fmt.Sprintf("owner/repo%02d", n%20))
			job.Message = "Merge pull request #1234 from someone/some-branch"
			job.ExitCode = intp(0)
			switch {
			case n >= jobsFixture-20:
				job.Status, job.ExitCode = mixmaster.StatusQueued, nil
			case n >= jobsFixture-25:
				job.Status, job.ExitCode = mixmaster.StatusRunning, nil
			case n%1000 == 7:
				job.Status, job.Error = mixmaster.StatusErrored, "checkout: exit status 128"
			case n%10 == 3:
				job.Status, job.ExitCode = mixmaster.StatusFailed, intp(2)
			default:
				job.Status = mixmaster.StatusSucceeded
			}
			jobs[i] = job
		}
		if err := db.ImportForTest(jobs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen opens the fixture's store, about 90 MB: Open reads the
// whole file once to check it before serving.
func BenchmarkOpen(b *testing.B) {
	db := MustOpen(b)
	importFixture(b, db)
	path := db.Path()
	db.Close()
	if fi, err := os.Stat(path); err == nil {
		b.SetBytes(fi.Size())
	}
	for b.Loop() {
		db, err := store.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		db.Close()
	}
}
