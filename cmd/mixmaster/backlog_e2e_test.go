package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPushBurstQueues sends 40 Gitea pushes to four branches at a service
// with one build slot and the default backlogs: every push is accepted,
// because a webhook build is durable work that a forge does not send again,
// however far the queue is beyond the back-pressure of POST /jobs.
func TestPushBurstQueues(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the real binary")
	}
	repo := newTestRepo(t)
	gitIn(t, repo.Dir, "branch", "staging/y", "staging/x")
	repo.Commits["staging/y"] = repo.Commits["staging/x"]
	root := t.TempDir()
	config := filepath.Join(root, "mixmaster.ini")
	// The builds outlast the test, so the queue only grows.
	os.WriteFile(config, fmt.Appendf(nil, `
[_]
buildRoot = %s
jobConcurrency = 1

[test-org/test-repo]
.repository = %s
production = sleep 30
staging = sleep 30
master = sleep 30
`, root, repo.Dir), 0o600)
	t.Setenv("MIXMASTER_DOCKER", "off")
	p := startProcess(t, config)

	fixture, err := os.ReadFile("testdata/gitea.json")
	if err != nil {
		t.Fatal(err)
	}
	var payload map[string]any
	if err := json.Unmarshal(fixture, &payload); err != nil {
		t.Fatal(err)
	}
	branches := []string{"master", "production", "staging/x", "staging/y"}
	for i := range 40 {
		branch := branches[i%len(branches)]
		payload["ref"], payload["after"] = "refs/heads/"+branch, repo.Commits[branch]
		body, _ := json.Marshal(payload)
		req, _ := http.NewRequest(http.MethodPost, p.url+"/gitea", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Gitea-Event", "push")
		req.Header.Set("X-Gitea-Delivery", fmt.Sprintf("burst-%d", i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		reply, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("push %d to %s: %d %s", i+1, branch, resp.StatusCode, reply)
		}
	}
}

// TestWebhookBacklogSetting: webhookBacklog bounds the queue a push may
// wait behind. With one slot and a limit of 2, at most one running and two
// queued builds are accepted, so the fourth push is refused at the latest.
func TestWebhookBacklogSetting(t *testing.T) {
	repo := newTestRepo(t)
	s := startServer(t, `
[_]
buildRoot = @ROOT@
jobConcurrency = 1
webhookBacklog = 2

[test-org/test-repo]
.repository = `+repo.Dir+`
master = sleep 30
`)
	s.Grace = 100 * time.Millisecond // the builds need not finish
	for i := range 4 {
		var reply map[string]any
		code := s.post(t, "/", `{"project": "test-org/test-repo", "target": "master"}`, map[string]string{"Accept": "application/json"}, &reply)
		if code == http.StatusServiceUnavailable {
			if msg, _ := reply["error"].(string); !strings.Contains(msg, "build queue is full") {
				t.Errorf("503 says %q", msg)
			}
			return
		}
		if code != http.StatusAccepted {
			t.Fatalf("push %d: %d %v", i+1, code, reply)
		}
	}
	t.Fatal("four pushes were accepted with webhookBacklog = 2")
}
