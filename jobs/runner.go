package jobs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"mixmaster"
)

// DefaultTimeout bounds a job when neither the project nor the service
// sets a timeout, so a hung build cannot hold a slot forever.
const DefaultTimeout = time.Hour

// RestartReason is recorded on jobs that a crash or stop interrupted.
const RestartReason = "interrupted by restart"

var (
	errCanceled = errors.New("canceled")
	errStopping = errors.New("service stopping")
)

// Runner takes queued jobs from the store and runs them in a fixed number
// of slots. Jobs that share a checkout (same project and target) never run
// at the same time; others run in parallel. Only the runner changes a job
// after it is queued.
type Runner struct {
	Store     mixmaster.JobStore
	Logs      mixmaster.LogStore
	Events    mixmaster.EventService
	SCM       mixmaster.SCM
	Executors map[string]mixmaster.Executor // by .executor name; "shell" is the default
	Agent     mixmaster.KeyAgent            // optional per-job ssh-agent
	Notifier  mixmaster.Notifier            // optional
	Metrics   mixmaster.Metrics             // optional
	Projects  Projects

	// Cached-artifact builds.
	Folders    *Folders
	Workspaces mixmaster.Workspaces
	Images     mixmaster.ImageBuilder // nil without Docker

	// Root is the build root: checkouts and caches live below it.
	Root string
	// ArtifactsDir returns the directory whose contents are kept for a job.
	ArtifactsDir func(mixmaster.JobID) string

	Concurrency int           // zero means the number of CPUs
	Timeout     time.Duration // default per-job timeout; zero means DefaultTimeout
	// ArtifactLimit caps the bytes a job may keep; zero means no limit.
	ArtifactLimit int64
	Logger        *slog.Logger
	Now           func() time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the dispatcher
	jobsWG sync.WaitGroup // running jobs
	wake   chan struct{}

	// mu guards the fields below. It is never held across a store call:
	// the store commits to disk, and accept runs inside its transaction.
	mu      sync.Mutex
	running map[mixmaster.JobID]context.CancelCauseFunc
	busy    map[string]bool
	free    int
	// claiming is set while the dispatcher is in Store.Claim; claims
	// counts the claims that are over, and claimed is signalled at the end
	// of each, once the job it claimed is in running.
	claiming bool
	claims   uint64
	claimed  *sync.Cond
}

var _ mixmaster.Canceler = (*Runner)(nil)

// Open recovers jobs a previous process left running and starts the
// dispatcher. It returns once the runner is ready.
func (r *Runner) Open() error {
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Concurrency <= 0 {
		r.Concurrency = runtime.NumCPU()
	}
	r.free = r.Concurrency
	r.running = make(map[mixmaster.JobID]context.CancelCauseFunc)
	r.busy = make(map[string]bool)
	r.claimed = sync.NewCond(&r.mu)
	r.wake = make(chan struct{}, 1)
	r.ctx, r.cancel = context.WithCancel(context.Background())

	interrupted, err := r.Store.Recover(r.ctx, RestartReason)
	if err != nil {
		return fmt.Errorf("recover jobs: %w", err)
	}
	for _, j := range interrupted {
		r.Logger.Warn("job interrupted by restart", "job_id", j.ID, "project", j.Project)
		r.appendStatus(j.ID, "Build errored: %s", RestartReason)
		r.publish(j.ID, mixmaster.StatusErrored)
	}
	r.removeZombies()
	r.wg.Add(1)
	go r.dispatch()
	return nil
}

// removeZombies deletes the directories of artifact builds that a crash or
// a stop interrupted: after Recover no job is running, so every pending
// directory is a leftover.
func (r *Runner) removeZombies() {
	if r.Workspaces == nil {
		return
	}
	dirs, _ := filepath.Glob(filepath.Join(r.Root, "*", "pending", "*"))
	for _, dir := range dirs {
		if err := r.Workspaces.Remove(r.ctx, dir); err != nil {
			r.Logger.Error("remove interrupted build", "dir", dir, "err", err)
			continue
		}
		r.Logger.Info("removed interrupted build", "dir", dir)
	}
}

// Close stops taking jobs, lets running jobs finish for up to grace, then
// stops them. Jobs stopped this way stay recorded as running, so the next
// start marks them interrupted and queues them again: a restart loses
// nothing.
func (r *Runner) Close(grace time.Duration) error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	r.wg.Wait()
	done := make(chan struct{})
	go func() { r.jobsWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		r.mu.Lock()
		for _, cancel := range r.running {
			cancel(errStopping)
		}
		r.mu.Unlock()
		<-done
	}
	return nil
}

// Cancel stops a queued or running job. A queued job is canceled at once; a
// running one is stopped and recorded as canceled by its slot. A job the
// dispatcher claims meanwhile is stopped once it is running.
func (r *Runner) Cancel(ctx context.Context, id mixmaster.JobID) (*mixmaster.Job, error) {
	job, err := r.Store.Job(ctx, id)
	if err != nil {
		return nil, err
	}
	if job.Status.Done() {
		return nil, mixmaster.Errorf(mixmaster.ECONFLICT, "job %d already %s", id, job.Status)
	}
	if r.cancelRunning(id, false) {
		return job, nil
	}
	canceled, err := r.Store.CancelQueued(ctx, id, "canceled before it started")
	if mixmaster.ErrorCode(err) == mixmaster.ECONFLICT && r.cancelRunning(id, true) {
		// It left the queue for a slot between the two looks.
		return job, nil
	}
	if err != nil {
		return nil, err
	}
	r.publish(id, canceled.Status)
	return canceled, nil
}

// cancelRunning stops the job when it runs here and reports whether it
// did. With wait, a claim in progress is waited for first, since the job
// may be the one being claimed.
func (r *Runner) cancelRunning(id mixmaster.JobID, wait bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if wait && r.claiming {
		for claims := r.claims; r.claims == claims; {
			r.claimed.Wait()
		}
	}
	cancel, ok := r.running[id]
	if ok {
		cancel(errCanceled)
	}
	return ok
}

// Running returns the number of jobs running now.
func (r *Runner) Running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.running)
}

// Kick wakes the dispatcher; the store's notify channel does the same.
func (r *Runner) Kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Runner) dispatch() {
	defer r.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		for r.claimOne() {
		}
		select {
		case <-r.ctx.Done():
			return
		case <-r.Store.Notify():
		case <-r.wake:
		case <-tick.C: // a safety net for missed wake-ups
		}
	}
}

// claimOne starts one job if a slot is free and a runnable job is queued.
// Only the dispatcher calls it, so only job ends change the slots while
// the store claims: they free slots and checkouts, which at worst leaves a
// runnable job for the next round.
func (r *Runner) claimOne() bool {
	r.mu.Lock()
	if r.free == 0 || r.ctx.Err() != nil {
		r.mu.Unlock()
		return false
	}
	r.claiming = true
	r.mu.Unlock()

	job, err := r.Store.Claim(r.ctx, func(j *mixmaster.Job) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return !r.busy[lockKey(j)]
	})

	r.mu.Lock()
	defer r.mu.Unlock()
	r.claiming = false
	r.claims++
	defer r.claimed.Broadcast()
	if err != nil {
		if r.ctx.Err() == nil {
			r.Logger.Error("claim job", "err", err)
		}
		return false
	}
	if job == nil {
		return false
	}
	key := lockKey(job)
	r.busy[key] = true
	r.free--
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(r.ctx))
	r.running[job.ID] = cancel
	r.jobsWG.Add(1)
	go func() {
		defer r.jobsWG.Done()
		r.run(ctx, job)
		cancel(nil)
		r.mu.Lock()
		delete(r.running, job.ID)
		delete(r.busy, key)
		r.free++
		r.mu.Unlock()
		r.Kick()
	}()
	return true
}

// lockKey names what a job needs to itself: a webhook build its checkout.
// An artifact build has its own directory, so it needs nothing shared.
func lockKey(j *mixmaster.Job) string {
	if j.Kind == mixmaster.KindArtifact {
		return "artifact\x00" + j.ID.String()
	}
	return j.Project + "\x00" + j.Target
}

// run executes one claimed job and records its outcome.
func (r *Runner) run(ctx context.Context, job *mixmaster.Job) {
	logger := r.Logger.With("job_id", job.ID, "project", job.Project)
	r.publish(job.ID, mixmaster.StatusRunning)
	log, err := r.Logs.Create(job.ID)
	if err != nil {
		logger.Error("create log", "err", err)
		r.finish(job, mixmaster.Outcome{Status: mixmaster.StatusErrored, Error: "cannot create log: " + err.Error()})
		return
	}
	var o mixmaster.Outcome
	if job.Kind == mixmaster.KindArtifact {
		o = r.runArtifact(ctx, job, log)
	} else {
		o = r.runWebhook(ctx, job, log)
	}
	if errors.Is(context.Cause(ctx), errStopping) {
		// Leave the job running in the store: the next start records it as
		// interrupted and queues it again.
		log.Status("Build interrupted: the service is stopping; it will run again after restart")
		log.Close()
		logger.Warn("job interrupted by shutdown")
		return
	}
	switch o.Status {
	case mixmaster.StatusSucceeded:
		log.Status("Build finished")
	case mixmaster.StatusCanceled:
		log.Status("Build canceled")
	default:
		log.Status("Build failed: %s", o.Error)
	}
	if err := log.Close(); err != nil {
		logger.Error("close log", "err", err)
	}
	r.finish(job, o)
}

// finish records the outcome, tells viewers and sends the closing mail.
func (r *Runner) finish(job *mixmaster.Job, o mixmaster.Outcome) {
	done, err := r.Store.Finish(context.WithoutCancel(r.ctx), job.ID, o)
	if err != nil {
		r.Logger.Error("finish job", "job_id", job.ID, "err", err)
		return
	}
	r.publish(job.ID, done.Status)
	if r.Metrics != nil {
		r.Metrics.JobFinished(done)
	}
	if r.Notifier == nil {
		return
	}
	kind := mixmaster.NotifyFinish
	if done.Status != mixmaster.StatusSucceeded {
		kind = mixmaster.NotifyFailure
	}
	r.Notifier.Notify(context.WithoutCancel(r.ctx), mixmaster.Notification{Kind: kind, Job: *done, Log: r.logTail(job.ID, 64<<10)})
}

// runWebhook checks out the pushed commit and runs the configured command.
func (r *Runner) runWebhook(ctx context.Context, job *mixmaster.Job, log mixmaster.Log) mixmaster.Outcome {
	errored := func(format string, args ...any) mixmaster.Outcome {
		return mixmaster.Outcome{Status: mixmaster.StatusErrored, Error: fmt.Sprintf(format, args...)}
	}
	p, ok := r.Projects(job.Project)
	if !ok {
		return errored("project %q is no longer configured", job.Project)
	}
	// The command is looked up again so that config edits made while the
	// job waited take effect, and a removed target does not run.
	route, err := Resolve(p, job.Target, job.Task)
	if err != nil {
		return errored("%s", mixmaster.ErrorMessage(err))
	}
	timeout := r.timeout(p.Timeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	checkout := CheckoutDir(r.Root, job.Project, job.Target)
	log.Status("Build started for %s %s in %s", job.Project, job.Target, checkout)

	var env []string
	sock := ""
	if r.Agent != nil {
		var stop func()
		var err error
		if sock, stop, err = r.Agent.Start(ctx, job.ID); err != nil {
			return errored("ssh-agent: %v", err)
		}
		defer stop()
		env = append(env, "SSH_AUTH_SOCK="+sock)
	}

	commit, err := r.checkout(ctx, job, checkout, env, log)
	if err != nil {
		if o, stopped := r.stopped(ctx, timeout); stopped {
			return o
		}
		return errored("checkout: %s", checkoutMessage(err))
	}
	if _, err := r.Store.Update(ctx, job.ID, func(j *mixmaster.Job) { j.Commit = commit }); err != nil {
		if o, stopped := r.stopped(ctx, timeout); stopped {
			return o
		}
		return errored("record commit: %v", err)
	}
	job.Commit = commit
	// The start mail goes out once the commit is known, so it can name it.
	if r.Notifier != nil {
		r.Notifier.Notify(ctx, mixmaster.Notification{Kind: mixmaster.NotifyStart, Job: *job})
	}

	artifacts := r.ArtifactsDir(job.ID)
	cache := filepath.Join(r.Root, "cache", pathSegment(job.Project))
	params := filepath.Join(filepath.Dir(artifacts), "params")
	for _, dir := range []string{artifacts, cache, params} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return errored("prepare %s: %v", dir, err)
		}
	}
	spec := mixmaster.ExecSpec{
		JobID:   job.ID,
		Project: job.Project,
		Command: route.Command,
		Dir:     checkout,
		Image:   p.Image,
		Network: p.Network,
		Timeout: timeout,
	}
	if executorName(p) == "docker" {
		// A container sees the checkout and the job's directories where
		// mistry lays them out, and nothing else of the host.
		spec.Mounts = []mixmaster.Mount{
			{Source: checkout, Target: "/workspace"},
			{Source: artifacts, Target: "/data/artifacts"},
			{Source: cache, Target: "/data/cache"},
			{Source: params, Target: "/data/params"},
		}
		spec.Dir, artifacts, cache, params = "/workspace", "/data/artifacts", "/data/cache", "/data/params"
		if sock != "" {
			spec.Mounts = append(spec.Mounts, mixmaster.Mount{Source: filepath.Dir(sock), Target: "/run/mixmaster-agent"})
			env = []string{"SSH_AUTH_SOCK=/run/mixmaster-agent/" + filepath.Base(sock)}
		}
	}
	spec.Env = append(env,
		"MIXMASTER_JOB_ID="+job.ID.String(),
		"MIXMASTER_PROJECT="+job.Project,
		"MIXMASTER_TARGET="+job.Target,
		"MIXMASTER_TASK="+job.Task,
		"MIXMASTER_COMMIT="+commit,
		"MIXMASTER_REPOSITORY_URL="+mixmaster.RedactURL(job.RepositoryURL),
		"MIXMASTER_VIEW_URL="+job.ViewURL,
		"MIXMASTER_ARTIFACTS="+artifacts,
		"MIXMASTER_CACHE="+cache,
		"MIXMASTER_PARAMS="+params,
	)
	exec, ok := r.Executors[executorName(p)]
	if !ok {
		return errored("no %q executor is available", executorName(p))
	}
	log.Command(route.Command)
	code, err := exec.Run(ctx, spec, log.Stdout(), log.Stderr())
	if err != nil {
		if o, stopped := r.stopped(ctx, timeout); stopped {
			return o
		}
		return errored("run: %v", err)
	}
	o := r.exited(code, r.ArtifactsDir(job.ID))
	o.Commit = commit
	return o
}

// checkout makes dir a checkout of the job's commit, which must be on its
// target. The SCM's lines are the service's, not the build's, and sit
// between two status lines that a job page folds them under.
func (r *Runner) checkout(ctx context.Context, job *mixmaster.Job, dir string, env []string, log mixmaster.Log) (string, error) {
	ref := job.Target
	if job.Commit != "" {
		ref = job.Commit
	}
	repo := mixmaster.RedactURL(job.RepositoryURL)
	log.Status("%s%s of %s", mixmaster.CheckoutBegin, ref, repo)
	counted := &countingLog{CheckoutLog: log}
	start := r.Now()
	commit, err := r.SCM.Checkout(ctx, mixmaster.CheckoutSpec{
		URL: job.RepositoryURL, Ref: ref, Branch: job.Target, Dir: dir, Env: env,
	}, counted)
	took := counted.summary(r.Now().Sub(start))
	if err != nil {
		log.Status("%s (%s)", mixmaster.CheckoutFailed, took)
		return "", err
	}
	log.Status("%s%s of %s (%s)", mixmaster.CheckoutDone, commit[:min(len(commit), 8)], repo, took)
	return commit, nil
}

// countingLog passes an SCM's lines on and counts its commands.
type countingLog struct {
	mixmaster.CheckoutLog
	commands int
}

func (c *countingLog) Command(cmd string) {
	c.commands++
	c.CheckoutLog.Command(cmd)
}

// summary is "3 git commands, 0.4 s".
func (c *countingLog) summary(took time.Duration) string {
	noun := "commands"
	if c.commands == 1 {
		noun = "command"
	}
	return fmt.Sprintf("%d git %s, %.1f s", c.commands, noun, took.Seconds())
}

// exited turns a command's exit code into an outcome, once the files the
// job kept are durable and within the size limit.
func (r *Runner) exited(code int, artifacts string) mixmaster.Outcome {
	o := mixmaster.Outcome{Status: mixmaster.StatusSucceeded, ExitCode: &code}
	if code != 0 {
		o.Status = mixmaster.StatusFailed
		o.Error = fmt.Sprintf("command exited with status %d", code)
	}
	if err := settle(artifacts, r.ArtifactLimit); err != nil {
		o.Status = mixmaster.StatusFailed
		o.Error = err.Error()
		if errors.Is(err, errTooBig) {
			// Keep the disk for builds that stay within bounds. Files
			// that stay would fill it all the same: say so.
			if err := dropArtifacts(artifacts); err != nil {
				r.Logger.Error("remove over-limit artifacts", "dir", artifacts, "err", err)
				o.Error += "; removing them failed: " + err.Error()
			}
		}
	}
	return o
}

// dropArtifacts empties the artifact folder of a job.
func dropArtifacts(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.MkdirAll(dir, 0o755)
}

var errTooBig = errors.New("too big")

// settle fsyncs every file and directory a job kept and checks their total
// size, so that a job recorded as finished never points at artifacts a
// crash lost, and no job fills the disk.
func settle(dir string, limit int64) error {
	var size int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			if size += info.Size(); limit > 0 && size > limit {
				return errTooBig
			}
		} else if !d.IsDir() {
			return nil // sockets, fifos and devices hold no data to sync
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
	if errors.Is(err, errTooBig) {
		return fmt.Errorf("the job kept more than %s of artifacts: %w", mixmaster.FormatSize(limit), errTooBig)
	}
	if err != nil {
		return fmt.Errorf("keep artifacts: %w", err)
	}
	return nil
}

// stopped explains an interrupted step: a cancel, a timeout or a stop.
func (r *Runner) stopped(ctx context.Context, timeout time.Duration) (mixmaster.Outcome, bool) {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errCanceled):
		return mixmaster.Outcome{Status: mixmaster.StatusCanceled, Error: "canceled"}, true
	case errors.Is(cause, errStopping):
		return mixmaster.Outcome{Status: mixmaster.StatusErrored, Error: RestartReason}, true
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return mixmaster.Outcome{Status: mixmaster.StatusFailed, Error: fmt.Sprintf("timed out after %s", timeout)}, true
	}
	return mixmaster.Outcome{}, false
}

// timeout picks a job's bound: the project's own, else the service's.
func (r *Runner) timeout(project time.Duration) time.Duration {
	switch {
	case project > 0:
		return project
	case r.Timeout > 0:
		return r.Timeout
	}
	return DefaultTimeout
}

func executorName(p *mixmaster.Project) string {
	if p.Executor == "" {
		return "shell"
	}
	return p.Executor
}

// checkoutMessage keeps coded SCM errors readable and others complete.
func checkoutMessage(err error) string {
	if mixmaster.ErrorCode(err) != mixmaster.EINTERNAL {
		return mixmaster.ErrorMessage(err)
	}
	return err.Error()
}

func (r *Runner) publish(id mixmaster.JobID, s mixmaster.Status) {
	if r.Events != nil {
		r.Events.Publish(mixmaster.Event{JobID: id, Status: s})
	}
}

// appendStatus adds a status line to the log of a job that is not running.
func (r *Runner) appendStatus(id mixmaster.JobID, format string, args ...any) {
	log, err := r.Logs.Create(id)
	if err != nil {
		return
	}
	log.Status(format, args...)
	log.Close()
}

// logTail returns up to n bytes from the end of a job's log, whole lines.
func (r *Runner) logTail(id mixmaster.JobID, n int64) string {
	f, err := r.Logs.Open(id)
	if err != nil {
		return ""
	}
	defer f.Close()
	_, b, _ := mixmaster.TailLines(f, n)
	return string(b)
}
