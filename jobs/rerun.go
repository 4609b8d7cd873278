package jobs

import (
	"context"
	"slices"
	"strings"

	"mixmaster"
)

var (
	_ mixmaster.Rerunner = (*Service)(nil)
	_ mixmaster.Catalog  = (*Service)(nil)
)

// Rerun queues a finished job again with the same inputs. A webhook job is
// routed afresh, so a target removed from the config is refused rather
// than run; an artifact job is built anew (Rebuild), whatever the cache
// holds.
func (s *Service) Rerun(ctx context.Context, id mixmaster.JobID, trigger mixmaster.Trigger) (*mixmaster.Job, error) {
	old, err := s.Store.Job(ctx, id)
	if err != nil {
		return nil, err
	}
	if !old.Status.Done() {
		return nil, mixmaster.Errorf(mixmaster.ECONFLICT, "job %d is %s; only a finished job can run again", id, old.Status)
	}
	if old.Kind == mixmaster.KindArtifact {
		res, err := s.SubmitArtifact(ctx, mixmaster.ArtifactRequest{
			Trigger: trigger, Project: old.Project, Params: old.Params, Group: old.Group, Rebuild: true,
		})
		return res.Job, err
	}
	job, err := s.Plan(mixmaster.Request{
		Trigger:       trigger,
		Project:       old.Project,
		Target:        old.Target,
		Task:          old.Task,
		Commit:        old.Commit,
		RepositoryURL: old.RepositoryURL,
		ViewURL:       old.ViewURL,
		Message:       old.Message,
		Notify:        old.Notify,
		// The URL was accepted once, from the config or a signed delivery;
		// running the same job again needs no new proof.
		Signed: true,
	})
	if err != nil {
		return nil, err
	}
	if err := s.checkBacklog(ctx); err != nil {
		return nil, err
	}
	job, _, err = s.Store.CreateJob(ctx, job)
	return job, err
}

// ListProjects lists the webhook projects of the config and the artifact
// projects of the projects folder, sorted by name.
func (s *Service) ListProjects() []mixmaster.ProjectInfo {
	var out []mixmaster.ProjectInfo
	if s.ProjectNames != nil {
		for _, name := range s.ProjectNames() {
			if p, ok := s.Projects(name); ok {
				out = append(out, mixmaster.ProjectInfo{Name: p.Name, Kind: mixmaster.KindWebhook, Targets: p.Targets})
			}
		}
	}
	if s.Folders != nil {
		for _, name := range s.Folders.Names() {
			if f, err := s.Folders.Folder(name); err == nil {
				out = append(out, mixmaster.ProjectInfo{Name: name, Kind: mixmaster.KindArtifact, Docker: f.Docker})
			}
		}
	}
	slices.SortFunc(out, func(a, b mixmaster.ProjectInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}
