package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mixmaster"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds the real mixmaster binary once per test run.
func binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mixmaster-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "mixmaster")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// process is the service running as a child process.
type process struct {
	cmd *exec.Cmd
	url string
}

var addrRE = regexp.MustCompile(`addr=http://(\S+)`)

// startProcess runs `mixmaster serve` on a free loopback port and waits
// until it listens.
func startProcess(t *testing.T, config string) *process {
	t.Helper()
	cmd := exec.Command(binary(t), "serve", "--config", config, "--listen", "127.0.0.1:0")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		return &process{cmd: cmd, url: "http://" + a}
	case <-time.After(30 * time.Second):
		t.Fatal("service did not start")
	}
	return nil
}

func getJSON(t *testing.T, url string, out any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
}

// TestKilledServerLosesNoJob kills the service with SIGKILL in the middle of
// a build, restarts it on the same build root and checks that every
// accepted job ends in exactly one final state.
func TestKilledServerLosesNoJob(t *testing.T) {
	repo := newTestRepo(t)
	root := t.TempDir()
	started := filepath.Join(root, "started")
	config := filepath.Join(root, "mixmaster.ini")
	os.WriteFile(config, []byte(fmt.Sprintf(`
[_]
buildRoot = %s
jobConcurrency = 1
jobBacklog = 10

[test-org/test-repo]
.repository = %s
production = touch %s; sleep 2; echo done
staging = echo quick
`, root, repo.Dir, started)), 0o600)

	p := startProcess(t, config)
	var ids []mixmaster.JobID
	for i, target := range []string{"production", "staging/x", "staging/x", "production", "staging/x"} {
		resp, err := http.Post(p.url+"/", "application/json", strings.NewReader(fmt.Sprintf(`{"project":"test-org/test-repo","target":%q}`, target)))
		if err != nil {
			t.Fatal(err)
		}
		var a accepted
		json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("job %d: status %d", i, resp.StatusCode)
		}
		ids = append(ids, a.ID)
	}
	// Kill it while the first build runs.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(started); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first build never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()

	p = startProcess(t, config)
	jobs := map[mixmaster.JobID]mixmaster.Job{}
	deadline = time.Now().Add(60 * time.Second)
	for {
		var page struct{ Jobs []mixmaster.Job }
		getJSON(t, p.url+"/api/v1/jobs?limit=100", &page)
		done := true
		for _, j := range page.Jobs {
			jobs[j.ID] = j
			done = done && j.Status.Done()
		}
		if done && len(page.Jobs) == len(ids)+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs did not settle: %+v", page.Jobs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	first := jobs[ids[0]]
	if first.Status != mixmaster.StatusErrored || first.Error != "interrupted by restart" {
		t.Errorf("interrupted job = %+v", first)
	}
	var retry *mixmaster.Job
	for _, j := range jobs {
		if j.RetryOf == ids[0] {
			retry = &j
		}
	}
	if retry == nil || retry.Status != mixmaster.StatusSucceeded || retry.Attempt != 1 {
		t.Errorf("retry of the interrupted job = %+v", retry)
	}
	for _, id := range ids[1:] {
		if j := jobs[id]; j.Status != mixmaster.StatusSucceeded {
			t.Errorf("job %d = %s (%s), want succeeded", id, j.Status, j.Error)
		}
	}
}
