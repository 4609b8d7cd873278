package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mixmaster"
	"mixmaster/internal/testenv"
	"mixmaster/jobs"
	"mixmaster/sandbox/sshagent"
	"mixmaster/store"
)

// tortureJobs is how many jobs the torture test gets accepted in all.
const tortureJobs = 200

// TestKilledRepeatedlyLosesNothing submits jobs of both kinds while the
// service is killed with SIGKILL at random moments and restarted on the
// same build root, then checks that every accepted job ends in exactly one
// final state and that nothing the killed processes had under way is left
// behind: agent directories, pending builds, temporary files.
func TestKilledRepeatedlyLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts the service several times")
	}
	start := time.Now()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("MIXMASTER_TORTURE_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (set MIXMASTER_TORTURE_SEED to repeat)", seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	repo := newTestRepo(t)
	dir := t.TempDir()
	buildRoot := filepath.Join(dir, "builds")
	projects := filepath.Join(dir, "projects")
	if err := os.MkdirAll(filepath.Join(projects, "crashy"), 0o755); err != nil {
		t.Fatal(err)
	}
	build := "#!/bin/sh\nsleep 0.1\necho built > artifacts/out.txt\n"
	if err := os.WriteFile(filepath.Join(projects, "crashy", "build"), []byte(build), 0o755); err != nil {
		t.Fatal(err)
	}
	// With a Docker engine (always in CI), a third of the artifact builds
	// run in containers, so that a kill also leaves containers behind for
	// the next start to clear away.
	docker := testenv.Required("docker") || exec.Command("docker", "info").Run() == nil
	if docker {
		image := testenv.BusyboxImage(t)
		boxed := filepath.Join(projects, "boxed")
		os.MkdirAll(boxed, 0o755)
		os.WriteFile(filepath.Join(boxed, "Dockerfile"), []byte("FROM "+image+"\nARG uid\nWORKDIR /data\nENTRYPOINT [\"/bin/sh\", \"-c\", \"sleep 0.3; echo built > artifacts/out.txt\"]\n"), 0o644)
		t.Cleanup(func() { removeImages(t, "mixmaster-boxed") })
	}
	// Agents live in os.TempDir(): a private, short TMPDIR for the service
	// keeps other processes' agents out of the count and the socket path
	// under the unix limit.
	agentDir, err := os.MkdirTemp("", "mm-agents-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(agentDir) })
	config := filepath.Join(dir, "mixmaster.ini")
	os.WriteFile(config, []byte(fmt.Sprintf(`
[_]
buildRoot = %s
projectsPath = %s
jobConcurrency = 2
jobBacklog = 5000

[test-org/test-repo]
.repository = %s
production = sleep 0.2; echo built production
staging = sleep 0.1; echo built staging
master = sleep 0.1$(( $$ %% 5 )); echo built master
`, buildRoot, projects, repo.Dir)), 0o600)

	var logs syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service log:\n%s", logs.String())
		}
	})
	env := append(os.Environ(), "TMPDIR="+agentDir)
	if !docker {
		env = append(env, "MIXMASTER_DOCKER=off")
	}

	var (
		mu       sync.Mutex
		url      string // "" while the service is down
		acc      []mixmaster.JobID
		attempts int
	)
	setURL := func(u string) { mu.Lock(); url = u; mu.Unlock() }

	client := &http.Client{Timeout: 10 * time.Second}
	// submit posts one job of either kind and reports the id when the
	// service accepted it; a service that is down or dies meanwhile is no
	// error: that job was never accepted.
	submit := func(base string, n int) (mixmaster.JobID, bool) {
		var endpoint, body string
		want := http.StatusAccepted
		if n%2 == 0 {
			target := []string{"production", "staging/x", "master"}[n/2%3]
			endpoint, body = "/", fmt.Sprintf(`{"project":"test-org/test-repo","target":%q}`, target)
		} else {
			// Distinct params so that no two requests coalesce.
			project := "crashy"
			if docker && n%3 == 1 {
				project = "boxed"
			}
			endpoint, body = "/jobs?async", fmt.Sprintf(`{"project":%q,"params":{"n":"%d"}}`, project, n)
			want = http.StatusCreated
		}
		resp, err := client.Post(base+endpoint, "application/json", strings.NewReader(body))
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != want {
			if err == nil && resp.StatusCode < 500 {
				t.Errorf("POST %s %s: %d %s", endpoint, body, resp.StatusCode, b)
			}
			return 0, false
		}
		var a struct {
			ID  mixmaster.JobID `json:"id"`
			URL string
		}
		if err := json.Unmarshal(b, &a); err != nil {
			t.Errorf("POST %s: %v: %s", endpoint, err, b)
			return 0, false
		}
		if a.ID == 0 {
			id, err := strconv.ParseUint(path.Base(a.URL), 10, 64)
			if err != nil {
				t.Errorf("POST %s: no job id in %s", endpoint, b)
				return 0, false
			}
			a.ID = mixmaster.JobID(id)
		}
		return a.ID, true
	}

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				mu.Lock()
				base, done, n := url, len(acc) >= tortureJobs, attempts
				if base != "" {
					attempts++
				}
				mu.Unlock()
				if done {
					return
				}
				if base == "" {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if id, ok := submit(base, n); ok {
					mu.Lock()
					acc = append(acc, id)
					mu.Unlock()
				}
				// Spread the submissions over several lives of the service.
				time.Sleep(20 * time.Millisecond)
			}
		})
	}

	kills := 4 + rng.IntN(2)
	var p *exec.Cmd
	for range kills {
		var u string
		p, u = startTortured(t, config, env, &logs)
		setURL(u)
		time.Sleep(time.Duration(100+rng.IntN(501)) * time.Millisecond)
		setURL("")
		p.Process.Signal(syscall.SIGKILL)
		p.Wait()
	}
	p, u := startTortured(t, config, env, &logs)
	setURL(u)
	wg.Wait()
	mu.Lock()
	accepted := acc
	mu.Unlock()

	// Let the service work through the queue and the retries.
	var all map[mixmaster.JobID]*mixmaster.Job
	deadline := time.Now().Add(90 * time.Second)
	for {
		var dup []mixmaster.JobID
		all, dup = listAllJobs(t, u)
		for _, id := range dup {
			t.Errorf("job %d listed twice", id)
		}
		settled := true
		for _, j := range all {
			settled = settled && j.Status.Done()
		}
		for _, id := range accepted {
			settled = settled && all[id] != nil
		}
		if settled {
			break
		}
		if time.Now().After(deadline) {
			for _, j := range all {
				if !j.Status.Done() {
					t.Errorf("job %d (%s) stuck %s", j.ID, j.Kind, j.Status)
				}
			}
			for _, id := range accepted {
				if all[id] == nil {
					t.Errorf("accepted job %d is missing", id)
				}
			}
			t.Fatalf("jobs did not settle within 90 s")
		}
		time.Sleep(100 * time.Millisecond)
	}

	retries := map[mixmaster.JobID][]*mixmaster.Job{}
	for _, j := range all {
		if j.RetryOf != 0 {
			retries[j.RetryOf] = append(retries[j.RetryOf], j)
		}
	}
	interrupted := 0
	for _, j := range all {
		if j.Status == mixmaster.StatusErrored && j.Error == jobs.RestartReason {
			interrupted++
		}
		// Only a first attempt is run again; a retry interrupted in turn
		// stays errored.
		want := 0
		if j.Status == mixmaster.StatusErrored && j.Error == jobs.RestartReason && j.Attempt == 0 {
			want = 1
		}
		if got := len(retries[j.ID]); got != want {
			t.Errorf("job %d (%s, %s %q, attempt %d) has %d retries, want %d", j.ID, j.Kind, j.Status, j.Error, j.Attempt, got, want)
		}
		if j.Status != mixmaster.StatusSucceeded && j.Error != jobs.RestartReason {
			t.Errorf("job %d (%s) = %s %q, want succeeded or interrupted", j.ID, j.Kind, j.Status, j.Error)
		}
		if j.Kind == mixmaster.KindArtifact && j.Status == mixmaster.StatusSucceeded {
			out := filepath.Join(buildRoot, j.Project, "ready", j.ID.String(), "data", "artifacts", "out.txt")
			if b, err := os.ReadFile(out); err != nil || string(b) != "built\n" {
				t.Errorf("artifact job %d succeeded but out.txt = %q, %v", j.ID, b, err)
			}
		}
	}
	seen := map[mixmaster.JobID]bool{}
	for _, id := range accepted {
		if seen[id] {
			t.Errorf("job %d accepted twice", id)
		}
		seen[id] = true
		if all[id] == nil {
			t.Errorf("accepted job %d is missing", id)
		}
	}

	// A clean stop, so that the store can be opened from here.
	p.Process.Signal(syscall.SIGTERM)
	if err := p.Wait(); err != nil {
		t.Errorf("service after SIGTERM: %v", err)
	}

	if left, _ := filepath.Glob(filepath.Join(buildRoot, "*", "pending", "*")); len(left) > 0 {
		t.Errorf("pending builds left behind: %v", left)
	}
	if docker {
		boxed := 0
		for _, j := range all {
			if j.Project == "boxed" && j.Status == mixmaster.StatusSucceeded {
				boxed++
			}
		}
		if boxed == 0 {
			t.Error("no build in a container succeeded")
		}
		t.Logf("%d builds in containers succeeded", boxed)
		sum := sha256.Sum256([]byte(buildRoot))
		out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=mixmaster.instance="+hex.EncodeToString(sum[:8])).Output()
		if err != nil || len(bytes.TrimSpace(out)) != 0 {
			t.Errorf("containers left behind: %q, %v", out, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(agentDir, sshagent.DirPrefix+"*")); len(left) > 0 {
		t.Errorf("%d agent directories left behind: %v", len(left), left)
	}
	for _, f := range tempFiles(t, buildRoot) {
		t.Errorf("temporary file left behind: %s", f)
	}

	db, err := store.Open(filepath.Join(buildRoot, "mixmaster.db"))
	if err != nil {
		t.Fatalf("open the store after the kills: %v", err)
	}
	defer db.Close()
	if n, err := db.CountJobs(context.Background()); err != nil || n != len(all) {
		t.Errorf("store holds %d jobs (%v), the API listed %d", n, err, len(all))
	}
	t.Logf("accepted %d jobs (%d attempts), %d kills, %d interrupted, %d retried, %d jobs in all, %s",
		len(accepted), attempts, kills, interrupted, len(retries), len(all), time.Since(start).Round(time.Millisecond))
}

// startTortured runs `mixmaster serve` with env, copying its log to logs,
// and returns the process and its URL once it listens.
func startTortured(t *testing.T, config string, env []string, logs io.Writer) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(binary(t), "serve", "--config", config, "--listen", "127.0.0.1:0")
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			fmt.Fprintln(logs, sc.Text())
			if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case a := <-addr:
		return cmd, "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatal("service did not start")
	}
	return nil, ""
}

// listAllJobs pages through the job list and returns the jobs by id, and
// the ids that came more than once.
func listAllJobs(t *testing.T, base string) (map[mixmaster.JobID]*mixmaster.Job, []mixmaster.JobID) {
	t.Helper()
	all := map[mixmaster.JobID]*mixmaster.Job{}
	var dup []mixmaster.JobID
	var before mixmaster.JobID
	for {
		u := base + "/api/v1/jobs?limit=500"
		if before != 0 {
			u += "&before=" + before.String()
		}
		var page struct {
			Jobs []*mixmaster.Job
			Next mixmaster.JobID
		}
		getJSON(t, u, &page)
		for _, j := range page.Jobs {
			if all[j.ID] != nil {
				dup = append(dup, j.ID)
			}
			all[j.ID] = j
		}
		if page.Next == 0 {
			return all, dup
		}
		before = page.Next
	}
}

// tempFiles lists the files and directories under root named like a
// temporary file. Git manages its own inside the mirrors and checkouts, so
// only their top level, where our clones are renamed into place, is looked at.
func tempFiles(t *testing.T, root string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(d.Name(), ".tmp") {
			found = append(found, p)
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() && strings.Count(rel, string(filepath.Separator)) == 1 &&
			(strings.HasPrefix(rel, "mirrors") || strings.HasPrefix(rel, "checkouts")) {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// removeImages deletes the images of a repository the test built.
func removeImages(t *testing.T, repo string) {
	out, err := exec.Command("docker", "images", "-q", repo).Output()
	if err != nil {
		return
	}
	for _, id := range strings.Fields(string(out)) {
		exec.Command("docker", "rmi", "-f", id).Run()
	}
}
