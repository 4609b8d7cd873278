package jobs

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"mixmaster"
	"mixmaster/store"
)

// testService is a Service over a real store in a temporary directory. It
// returns the service and a function listing the jobs the store holds.
func testService(t *testing.T) (*Service, func() []*mixmaster.Job) {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "mixmaster.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	projects := map[string]*mixmaster.Project{
		"org/repo": {Name: "org/repo", Targets: map[string]string{"production": "make deploy", "master/docs": "make docs"}},
		"org/pinned": {Name: "org/pinned", Repository: "file:///srv/git/pinned.git",
			Targets: map[string]string{"master": "make"}},
	}
	s := &Service{
		Store:    db,
		Projects: func(name string) (*mixmaster.Project, bool) { p, ok := projects[name]; return p, ok },
	}
	stored := func() []*mixmaster.Job {
		t.Helper()
		jobs, err := db.Jobs(context.Background(), mixmaster.JobFilter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return jobs
	}
	return s, stored
}

func TestSubmit(t *testing.T) {
	s, stored := testService(t)
	job, ok, err := s.Submit(context.Background(), mixmaster.Request{
		Trigger: mixmaster.TriggerWebhook, Project: "org/repo", Target: "production",
		Commit: strings.Repeat("a", 40), RepositoryURL: "git@git.example.com:org/repo.git", Notify: true,
		Signed: true,
	})
	if err != nil || !ok {
		t.Fatalf("Submit: %v", err)
	}
	if job.Command != "make deploy" || job.ConfigKey != "production" || job.Kind != mixmaster.KindWebhook || len(stored()) != 1 {
		t.Fatalf("job = %+v", job)
	}
	// A pinned repository ignores the payload's URL, even a hostile one.
	job, _, err = s.Submit(context.Background(), mixmaster.Request{Project: "org/pinned", Target: "master", RepositoryURL: "ext::sh -c touch% /tmp/pwned"})
	if err != nil || job.RepositoryURL != "file:///srv/git/pinned.git" {
		t.Fatalf("pinned: %+v, %v", job, err)
	}
}

func TestSubmitRejects(t *testing.T) {
	ok := mixmaster.Request{Project: "org/repo", Target: "production", RepositoryURL: "https://git.example.com/org/repo.git", Signed: true}
	tests := []struct {
		name   string
		modify func(*mixmaster.Request)
		code   string
		msg    string
	}{
		{"unknown project", func(r *mixmaster.Request) { r.Project = "org/nope" }, mixmaster.EUNPROCESSABLE, "Unknown project 'org/nope'"},
		{"dot-dot project", func(r *mixmaster.Request) { r.Project = "../../etc" }, mixmaster.EUNPROCESSABLE, "Unknown project"},
		{"slash games", func(r *mixmaster.Request) { r.Project = "org//repo/" }, mixmaster.EUNPROCESSABLE, "Unknown project"},
		{"unknown branch", func(r *mixmaster.Request) { r.Target = "feature" }, mixmaster.EUNPROCESSABLE, "Not set up to build feature"},
		{"unknown task", func(r *mixmaster.Request) { r.Target = "master"; r.Task = "lint" }, mixmaster.EUNPROCESSABLE, "Not set up for lint task."},
		{"shell in branch", func(r *mixmaster.Request) { r.Target = "$(touch x)" }, mixmaster.EUNPROCESSABLE, "not a valid branch name"},
		{"option as branch", func(r *mixmaster.Request) { r.Target = "--upload-pack=touch x" }, mixmaster.EUNPROCESSABLE, "not a valid branch name"},
		{"option as commit", func(r *mixmaster.Request) { r.Commit = "-c core.sshCommand=touch x" }, mixmaster.EUNPROCESSABLE, "neither a full SHA nor a ref"},
		{"short sha with space", func(r *mixmaster.Request) { r.Commit = "abc 123" }, mixmaster.EUNPROCESSABLE, "neither a full SHA"},
		{"ext url", func(r *mixmaster.Request) { r.RepositoryURL = "ext::sh -c touch% /tmp/pwned" }, mixmaster.EUNPROCESSABLE, "invalid repository URL"},
		{"option url", func(r *mixmaster.Request) { r.RepositoryURL = "--upload-pack=touch /tmp/pwned" }, mixmaster.EUNPROCESSABLE, "invalid repository URL"},
		{"file url from payload", func(r *mixmaster.Request) { r.RepositoryURL = "file:///etc" }, mixmaster.EUNPROCESSABLE, "only allowed in the configuration"},
		{"no url", func(r *mixmaster.Request) { r.RepositoryURL = "" }, mixmaster.EUNPROCESSABLE, "repositoryUrl not specified"},
		{"unsigned payload url", func(r *mixmaster.Request) { r.Signed = false }, mixmaster.EUNPROCESSABLE, "set .repository for org/repo"},
		{"unsigned hostile url", func(r *mixmaster.Request) { r.Signed = false; r.RepositoryURL = "git@evil.example.com:x/y.git" }, mixmaster.EUNPROCESSABLE, "set .repository"},
		{"task with slash", func(r *mixmaster.Request) { r.Target = "master"; r.Task = "../docs" }, mixmaster.EUNPROCESSABLE, "not a valid task name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, stored := testService(t)
			r := ok
			tt.modify(&r)
			_, _, err := s.Submit(context.Background(), r)
			if mixmaster.ErrorCode(err) != tt.code || !strings.Contains(mixmaster.ErrorMessage(err), tt.msg) {
				t.Fatalf("err = %v (code %s); want %s containing %q", err, mixmaster.ErrorCode(err), tt.code, tt.msg)
			}
			if len(stored()) != 0 {
				t.Fatal("a rejected request was queued")
			}
		})
	}
}

// A burst of pushes queues deep: the artifact backlog does not refuse
// webhook deliveries, which forges never send again.
func TestSubmitWebhookBacklog(t *testing.T) {
	ctx := context.Background()
	s, stored := testService(t)
	s.Backlog = 2
	branches := []string{"production", "production/a", "production/b", "production/c"}
	for i := range 40 {
		r := mixmaster.Request{Project: "org/repo", Target: branches[i%len(branches)],
			RepositoryURL: "https://git.example.com/org/repo.git", Signed: true, DeliveryID: fmt.Sprint("d", i)}
		if _, created, err := s.Submit(ctx, r); err != nil || !created {
			t.Fatalf("push %d: created %v, %v", i+1, created, err)
		}
	}
	if n := len(stored()); n != 40 {
		t.Fatalf("%d jobs queued, want 40", n)
	}
	// Artifact requests and reruns still meet the short backlog.
	if err := s.checkBacklog(ctx); mixmaster.ErrorCode(err) != mixmaster.EUNAVAILABLE {
		t.Fatalf("artifact backlog: %v; want unavailable", err)
	}
}

func TestSubmitWebhookBacklogFull(t *testing.T) {
	s, stored := testService(t)
	s.WebhookBacklog = 5
	r := mixmaster.Request{Project: "org/repo", Target: "production", RepositoryURL: "https://git.example.com/org/repo.git", Signed: true}
	for i := range 5 {
		if _, _, err := s.Submit(context.Background(), r); err != nil {
			t.Fatalf("push %d: %v", i+1, err)
		}
	}
	_, _, err := s.Submit(context.Background(), r)
	if mixmaster.ErrorCode(err) != mixmaster.EUNAVAILABLE || !strings.Contains(mixmaster.ErrorMessage(err), "build queue is full (5 jobs waiting)") {
		t.Fatalf("sixth push: %v (code %s); want unavailable saying the queue is full", err, mixmaster.ErrorCode(err))
	}
	if n := len(stored()); n != 5 {
		t.Fatalf("%d jobs queued, want 5", n)
	}
}

func TestSubmitRefusedWhenDiskIsFull(t *testing.T) {
	s, stored := testService(t)
	s.Root = t.TempDir()
	s.MinFree = 1 << 62 // more than any disk holds
	r := mixmaster.Request{Project: "org/repo", Target: "production", RepositoryURL: "https://git.example.com/org/repo.git", Signed: true}
	_, _, err := s.Submit(context.Background(), r)
	if mixmaster.ErrorCode(err) != mixmaster.EUNAVAILABLE || !strings.Contains(err.Error(), "free on the build root's disk") {
		t.Fatalf("err = %v; want 503 saying why", err)
	}
	if len(stored()) != 0 {
		t.Fatal("a job was queued")
	}
	if err := s.checkBacklog(context.Background()); mixmaster.ErrorCode(err) != mixmaster.EUNAVAILABLE || !strings.Contains(err.Error(), "free on the build root's disk") {
		t.Fatalf("artifact request: %v; want 503 saying why", err)
	}
	s.MinFree = 1
	if _, _, err := s.Submit(context.Background(), r); err != nil {
		t.Fatalf("with space: %v", err)
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{512: "512 B", 2048: "2.0 KiB", 3 << 30: "3.0 GiB"} {
		if got := mixmaster.FormatSize(n); got != want {
			t.Errorf("mixmaster.FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
