package docker

import (
	"context"
	"errors"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// Sweep force-removes every container labelled mixmaster.managed=1, and,
// when Executor.Labels sets mixmaster.instance, of that instance only. It
// is meant for start-up, before any job runs: whatever it finds was left
// by a service that died mid-job. Containers without the label are never
// touched, since a daemon is often shared. Without an instance label,
// the running jobs of any other mixmaster service (or test run) on the
// same daemon are removed too: set one, stable across restarts, whenever
// the daemon may be shared.
func (e *Executor) Sweep(ctx context.Context) (removed int, err error) {
	cli, err := e.client()
	if err != nil {
		return 0, err
	}
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: e.ownFilter()})
	if err != nil {
		return 0, fmt.Errorf("docker: sweep: %w", err)
	}
	var errs []error
	for _, c := range list.Items {
		_, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		switch {
		case err == nil:
			removed++
			e.logger().Info("removed leftover container", "container", c.ID, "names", c.Names, "job_id", c.Labels[LabelJob])
		case cerrdefs.IsNotFound(err):
			// Gone meanwhile (a removal already under way).
		default:
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("docker: sweep: %w", err)
	}
	return removed, nil
}

// PruneImages removes the tags of the images labelled mixmaster.managed=1
// (of this instance, as for Sweep) for which keep returns false, and such
// images left without any tag; an image goes once its last tag does. An
// image a container still uses is kept. It returns how many tags and
// untagged images went.
func (e *Executor) PruneImages(ctx context.Context, keep func(tag string) bool) (removed int, err error) {
	cli, err := e.client()
	if err != nil {
		return 0, err
	}
	list, err := cli.ImageList(ctx, client.ImageListOptions{Filters: e.ownFilter()})
	if err != nil {
		return 0, fmt.Errorf("docker: prune images: %w", err)
	}
	var errs []error
	rm := func(ref string) {
		_, err := cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true})
		switch {
		case err == nil:
			removed++
		case cerrdefs.IsNotFound(err), cerrdefs.IsConflict(err):
			// Gone already, or in use by a container.
		default:
			errs = append(errs, err)
		}
	}
	for _, img := range list.Items {
		var tags []string
		for _, t := range img.RepoTags {
			if t != "<none>:<none>" {
				tags = append(tags, t)
			}
		}
		if len(tags) == 0 {
			rm(img.ID)
			continue
		}
		for _, t := range tags {
			if !keep(t) {
				rm(t)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("docker: prune images: %w", err)
	}
	return removed, nil
}

// ownFilter selects what this executor made.
func (e *Executor) ownFilter() client.Filters {
	f := make(client.Filters).Add("label", LabelManaged+"=1")
	if inst := e.Labels[LabelInstance]; inst != "" {
		f.Add("label", LabelInstance+"="+inst)
	}
	return f
}
