package jobs

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"mixmaster"
)

// Projects looks up a webhook project by its exact name.
type Projects func(name string) (*mixmaster.Project, bool)

// Service accepts webhook requests: it routes and validates them, then
// queues them durably. It implements mixmaster.Submitter.
type Service struct {
	Store    mixmaster.JobStore
	Projects Projects
	// ProjectNames lists the webhook projects, for the catalog.
	ProjectNames func() []string
	// Backlog is how many queued jobs an artifact request or a rerun may
	// wait behind before it gets EUNAVAILABLE; zero means no limit. Their
	// clients retry; this is back-pressure.
	Backlog int
	// WebhookBacklog is how many queued jobs a webhook request may wait
	// behind before it gets EUNAVAILABLE; zero means no limit. Forges do
	// not retry a refused delivery, so it is far deeper than Backlog.
	WebhookBacklog int

	// MinFree is the free space the build root's disk must keep for new
	// builds to be accepted; zero means no check.
	MinFree int64

	// Cached-artifact builds.
	Folders *Folders               // the projects path; nil when there is none
	Events  mixmaster.EventService // wakes Wait
	Root    string                 // the build root, where build data lies
	Metrics mixmaster.Metrics      // optional
	// WebhookArtifactsDir is where a webhook job keeps its files.
	WebhookArtifactsDir func(mixmaster.JobID) string

	mu   sync.Mutex
	keys map[string]*keyLock
}

var _ mixmaster.Submitter = (*Service)(nil)

// Submit validates r, resolves its command and stores it as a queued job.
// Nothing from r ever reaches a command line: the command comes from the
// config, and request values travel as environment variables.
func (s *Service) Submit(ctx context.Context, r mixmaster.Request) (*mixmaster.Job, bool, error) {
	job, err := s.Plan(r)
	if err != nil {
		return nil, false, err
	}
	if err := s.admit(ctx, s.WebhookBacklog); err != nil {
		return nil, false, err
	}
	return s.Store.CreateJob(ctx, job)
}

// checkBacklog admits artifact requests and reruns: see admit.
func (s *Service) checkBacklog(ctx context.Context) error {
	return s.admit(ctx, s.Backlog)
}

// admit refuses new work while limit jobs or more are queued (zero means
// no limit), or while the build root's disk is nearly full: a build that
// fills it would fail, and so might the commits of the builds already
// running.
func (s *Service) admit(ctx context.Context, limit int) error {
	if s.MinFree > 0 && s.Root != "" {
		if free, err := freeBytes(s.Root); err == nil && free < s.MinFree {
			return mixmaster.Errorf(mixmaster.EUNAVAILABLE, "only %s free on the build root's disk (at least %s needed); builds resume when space is freed", mixmaster.FormatSize(free), mixmaster.FormatSize(s.MinFree))
		}
	}
	if limit <= 0 {
		return nil
	}
	n, err := s.Store.QueueLen(ctx)
	if err != nil {
		return err
	}
	if n >= limit {
		return mixmaster.Errorf(mixmaster.EUNAVAILABLE, "build queue is full (%d jobs waiting); try again later", n)
	}
	return nil
}

// Plan turns a request into the job it would queue, without storing it.
// The recipe command and Submit share it so that they can never disagree.
func (s *Service) Plan(r mixmaster.Request) (*mixmaster.Job, error) {
	p, ok := s.Projects(r.Project)
	if !ok {
		return nil, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "Unknown project %s", quote(r.Project))
	}
	if !mixmaster.ValidRef(r.Target) {
		if r.Target == "" {
			return nil, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "target not specified")
		}
		return nil, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "target %s is not a valid branch name", quote(r.Target))
	}
	if r.Task != "" && (strings.ContainsAny(r.Task, "/\x00") || !mixmaster.ValidRef(r.Task)) {
		return nil, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "task %s is not a valid task name", quote(r.Task))
	}
	if r.Commit != "" && !mixmaster.ValidCommit(r.Commit) && !mixmaster.ValidRef(r.Commit) {
		return nil, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "commit %s is neither a full SHA nor a ref name", quote(r.Commit))
	}
	if r.Commit == "HEAD" {
		// The original checked out "HEAD" after cloning the pushed branch:
		// its tip. Gitea test payloads still send it.
		r.Commit = ""
	}
	route, err := Resolve(p, r.Target, r.Task)
	if err != nil {
		return nil, err
	}
	url := p.Repository
	if url != "" {
		// The config is trusted, but a typo there must not run commands.
		if err := mixmaster.ValidateRepositoryURL(url, true); err != nil {
			return nil, err
		}
	} else {
		if r.RepositoryURL == "" {
			return nil, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "repositoryUrl not specified and %s has no .repository", quote(p.Name))
		}
		if err := mixmaster.ValidateRepositoryURL(r.RepositoryURL, false); err != nil {
			return nil, err
		}
		// The checkout runs with the deploy key: only the project's own
		// forge, proven by its secret, may name the repository.
		if !r.Signed {
			return nil, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "The payload's repositoryUrl is used only for deliveries signed with the project's secret: set .repository for %s in the config, or a .secret (or webhookSecret) and sign the webhook", p.Name)
		}
		url = r.RepositoryURL
	}
	return &mixmaster.Job{
		Kind:          mixmaster.KindWebhook,
		Trigger:       r.Trigger,
		Project:       p.Name,
		Target:        r.Target,
		Task:          r.Task,
		ConfigKey:     route.Key,
		Command:       route.Command,
		Commit:        r.Commit,
		RepositoryURL: url,
		ViewURL:       r.ViewURL,
		Message:       r.Message,
		Notify:        r.Notify,
		DeliveryID:    r.DeliveryID,
		Image:         p.Image,
	}, nil
}

// quote renders an untrusted value for an error message: quoted, escaped
// and short.
func quote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return "'" + strings.Trim(strconv.Quote(s), `"`) + "'"
}

// freeBytes is the space an unprivileged user may still use on dir's disk.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
