package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"mixmaster"
)

var _ mixmaster.ArtifactSubmitter = (*Service)(nil)

// SubmitArtifact answers a cached-artifact request. A successful build with
// the same key answers at once (Cached) without writing anything; an
// identical build that is queued or running is joined (Coalesced) without
// taking a worker slot; otherwise a new job is queued durably. Failed
// builds are never served from the cache: the next request rebuilds.
func (s *Service) SubmitArtifact(ctx context.Context, r mixmaster.ArtifactRequest) (mixmaster.ArtifactResult, error) {
	if s.Folders == nil {
		return mixmaster.ArtifactResult{}, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "Unknown project %s: no projects path is configured", quote(r.Project))
	}
	folder, err := s.Folders.Folder(r.Project)
	if err != nil {
		return mixmaster.ArtifactResult{}, err
	}
	if err := ValidateArtifactRequest(&r); err != nil {
		return mixmaster.ArtifactResult{}, err
	}
	content, err := s.Folders.ContentHash(folder)
	if err != nil {
		return mixmaster.ArtifactResult{}, err
	}
	key := JobKey(folder.Name, r.Group, r.Params, content)

	// One decision at a time per key, so that simultaneous identical
	// requests queue one build between them.
	unlock := s.lock(key)
	defer unlock()
	latest, err := s.Store.LatestByKey(ctx, key)
	if err != nil {
		return mixmaster.ArtifactResult{}, err
	}
	if s.Metrics != nil {
		s.Metrics.BuildRequested(folder.Name)
	}
	if latest != nil {
		if !latest.Status.Done() {
			if s.Metrics != nil {
				s.Metrics.BuildCoalesced(folder.Name)
			}
			return mixmaster.ArtifactResult{Job: latest, Coalesced: true}, nil
		}
		if latest.Status == mixmaster.StatusSucceeded && !r.Rebuild && exists(s.ArtifactsDir(latest)) {
			if s.Metrics != nil {
				s.Metrics.BuildCached(folder.Name)
			}
			return mixmaster.ArtifactResult{Job: latest, Cached: true}, nil
		}
	}
	if err := s.checkBacklog(ctx); err != nil {
		return mixmaster.ArtifactResult{}, err
	}
	job, _, err := s.Store.CreateJob(ctx, &mixmaster.Job{
		Kind:    mixmaster.KindArtifact,
		Trigger: r.Trigger,
		Project: folder.Name,
		Params:  r.Params,
		Group:   r.Group,
		Rebuild: r.Rebuild,
		Key:     key,
	})
	if err != nil {
		return mixmaster.ArtifactResult{}, err
	}
	return mixmaster.ArtifactResult{Job: job}, nil
}

// lock serializes work on one key and returns the unlock function.
func (s *Service) lock(key string) func() {
	s.mu.Lock()
	if s.keys == nil {
		s.keys = make(map[string]*keyLock)
	}
	l := s.keys[key]
	if l == nil {
		l = &keyLock{}
		s.keys[key] = l
	}
	l.users++
	s.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		s.mu.Lock()
		if l.users--; l.users == 0 {
			delete(s.keys, key)
		}
		s.mu.Unlock()
	}
}

type keyLock struct {
	sync.Mutex
	users int
}

// Wait blocks until the job is final or ctx is done. Coalesced requests
// wait here rather than in a worker slot.
func (s *Service) Wait(ctx context.Context, id mixmaster.JobID) (*mixmaster.Job, error) {
	var events <-chan mixmaster.Event
	if s.Events != nil {
		ch, cancel := s.Events.Subscribe(id)
		defer cancel()
		events = ch
	}
	tick := time.NewTicker(time.Second) // a safety net for missed events
	defer tick.Stop()
	for {
		job, err := s.Store.Job(ctx, id)
		if err != nil || job.Status.Done() {
			return job, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-events:
		case <-tick.C:
		}
	}
}

// ArtifactsDir is where the files a job kept lie: for artifact builds the
// data directory mistry's clients expect (<root>/<project>/ready/<id>/data),
// for webhook builds the job's own directory.
func (s *Service) ArtifactsDir(j *mixmaster.Job) string {
	if j.Kind == mixmaster.KindArtifact {
		return filepath.Join(buildDir(s.Root, j, true), "data", "artifacts")
	}
	return s.WebhookArtifactsDir(j.ID)
}

// buildDir is an artifact build's directory, in mistry's layout so that an
// rsync module rooted at the build root serves what BuildInfo.Path names.
func buildDir(root string, j *mixmaster.Job, ready bool) string {
	state := "pending"
	if ready {
		state = "ready"
	}
	return filepath.Join(root, j.Project, state, j.ID.String())
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// runArtifact builds a project folder: a workspace for the job's data
// (a snapshot of the group's last good build when there is one), the
// params as files, then the build itself in Docker or the shell.
func (r *Runner) runArtifact(ctx context.Context, job *mixmaster.Job, log mixmaster.Log) mixmaster.Outcome {
	errored := func(format string, args ...any) mixmaster.Outcome {
		return mixmaster.Outcome{Status: mixmaster.StatusErrored, Error: fmt.Sprintf(format, args...)}
	}
	folder, err := r.Folders.Folder(job.Project)
	if err != nil {
		return errored("%s", mixmaster.ErrorMessage(err))
	}
	timeout := r.timeout(0)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	pending, ready := buildDir(r.Root, job, false), buildDir(r.Root, job, true)
	for _, dir := range []string{filepath.Dir(pending), filepath.Dir(ready)} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return errored("prepare %s: %v", dir, err)
		}
	}
	// A crash may have left this job's directory behind.
	if err := r.Workspaces.Remove(ctx, pending); err != nil {
		return errored("remove leftover %s: %v", pending, err)
	}
	log.Status("Build started for %s in %s", job.Project, pending)
	incremental := false
	if job.Group != "" {
		head, err := r.Store.GroupHead(ctx, job.Project, job.Group)
		if err != nil {
			return errored("group %s: %v", job.Group, err)
		}
		if head != nil && exists(buildDir(r.Root, head, true)) {
			if err := r.Workspaces.Clone(ctx, buildDir(r.Root, head, true), pending); err != nil {
				log.Status("Cannot start from build %d of group %s, starting empty: %v", head.ID, job.Group, err)
				r.Workspaces.Remove(ctx, pending)
			} else {
				incremental = true
				log.Status("Starting from build %d, the last good build of group %s", head.ID, job.Group)
			}
		}
	}
	if !incremental {
		if err := r.Workspaces.Create(ctx, pending); err != nil {
			return errored("create workspace: %v", err)
		}
	}
	data := filepath.Join(pending, "data")
	if err := prepareData(data, job.Params); err != nil {
		return errored("prepare data: %v", err)
	}
	if _, err := r.Store.Update(ctx, job.ID, func(j *mixmaster.Job) { j.Incremental = incremental }); err != nil {
		return errored("record job: %v", err)
	}

	o := r.execArtifact(ctx, job, folder, data, timeout, log)
	if o.Status == "" {
		return errored("%s", o.Error)
	}
	// Finished, well or not: the data moves to ready/, where the cache and
	// the downloads find it. Only a success moves the group's pointer.
	if err := os.Rename(pending, ready); err != nil {
		return errored("move build to %s: %v", ready, err)
	}
	if err := syncDir(filepath.Dir(ready)); err != nil {
		return errored("keep build %s: %v", ready, err)
	}
	return o
}

// execArtifact builds and runs the project. An Outcome with an empty
// status carries an error of our side in Error.
func (r *Runner) execArtifact(ctx context.Context, job *mixmaster.Job, folder *Folder, data string, timeout time.Duration, log mixmaster.Log) mixmaster.Outcome {
	uid, gid := strconv.Itoa(os.Getuid()), strconv.Itoa(os.Getgid())
	env := []string{
		"MIXMASTER_JOB_ID=" + job.ID.String(),
		"MIXMASTER_PROJECT=" + job.Project,
		"MIXMASTER_GROUP=" + job.Group,
	}
	spec := mixmaster.ExecSpec{JobID: job.ID, Project: job.Project, Timeout: timeout}
	var exec mixmaster.Executor
	if folder.Docker {
		exec = r.Executors["docker"]
		if r.Images == nil || exec == nil {
			return mixmaster.Outcome{Error: "could not build docker image: Docker is not available to this service"}
		}
		content, err := r.Folders.ContentHash(folder)
		if err != nil {
			return mixmaster.Outcome{Error: err.Error()}
		}
		log.Status("Building image for %s", job.Project)
		image, err := r.Images.BuildImage(ctx, mixmaster.ImageSpec{
			Project:   job.Project,
			Dir:       folder.Dir,
			Tag:       imageTag(job.Project, content),
			BuildArgs: map[string]string{"uid": uid},
			Labels:    map[string]string{"mixmaster.project": job.Project},
			NoCache:   job.Rebuild,
		}, log.Stdout())
		if err != nil {
			if o, stopped := r.stopped(ctx, timeout); stopped {
				return o
			}
			return mixmaster.Outcome{Error: "could not build docker image: " + err.Error()}
		}
		spec.Image = image
		spec.User = uid + ":" + gid
		spec.Mounts = []mixmaster.Mount{{Source: data, Target: "/data"}}
		spec.Env = append(env, "MIXMASTER_ARTIFACTS=/data/artifacts", "MIXMASTER_CACHE=/data/cache", "MIXMASTER_PARAMS=/data/params")
		log.Command("(the image's entrypoint, with " + data + " at /data)")
	} else {
		exec = r.Executors["shell"]
		spec.Command = shellQuote(filepath.Join(folder.Dir, "build"))
		spec.Dir = data
		spec.Env = append(env,
			"MIXMASTER_ARTIFACTS="+filepath.Join(data, "artifacts"),
			"MIXMASTER_CACHE="+filepath.Join(data, "cache"),
			"MIXMASTER_PARAMS="+filepath.Join(data, "params"))
		log.Command(spec.Command)
	}
	code, err := exec.Run(ctx, spec, log.Stdout(), log.Stderr())
	if err != nil {
		if o, stopped := r.stopped(ctx, timeout); stopped {
			return o
		}
		return mixmaster.Outcome{Error: "run: " + err.Error()}
	}
	return r.exited(code, filepath.Join(data, "artifacts"))
}

// prepareData lays out a build's data directory: artifacts/ and params/
// fresh (a snapshot must not leak the previous build's outputs or params),
// cache/ kept. Param files are written through an os.Root, so even a key
// that slipped past validation cannot leave params/.
func prepareData(data string, params map[string]string) error {
	for _, dir := range []string{"artifacts", "params"} {
		if err := os.RemoveAll(filepath.Join(data, dir)); err != nil {
			return err
		}
	}
	for _, dir := range []string{"artifacts", "cache", "params"} {
		if err := os.MkdirAll(filepath.Join(data, dir), 0o755); err != nil {
			return err
		}
	}
	root, err := os.OpenRoot(filepath.Join(data, "params"))
	if err != nil {
		return err
	}
	defer root.Close()
	for k, v := range params {
		if strings.ContainsAny(k, "/\x00") {
			return errors.New("invalid param name")
		}
		if err := root.WriteFile(k, []byte(v), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// shellQuote quotes a path for sh -c.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// imageTag names the image of a project's folder content, so that builds of
// different contents never race for one tag and old images can be told
// from the current one.
func imageTag(project, content string) string {
	return "mixmaster-" + strings.ToLower(project) + ":" + content[:16]
}
