package docker

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"

	"mixmaster"
)

func ptr[T any](v T) *T { return &v }

func TestContainerConfig(t *testing.T) {
	self := fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
	// base is what a spec with only a job ID and a command gets from an
	// executor with only a default image.
	base := func() (*container.Config, *container.HostConfig) {
		return &container.Config{
				Image:      "default:1",
				User:       self,
				Entrypoint: []string{"/bin/sh", "-c"},
				Cmd:        []string{"make test"},
				Labels:     map[string]string{LabelManaged: "1", LabelJob: "42"},
			}, &container.HostConfig{
				NetworkMode: "none",
				Mounts:      []mount.Mount{},
				CapDrop:     []string{"ALL"},
				SecurityOpt: []string{"no-new-privileges"},
				Init:        ptr(true),
				Resources: container.Resources{
					Memory:    2 << 30,
					NanoCPUs:  2e9,
					PidsLimit: ptr(int64(1024)),
				},
			}
	}
	tests := []struct {
		name      string
		exec      *Executor
		noCommand bool
		spec      mixmaster.ExecSpec
		want      func(*container.Config, *container.HostConfig)
		wantErr   string
	}{
		{
			name: "Defaults",
			want: func(*container.Config, *container.HostConfig) {},
		},
		{
			name:      "ImageEntrypoint",
			noCommand: true,
			want: func(c *container.Config, h *container.HostConfig) {
				c.Entrypoint, c.Cmd = nil, nil
			},
		},
		{
			name: "Everything",
			spec: mixmaster.ExecSpec{
				Project:   "app",
				Dir:       "/data",
				Env:       []string{"A=1", "B="},
				Image:     "mistry-app",
				User:      "1000:1000",
				Labels:    map[string]string{"x": "y", LabelManaged: "0", LabelJob: "7"},
				Network:   "bridge",
				Memory:    1 << 20,
				CPUs:      0.5,
				PidsLimit: 10,
				Mounts: []mixmaster.Mount{
					{Source: "/srv/p/data/", Target: "/data"},
					{Source: "/srv/agent", Target: "/agent", ReadOnly: true},
				},
			},
			want: func(c *container.Config, h *container.HostConfig) {
				c.Image = "mistry-app"
				c.User = "1000:1000"
				c.Env = []string{"A=1", "B="}
				c.WorkingDir = "/data"
				// The spec's labels cannot take over the ones Sweep
				// relies on.
				c.Labels = map[string]string{"x": "y", LabelManaged: "1", LabelJob: "42", LabelProject: "app"}
				h.NetworkMode = "bridge"
				h.Resources = container.Resources{Memory: 1 << 20, NanoCPUs: 5e8, PidsLimit: ptr(int64(10))}
				h.Mounts = []mount.Mount{
					{Type: mount.TypeBind, Source: "/srv/p/data", Target: "/data"},
					{Type: mount.TypeBind, Source: "/srv/agent", Target: "/agent", ReadOnly: true},
				}
			},
		},
		{
			name: "ExecutorSettings",
			exec: &Executor{Labels: map[string]string{LabelInstance: "a", "x": "exec"}, Memory: 1 << 30, CPUs: 4, PidsLimit: 64},
			spec: mixmaster.ExecSpec{Labels: map[string]string{"x": "spec", LabelInstance: "b"}},
			want: func(c *container.Config, h *container.HostConfig) {
				c.Labels = map[string]string{LabelManaged: "1", LabelJob: "42", LabelInstance: "a", "x": "spec"}
				h.Resources = container.Resources{Memory: 1 << 30, NanoCPUs: 4e9, PidsLimit: ptr(int64(64))}
			},
		},
		{
			name:    "HostNetworkRefused",
			spec:    mixmaster.ExecSpec{Network: "host"},
			wantErr: `network "host" is not allowed`,
		},
		{
			name: "HostNetworkAllowed",
			exec: &Executor{AllowHostNetwork: true},
			spec: mixmaster.ExecSpec{Network: "host"},
			want: func(c *container.Config, h *container.HostConfig) {
				h.NetworkMode = "host"
			},
		},
		{
			name:    "ContainerNetworkRefused",
			exec:    &Executor{AllowHostNetwork: true},
			spec:    mixmaster.ExecSpec{Network: "container:other"},
			wantErr: "not allowed",
		},
		{
			name:    "NoImage",
			exec:    &Executor{DefaultImage: "-"},
			wantErr: "no image",
		},
		{
			name:    "DockerSocket",
			spec:    mixmaster.ExecSpec{Mounts: []mixmaster.Mount{{Source: "/var/run/docker.sock", Target: "/var/run/docker.sock"}}},
			wantErr: "Docker socket",
		},
		{
			name:    "RelativeMount",
			spec:    mixmaster.ExecSpec{Mounts: []mixmaster.Mount{{Source: "data", Target: "/data"}}},
			wantErr: "absolute",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.exec
			if e == nil {
				e = &Executor{}
			}
			switch e.DefaultImage {
			case "":
				e.DefaultImage = "default:1"
			case "-":
				e.DefaultImage = ""
			}
			spec := tt.spec
			spec.JobID = 42
			if !tt.noCommand {
				spec.Command = "make test"
			}
			cfg, host, err := e.containerConfig(spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantCfg, wantHost := base()
			tt.want(wantCfg, wantHost)
			if !reflect.DeepEqual(cfg, wantCfg) {
				t.Errorf("config:\n got %+v\nwant %+v", cfg, wantCfg)
			}
			if !reflect.DeepEqual(host, wantHost) {
				t.Errorf("host config:\n got %+v\nwant %+v", host, wantHost)
			}
			if host.AutoRemove {
				t.Error("AutoRemove is set")
			}
		})
	}
}

func TestContainerName(t *testing.T) {
	a, b := containerName(7), containerName(7)
	if !strings.HasPrefix(a, "mixmaster-job-7-") || len(a) != len("mixmaster-job-7-")+8 {
		t.Errorf("name %q, want mixmaster-job-7-<8 hex digits>", a)
	}
	if a == b {
		t.Errorf("two names for one job are both %q", a)
	}
}
