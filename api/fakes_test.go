package api

import (
	"context"
	"io"
	"os"
	"sync"

	"mixmaster"
)

// fakeJobStore is a mixmaster.JobStore whose methods call the function
// fields; an unset field panics, which shows up as a test failure naming
// the method the handler should not have called.
type fakeJobStore struct {
	CreateJobFn    func(ctx context.Context, job *mixmaster.Job) (*mixmaster.Job, bool, error)
	JobFn          func(ctx context.Context, id mixmaster.JobID) (*mixmaster.Job, error)
	JobsFn         func(ctx context.Context, f mixmaster.JobFilter) ([]*mixmaster.Job, error)
	ClaimFn        func(ctx context.Context, accept func(*mixmaster.Job) bool) (*mixmaster.Job, error)
	FinishFn       func(ctx context.Context, id mixmaster.JobID, o mixmaster.Outcome) (*mixmaster.Job, error)
	UpdateFn       func(ctx context.Context, id mixmaster.JobID, fn func(*mixmaster.Job)) (*mixmaster.Job, error)
	CancelQueuedFn func(ctx context.Context, id mixmaster.JobID, reason string) (*mixmaster.Job, error)
	RecoverFn      func(ctx context.Context, reason string) ([]*mixmaster.Job, error)
	LatestByKeyFn  func(ctx context.Context, key string) (*mixmaster.Job, error)
	GroupHeadFn    func(ctx context.Context, project, group string) (*mixmaster.Job, error)
	QueueLenFn     func(ctx context.Context) (int, error)
	NotifyFn       func() <-chan struct{}
}

var _ mixmaster.JobStore = (*fakeJobStore)(nil)

func (s *fakeJobStore) CreateJob(ctx context.Context, job *mixmaster.Job) (*mixmaster.Job, bool, error) {
	return s.CreateJobFn(ctx, job)
}
func (s *fakeJobStore) Job(ctx context.Context, id mixmaster.JobID) (*mixmaster.Job, error) {
	return s.JobFn(ctx, id)
}
func (s *fakeJobStore) Jobs(ctx context.Context, f mixmaster.JobFilter) ([]*mixmaster.Job, error) {
	return s.JobsFn(ctx, f)
}
func (s *fakeJobStore) Claim(ctx context.Context, accept func(*mixmaster.Job) bool) (*mixmaster.Job, error) {
	return s.ClaimFn(ctx, accept)
}
func (s *fakeJobStore) Finish(ctx context.Context, id mixmaster.JobID, o mixmaster.Outcome) (*mixmaster.Job, error) {
	return s.FinishFn(ctx, id, o)
}
func (s *fakeJobStore) Update(ctx context.Context, id mixmaster.JobID, fn func(*mixmaster.Job)) (*mixmaster.Job, error) {
	return s.UpdateFn(ctx, id, fn)
}
func (s *fakeJobStore) CancelQueued(ctx context.Context, id mixmaster.JobID, reason string) (*mixmaster.Job, error) {
	return s.CancelQueuedFn(ctx, id, reason)
}
func (s *fakeJobStore) Recover(ctx context.Context, reason string) ([]*mixmaster.Job, error) {
	return s.RecoverFn(ctx, reason)
}
func (s *fakeJobStore) LatestByKey(ctx context.Context, key string) (*mixmaster.Job, error) {
	return s.LatestByKeyFn(ctx, key)
}
func (s *fakeJobStore) GroupHead(ctx context.Context, project, group string) (*mixmaster.Job, error) {
	return s.GroupHeadFn(ctx, project, group)
}
func (s *fakeJobStore) QueueLen(ctx context.Context) (int, error) { return s.QueueLenFn(ctx) }
func (s *fakeJobStore) Notify() <-chan struct{}                   { return s.NotifyFn() }

// fakeSubmitter is a mixmaster.Submitter.
type fakeSubmitter struct {
	SubmitFn func(ctx context.Context, r mixmaster.Request) (*mixmaster.Job, bool, error)
}

var _ mixmaster.Submitter = (*fakeSubmitter)(nil)

func (s *fakeSubmitter) Submit(ctx context.Context, r mixmaster.Request) (*mixmaster.Job, bool, error) {
	return s.SubmitFn(ctx, r)
}

// fakeCanceler is a mixmaster.Canceler.
type fakeCanceler struct {
	CancelFn func(ctx context.Context, id mixmaster.JobID) (*mixmaster.Job, error)
}

var _ mixmaster.Canceler = (*fakeCanceler)(nil)

func (c *fakeCanceler) Cancel(ctx context.Context, id mixmaster.JobID) (*mixmaster.Job, error) {
	return c.CancelFn(ctx, id)
}

// fakeArtifacts is a mixmaster.ArtifactSubmitter.
type fakeArtifacts struct {
	SubmitArtifactFn func(ctx context.Context, r mixmaster.ArtifactRequest) (mixmaster.ArtifactResult, error)
	WaitFn           func(ctx context.Context, id mixmaster.JobID) (*mixmaster.Job, error)
	ArtifactsDirFn   func(j *mixmaster.Job) string
}

var _ mixmaster.ArtifactSubmitter = (*fakeArtifacts)(nil)

func (a *fakeArtifacts) SubmitArtifact(ctx context.Context, r mixmaster.ArtifactRequest) (mixmaster.ArtifactResult, error) {
	return a.SubmitArtifactFn(ctx, r)
}
func (a *fakeArtifacts) Wait(ctx context.Context, id mixmaster.JobID) (*mixmaster.Job, error) {
	return a.WaitFn(ctx, id)
}
func (a *fakeArtifacts) ArtifactsDir(j *mixmaster.Job) string { return a.ArtifactsDirFn(j) }

// fakeLogStore is a mixmaster.LogStore.
type fakeLogStore struct {
	CreateFn func(id mixmaster.JobID) (mixmaster.Log, error)
	OpenFn   func(id mixmaster.JobID) (io.ReadSeekCloser, error)
}

var _ mixmaster.LogStore = (*fakeLogStore)(nil)

func (l *fakeLogStore) Create(id mixmaster.JobID) (mixmaster.Log, error) { return l.CreateFn(id) }
func (l *fakeLogStore) Open(id mixmaster.JobID) (io.ReadSeekCloser, error) {
	return l.OpenFn(id)
}

// fileLogs returns a log store whose logs are the files that path names,
// ENOTFOUND while a file does not exist.
func fileLogs(path func(mixmaster.JobID) string) *fakeLogStore {
	return &fakeLogStore{OpenFn: func(id mixmaster.JobID) (io.ReadSeekCloser, error) {
		f, err := os.Open(path(id))
		if os.IsNotExist(err) {
			return nil, mixmaster.Errorf(mixmaster.ENOTFOUND, "no log for job %d", id)
		}
		return f, err
	}}
}

// broker is a small in-memory mixmaster.EventService, enough to wake a
// log follower.
type broker struct {
	mu   sync.Mutex
	subs map[chan mixmaster.Event]mixmaster.JobID
}

var _ mixmaster.EventService = (*broker)(nil)

func (b *broker) Publish(e mixmaster.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch, id := range b.subs {
		if id != 0 && id != e.JobID {
			continue
		}
		select {
		case ch <- e:
		default: // the one pending event is enough to wake the reader
		}
	}
}

func (b *broker) Subscribe(id mixmaster.JobID) (<-chan mixmaster.Event, func()) {
	ch := make(chan mixmaster.Event, 1)
	b.mu.Lock()
	if b.subs == nil {
		b.subs = make(map[chan mixmaster.Event]mixmaster.JobID)
	}
	b.subs[ch] = id
	b.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, ch)
			b.mu.Unlock()
		})
	}
}

// subscribers is the number of live subscriptions.
func (b *broker) subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}
