package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"mixmaster"
)

// PruneStore is what the Pruner needs of the store: the job list, group
// heads and a way to forget a job with its index entries.
type PruneStore interface {
	Jobs(ctx context.Context, f mixmaster.JobFilter) ([]*mixmaster.Job, error)
	GroupHead(ctx context.Context, project, group string) (*mixmaster.Job, error)
	DeleteJob(ctx context.Context, id mixmaster.JobID) error
}

// Pruner removes old finished jobs: their directories, then their store
// records. Set the fields before use.
type Pruner struct {
	Store PruneStore
	// Workspaces removes artifact build directories, which may be btrfs
	// subvolumes; nil means plain directories.
	Workspaces mixmaster.Workspaces
	// Root is the build root.
	Root string
	// ArtifactsDir, when set, names where a job's kept files are; they are
	// removed too when they lie outside the job's directories.
	ArtifactsDir func(*mixmaster.Job) string
	// Policy returns a project's retention: jobs younger than keep and the
	// newest keepLast are kept; 0 means no limit of that kind.
	Policy func(project string) (keep time.Duration, keepLast int)
	// Images, when set, removes the service's own images except those
	// keep accepts; Folders then names the images still in use: each
	// artifact project's image for its folder's current content.
	Images  func(ctx context.Context, keep func(tag string) bool) (int, error)
	Folders *Folders
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Plan returns the jobs Prune would remove, newest first. A job goes only
// when both rules let it go (it is beyond keepLast and older than keep);
// never a queued or running job, the newest success of a webhook
// project's target, an artifact group's head, or the newest success of
// an artifact key, which is what the cache answers with.
func (p *Pruner) Plan(ctx context.Context) ([]*mixmaster.Job, error) {
	all, err := p.allJobs(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	protected := map[mixmaster.JobID]bool{}
	newestTarget := map[[2]string]bool{}
	newestKey := map[string]bool{}
	heads := map[[2]string]bool{}
	for _, j := range all { // newest first, so the first success seen is the newest
		if !j.Status.Done() {
			protected[j.ID] = true
			continue
		}
		switch j.Kind {
		case mixmaster.KindWebhook:
			if t := [2]string{j.Project, j.Target}; j.Status == mixmaster.StatusSucceeded && !newestTarget[t] {
				newestTarget[t], protected[j.ID] = true, true
			}
		case mixmaster.KindArtifact:
			if j.Key != "" && j.Status == mixmaster.StatusSucceeded && !newestKey[j.Key] {
				newestKey[j.Key], protected[j.ID] = true, true
			}
			if g := [2]string{j.Project, j.Group}; j.Group != "" && !heads[g] {
				heads[g] = true
				head, err := p.Store.GroupHead(ctx, j.Project, j.Group)
				if err != nil {
					return nil, err
				}
				if head != nil {
					protected[head.ID] = true
				}
			}
		}
	}

	var plan []*mixmaster.Job
	seen := map[string]int{} // jobs of each project so far, newest first
	for _, j := range all {
		i := seen[j.Project]
		seen[j.Project]++
		keep, keepLast := p.policy(j.Project)
		if keep <= 0 && keepLast <= 0 || protected[j.ID] {
			continue
		}
		if keepLast > 0 && i < keepLast || keep > 0 && now.Sub(jobTime(j)) < keep {
			continue
		}
		plan = append(plan, j)
	}
	return plan, nil
}

// Prune removes what Plan returns and reports how many jobs went. For each
// job the directories go first and the record after, so a crash between
// the two leaves a record whose files are gone, which the next run
// finishes, rather than files no record points at. One job's failure does
// not stop the others; the errors are returned together.
func (p *Pruner) Prune(ctx context.Context) (removed int, err error) {
	plan, err := p.Plan(ctx)
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, j := range plan {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		if err := p.removeFiles(ctx, j); err != nil {
			errs = append(errs, fmt.Errorf("prune job %d: %w", j.ID, err))
			continue
		}
		if err := p.Store.DeleteJob(ctx, j.ID); err != nil {
			// ECONFLICT: it became a group head meanwhile. Its files are
			// gone, so the group's next build starts empty; nothing worse.
			errs = append(errs, fmt.Errorf("prune job %d: %w", j.ID, err))
			continue
		}
		removed++
		p.logger().Info("pruned job", "job_id", j.ID, "project", j.Project, "status", j.Status, "finished", jobTime(j))
	}
	if err := p.pruneImages(ctx); err != nil {
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

// pruneImages removes images built from folder contents that no longer
// exist: only each project's current image can run again.
func (p *Pruner) pruneImages(ctx context.Context) error {
	if p.Images == nil || p.Folders == nil {
		return nil
	}
	// A folder that cannot be listed would make every image look stale.
	names, err := p.Folders.List()
	if err != nil {
		return fmt.Errorf("prune images: %w", err)
	}
	current := map[string]bool{}
	for _, name := range names {
		f, err := p.Folders.Folder(name)
		if err != nil || !f.Docker {
			continue
		}
		content, err := p.Folders.ContentHash(f)
		if err != nil {
			return fmt.Errorf("prune images: %w", err)
		}
		current[imageTag(name, content)] = true
	}
	n, err := p.Images(ctx, func(tag string) bool { return current[tag] })
	if n > 0 {
		p.logger().Info("pruned images", "count", n)
	}
	return err
}

// Dirs returns the directories that belong to job: its own directory
// under <Root>/jobs (log and webhook artifacts) and, for an artifact
// build, its data under <Root>/<project>/ready.
func (p *Pruner) Dirs(j *mixmaster.Job) []string {
	dirs := []string{filepath.Join(p.Root, "jobs", j.ID.String())}
	if j.Kind == mixmaster.KindArtifact {
		dirs = append(dirs, buildDir(p.Root, j, true))
	}
	if p.ArtifactsDir != nil {
		if a := p.ArtifactsDir(j); a != "" && !within(a, dirs) {
			dirs = append(dirs, a)
		}
	}
	return dirs
}

func (p *Pruner) removeFiles(ctx context.Context, j *mixmaster.Job) error {
	for _, dir := range p.Dirs(j) {
		// A project name comes from the store; never follow one out of
		// the build root.
		if !within(dir, []string{p.Root}) || filepath.Clean(dir) == filepath.Clean(p.Root) {
			return fmt.Errorf("%s is outside the build root", dir)
		}
		var err error
		if p.Workspaces != nil {
			err = p.Workspaces.Remove(ctx, dir)
		} else {
			err = os.RemoveAll(dir)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// allJobs lists every job, newest first, a page at a time.
func (p *Pruner) allJobs(ctx context.Context) ([]*mixmaster.Job, error) {
	const page = 500
	var all []*mixmaster.Job
	var before mixmaster.JobID
	for {
		list, err := p.Store.Jobs(ctx, mixmaster.JobFilter{Before: before, Limit: page})
		if err != nil {
			return nil, err
		}
		all = append(all, list...)
		if len(list) < page {
			return all, nil
		}
		before = list[len(list)-1].ID
	}
}

func (p *Pruner) policy(project string) (time.Duration, int) {
	if p.Policy == nil {
		return 0, 0
	}
	return p.Policy(project)
}

func (p *Pruner) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.Default()
	}
	return p.Logger
}

// jobTime is when a job's age counts from: when it finished, or when it
// was queued for a job that never ran.
func jobTime(j *mixmaster.Job) time.Time {
	if !j.FinishedAt.IsZero() {
		return j.FinishedAt
	}
	return j.QueuedAt
}

// within reports whether path is one of dirs or below one of them.
func within(path string, dirs []string) bool {
	path = filepath.Clean(path)
	for _, d := range dirs {
		rel, err := filepath.Rel(filepath.Clean(d), path)
		if err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return true
		}
	}
	return false
}
