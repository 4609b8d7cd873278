package jobs

import (
	"context"
	"strings"
	"testing"

	"mixmaster"
)

// fakeStore is a JobStore whose methods are function fields; unset methods
// panic, which shows a test reached something it should not.
type fakeStore struct {
	mixmaster.JobStore
	create   func(*mixmaster.Job) (*mixmaster.Job, bool, error)
	queueLen func() (int, error)
}

func (f *fakeStore) CreateJob(_ context.Context, j *mixmaster.Job) (*mixmaster.Job, bool, error) {
	return f.create(j)
}
func (f *fakeStore) QueueLen(context.Context) (int, error) { return f.queueLen() }

func testService(t *testing.T) (*Service, *[]*mixmaster.Job) {
	t.Helper()
	var created []*mixmaster.Job
	projects := map[string]*mixmaster.Project{
		"org/repo": {Name: "org/repo", Targets: map[string]string{"production": "make deploy", "master/docs": "make docs"}},
		"org/pinned": {Name: "org/pinned", Repository: "file:///srv/git/pinned.git",
			Targets: map[string]string{"master": "make"}},
	}
	s := &Service{
		Store: &fakeStore{
			create: func(j *mixmaster.Job) (*mixmaster.Job, bool, error) {
				j.ID = mixmaster.JobID(len(created) + 1)
				created = append(created, j)
				return j, true, nil
			},
			queueLen: func() (int, error) { return len(created), nil },
		},
		Projects: func(name string) (*mixmaster.Project, bool) { p, ok := projects[name]; return p, ok },
	}
	return s, &created
}

func TestSubmit(t *testing.T) {
	s, created := testService(t)
	job, ok, err := s.Submit(context.Background(), mixmaster.Request{
		Trigger: mixmaster.TriggerWebhook, Project: "org/repo", Target: "production",
		Commit: strings.Repeat("a", 40), RepositoryURL: "git@git.example.com:org/repo.git", Notify: true,
	})
	if err != nil || !ok {
		t.Fatalf("Submit: %v", err)
	}
	if job.Command != "make deploy" || job.ConfigKey != "production" || job.Kind != mixmaster.KindWebhook || len(*created) != 1 {
		t.Fatalf("job = %+v", job)
	}
	// A pinned repository ignores the payload's URL, even a hostile one.
	job, _, err = s.Submit(context.Background(), mixmaster.Request{Project: "org/pinned", Target: "master", RepositoryURL: "ext::sh -c touch% /tmp/pwned"})
	if err != nil || job.RepositoryURL != "file:///srv/git/pinned.git" {
		t.Fatalf("pinned: %+v, %v", job, err)
	}
}

func TestSubmitRejects(t *testing.T) {
	ok := mixmaster.Request{Project: "org/repo", Target: "production", RepositoryURL: "https://git.example.com/org/repo.git"}
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
		{"task with slash", func(r *mixmaster.Request) { r.Target = "master"; r.Task = "../docs" }, mixmaster.EUNPROCESSABLE, "not a valid task name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, created := testService(t)
			r := ok
			tt.modify(&r)
			_, _, err := s.Submit(context.Background(), r)
			if mixmaster.ErrorCode(err) != tt.code || !strings.Contains(mixmaster.ErrorMessage(err), tt.msg) {
				t.Fatalf("err = %v (code %s); want %s containing %q", err, mixmaster.ErrorCode(err), tt.code, tt.msg)
			}
			if len(*created) != 0 {
				t.Fatal("a rejected request was queued")
			}
		})
	}
}

func TestSubmitBacklog(t *testing.T) {
	s, created := testService(t)
	s.Backlog = 2
	r := mixmaster.Request{Project: "org/repo", Target: "production", RepositoryURL: "https://git.example.com/org/repo.git"}
	for i := 0; i < 2; i++ {
		if _, _, err := s.Submit(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Submit(context.Background(), r); mixmaster.ErrorCode(err) != mixmaster.EUNAVAILABLE {
		t.Fatalf("third submit: %v; want unavailable", err)
	}
	if len(*created) != 2 {
		t.Fatalf("%d jobs queued", len(*created))
	}
}

func TestSubmitRefusedWhenDiskIsFull(t *testing.T) {
	s, created := testService(t)
	s.Root = t.TempDir()
	s.MinFree = 1 << 62 // more than any disk holds
	r := mixmaster.Request{Project: "org/repo", Target: "production", RepositoryURL: "https://git.example.com/org/repo.git"}
	_, _, err := s.Submit(context.Background(), r)
	if mixmaster.ErrorCode(err) != mixmaster.EUNAVAILABLE || !strings.Contains(err.Error(), "free on the build root's disk") {
		t.Fatalf("err = %v; want 503 saying why", err)
	}
	if len(*created) != 0 {
		t.Fatal("a job was queued")
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
