package jobs

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mixmaster"
	"mixmaster/artifacts"
	"mixmaster/store"
)

// fakeSCM "checks out" by creating the directory.
type fakeSCM struct{}

func (fakeSCM) Checkout(_ context.Context, spec mixmaster.CheckoutSpec, _ mixmaster.CheckoutLog) (string, error) {
	return strings.Repeat("c", 40), os.MkdirAll(spec.Dir, 0o755)
}

// execFunc is an Executor made of a function.
type execFunc func(ctx context.Context, spec mixmaster.ExecSpec, stdout io.Writer) (int, error)

func (f execFunc) Run(ctx context.Context, spec mixmaster.ExecSpec, stdout, _ io.Writer) (int, error) {
	return f(ctx, spec, stdout)
}

type harness struct {
	db     *store.DB
	runner *Runner
	svc    *Service
	root   string
}

func newHarness(t *testing.T, concurrency int, project *mixmaster.Project, exec execFunc) *harness {
	t.Helper()
	root := t.TempDir()
	db, err := store.Open(filepath.Join(root, "mixmaster.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	broker := NewBroker()
	files := &artifacts.Files{Root: root, Events: broker}
	projects := func(name string) (*mixmaster.Project, bool) { return project, name == project.Name }
	h := &harness{db: db, root: root, svc: &Service{Store: db, Projects: projects}}
	h.runner = &Runner{
		Store: db, Logs: files, Events: broker, SCM: fakeSCM{},
		Executors:    map[string]mixmaster.Executor{"shell": exec},
		Projects:     projects,
		Root:         root,
		ArtifactsDir: files.ArtifactsDir,
		Concurrency:  concurrency,
	}
	return h
}

func (h *harness) start(t *testing.T) {
	t.Helper()
	if err := h.runner.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.runner.Close(time.Second) })
}

func (h *harness) submit(t *testing.T, target string) mixmaster.JobID {
	t.Helper()
	j, _, err := h.svc.Submit(context.Background(), mixmaster.Request{Project: "org/repo", Target: target})
	if err != nil {
		t.Fatal(err)
	}
	return j.ID
}

func (h *harness) wait(t *testing.T, id mixmaster.JobID, want mixmaster.Status) *mixmaster.Job {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		j, err := h.db.Job(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status == want {
			return j
		}
		if j.Status.Done() {
			t.Fatalf("job %d ended %s (%s), want %s", id, j.Status, j.Error, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("job %d never became %s", id, want)
	return nil
}

var testProject = &mixmaster.Project{Name: "org/repo", Repository: "file:///srv/repo.git",
	Targets: map[string]string{"production": "deploy", "staging": "stage"}}

func TestRunnerSerializesSharedCheckout(t *testing.T) {
	var mu sync.Mutex
	active := map[string]int{}
	maxPerDir, maxTotal, total := 0, 0, 0
	h := newHarness(t, 4, testProject, func(_ context.Context, spec mixmaster.ExecSpec, _ io.Writer) (int, error) {
		mu.Lock()
		active[spec.Dir]++
		total++
		maxPerDir = max(maxPerDir, active[spec.Dir])
		maxTotal = max(maxTotal, total)
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		active[spec.Dir]--
		total--
		mu.Unlock()
		return 0, nil
	})
	var ids []mixmaster.JobID
	for _, target := range []string{"production", "production", "production", "staging/a", "staging/b"} {
		ids = append(ids, h.submit(t, target))
	}
	h.start(t)
	for _, id := range ids {
		h.wait(t, id, mixmaster.StatusSucceeded)
	}
	if maxPerDir != 1 {
		t.Errorf("%d jobs ran in one checkout at once", maxPerDir)
	}
	if maxTotal < 2 {
		t.Errorf("jobs of different targets never ran in parallel")
	}
}

func TestRunnerCancel(t *testing.T) {
	started := make(chan mixmaster.JobID, 1)
	h := newHarness(t, 1, testProject, func(ctx context.Context, spec mixmaster.ExecSpec, _ io.Writer) (int, error) {
		started <- spec.JobID
		<-ctx.Done()
		return -1, ctx.Err()
	})
	h.start(t)
	running := h.submit(t, "production")
	queued := h.submit(t, "staging")
	<-started

	j, err := h.runner.Cancel(context.Background(), queued)
	if err != nil || j.Status != mixmaster.StatusCanceled {
		t.Fatalf("cancel queued: %+v, %v", j, err)
	}
	if _, err := h.runner.Cancel(context.Background(), running); err != nil {
		t.Fatal(err)
	}
	j = h.wait(t, running, mixmaster.StatusCanceled)
	if j.ExitCode != nil {
		t.Errorf("a canceled job has exit code %d", *j.ExitCode)
	}
	if _, err := h.runner.Cancel(context.Background(), running); mixmaster.ErrorCode(err) != mixmaster.ECONFLICT {
		t.Errorf("cancel of a finished job: %v, want conflict", err)
	}
	select {
	case id := <-started:
		t.Errorf("canceled job %d ran", id)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestRunnerTimeout(t *testing.T) {
	p := *testProject
	p.Timeout = 100 * time.Millisecond
	h := newHarness(t, 1, &p, func(ctx context.Context, spec mixmaster.ExecSpec, _ io.Writer) (int, error) {
		if spec.Timeout != p.Timeout {
			return -1, fmt.Errorf("spec timeout %s", spec.Timeout)
		}
		<-ctx.Done()
		return -1, ctx.Err()
	})
	h.start(t)
	j := h.wait(t, h.submit(t, "production"), mixmaster.StatusFailed)
	if j.Error != "timed out after 100ms" {
		t.Errorf("error = %q", j.Error)
	}
}

func TestRunnerRecoversInterruptedJobs(t *testing.T) {
	runs := make(chan mixmaster.JobID, 10)
	h := newHarness(t, 1, testProject, func(_ context.Context, spec mixmaster.ExecSpec, _ io.Writer) (int, error) {
		runs <- spec.JobID
		return 0, nil
	})
	// A job a previous process claimed and never finished, and one it
	// never got to.
	interrupted := h.submit(t, "production")
	if j, err := h.db.Claim(context.Background(), func(*mixmaster.Job) bool { return true }); err != nil || j.ID != interrupted {
		t.Fatalf("claim: %+v, %v", j, err)
	}
	waiting := h.submit(t, "staging")
	h.start(t)

	j := h.wait(t, interrupted, mixmaster.StatusErrored)
	if j.Error != RestartReason {
		t.Errorf("interrupted job error = %q", j.Error)
	}
	h.wait(t, waiting, mixmaster.StatusSucceeded)
	jobs, _ := h.db.Jobs(context.Background(), mixmaster.JobFilter{})
	var retry *mixmaster.Job
	for _, j := range jobs {
		if j.RetryOf == interrupted {
			retry = j
		}
	}
	if retry == nil {
		t.Fatal("the interrupted job was not queued again")
	}
	h.wait(t, retry.ID, mixmaster.StatusSucceeded)
	if log, _ := os.ReadFile(filepath.Join(h.root, "jobs", interrupted.String(), "log")); !strings.Contains(string(log), "interrupted by restart") {
		t.Errorf("interrupted job's log:\n%s", log)
	}
}

func TestRunnerStopLeavesJobForRecovery(t *testing.T) {
	started := make(chan struct{}, 1)
	h := newHarness(t, 1, testProject, func(ctx context.Context, _ mixmaster.ExecSpec, _ io.Writer) (int, error) {
		started <- struct{}{}
		<-ctx.Done()
		return -1, ctx.Err()
	})
	if err := h.runner.Open(); err != nil {
		t.Fatal(err)
	}
	id := h.submit(t, "production")
	<-started
	h.runner.Close(50 * time.Millisecond)
	j, _ := h.db.Job(context.Background(), id)
	if j.Status != mixmaster.StatusRunning {
		t.Fatalf("after stop the job is %s, want running (for recovery)", j.Status)
	}
	interrupted, err := h.db.Recover(context.Background(), RestartReason)
	if err != nil || len(interrupted) != 1 || interrupted[0].ID != id {
		t.Fatalf("recover: %+v, %v", interrupted, err)
	}
}

func TestRerun(t *testing.T) {
	h := newHarness(t, 1, testProject, func(context.Context, mixmaster.ExecSpec, io.Writer) (int, error) { return 0, nil })
	h.svc.ProjectNames = func() []string { return []string{"org/repo"} }
	id := h.submit(t, "staging/x")
	if _, err := h.svc.Rerun(context.Background(), id, mixmaster.TriggerUI); mixmaster.ErrorCode(err) != mixmaster.ECONFLICT {
		t.Fatalf("rerun of a queued job: %v", err)
	}
	h.start(t)
	first := h.wait(t, id, mixmaster.StatusSucceeded)
	again, err := h.svc.Rerun(context.Background(), id, mixmaster.TriggerUI)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID == id || again.Target != "staging/x" || again.Commit != first.Commit || again.Trigger != mixmaster.TriggerUI {
		t.Fatalf("rerun = %+v", again)
	}
	h.wait(t, again.ID, mixmaster.StatusSucceeded)
	if list := h.svc.ListProjects(); len(list) != 1 || list[0].Name != "org/repo" || list[0].Kind != mixmaster.KindWebhook {
		t.Errorf("ListProjects = %+v", list)
	}
}

// A job whose repository came from a signed delivery runs again without
// a new signature: the URL was proven when the job was accepted.
func TestRerunKeepsSignedRepository(t *testing.T) {
	unpinned := &mixmaster.Project{Name: "org/repo", Targets: map[string]string{"master": "make"}}
	h := newHarness(t, 1, unpinned, func(context.Context, mixmaster.ExecSpec, io.Writer) (int, error) { return 0, nil })
	j, _, err := h.svc.Submit(context.Background(), mixmaster.Request{
		Project: "org/repo", Target: "master", RepositoryURL: "https://git.example.com/org/repo.git", Signed: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.start(t)
	h.wait(t, j.ID, mixmaster.StatusSucceeded)
	again, err := h.svc.Rerun(context.Background(), j.ID, mixmaster.TriggerUI)
	if err != nil {
		t.Fatalf("rerun of a signed delivery's job: %v", err)
	}
	if again.RepositoryURL != j.RepositoryURL {
		t.Errorf("rerun repository = %q, want %q", again.RepositoryURL, j.RepositoryURL)
	}
}
