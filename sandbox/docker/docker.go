package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"mixmaster"
)

// Labels put on every container and image the executor makes.
const (
	// LabelManaged ("1") marks what this service owns; Sweep and
	// PruneImages touch nothing without it.
	LabelManaged = "mixmaster.managed"
	// LabelJob holds the job ID of a container.
	LabelJob = "mixmaster.job"
	// LabelProject holds the project name, when the spec gives one.
	LabelProject = "mixmaster.project"
	// LabelInstance, when set in Executor.Labels, tells apart the
	// containers of several services sharing one daemon; Sweep then
	// removes only those of its own instance.
	LabelInstance = "mixmaster.instance"
)

// Defaults for the resource limits of a container.
const (
	DefaultMemory    = 2 << 30 // bytes
	DefaultCPUs      = 2.0
	DefaultPidsLimit = 1024
)

// NetworkNone is the network of a container whose spec names none.
const NetworkNone = "none"

// Executor runs commands in containers and builds images. Set the fields
// before the first use and do not change them afterwards; it is then safe
// for concurrent use.
type Executor struct {
	// Client talks to the engine. Nil means a client configured from the
	// environment (DOCKER_HOST, DOCKER_CERT_PATH…), made on first use.
	Client *client.Client
	// Labels are added to every container and image. A spec's own labels
	// override them, except LabelInstance; LabelManaged, LabelJob and
	// LabelProject are always the executor's.
	Labels map[string]string
	// DefaultImage is run when a spec names no image.
	DefaultImage string
	// Memory (bytes), CPUs and PidsLimit limit a container whose spec
	// leaves them zero. Zero here means DefaultMemory, DefaultCPUs and
	// DefaultPidsLimit.
	Memory    int64
	CPUs      float64
	PidsLimit int64
	// KillGrace is how long a stopped container gets between SIGTERM and
	// SIGKILL. Zero means SIGKILL at once: the container is thrown away,
	// so there is rarely anything to shut down cleanly.
	KillGrace time.Duration
	// AllowHostNetwork lets a spec ask for the host's network. Without it
	// Network "host" is an error.
	AllowHostNetwork bool
	// Logger receives what goes wrong while cleaning up. Nil means
	// slog.Default().
	Logger *slog.Logger

	once   sync.Once
	cli    *client.Client
	cliErr error
	owned  bool // Close closes cli
}

var (
	_ mixmaster.Executor     = (*Executor)(nil)
	_ mixmaster.ImageBuilder = (*Executor)(nil)
)

// New returns an Executor with a client configured from the environment.
// It pings the engine, which settles the API version (the highest both
// sides speak), and logs that version to logger (nil: slog.Default()).
// Close releases the client.
func New(ctx context.Context, logger *slog.Logger) (*Executor, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	ping, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker: %w", err)
	}
	e := &Executor{Client: cli, owned: true, Logger: logger}
	e.logger().Info("docker engine",
		"host", cli.DaemonHost(),
		"api_version", cli.ClientVersion(),
		"daemon_api_version", ping.APIVersion,
		"builder", string(ping.BuilderVersion))
	return e, nil
}

// Close releases the client if the executor made it (in New or on first
// use); a Client set by the caller is left to the caller. The executor
// cannot be used afterwards.
func (e *Executor) Close() error {
	e.once.Do(func() {}) // no client is made after Close
	if !e.owned {
		return nil
	}
	if e.cli != nil {
		return e.cli.Close()
	}
	return e.Client.Close()
}

// client returns the client to use, creating it on first use.
func (e *Executor) client() (*client.Client, error) {
	e.once.Do(func() {
		if e.Client != nil {
			e.cli = e.Client
			return
		}
		e.cli, e.cliErr = client.New(client.FromEnv)
		e.owned = e.cliErr == nil
	})
	if e.cli == nil {
		err := e.cliErr
		if err == nil {
			err = errors.New("executor closed")
		}
		return nil, fmt.Errorf("docker: %w", err)
	}
	return e.cli, nil
}

func (e *Executor) logger() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.Default()
}

// containerConfig translates spec into the container's configuration. It
// talks to nobody, so that what a job gets can be tested without a daemon.
func (e *Executor) containerConfig(spec mixmaster.ExecSpec) (*container.Config, *container.HostConfig, error) {
	image := spec.Image
	if image == "" {
		image = e.DefaultImage
	}
	if image == "" {
		return nil, nil, errors.New("docker: no image given and no default image configured")
	}

	network := spec.Network
	switch {
	case network == "":
		network = NetworkNone
	case network == "host" && !e.AllowHostNetwork:
		return nil, nil, errors.New(`docker: network "host" is not allowed`)
	case strings.HasPrefix(network, "container:"):
		// Joining another container's namespaces would let a job reach
		// whatever that container reaches.
		return nil, nil, fmt.Errorf("docker: network %q is not allowed", network)
	}

	mounts := make([]mount.Mount, 0, len(spec.Mounts))
	for _, m := range spec.Mounts {
		if !filepath.IsAbs(m.Source) || !filepath.IsAbs(m.Target) {
			return nil, nil, fmt.Errorf("docker: mount %s:%s: both paths must be absolute", m.Source, m.Target)
		}
		// A job with the engine's socket could start a privileged
		// container and own the host.
		if filepath.Base(m.Source) == "docker.sock" {
			return nil, nil, fmt.Errorf("docker: mounting the Docker socket (%s) is not allowed", m.Source)
		}
		mounts = append(mounts, mount.Mount{
			Type:     mount.TypeBind,
			Source:   filepath.Clean(m.Source),
			Target:   filepath.Clean(m.Target),
			ReadOnly: m.ReadOnly,
		})
	}

	user := spec.User
	if user == "" {
		// The service's own identity, so that the job can write to the
		// workspace the service made, without any capability.
		user = fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
	}

	labels := make(map[string]string, len(e.Labels)+len(spec.Labels)+3)
	maps.Copy(labels, e.Labels)
	maps.Copy(labels, spec.Labels)
	// Those Sweep relies on cannot be overridden by the spec.
	if inst, ok := e.Labels[LabelInstance]; ok {
		labels[LabelInstance] = inst
	}
	labels[LabelManaged] = "1"
	labels[LabelJob] = spec.JobID.String()
	if spec.Project != "" {
		labels[LabelProject] = spec.Project
	}

	cfg := &container.Config{
		Image:      image,
		User:       user,
		Env:        spec.Env,
		WorkingDir: spec.Dir,
		Labels:     labels,
	}
	if spec.Command != "" {
		// Replacing the entrypoint too: an image made to be run as is
		// (mistry's) would otherwise get the command as its arguments.
		cfg.Entrypoint = []string{"/bin/sh", "-c"}
		cfg.Cmd = []string{spec.Command}
	}

	memory := firstNonZero(spec.Memory, e.Memory, DefaultMemory)
	cpus := firstNonZero(spec.CPUs, e.CPUs, DefaultCPUs)
	pids := firstNonZero(spec.PidsLimit, e.PidsLimit, DefaultPidsLimit)
	init := true
	host := &container.HostConfig{
		NetworkMode: container.NetworkMode(network),
		Mounts:      mounts,
		// A build needs no capability: it runs as the service's uid on
		// its own workspace. no-new-privileges keeps setuid binaries in
		// the image from giving any back.
		CapDrop:     []string{"ALL"},
		SecurityOpt: []string{"no-new-privileges"},
		// An init as PID 1 reaps orphans and passes signals on; when
		// the command exits, the rest of the container goes with it.
		Init: &init,
		Resources: container.Resources{
			Memory:    memory,
			NanoCPUs:  int64(cpus * 1e9),
			PidsLimit: &pids,
		},
	}
	return cfg, host, nil
}

func firstNonZero[T int64 | float64](v ...T) T {
	for _, x := range v {
		if x != 0 {
			return x
		}
	}
	return 0
}
