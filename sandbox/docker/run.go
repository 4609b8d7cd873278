package docker

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"mixmaster"
)

// cleanupTimeout bounds each call made after ctx is done (kill, wait,
// remove): the daemon may be slow, but must not hang Run forever.
const cleanupTimeout = 30 * time.Second

// drainTimeout bounds how long Run keeps reading output once the
// container has exited. The log stream ends by itself then; this only
// guards against a daemon that never closes it.
const drainTimeout = 10 * time.Second

// errTimedOut is the cancel cause that tells spec.Timeout from the
// caller's own cancellation.
var errTimedOut = errors.New("timed out")

// Run runs spec in a new container and copies its output to stdout and
// stderr, which may be the same writer: the two streams arrive
// multiplexed on one connection and are written by one goroutine, never
// concurrently.
//
// With spec.Command set, the container runs /bin/sh -c Command in place of
// the image's entrypoint; without it, the image's own ENTRYPOINT and CMD
// run, as mistry does. spec.Dir, when set, is the working directory inside
// the container; only spec.Mounts of the host are visible.
//
// The exit code is the command's (128+n when signal n killed it). When ctx
// is done or spec.Timeout passes, the container is killed and Run returns
// -1 and an error wrapping context.DeadlineExceeded ("timed out after
// <timeout>") or ctx.Err(). The container is removed in every case.
func (e *Executor) Run(ctx context.Context, spec mixmaster.ExecSpec, stdout, stderr io.Writer) (int, error) {
	if ctx.Err() != nil {
		return -1, stoppedError(ctx)
	}
	cfg, hostCfg, err := e.containerConfig(spec)
	if err != nil {
		return -1, err
	}
	cli, err := e.client()
	if err != nil {
		return -1, err
	}
	runCtx := ctx
	if spec.Timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeoutCause(ctx, spec.Timeout, errTimedOut)
		defer cancel()
	}
	stopped := func() (int, error) {
		if errors.Is(context.Cause(runCtx), errTimedOut) {
			return -1, fmt.Errorf("command timed out after %v: %w", spec.Timeout, context.DeadlineExceeded)
		}
		return -1, stoppedError(ctx)
	}
	log := e.logger().With("job_id", spec.JobID)

	// A random suffix: a container of an earlier run of the same job
	// that was not removed must not block this one.
	name := containerName(spec.JobID)
	created, err := cli.ContainerCreate(runCtx, client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: hostCfg})
	if err != nil {
		if runCtx.Err() != nil {
			// The daemon may have made it before we gave up waiting.
			e.remove(ctx, cli, name, log)
			return stopped()
		}
		if cerrdefs.IsNotFound(err) && strings.Contains(strings.ToLower(err.Error()), "image") {
			return -1, fmt.Errorf("docker: image %s not found (images are not pulled; build or pull it first): %w", cfg.Image, err)
		}
		return -1, fmt.Errorf("docker: create container: %w", err)
	}
	id := created.ID
	for _, w := range created.Warnings {
		// Such as a kernel that cannot limit swap: the same for every
		// job, so not worth more than a debug line.
		log.Debug("create container", "container", id, "warning", w)
	}
	defer e.remove(ctx, cli, id, log)

	// The wait and the logs outlive ctx: after a kill, Run still reads
	// the exit and the last output. Waiting is set up before the start
	// so that a quick exit cannot be missed.
	bg, cancelBg := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBg()
	wait := cli.ContainerWait(bg, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	waited := false
	defer func() {
		if !waited {
			// The SDK delivers the one wait outcome on an unbuffered
			// channel; taking it lets its goroutine end once bg is
			// canceled.
			go func() {
				select {
				case <-wait.Result:
				case <-wait.Error:
				}
			}()
		}
	}()

	if _, err := cli.ContainerStart(runCtx, id, client.ContainerStartOptions{}); err != nil {
		if runCtx.Err() != nil {
			return stopped()
		}
		return -1, fmt.Errorf("docker: start container: %w", err)
	}

	logs, err := cli.ContainerLogs(bg, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if err != nil {
		e.kill(ctx, cli, id, log)
		return -1, fmt.Errorf("docker: container logs: %w", err)
	}
	out, errOut := &stickyWriter{w: stdout}, &stickyWriter{w: stderr}
	copied := make(chan error, 1)
	go func() {
		defer logs.Close()
		_, err := stdcopy.StdCopy(out, errOut, logs)
		copied <- err
	}()
	// Whatever happens, no write may happen after Run returns.
	drain := func() error {
		timer := time.NewTimer(drainTimeout)
		defer timer.Stop()
		select {
		case err := <-copied:
			return err
		case <-timer.C:
			cancelBg()
			<-copied
			return errors.New("output stream did not end after the container exited")
		}
	}

	var code int
	select {
	case res := <-wait.Result:
		waited = true
		if res.Error != nil && res.Error.Message != "" {
			e.kill(ctx, cli, id, log)
			drain()
			return -1, fmt.Errorf("docker: wait: %s", res.Error.Message)
		}
		code = int(res.StatusCode)
	case err := <-wait.Error:
		waited = true
		e.kill(ctx, cli, id, log)
		drain()
		return -1, fmt.Errorf("docker: wait: %w", err)
	case <-runCtx.Done():
		e.kill(ctx, cli, id, log)
		select {
		case <-wait.Result:
			waited = true
		case <-wait.Error:
			waited = true
		case <-time.After(cleanupTimeout):
		}
		drain()
		return stopped()
	}

	if err := drain(); err != nil {
		return code, fmt.Errorf("docker: read output: %w", err)
	}
	// One error is enough: both writers are often the same log.
	if err := cmp.Or(out.err, errOut.err); err != nil {
		return code, fmt.Errorf("write output: %w", err)
	}
	return code, nil
}

// kill stops a running container: SIGTERM and KillGrace to finish when a
// grace is configured, then SIGKILL.
//
// ctx is the job's, which is usually done by now: the calls use a context
// that is not canceled with it.
func (e *Executor) kill(ctx context.Context, cli *client.Client, id string, log *slog.Logger) {
	if e.KillGrace > 0 {
		// The engine counts the grace in whole seconds.
		secs := int(math.Ceil(e.KillGrace.Seconds()))
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.KillGrace+cleanupTimeout)
		_, err := cli.ContainerStop(stopCtx, id, client.ContainerStopOptions{Timeout: &secs})
		cancel()
		if err == nil {
			return
		}
		log.Warn("stop container", "container", id, "err", err)
	}
	killCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if _, err := cli.ContainerKill(killCtx, id, client.ContainerKillOptions{Signal: "KILL"}); err != nil && !cerrdefs.IsConflict(err) && !cerrdefs.IsNotFound(err) {
		// Conflict: it is not running any more, which is what we want.
		log.Warn("kill container", "container", id, "err", err)
	}
}

// remove force-removes a container (kill included) and its anonymous
// volumes, with a context that is not canceled with the job's ctx.
// AutoRemove is not used: it races with reading the exit code and the last
// of the logs.
func (e *Executor) remove(ctx context.Context, cli *client.Client, id string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if _, err := cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
		log.Warn("remove container; Sweep removes it at the next start", "container", id, "err", err)
	}
}

// containerName is mixmaster-job-<id>-<8 random hex digits>.
func containerName(id mixmaster.JobID) string {
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("mixmaster-job-%d-%s", id, hex.EncodeToString(b[:]))
}

// stoppedError describes a command stopped because ctx is done, keeping
// both ctx.Err() and a custom cause visible to errors.Is.
func stoppedError(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("command stopped: %w: %w", err, cause)
	}
	return fmt.Errorf("command stopped: %w", err)
}

// stickyWriter remembers the first write error and then discards the rest,
// so that a broken log does not stop the output stream being read (which
// would leave the exit unseen until the drain timeout).
type stickyWriter struct {
	w   io.Writer
	err error
}

func (s *stickyWriter) Write(p []byte) (int, error) {
	if s.err == nil {
		_, s.err = s.w.Write(p)
	}
	return len(p), nil
}
