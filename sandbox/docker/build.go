package docker

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/jsonmessage"

	"mixmaster"
)

// BuildImage builds the image of spec.Dir (which must hold a Dockerfile),
// tags it spec.Tag and returns its ID. Build output goes to log as plain
// text, the way the docker CLI prints it ("Step 1/3 : FROM …").
//
// The classic builder is used: BuildKit through the API needs a session
// the SDK does not provide. Intermediate containers are always removed;
// nothing is pulled, so the base image must be there (PullParent off).
// spec.BuildArgs become --build-arg values (mistry passes uid),
// spec.Labels and the executor's labels end up on the image along with
// mixmaster.managed=1.
//
// The whole folder is sent as the build context: regular files,
// directories and symlinks, with their modes. A .dockerignore file is not
// honoured; keep project folders small.
//
// A Dockerfile that does not build gives an error with the builder's own
// message, such as "The command '/bin/sh -c exit 3' returned a non-zero
// code: 3".
func (e *Executor) BuildImage(ctx context.Context, spec mixmaster.ImageSpec, log io.Writer) (string, error) {
	if spec.Tag == "" {
		return "", errors.New("docker: build: no image tag given")
	}
	fail := func(err error) (string, error) {
		return "", fmt.Errorf("could not build docker image '%s': %w", spec.Tag, err)
	}
	if fi, err := os.Stat(filepath.Join(spec.Dir, "Dockerfile")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fail(fmt.Errorf("no Dockerfile in %s", spec.Dir))
		}
		return fail(err)
	} else if !fi.Mode().IsRegular() {
		return fail(fmt.Errorf("%s/Dockerfile is not a regular file", spec.Dir))
	}
	cli, err := e.client()
	if err != nil {
		return "", err
	}

	// The context is streamed: a large project folder is never held in
	// memory. Closing the reader stops the writer on any early return.
	pr, pw := io.Pipe()
	tarred := make(chan struct{})
	go func() {
		defer close(tarred)
		pw.CloseWithError(writeContext(pw, spec.Dir))
	}()
	defer func() {
		pr.Close()
		<-tarred
	}()

	args := make(map[string]*string, len(spec.BuildArgs))
	for k, v := range spec.BuildArgs {
		args[k] = &v
	}
	labels := make(map[string]string, len(e.Labels)+len(spec.Labels)+2)
	maps.Copy(labels, e.Labels)
	maps.Copy(labels, spec.Labels)
	if inst, ok := e.Labels[LabelInstance]; ok {
		labels[LabelInstance] = inst
	}
	labels[LabelManaged] = "1"
	if spec.Project != "" {
		labels[LabelProject] = spec.Project
	}

	res, err := cli.ImageBuild(ctx, pr, client.ImageBuildOptions{
		Tags:        []string{spec.Tag},
		Dockerfile:  "Dockerfile",
		BuildArgs:   args,
		Labels:      labels,
		NoCache:     spec.NoCache,
		Remove:      true,
		ForceRemove: true,
		PullParent:  false,
		Version:     build.BuilderV1,
	})
	if err != nil {
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		return fail(err)
	}
	defer res.Body.Close()
	// A failed build still answers 200: the failure is an error message
	// in the stream, which the display returns as a *jsonstream.Error.
	err = jsonmessage.DisplayJSONMessagesStream(res.Body, log, 0, false, nil)
	if err != nil {
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		var jerr *jsonstream.Error
		if errors.As(err, &jerr) {
			return fail(jerr)
		}
		return fail(fmt.Errorf("read build output: %w", err))
	}

	img, err := cli.ImageInspect(ctx, spec.Tag)
	if err != nil {
		return fail(err)
	}
	return img.ID, nil
}

// writeContext writes the files below dir to w as a tar archive, with
// paths relative to dir. Sockets, devices and pipes cannot be built with
// and are left out; symlinks are stored as links, not followed.
func writeContext(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		switch {
		case fi.Mode().IsRegular(), fi.IsDir():
		case fi.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		default:
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		// Files in the image belong to root whatever the host says;
		// host user names mean nothing there.
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		// The header promised fi.Size() bytes: a file that grew or shrank
		// since is an error from the tar writer, not a corrupt context.
		_, err = io.Copy(tw, io.LimitReader(f, hdr.Size+1))
		return err
	})
	if err != nil {
		return fmt.Errorf("build context: %w", err)
	}
	return tw.Close()
}
