package mixmaster

import (
	"context"
	"io"
	"time"
)

// JobStore is the durable record of jobs and the queue. Implementations are
// safe for concurrent use. Only the runner changes a job after CreateJob.
type JobStore interface {
	// CreateJob assigns job an ID, stores it as queued and appends it to the
	// queue in one durable transaction. When job.DeliveryID is set and a job
	// with that delivery already exists, it returns that job and created is
	// false, and nothing is written.
	CreateJob(ctx context.Context, job *Job) (stored *Job, created bool, err error)

	// Job returns the job with the given ID, or an ENOTFOUND error.
	Job(ctx context.Context, id JobID) (*Job, error)

	// Jobs lists jobs matching f, newest first.
	Jobs(ctx context.Context, f JobFilter) ([]*Job, error)

	// Claim moves the oldest queued job for which accept returns true to
	// running, sets StartedAt and returns it. It returns nil, nil when no
	// queued job is accepted. accept runs inside the transaction and must
	// be quick and must not call the store.
	Claim(ctx context.Context, accept func(*Job) bool) (*Job, error)

	// Finish moves a running job to a final status. It returns an
	// ECONFLICT error when the transition is not allowed.
	Finish(ctx context.Context, id JobID, o Outcome) (*Job, error)

	// Update replaces the mutable details of a running job (commit, image,
	// cache marks) without changing its status.
	Update(ctx context.Context, id JobID, fn func(*Job)) (*Job, error)

	// CancelQueued moves a queued job to canceled. It returns ECONFLICT when
	// the job is not queued.
	CancelQueued(ctx context.Context, id JobID, reason string) (*Job, error)

	// Recover is called once at start-up, before any Claim: every job left
	// running by a previous process becomes errored with reason, and jobs
	// with Attempt 0 are queued again once as a new job. It returns the
	// interrupted jobs.
	Recover(ctx context.Context, reason string) ([]*Job, error)

	// LatestByKey returns the newest job with the given content key, in
	// any status, or nil when there is none.
	LatestByKey(ctx context.Context, key string) (*Job, error)

	// GroupHead returns the last successful artifact build of a project's
	// group, or nil. Only a successful Finish moves it.
	GroupHead(ctx context.Context, project, group string) (*Job, error)

	// QueueLen returns the number of queued jobs.
	QueueLen(ctx context.Context) (int, error)

	// Notify returns a channel that receives a value after jobs are queued.
	Notify() <-chan struct{}
}

// Submitter turns requests into queued jobs: it validates and routes the
// request, then stores the job durably before returning it.
type Submitter interface {
	// Submit queues a webhook build. created is false when the request
	// repeated a delivery that was already accepted.
	Submit(ctx context.Context, r Request) (job *Job, created bool, err error)
}

// ArtifactResult answers an artifact request: the job whose result it is,
// and how it was reached.
type ArtifactResult struct {
	Job       *Job
	Cached    bool // an earlier successful build with the same key
	Coalesced bool // an identical build that was already queued or running
}

// ArtifactSubmitter accepts cached-artifact build requests.
type ArtifactSubmitter interface {
	// SubmitArtifact answers from the cache, joins an identical build in
	// progress, or queues a new build, durably, before returning.
	SubmitArtifact(ctx context.Context, r ArtifactRequest) (ArtifactResult, error)
	// Wait blocks until the job is final or ctx is done.
	Wait(ctx context.Context, id JobID) (*Job, error)
	// ArtifactsDir is where the files a job kept lie on the server.
	ArtifactsDir(j *Job) string
}

// Canceler stops a queued or running job. The runner records the outcome.
type Canceler interface {
	Cancel(ctx context.Context, id JobID) (*Job, error)
}

// CheckoutSpec says which commit of which repository to put where.
type CheckoutSpec struct {
	URL string // clone URL, already validated
	Ref string // a full SHA, or a branch name when no commit was given
	// Branch, when set, is the branch Ref must be on: its tip or an
	// ancestor of it. A commit built for a target is on that target.
	Branch string
	Dir    string // the workspace; created when missing, kept between builds
	Env    []string
}

// CheckoutLog is where an SCM says what it does: each command it runs
// ("$") and what those print, with its own notes ("#"), so that a job's
// log tells the service's lines from the build's. A Log is one.
type CheckoutLog interface {
	Status(format string, args ...any)
	Command(cmd string)
}

// SCM fetches repositories and checks out commits.
type SCM interface {
	// Checkout makes spec.Dir a clean checkout of spec.Ref and returns the
	// full commit SHA. Progress goes to log; nil discards it.
	Checkout(ctx context.Context, spec CheckoutSpec, log CheckoutLog) (commit string, err error)
}

// ExecSpec is one command to run for a job.
type ExecSpec struct {
	JobID   JobID
	Project string
	// Command is run with sh -c and comes from the trusted config or the
	// project folder. A container executor given no command runs the
	// image's own entrypoint, as mistry does.
	Command string
	Dir     string   // working directory: a host path, or a path inside the container
	Env     []string // KEY=value pairs added to a minimal base environment
	Timeout time.Duration

	// Container executors only.
	Image     string            // image name or ID
	Mounts    []Mount           // bind mounts; nothing else of the host is visible
	User      string            // "uid" or "uid:gid"; empty means the service's own
	Labels    map[string]string // added to the container, beside the executor's own
	Network   string            // "none" (default) or "bridge"; never "host" unless configured
	Memory    int64             // bytes; 0 means the executor's default
	CPUs      float64           // 0 means the executor's default
	PidsLimit int64             // 0 means the executor's default
}

// Mount is a host directory shown to a container.
type Mount struct {
	Source, Target string
	ReadOnly       bool
}

// ImageSpec is an image to build from a project folder.
type ImageSpec struct {
	Project   string
	Dir       string // the build context: the project folder, with a Dockerfile
	Tag       string
	BuildArgs map[string]string
	Labels    map[string]string
	NoCache   bool // rebuild every layer (the request's Rebuild)
}

// ImageBuilder builds container images.
type ImageBuilder interface {
	// BuildImage builds spec and returns the image ID. Build output goes to
	// log. A Dockerfile that does not build is an error whose message says
	// why, as the builder reported it.
	BuildImage(ctx context.Context, spec ImageSpec, log io.Writer) (id string, err error)
}

// Workspaces makes the data directories of artifact builds, copy-on-write
// where the file system allows: a build in a group starts from a snapshot
// of the group's last good build.
type Workspaces interface {
	// Create makes an empty directory at path; its parent exists.
	Create(ctx context.Context, path string) error
	// Clone makes dst a copy of src (a directory Create or Clone made);
	// dst must not exist.
	Clone(ctx context.Context, src, dst string) error
	// Remove deletes path and everything below it; a missing path is not
	// an error.
	Remove(ctx context.Context, path string) error
}

// Executor runs one command. The exit code and the error are separate: a
// command that ran and exited non-zero returns its code and a nil error; an
// error means the command could not be run or was stopped (ctx done).
type Executor interface {
	Run(ctx context.Context, spec ExecSpec, stdout, stderr io.Writer) (exitCode int, err error)
}

// KeyAgent serves an ssh-agent that lives only as long as one job.
type KeyAgent interface {
	// Start begins serving an agent holding the configured key and returns
	// the socket path for SSH_AUTH_SOCK and a function that stops it and
	// removes the socket.
	Start(ctx context.Context, id JobID) (sock string, stop func(), err error)
}

// Log is the output of one job: timestamped lines marked by their source.
type Log interface {
	Status(format string, args ...any) // "#"
	Command(cmd string)                // "$"
	Stdout() io.Writer                 // "O"
	Stderr() io.Writer                 // "!"
	Close() error
}

// LogStore keeps job logs on disk.
type LogStore interface {
	// Create opens the log of a job for appending.
	Create(id JobID) (Log, error)
	// Open opens the log of a job for reading; ENOTFOUND when none exists.
	Open(id JobID) (io.ReadSeekCloser, error)
}

// Event says that something about a job changed: its status or its log.
type Event struct {
	JobID  JobID
	Status Status // empty when only the log grew
}

// EventService fans job events out to live viewers. Publish never blocks.
type EventService interface {
	Publish(e Event)
	// Subscribe returns a channel of events for one job (or every job when
	// id is 0) and a function to unsubscribe. A slow subscriber misses
	// events rather than slowing the publisher; the channel then still
	// holds at least one pending event.
	Subscribe(id JobID) (<-chan Event, func())
}

// Notifier tells people about jobs. Notify must not block the caller for
// long and must not fail the job; errors are the notifier's to log.
type Notifier interface {
	Notify(ctx context.Context, n Notification)
}

// NotificationKind is the moment a notification is about.
type NotificationKind string

const (
	NotifyStart   NotificationKind = "start"
	NotifyFinish  NotificationKind = "finish"
	NotifyFailure NotificationKind = "failure"
)

// Notification carries a job and, at the end, its log text.
type Notification struct {
	Kind NotificationKind
	Job  Job
	Log  string
}

// Metrics counts what the service does, for monitoring. Implementations
// are safe for concurrent use and never block.
type Metrics interface {
	// BuildRequested counts every artifact request, answered from the
	// cache, coalesced or built.
	BuildRequested(project string)
	BuildCached(project string)
	BuildCoalesced(project string)
	// JobFinished counts a job that ran to an end, with its duration.
	JobFinished(j *Job)
}

// Rerunner queues a finished job again, as a new job with the same inputs.
type Rerunner interface {
	// Rerun returns the new job; ECONFLICT when the job is not finished.
	Rerun(ctx context.Context, id JobID, trigger Trigger) (*Job, error)
}

// ProjectInfo describes a project for the dashboard.
type ProjectInfo struct {
	Name string
	Kind Kind
	// Targets maps the config keys of a webhook project to their commands.
	Targets map[string]string
	// Docker is set for an artifact project built from a Dockerfile.
	Docker bool
}

// Catalog lists the configured projects.
type Catalog interface {
	// ListProjects returns every project, sorted by name.
	ListProjects() []ProjectInfo
}
