package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"mixmaster"
	"mixmaster/internal/testenv"
	"mixmaster/sandbox/sandboxtest"
)

// testInstance labels everything these tests make, so that Sweep and
// PruneImages here never touch the containers and images of anything else
// using the daemon (a running service, another package's tests).
var testInstance = "test-" + randomHex(6)

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newExecutor returns an executor on the test engine running the busybox
// base image by default, or skips (or fails, when docker is required)
// without an engine.
func newExecutor(t *testing.T) *Executor {
	t.Helper()
	cli := testenv.DockerClient(t)
	return &Executor{
		Client:       cli,
		DefaultImage: testenv.BusyboxImage(t),
		Labels:       map[string]string{LabelInstance: testInstance},
		Logger:       slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
}

// hostDirExecutor shows the suite's spec.Dir, a host directory, to the
// container at the same path, the way a runner mounts a job's workspace.
// A missing directory then fails as a missing bind source, before
// anything runs.
type hostDirExecutor struct{ *Executor }

func (h hostDirExecutor) Run(ctx context.Context, spec mixmaster.ExecSpec, stdout, stderr io.Writer) (int, error) {
	spec.Mounts = append(spec.Mounts, mixmaster.Mount{Source: spec.Dir, Target: spec.Dir})
	return h.Executor.Run(ctx, spec, stdout, stderr)
}

func TestConformance(t *testing.T) {
	newExecutor(t) // skip before the suite starts subtests
	sandboxtest.RunExecutorTests(t, func(t *testing.T) mixmaster.Executor {
		return hostDirExecutor{newExecutor(t)}
	})
}

type result struct {
	code           int
	err            error
	stdout, stderr string
}

func run(ctx context.Context, t *testing.T, e *Executor, spec mixmaster.ExecSpec) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code, err := e.Run(ctx, spec, &stdout, &stderr)
	return result{code, err, stdout.String(), stderr.String()}
}

func (r result) ok(t *testing.T) {
	t.Helper()
	if r.err != nil || r.code != 0 {
		t.Fatalf("got (%d, %v), want (0, nil); stdout %q, stderr %q", r.code, r.err, r.stdout, r.stderr)
	}
}

// containersOf lists the containers of job id made by these tests,
// running or not.
func containersOf(t *testing.T, cli *client.Client, id mixmaster.JobID) []container.Summary {
	t.Helper()
	f := make(client.Filters).Add("label", LabelInstance+"="+testInstance, LabelJob+"="+id.String())
	list, err := cli.ContainerList(t.Context(), client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// waitForContainer waits until job id has a container and returns it.
func waitForContainer(t *testing.T, cli *client.Client, id mixmaster.JobID) container.Summary {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if list := containersOf(t, cli, id); len(list) > 0 {
			return list[0]
		}
	}
	t.Fatalf("no container for job %d", id)
	return container.Summary{}
}

func assertNoContainer(t *testing.T, cli *client.Client, id mixmaster.JobID) {
	t.Helper()
	if list := containersOf(t, cli, id); len(list) > 0 {
		t.Errorf("job %d left container %s (%s) behind", id, list[0].ID, list[0].State)
	}
}

// A job writes to its workspace as the given uid, with no capability; the
// host sees the file owned by that uid.
func TestWorkspaceWriteAsUser(t *testing.T) {
	t.Parallel()
	e := newExecutor(t)
	dir := t.TempDir()
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		// As root, an unprivileged uid that owns the workspace, like the
		// service user does in production.
		uid, gid = 4321, 4321
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	r := run(t.Context(), t, e, mixmaster.ExecSpec{
		JobID:   1001,
		Command: "id -u; id -g; echo made > made.txt; mkdir sub",
		Dir:     "/data",
		User:    fmt.Sprintf("%d:%d", uid, gid),
		Mounts:  []mixmaster.Mount{{Source: dir, Target: "/data"}},
	})
	r.ok(t)
	if want := fmt.Sprintf("%d\n%d\n", uid, gid); r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	for _, name := range []string{"made.txt", "sub"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != uid || int(st.Gid) != gid {
			t.Errorf("%s is owned by %d:%d, want %d:%d", name, st.Uid, st.Gid, uid, gid)
		}
	}
}

// Even root in the container has no capability and cannot gain any, runs
// under an init, within the limits, without a network.
func TestConfinement(t *testing.T) {
	t.Parallel()
	e := newExecutor(t)
	r := run(t.Context(), t, e, mixmaster.ExecSpec{
		JobID:     1002,
		User:      "0:0",
		PidsLimit: 99,
		Command: `grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status
cat /proc/1/comm
ls /sys/class/net
cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null
true`,
	})
	r.ok(t)
	want := "CapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nNoNewPrivs:\t1\ndocker-init\nlo\n99\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
}

// The container carries the labels Sweep relies on, and is gone after a
// normal exit.
func TestLabelsAndRemoval(t *testing.T) {
	t.Parallel()
	e := newExecutor(t)
	const id = 1003
	done := make(chan result, 1)
	go func() {
		done <- run(t.Context(), t, e, mixmaster.ExecSpec{
			JobID:   id,
			Project: "proj",
			Labels:  map[string]string{"org.example.extra": "yes"},
			Command: "sleep 2; echo finished",
		})
	}()
	c := waitForContainer(t, e.Client, id)
	want := map[string]string{
		LabelManaged:        "1",
		LabelJob:            "1003",
		LabelProject:        "proj",
		LabelInstance:       testInstance,
		"org.example.extra": "yes",
	}
	for k, v := range want {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	if len(c.Names) != 1 || !strings.HasPrefix(c.Names[0], "/mixmaster-job-1003-") {
		t.Errorf("names %q, want mixmaster-job-1003-<random>", c.Names)
	}
	r := <-done
	r.ok(t)
	if r.stdout != "finished\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	assertNoContainer(t, e.Client, id)
}

func TestTimeoutRemovesContainer(t *testing.T) {
	t.Parallel()
	e := newExecutor(t)
	const id = 1004
	start := time.Now()
	// Starting a container takes most of a second here: the timeout
	// leaves the command time to print before it is killed.
	r := run(t.Context(), t, e, mixmaster.ExecSpec{JobID: id, Command: "echo started; sleep 1000", Timeout: 3 * time.Second})
	if !errors.Is(r.err, context.DeadlineExceeded) || r.code != -1 {
		t.Fatalf("got (%d, %v), want (-1, deadline exceeded)", r.code, r.err)
	}
	if !strings.Contains(r.err.Error(), "timed out after 3s") {
		t.Errorf("error %q does not say %q", r.err, "timed out after 3s")
	}
	if d := time.Since(start); d > 7*time.Second {
		t.Errorf("Run took %v with a timeout of 3s", d)
	}
	if r.stdout != "started\n" {
		t.Errorf("stdout %q, want the output from before the timeout", r.stdout)
	}
	assertNoContainer(t, e.Client, id)
}

func TestCancelRemovesContainer(t *testing.T) {
	t.Parallel()
	e := newExecutor(t)
	const id = 1005
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// Canceled once the command runs: its first line says so.
	stdout := &cancelOn{text: "started\n", cancel: cancel}
	var stderr bytes.Buffer
	code, err := e.Run(ctx, mixmaster.ExecSpec{JobID: id, Command: "echo started; sleep 1000"}, stdout, &stderr)
	if !errors.Is(err, context.Canceled) || code != -1 {
		t.Fatalf("got (%d, %v), want (-1, canceled); stderr %q", code, err, stderr.String())
	}
	if stdout.seen.IsZero() {
		t.Fatalf("canceled before the command ran; stdout %q", stdout.buf.String())
	}
	assertNoContainer(t, e.Client, id)
}

// With a kill grace, the command gets SIGTERM first and what it prints
// then still reaches the log.
func TestKillGrace(t *testing.T) {
	t.Parallel()
	e := newExecutor(t)
	e.KillGrace = 5 * time.Second
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// Stopped once the trap is set, however long the start took.
	stdout := &cancelOn{text: "ready\n", cancel: cancel}
	var stderr bytes.Buffer
	code, err := e.Run(ctx, mixmaster.ExecSpec{
		JobID:   1006,
		Command: "trap 'echo got TERM; exit 3' TERM; echo ready; sleep 1000 & wait",
	}, stdout, &stderr)
	if !errors.Is(err, context.Canceled) || code != -1 {
		t.Fatalf("got (%d, %v), want (-1, canceled); stderr %q", code, err, stderr.String())
	}
	if got := stdout.buf.String(); got != "ready\ngot TERM\n" {
		t.Errorf("stdout %q, want the trap's output", got)
	}
	if d := time.Since(stdout.seen); d > 4*time.Second {
		t.Errorf("Run took %v after the cancel; the command exited on SIGTERM", d)
	}
}

// cancelOn calls cancel once its output holds text.
type cancelOn struct {
	text   string
	cancel func()
	buf    bytes.Buffer
	seen   time.Time
}

func (c *cancelOn) Write(p []byte) (int, error) {
	c.buf.Write(p)
	if c.seen.IsZero() && strings.Contains(c.buf.String(), c.text) {
		c.seen = time.Now()
		c.cancel()
	}
	return len(p), nil
}

func TestMissingImage(t *testing.T) {
	t.Parallel()
	e := newExecutor(t)
	r := run(t.Context(), t, e, mixmaster.ExecSpec{JobID: 1007, Image: "mixmaster-test/no-such-image:latest", Command: "true"})
	if r.err == nil || !strings.Contains(r.err.Error(), "not found") || r.code != -1 {
		t.Fatalf("got (%d, %v), want (-1, image not found)", r.code, r.err)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	testenv.DockerClient(t)
	img := testenv.BusyboxImage(t)
	e, err := New(t.Context(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.DefaultImage = img
	e.Labels = map[string]string{LabelInstance: testInstance}
	r := run(t.Context(), t, e, mixmaster.ExecSpec{JobID: 1008, Command: "echo hello"})
	r.ok(t)
	if r.stdout != "hello\n" {
		t.Errorf("stdout %q", r.stdout)
	}
}

// writeTree makes files below dir: a name ending in "/" is a directory,
// "->target" content a symlink, and mode 0755 is given to names ending in
// ".sh" under sub/.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		mode := fs.FileMode(0o644)
		if strings.HasPrefix(name, "sub/") && strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
}

func removeImage(t *testing.T, cli *client.Client, ref string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove image %s: %v", ref, err)
		}
	})
}

// An image built from a project folder runs its own entrypoint when the
// spec gives no command, as mistry's projects expect.
func TestBuildImageAndRunEntrypoint(t *testing.T) {
	t.Parallel()
	e := newExecutor(t)
	// An instance of its own, for PruneImages below.
	inst := testInstance + "-build"
	e.Labels = map[string]string{LabelInstance: inst}
	base := testenv.BusyboxImage(t)
	project := t.TempDir()
	writeTree(t, project, map[string]string{
		"Dockerfile": "FROM " + base + `
ARG uid
RUN echo "building for uid $uid"
COPY . /ctx
COPY entry.sh /entry.sh
WORKDIR /data
ENTRYPOINT ["/bin/sh", "/entry.sh"]
`,
		"entry.sh": `echo "entry in $(pwd)"
[ -x /ctx/sub/tool.sh ] && echo "tool is executable"
[ -L /ctx/link ] && echo "link is a link to $(cat /ctx/link)"
echo artifact > out.txt
`,
		"sub/tool.sh": "echo tool\n",
		"link":        "->sub/tool.sh",
	})
	tag := "mixmaster-test/build-" + randomHex(6) + ":latest"
	removeImage(t, e.Client, tag)
	var log bytes.Buffer
	id, err := e.BuildImage(t.Context(), mixmaster.ImageSpec{
		Project:   "proj",
		Dir:       project,
		Tag:       tag,
		BuildArgs: map[string]string{"uid": "4321"},
		Labels:    map[string]string{"org.example.extra": "yes"},
	}, &log)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	if !strings.HasPrefix(id, "sha256:") {
		t.Errorf("image ID %q", id)
	}
	for _, want := range []string{"Step 1/", "building for uid 4321", "Successfully tagged " + tag} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("build log lacks %q:\n%s", want, log.String())
		}
	}
	assertNoJSON(t, log.String())

	img, err := e.Client.ImageInspect(t.Context(), tag)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{LabelManaged: "1", LabelInstance: inst, LabelProject: "proj", "org.example.extra": "yes"} {
		if got := img.Config.Labels[k]; got != v {
			t.Errorf("image label %s = %q, want %q", k, got, v)
		}
	}

	data := t.TempDir()
	r := run(t.Context(), t, e, mixmaster.ExecSpec{
		JobID:  1101,
		Image:  tag,
		Mounts: []mixmaster.Mount{{Source: data, Target: "/data"}},
	})
	r.ok(t)
	want := "entry in /data\ntool is executable\nlink is a link to echo tool\n"
	if r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	if got, err := os.ReadFile(filepath.Join(data, "out.txt")); err != nil || string(got) != "artifact\n" {
		t.Errorf("out.txt: %q, %v", got, err)
	}

	// The image is this instance's own: PruneImages removes it unless
	// kept.
	if n, err := e.PruneImages(t.Context(), func(string) bool { return true }); err != nil || n != 0 {
		t.Errorf("PruneImages keeping everything: (%d, %v), want (0, nil)", n, err)
	}
	if n, err := e.PruneImages(t.Context(), func(ref string) bool { return ref != tag }); err != nil || n != 1 {
		t.Errorf("PruneImages: (%d, %v), want (1, nil)", n, err)
	}
	if _, err := e.Client.ImageInspect(t.Context(), tag); !cerrdefs.IsNotFound(err) {
		t.Errorf("image %s after PruneImages: %v", tag, err)
	}
}

func assertNoJSON(t *testing.T, log string) {
	t.Helper()
	for line := range strings.Lines(log) {
		if strings.HasPrefix(strings.TrimSpace(line), "{") {
			t.Errorf("JSON in the build log: %q", line)
		}
	}
}

func TestBuildImageFailures(t *testing.T) {
	t.Parallel()
	e := newExecutor(t)
	base := testenv.BusyboxImage(t)
	tests := []struct {
		name       string
		dockerfile string // none when empty
		want       string
	}{
		{"RunFails", "FROM " + base + "\nRUN exit 3\n", "The command '/bin/sh -c exit 3' returned a non-zero code: 3"},
		{"UnknownInstruction", "FROM " + base + "\nINVALIDCOMMAND foo\n", "unknown instruction: INVALIDCOMMAND"},
		// Without a registry the message is about the pull that failed.
		{"MissingBase", "FROM mixmaster-test/no-such-image:latest\n", "could not build"},
		{"NoDockerfile", "", "no Dockerfile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			project := t.TempDir()
			if tt.dockerfile != "" {
				writeTree(t, project, map[string]string{"Dockerfile": tt.dockerfile})
			}
			tag := "mixmaster-test/build-" + randomHex(6) + ":latest"
			removeImage(t, e.Client, tag)
			var log bytes.Buffer
			id, err := e.BuildImage(t.Context(), mixmaster.ImageSpec{Dir: project, Tag: tag}, &log)
			if err == nil {
				t.Fatalf("build succeeded with image %s:\n%s", id, log.String())
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tag) {
				t.Errorf("error %q does not name the image and say %q", err, tt.want)
			}
			assertNoJSON(t, log.String())
		})
	}
}

// Sweep removes what a crashed service left, and nothing that is not
// labelled as ours.
func TestSweep(t *testing.T) {
	t.Parallel()
	e := newExecutor(t)
	// An instance of its own, or Sweep would take the containers of the
	// tests running alongside.
	inst := testInstance + "-sweep"
	e.Labels = map[string]string{LabelInstance: inst}
	create := func(name string, labels map[string]string) string {
		t.Helper()
		res, err := e.Client.ContainerCreate(t.Context(), client.ContainerCreateOptions{
			Name:   name,
			Config: &container.Config{Image: e.DefaultImage, Cmd: []string{"sleep", "1000"}, Labels: labels},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			e.Client.ContainerRemove(ctx, res.ID, client.ContainerRemoveOptions{Force: true})
		})
		if _, err := e.Client.ContainerStart(t.Context(), res.ID, client.ContainerStartOptions{}); err != nil {
			t.Fatal(err)
		}
		return res.ID
	}
	leftover := create("mixmaster-job-1201-"+randomHex(4), map[string]string{
		LabelManaged: "1", LabelJob: "1201", LabelInstance: inst,
	})
	// Not ours: named like ours, even of our instance, but without the
	// managed label.
	foreign := create("mixmaster-job-1202-"+randomHex(4), map[string]string{LabelInstance: inst, LabelJob: "1202"})

	n, err := e.Sweep(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("Sweep: (%d, %v), want (1, nil)", n, err)
	}
	if _, err := e.Client.ContainerInspect(t.Context(), leftover, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("leftover container after Sweep: %v", err)
	}
	if _, err := e.Client.ContainerInspect(t.Context(), foreign, client.ContainerInspectOptions{}); err != nil {
		t.Errorf("foreign container after Sweep: %v", err)
	}
}
