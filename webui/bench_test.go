package webui

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"mixmaster"
	"mixmaster/api"
	"mixmaster/artifacts"
	"mixmaster/jobs"
	"mixmaster/store"
)

// benchJobs is the size of the store BenchmarkDashboard renders from.
const benchJobs = 100_000

// The 100 000-job store is built once per test binary: it takes a while,
// and every run of the benchmark function reads the same file.
var (
	benchOnce sync.Once
	benchDB   *store.DB
	benchDir  string
	benchErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDB != nil {
		benchDB.Close()
	}
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// benchStore returns the shared store of benchJobs jobs in 20 projects:
// webhook builds with commits and view URLs, one in ten an artifact build
// with params. The newest page holds every status. Jobs go in through
// CreateJob from many goroutines at once, so they share fsynced commits.
func benchStore(b *testing.B) *store.DB {
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "webui-bench-")
		if benchErr != nil {
			return
		}
		benchDB, benchErr = store.Open(filepath.Join(benchDir, "mixmaster.db"))
		if benchErr != nil {
			return
		}
		benchErr = fillStore(benchDB)
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDB
}

func fillStore(db *store.DB) error {
	ctx := context.Background()
	work := make(chan int)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range 1000 {
		wg.Go(func() {
			for n := range work {
				if _, _, err := db.CreateJob(ctx, benchJob(n)); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for n := range benchJobs {
		work <- n
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	// Give the newest page its statuses: a claim scans the whole queue, so
	// only a few jobs are claimed; canceling is cheap.
	for id := mixmaster.JobID(benchJobs - 30); id < benchJobs-20; id++ {
		if _, err := db.CancelQueued(ctx, id, "canceled by a user"); err != nil {
			return err
		}
	}
	outcomes := []mixmaster.Status{
		mixmaster.StatusSucceeded, mixmaster.StatusSucceeded, mixmaster.StatusFailed,
		mixmaster.StatusSucceeded, mixmaster.StatusErrored, "", "",
	}
	for i, st := range outcomes {
		id := mixmaster.JobID(benchJobs - 12 + i)
		if _, err := db.Claim(ctx, func(j *mixmaster.Job) bool { return j.ID == id }); err != nil {
			return err
		}
		if st == "" {
			continue // left running
		}
		code := 0
		if st == mixmaster.StatusFailed {
			code = 2
		}
		o := mixmaster.Outcome{Status: st, ExitCode: &code}
		if st == mixmaster.StatusErrored {
			o = mixmaster.Outcome{Status: st, Error: "checkout: exit status 128"}
		}
		if _, err := db.Finish(ctx, id, o); err != nil {
			return err
		}
	}
	return nil
}

func benchJob(n int) *mixmaster.Job {
	project := fmt.Sprintf("owner/repo%02d", n%20)
	if n%10 == 9 {
		return &mixmaster.Job{
			Kind: mixmaster.KindArtifact, Trigger: mixmaster.TriggerClient, Project: fmt.Sprintf("artifacts%02d", n%7),
			Group: "nightly", Params: map[string]string{"version": fmt.Sprint(n), "arch": "amd64"},
			Key: fmt.Sprintf("%064x", n),
		}
	}
	commit := fmt.Sprintf("%040x", n*7919)
	return &mixmaster.Job{
		Kind: mixmaster.KindWebhook, Trigger: mixmaster.TriggerGitea, Project: project,
		Target: []string{"master", "production", "staging/feature-x"}[n%3], Commit: commit,
		Command:       "make deploy",
		RepositoryURL: "git@git.example.com:" + project + ".git",
		ViewURL:       "https://git.example.com/" + project + "/compare/" + commit[:12] + "..." + commit[12:24],
		Message:       "Merge pull request #1234 from someone/some-branch",
		Notify:        true,
	}
}

// benchCatalog lists the projects of the fixture.
type benchCatalog struct{}

func (benchCatalog) ListProjects() []mixmaster.ProjectInfo {
	var out []mixmaster.ProjectInfo
	for i := range 20 {
		out = append(out, mixmaster.ProjectInfo{Name: fmt.Sprintf("owner/repo%02d", i), Kind: mixmaster.KindWebhook,
			Targets: map[string]string{"master": "make", "production": "make deploy"}})
	}
	for i := range 7 {
		out = append(out, mixmaster.ProjectInfo{Name: fmt.Sprintf("artifacts%02d", i), Kind: mixmaster.KindArtifact})
	}
	return out
}

// BenchmarkDashboard renders GET / and a few filtered or deep pages from a
// store of 100 000 jobs through the whole echo stack, and reports the
// median and 99th percentile time of one page.
func BenchmarkDashboard(b *testing.B) {
	db := benchStore(b)
	h := &Handler{Jobs: db, Catalog: benchCatalog{}, Events: jobs.NewBroker(), Version: "bench"}
	e := echo.New()
	h.Register(e)
	for _, bb := range []struct{ name, target string }{
		{"first page", "/"},
		{"deep page", "/?before=50000"},
		{"project", "/?project=owner%2Frepo07"},
		{"project and status", "/?project=owner%2Frepo07&status=queued"},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			var times []time.Duration
			for b.Loop() {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(http.MethodGet, bb.target, nil)
				start := time.Now()
				e.ServeHTTP(rec, req)
				times = append(times, time.Since(start))
				if rec.Code != http.StatusOK || strings.Count(rec.Body.String(), "<tr data-job=") != pageSize {
					b.Fatalf("status %d, %d rows", rec.Code, strings.Count(rec.Body.String(), "<tr data-job="))
				}
			}
			reportPercentiles(b, times)
		})
	}
}

// BenchmarkJobPage renders the page of a running job whose log holds 50 MB:
// only the log's tail is read and shown.
func BenchmarkJobPage(b *testing.B) {
	f := newFixture(b)
	job := f.run(&mixmaster.Job{Project: "demo/hello", Target: "master"}, mixmaster.StatusRunning)
	var log strings.Builder
	for i := 0; log.Len() < 50<<20; i++ {
		fmt.Fprintf(&log, "2026-11-21T09:14:03.412Z O line %d %s\n", i, strings.Repeat("=", 60))
	}
	mustWrite(b, f.files.LogPath(job.ID), log.String(), 0o640)
	target := jobURL(job.Project, job.ID)
	b.ReportAllocs()
	var times []time.Duration
	for b.Loop() {
		start := time.Now()
		rec := f.get(target)
		times = append(times, time.Since(start))
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
	reportPercentiles(b, times)
}

// BenchmarkLogToSSE measures how long a line written to a running job's
// log takes to reach a client of the log's event stream, GET /log/…,
// served by the api package on a real HTTP server.
func BenchmarkLogToSSE(b *testing.B) {
	root := b.TempDir()
	db, err := store.Open(filepath.Join(root, "mixmaster.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	broker := jobs.NewBroker()
	files := &artifacts.Files{Root: root, Events: broker}
	ctx := context.Background()
	job, _, err := db.CreateJob(ctx, &mixmaster.Job{Kind: mixmaster.KindWebhook, Project: "demo/hello", Target: "master"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.Claim(ctx, nil); err != nil {
		b.Fatal(err)
	}
	log, err := files.Create(job.ID)
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	log.Status("Build started")

	e := echo.New()
	(&api.Handler{Jobs: db, Logs: files, Events: broker}).Register(e)
	srv := httptest.NewServer(e)
	defer srv.Close()
	req, _ := http.NewRequestWithContext(b.Context(), http.MethodGet, srv.URL+"/log/demo/hello/"+job.ID.String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 16)
	go func() {
		r := bufio.NewReader(resp.Body)
		for {
			s, err := r.ReadString('\n')
			if err != nil {
				close(lines)
				return
			}
			if data, ok := strings.CutPrefix(s, "data: "); ok {
				lines <- strings.TrimSuffix(data, "\n")
			}
		}
	}()
	<-lines // Build started

	var times []time.Duration
	stdout := log.Stdout()
	for i := 0; b.Loop(); i++ {
		want := fmt.Sprintf("line %d", i)
		start := time.Now()
		if _, err := fmt.Fprintln(stdout, want); err != nil {
			b.Fatal(err)
		}
		for got := range lines {
			if strings.HasSuffix(got, " O "+want) {
				break
			}
		}
		times = append(times, time.Since(start))
	}
	reportPercentiles(b, times)
}

func reportPercentiles(b *testing.B, times []time.Duration) {
	if len(times) == 0 {
		return
	}
	slices.Sort(times)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(times[len(times)/2]), "p50-ms")
	b.ReportMetric(ms(times[len(times)*99/100]), "p99-ms")
}
