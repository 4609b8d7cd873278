package mixmaster

import (
	"fmt"
	"time"
)

// JobID identifies a job. IDs come from a bbolt sequence, so they grow with
// creation order and sort the same way as numbers and as big-endian keys.
type JobID uint64

// String returns the decimal form used in URLs and paths.
func (id JobID) String() string { return fmt.Sprintf("%d", uint64(id)) }

// Status is where a job is in its life.
type Status string

// The statuses a job goes through. Failed means the command exited non-zero;
// errored means our side broke (checkout, image build, disk, restart).
const (
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusErrored   Status = "errored"
	StatusCanceled  Status = "canceled"
)

// Statuses lists every status in life-cycle order.
var Statuses = []Status{StatusQueued, StatusRunning, StatusSucceeded, StatusFailed, StatusErrored, StatusCanceled}

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	for _, v := range Statuses {
		if s == v {
			return true
		}
	}
	return false
}

// Done reports whether s is final.
func (s Status) Done() bool {
	switch s {
	case StatusSucceeded, StatusFailed, StatusErrored, StatusCanceled:
		return true
	}
	return false
}

// CanBecome reports whether a job may move from s to next. The only moves
// are queued→running, queued→canceled and running→any final status.
func (s Status) CanBecome(next Status) bool {
	switch s {
	case StatusQueued:
		return next == StatusRunning || next == StatusCanceled
	case StatusRunning:
		return next.Done()
	}
	return false
}

// Kind tells the two families of jobs apart.
type Kind string

const (
	// KindWebhook is a checkout of a repository at a commit followed by a
	// configured command (the Mixmaster model).
	KindWebhook Kind = "webhook"
	// KindArtifact is a build of a project folder whose result is cached by
	// content hash (the mistry model).
	KindArtifact Kind = "artifact"
)

// Trigger says where a job came from.
type Trigger string

const (
	TriggerWebhook Trigger = "webhook" // lightweight JSON payload on POST /
	TriggerGitea   Trigger = "gitea"   // forge push payload on POST /gitea
	TriggerAPI     Trigger = "api"     // POST /jobs or the JSON API
	TriggerClient  Trigger = "client"  // the mistry-compatible client
	TriggerUI      Trigger = "ui"      // the dashboard
	TriggerRetry   Trigger = "retry"   // re-queued after an interrupted run
)

// Job is one execution of a project: a webhook build at a commit, or an
// artifact build for a set of params. Everything a runner needs is frozen
// into the job when it is accepted, except the command, which is resolved
// again from the config when the job starts so that edits take effect.
type Job struct {
	ID      JobID   `json:"id"`
	Kind    Kind    `json:"kind"`
	Trigger Trigger `json:"trigger"`
	Status  Status  `json:"status"`

	Project string `json:"project"`

	// Webhook builds.
	Target        string `json:"target,omitempty"`    // the branch or ref to check out
	Task          string `json:"task,omitempty"`      // optional task name
	ConfigKey     string `json:"configKey,omitempty"` // the config key that matched
	Command       string `json:"command,omitempty"`   // the command as resolved at acceptance
	Commit        string `json:"commit,omitempty"`    // requested commit (SHA or ref); resolved SHA after checkout
	RepositoryURL string `json:"repositoryUrl,omitempty"`
	ViewURL       string `json:"viewUrl,omitempty"`
	Message       string `json:"message,omitempty"` // commit messages, for notifications
	Notify        bool   `json:"notify"`            // start and finish mail wanted
	DeliveryID    string `json:"deliveryId,omitempty"`

	// Artifact builds.
	Params      map[string]string `json:"params,omitempty"`
	Group       string            `json:"group,omitempty"`
	Rebuild     bool              `json:"rebuild,omitempty"`
	Key         string            `json:"key,omitempty"`         // content hash; equal keys mean equal results
	Incremental bool              `json:"incremental,omitempty"` // started from the group's last good build
	Image       string            `json:"image,omitempty"`

	// Outcome.
	ExitCode *int   `json:"exitCode"`        // nil until a command has exited
	Error    string `json:"error,omitempty"` // why the job errored or was canceled

	Attempt int   `json:"attempt,omitempty"` // 0 for the first run, 1 for a retry after restart
	RetryOf JobID `json:"retryOf,omitempty"`

	QueuedAt   time.Time `json:"queuedAt"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
}

// Duration is how long the job ran, or has been running as of now.
func (j *Job) Duration(now time.Time) time.Duration {
	if j.StartedAt.IsZero() {
		return 0
	}
	if j.FinishedAt.IsZero() {
		return now.Sub(j.StartedAt)
	}
	return j.FinishedAt.Sub(j.StartedAt)
}

// ShortCommit is the first eight characters of the commit, as the original
// notifications show it.
func (j *Job) ShortCommit() string {
	if len(j.Commit) > 8 {
		return j.Commit[:8]
	}
	return j.Commit
}

// Outcome is what a runner records when a job ends.
type Outcome struct {
	Status   Status
	ExitCode *int
	Error    string
	Commit   string // the resolved commit, when a checkout happened
}

// JobFilter selects jobs for listing. Zero values match everything.
type JobFilter struct {
	Project string
	Status  Status
	// Before, when non-zero, lists only jobs with smaller IDs: the cursor of
	// the previous page.
	Before JobID
	// Limit caps the page; zero means a default of 50.
	Limit int
}
