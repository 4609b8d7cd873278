package jobs

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"mixmaster"
	"mixmaster/sandbox/workspace"
	"mixmaster/store"
)

// pruneFixture is a real store and build root with a clock the test moves.
type pruneFixture struct {
	t    *testing.T
	db   *store.DB
	root string
	now  time.Time
}

func newPruneFixture(t *testing.T) *pruneFixture {
	root := t.TempDir()
	db, err := store.Open(filepath.Join(root, "mixmaster.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &pruneFixture{t: t, db: db, root: root, now: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	db.Now = func() time.Time { return f.now }
	return f
}

// job creates a job, runs it to status (unless it stays queued or running)
// and makes its directories, then moves the clock on by a day.
func (f *pruneFixture) job(j *mixmaster.Job, status mixmaster.Status) *mixmaster.Job {
	f.t.Helper()
	ctx := context.Background()
	if j.Trigger == "" {
		j.Trigger = mixmaster.TriggerAPI
	}
	stored, _, err := f.db.CreateJob(ctx, j)
	if err != nil {
		f.t.Fatal(err)
	}
	if status != mixmaster.StatusQueued {
		if _, err := f.db.Claim(ctx, func(c *mixmaster.Job) bool { return c.ID == stored.ID }); err != nil {
			f.t.Fatal(err)
		}
		if status != mixmaster.StatusRunning {
			if stored, err = f.db.Finish(ctx, stored.ID, mixmaster.Outcome{Status: status}); err != nil {
				f.t.Fatal(err)
			}
		}
	}
	for _, dir := range f.pruner(nil).Dirs(stored) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			f.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "log"), []byte("x"), 0o640); err != nil {
			f.t.Fatal(err)
		}
	}
	f.now = f.now.Add(24 * time.Hour)
	return stored
}

func (f *pruneFixture) webhook(project, target string, status mixmaster.Status) *mixmaster.Job {
	return f.job(&mixmaster.Job{Kind: mixmaster.KindWebhook, Project: project, Target: target, Command: "make"}, status)
}

func (f *pruneFixture) artifact(project, group, key string, status mixmaster.Status) *mixmaster.Job {
	return f.job(&mixmaster.Job{Kind: mixmaster.KindArtifact, Project: project, Group: group, Key: key}, status)
}

func (f *pruneFixture) pruner(policy map[string][2]int) *Pruner {
	return &Pruner{
		Store: f.db, Workspaces: workspace.Plain{}, Root: f.root,
		Policy: func(project string) (time.Duration, int) {
			p := policy[project]
			return time.Duration(p[0]) * 24 * time.Hour, p[1]
		},
		Now: func() time.Time { return f.now },
	}
}

func ids(jobs []*mixmaster.Job) []mixmaster.JobID {
	out := make([]mixmaster.JobID, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	slices.Sort(out)
	return out
}

func TestPruneKeepLastAndKeepPerProject(t *testing.T) {
	f := newPruneFixture(t)
	// a: keep the newest 2. b: keep 2.5 days. c: no policy, kept forever.
	var a, b, c []*mixmaster.Job
	for range 4 {
		a = append(a, f.webhook("a", "main", mixmaster.StatusFailed))
		b = append(b, f.webhook("b", "main", mixmaster.StatusFailed))
		c = append(c, f.webhook("c", "main", mixmaster.StatusFailed))
	}
	// Jobs finished 12, 11, 10 … 1 days ago, a0 first.
	p := f.pruner(map[string][2]int{"a": {0, 2}, "b": {6, 0}})
	plan, err := p.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// b's jobs finished 11, 8, 5 and 2 days ago: the first two are older than 6 days.
	want := ids([]*mixmaster.Job{a[0], a[1], b[0], b[1]})
	if got := ids(plan); !slices.Equal(got, want) {
		t.Fatalf("plan = %v, want %v", got, want)
	}

	n, err := p.Prune(context.Background())
	if err != nil || n != len(want) {
		t.Fatalf("Prune = %d, %v; want %d", n, err, len(want))
	}
	for _, j := range plan {
		if _, err := f.db.Job(context.Background(), j.ID); mixmaster.ErrorCode(err) != mixmaster.ENOTFOUND {
			t.Errorf("job %d still stored: %v", j.ID, err)
		}
		for _, dir := range p.Dirs(j) {
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("%s still there: %v", dir, err)
			}
		}
	}
	for _, j := range append([]*mixmaster.Job{a[2], a[3], b[2], b[3]}, c...) {
		if _, err := os.Stat(p.Dirs(j)[0]); err != nil {
			t.Errorf("job %d of %s lost its directory: %v", j.ID, j.Project, err)
		}
	}
	// A second run finds nothing more.
	if n, err := p.Prune(context.Background()); n != 0 || err != nil {
		t.Errorf("second Prune = %d, %v", n, err)
	}
}

func TestPruneSparesLiveJobsAndLastSuccesses(t *testing.T) {
	f := newPruneFixture(t)
	oldMain := f.webhook("w", "main", mixmaster.StatusSucceeded)
	lastMain := f.webhook("w", "main", mixmaster.StatusSucceeded)
	lastProd := f.webhook("w", "prod", mixmaster.StatusSucceeded)
	failed := f.webhook("w", "main", mixmaster.StatusFailed)
	running := f.webhook("w", "main", mixmaster.StatusRunning)
	queued := f.webhook("w", "main", mixmaster.StatusQueued)

	oldHead := f.artifact("lib", "g", "k1", mixmaster.StatusSucceeded)
	head := f.artifact("lib", "g", "k2", mixmaster.StatusSucceeded)
	keyOnly := f.artifact("lib", "", "k3", mixmaster.StatusSucceeded)
	failedArt := f.artifact("lib", "g", "k2", mixmaster.StatusFailed)
	f.now = f.now.Add(365 * 24 * time.Hour)

	// Everything is older than a day and nothing is kept by count.
	p := f.pruner(map[string][2]int{"w": {1, 0}, "lib": {1, 0}})
	plan, err := p.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// oldHead is neither the group head nor its key's newest success (it is
	// the only success of k1, so it stays for the cache).
	want := ids([]*mixmaster.Job{oldMain, failed, failedArt})
	if got := ids(plan); !slices.Equal(got, want) {
		t.Fatalf("plan = %v, want %v", got, want)
	}
	if _, err := p.Prune(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, j := range []*mixmaster.Job{lastMain, lastProd, running, queued, oldHead, head, keyOnly} {
		if _, err := f.db.Job(context.Background(), j.ID); err != nil {
			t.Errorf("job %d went: %v", j.ID, err)
		}
		if _, err := os.Stat(p.Dirs(j)[len(p.Dirs(j))-1]); err != nil {
			t.Errorf("job %d lost its files: %v", j.ID, err)
		}
	}
	if _, err := os.Stat(filepath.Join(f.root, "lib", "ready", failedArt.ID.String())); !os.IsNotExist(err) {
		t.Errorf("artifact build directory of job %d still there: %v", failedArt.ID, err)
	}
}

func TestPruneMissingDirectoryIsFine(t *testing.T) {
	f := newPruneFixture(t)
	j := f.webhook("w", "main", mixmaster.StatusFailed)
	p := f.pruner(map[string][2]int{"w": {0, 0}})
	p.Policy = func(string) (time.Duration, int) { return time.Hour, 0 }
	for _, dir := range p.Dirs(j) {
		os.RemoveAll(dir) // as after a crash between the two steps
	}
	if n, err := p.Prune(context.Background()); n != 1 || err != nil {
		t.Fatalf("Prune = %d, %v; want 1, nil", n, err)
	}
}

func TestPruneDryRunPlanRemovesNothing(t *testing.T) {
	f := newPruneFixture(t)
	j := f.webhook("w", "main", mixmaster.StatusFailed)
	f.webhook("w", "main", mixmaster.StatusFailed)
	p := f.pruner(map[string][2]int{"w": {0, 1}})
	plan, err := p.Plan(context.Background())
	if err != nil || len(plan) != 1 || plan[0].ID != j.ID {
		t.Fatalf("Plan = %v, %v; want job %d", ids(plan), err, j.ID)
	}
	if _, err := f.db.Job(context.Background(), j.ID); err != nil {
		t.Errorf("Plan removed the record: %v", err)
	}
	if _, err := os.Stat(p.Dirs(j)[0]); err != nil {
		t.Errorf("Plan removed the directory: %v", err)
	}
}

func TestPruneImagesKeepsCurrentOnes(t *testing.T) {
	projects := t.TempDir()
	writeProject(t, filepath.Join(projects, "app"), map[string]string{"Dockerfile": "FROM x\n"})
	writeProject(t, filepath.Join(projects, "script"), map[string]string{"build": "#!/bin/sh\n"})
	folders := &Folders{Dir: projects}
	f, _ := folders.Folder("app")
	content, _ := folders.ContentHash(f)
	current := imageTag("app", content)

	var kept, dropped []string
	p := &Pruner{
		Store:   &prunerNoJobs{},
		Folders: folders,
		Images: func(_ context.Context, keep func(string) bool) (int, error) {
			for _, tag := range []string{current, "mixmaster-app:0123456789abcdef", "mixmaster-gone:0123456789abcdef"} {
				if keep(tag) {
					kept = append(kept, tag)
				} else {
					dropped = append(dropped, tag)
				}
			}
			return len(dropped), nil
		},
	}
	if _, err := p.Prune(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(kept) != 1 || kept[0] != current || len(dropped) != 2 {
		t.Errorf("kept %v, dropped %v", kept, dropped)
	}
}

// A projects folder that cannot be read removes no image: every one
// would look stale.
func TestPruneImagesStopsWhenProjectsUnreadable(t *testing.T) {
	// A file where the folder should be cannot be listed, even by root.
	notDir := filepath.Join(t.TempDir(), "projects")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	called := false
	p := &Pruner{
		Store:   &prunerNoJobs{},
		Folders: &Folders{Dir: notDir},
		Images: func(context.Context, func(string) bool) (int, error) {
			called = true
			return 0, nil
		},
	}
	if _, err := p.Prune(context.Background()); err == nil || called {
		t.Errorf("Prune = %v, images pruned: %v; want an error and none pruned", err, called)
	}
}

// prunerNoJobs is a store with no jobs at all.
type prunerNoJobs struct{ PruneStore }

func (prunerNoJobs) Jobs(context.Context, mixmaster.JobFilter) ([]*mixmaster.Job, error) {
	return nil, nil
}
