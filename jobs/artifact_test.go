package jobs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mixmaster"
	"mixmaster/artifacts"
	"mixmaster/sandbox/shell"
	"mixmaster/sandbox/workspace"
	"mixmaster/store"
)

// artifactHarness runs artifact builds for real: bbolt, the shell
// executor and plain workspaces.
type artifactHarness struct {
	db      *store.DB
	svc     *Service
	runner  *Runner
	root    string
	folders *Folders
}

func newArtifactHarness(t *testing.T, projects map[string]string) *artifactHarness {
	t.Helper()
	root := t.TempDir()
	projectsDir := filepath.Join(root, "projects")
	for name, script := range projects {
		writeProject(t, filepath.Join(projectsDir, name), map[string]string{"build": "#!/bin/sh\nset -e\n" + script})
	}
	db, err := store.Open(filepath.Join(root, "mixmaster.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	broker := NewBroker()
	files := &artifacts.Files{Root: root, Events: broker}
	folders := &Folders{Dir: projectsDir}
	h := &artifactHarness{db: db, root: root, folders: folders}
	h.svc = &Service{Store: db, Folders: folders, Events: broker, Root: root, WebhookArtifactsDir: files.ArtifactsDir}
	h.runner = &Runner{
		Store: db, Logs: files, Events: broker,
		Executors:  map[string]mixmaster.Executor{"shell": &shell.Executor{}},
		Folders:    folders,
		Workspaces: workspace.Plain{},
		Root:       root, ArtifactsDir: files.ArtifactsDir,
		Concurrency: 2,
	}
	if err := h.runner.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.runner.Close(time.Second) })
	return h
}

// build submits a request and waits for its job.
func (h *artifactHarness) build(t *testing.T, r mixmaster.ArtifactRequest) (mixmaster.ArtifactResult, *mixmaster.Job) {
	t.Helper()
	res, err := h.svc.SubmitArtifact(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	job, err := h.svc.Wait(ctx, res.Job.ID)
	if err != nil {
		t.Fatal(err)
	}
	return res, job
}

func (h *artifactHarness) read(t *testing.T, job *mixmaster.Job, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(h.svc.ArtifactsDir(job)), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestArtifactParamsAndCache(t *testing.T) {
	h := newArtifactHarness(t, map[string]string{
		"params":    `cat params/foo > artifacts/out.txt; date +%s%N > artifacts/stamp`,
		"exit-code": `exit 77`,
	})
	first, job := h.build(t, mixmaster.ArtifactRequest{Project: "params", Params: map[string]string{"foo": "zxc", "_opaque": "1"}})
	if first.Cached || job.Status != mixmaster.StatusSucceeded || h.read(t, job, "artifacts/out.txt") != "zxc" {
		t.Fatalf("first build: %+v %+v", first, job)
	}
	if h.read(t, job, "params/_opaque") != "1" {
		t.Error("opaque param not written")
	}
	// Same key (an opaque param differs): served from the cache.
	again, cached := h.build(t, mixmaster.ArtifactRequest{Project: "params", Params: map[string]string{"foo": "zxc", "_opaque": "2"}})
	if !again.Cached || cached.ID != job.ID {
		t.Fatalf("repeat: %+v", again)
	}
	// Rebuild bypasses the cache.
	if res, rebuilt := h.build(t, mixmaster.ArtifactRequest{Project: "params", Params: map[string]string{"foo": "zxc"}, Rebuild: true}); res.Cached || rebuilt.ID == job.ID {
		t.Fatalf("rebuild served from cache: %+v", res)
	}
	// A failed build is never served from the cache.
	_, failed := h.build(t, mixmaster.ArtifactRequest{Project: "exit-code"})
	if failed.Status != mixmaster.StatusFailed || *failed.ExitCode != 77 {
		t.Fatalf("exit-code: %+v", failed)
	}
	res, rerun := h.build(t, mixmaster.ArtifactRequest{Project: "exit-code"})
	if res.Cached || rerun.ID == failed.ID || *rerun.ExitCode != 77 {
		t.Fatalf("failed build was not rebuilt: %+v", res)
	}
}

func TestArtifactGroups(t *testing.T) {
	h := newArtifactHarness(t, map[string]string{
		"build-cache": `
if [ -f artifacts/leaked ]; then echo "artifacts leaked from the previous build" >&2; exit 9; fi
touch artifacts/leaked
if [ ! -f cache/out.txt ]; then cat params/foo > cache/out.txt; fi
cp cache/out.txt artifacts/out.txt
test -z "$(ls params | grep -v '^foo$\|^_exit$')"
exit "$(cat params/_exit 2>/dev/null || echo 0)"`,
	})
	_, a := h.build(t, mixmaster.ArtifactRequest{Project: "build-cache", Group: "baz", Params: map[string]string{"foo": "bar"}})
	if a.Status != mixmaster.StatusSucceeded || a.Incremental {
		t.Fatalf("first: %+v", a)
	}
	// A failed build in the group does not move its pointer.
	_, failed := h.build(t, mixmaster.ArtifactRequest{Project: "build-cache", Group: "baz", Params: map[string]string{"foo": "x", "_exit": "1"}})
	if failed.Status != mixmaster.StatusFailed || !failed.Incremental {
		t.Fatalf("failed: %+v", failed)
	}
	_, b := h.build(t, mixmaster.ArtifactRequest{Project: "build-cache", Group: "baz", Params: map[string]string{"foo": "bar2"}})
	if b.Status != mixmaster.StatusSucceeded || !b.Incremental {
		t.Fatalf("second: %+v\n", b)
	}
	if got := h.read(t, b, "artifacts/out.txt"); got != "bar" {
		t.Errorf("cache did not carry over from the last good build: %q", got)
	}
	if head, _ := h.db.GroupHead(context.Background(), "build-cache", "baz"); head.ID != b.ID {
		t.Errorf("group head = %d, want %d", head.ID, b.ID)
	}
	// No group: never incremental.
	if _, c := h.build(t, mixmaster.ArtifactRequest{Project: "build-cache", Params: map[string]string{"foo": "bar"}}); c.Incremental {
		t.Error("a build without a group was incremental")
	}
	if left, _ := filepath.Glob(filepath.Join(h.root, "build-cache", "pending", "*")); len(left) != 0 {
		t.Errorf("pending directories left: %v", left)
	}
}

func TestArtifactCoalescing(t *testing.T) {
	h := newArtifactHarness(t, map[string]string{"slow": `sleep 1; echo coalescing! > artifacts/out.txt; echo built >> "$MIXMASTER_CACHE/count"`})
	const n = 100
	var wg sync.WaitGroup
	results := make([]mixmaster.ArtifactResult, n)
	jobs := make([]*mixmaster.Job, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], jobs[i] = h.build(t, mixmaster.ArtifactRequest{Project: "slow", Group: "foo"})
		}()
	}
	wg.Wait()
	built, coalesced := 0, 0
	for i := range n {
		if jobs[i].ID != jobs[0].ID || jobs[i].Status != mixmaster.StatusSucceeded {
			t.Fatalf("request %d got job %+v", i, jobs[i])
		}
		if results[i].Coalesced {
			coalesced++
		} else if !results[i].Cached {
			built++
		}
	}
	if built != 1 || coalesced == 0 {
		t.Errorf("built %d, coalesced %d; want exactly one build", built, coalesced)
	}
	if all, _ := h.db.Jobs(context.Background(), mixmaster.JobFilter{}); len(all) != 1 {
		t.Errorf("%d jobs recorded, want 1", len(all))
	}
}

func TestArtifactBadRequests(t *testing.T) {
	h := newArtifactHarness(t, map[string]string{"ok": "true"})
	for _, r := range []mixmaster.ArtifactRequest{
		{Project: "../x"}, {Project: "a/b"}, {Project: ""}, {Project: "nope"},
		{Project: "ok", Params: map[string]string{"../../escape.txt": "pwned"}},
		{Project: "ok", Group: "../../grp-escape"},
	} {
		if _, err := h.svc.SubmitArtifact(context.Background(), r); mixmaster.ErrorCode(err) != mixmaster.EUNPROCESSABLE {
			t.Errorf("%+v: %v", r, err)
		}
	}
	for _, p := range []string{"escape.txt", "grp-escape", "projects/escape.txt"} {
		if _, err := os.Stat(filepath.Join(h.root, p)); err == nil {
			t.Errorf("%s was written outside the job's directory", p)
		}
	}
}

func TestArtifactRerun(t *testing.T) {
	h := newArtifactHarness(t, map[string]string{"p": "date +%s%N > artifacts/stamp"})
	_, first := h.build(t, mixmaster.ArtifactRequest{Project: "p", Params: map[string]string{"a": "1"}})
	again, err := h.svc.Rerun(context.Background(), first.ID, mixmaster.TriggerUI)
	if err != nil || again.ID == first.ID || again.Params["a"] != "1" {
		t.Fatalf("rerun = %+v, %v: a rerun builds anew, cache or not", again, err)
	}
	if list := h.svc.ListProjects(); len(list) != 1 || list[0].Name != "p" || list[0].Kind != mixmaster.KindArtifact {
		t.Errorf("ListProjects = %+v", list)
	}
}

func TestArtifactLimit(t *testing.T) {
	h := newArtifactHarness(t, map[string]string{
		"big":   "head -c 4096 /dev/zero > artifacts/blob",
		"small": "echo ok > artifacts/ok",
	})
	h.runner.ArtifactLimit = 1024
	_, big := h.build(t, mixmaster.ArtifactRequest{Project: "big"})
	if big.Status != mixmaster.StatusFailed || !strings.Contains(big.Error, "more than 1.0 KiB of artifacts") {
		t.Fatalf("big = %s %q", big.Status, big.Error)
	}
	if entries, _ := os.ReadDir(h.svc.ArtifactsDir(big)); len(entries) != 0 {
		t.Errorf("the oversized artifacts were kept: %v", entries)
	}
	if _, small := h.build(t, mixmaster.ArtifactRequest{Project: "small"}); small.Status != mixmaster.StatusSucceeded {
		t.Fatalf("small = %s %q", small.Status, small.Error)
	}
}
