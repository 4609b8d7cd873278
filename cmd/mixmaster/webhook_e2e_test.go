package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/ssh"

	"mixmaster"
	"mixmaster/internal/testenv"
)

func TestGiteaFixtureDrivesBuild(t *testing.T) {
	repo := newTestRepo(t)
	s := startServer(t, `
[_]
buildRoot = @ROOT@

[test-org/test-repo]
.repository = `+repo.Dir+`
production = echo Stub command for building production branch; cat branch.txt
staging = echo Stub command for building staging branch
master/my-task = echo Stub command for building my-task
`)
	fixture, err := os.ReadFile("testdata/gitea.json")
	if err != nil {
		t.Fatal(err)
	}
	// The original fixture names "HEAD" as the pushed commit: the tip of
	// the pushed branch.
	var a accepted
	if code := s.post(t, "/gitea", string(fixture), map[string]string{"X-Gitea-Event": "push"}, &a); code != http.StatusAccepted {
		t.Fatalf("POST /gitea: %d", code)
	}
	j := s.wait(t, a.ID)
	if j.Status != mixmaster.StatusSucceeded || j.Commit != repo.Commits["production"] || j.Trigger != mixmaster.TriggerGitea {
		t.Fatalf("job = %+v", j)
	}
	if j.ViewURL != "http://example.com/compare_url" {
		t.Errorf("viewUrl = %q", j.ViewURL)
	}
	log := s.log(t, a.ID)
	for _, want := range []string{" $ echo Stub command for building production branch", " O Stub command for building production branch", " O production"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}

	// The same payload with a real SHA, as Gitea sends it.
	var payload map[string]any
	json.Unmarshal(fixture, &payload)
	payload["after"] = repo.Commits["production"]
	b, _ := json.Marshal(payload)
	if code := s.post(t, "/gitea", string(b), nil, &a); code != http.StatusAccepted {
		t.Fatalf("POST /gitea with SHA: %d", code)
	}
	if j := s.wait(t, a.ID); j.Status != mixmaster.StatusSucceeded || j.Commit != repo.Commits["production"] {
		t.Fatalf("job = %+v", j)
	}

	// A deleted branch and a tag queue nothing.
	for name, change := range map[string]func(map[string]any){
		"delete": func(p map[string]any) { p["after"] = strings.Repeat("0", 40) },
		"tag":    func(p map[string]any) { p["ref"] = "refs/tags/v1" },
	} {
		json.Unmarshal(fixture, &payload)
		change(payload)
		b, _ := json.Marshal(payload)
		if code := s.post(t, "/gitea", string(b), nil, nil); code < 200 || code > 299 || code == http.StatusAccepted {
			t.Errorf("%s: status %d, want a 2xx that is not 202", name, code)
		}
	}
	if n, _ := s.DB.QueueLen(t.Context()); n != 0 {
		t.Errorf("%d jobs queued", n)
	}
}

// writeKey creates an unencrypted ed25519 key and returns its path and
// SHA256 fingerprint.
func writeKey(t *testing.T) (string, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "deploy key")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, _ := ssh.NewPublicKey(pub)
	return path, ssh.FingerprintSHA256(sshPub)
}

func TestSSHAgentPerJob(t *testing.T) {
	_, err := exec.LookPath("ssh-add")
	testenv.Need(t, "openssh", err == nil, "ssh-add not on PATH")
	repo := newTestRepo(t)
	key, fingerprint := writeKey(t)
	s := startServer(t, `
[_]
buildRoot = @ROOT@
sshKey = `+key+`

[test-org/test-repo]
.repository = `+repo.Dir+`
production = ssh-add -l; echo "agent at $SSH_AUTH_SOCK"
`)
	a := s.submit(t, map[string]any{"project": "test-org/test-repo", "target": "production"})
	if j := s.wait(t, a.ID); j.Status != mixmaster.StatusSucceeded {
		t.Fatalf("job = %+v\n%s", j, s.log(t, a.ID))
	}
	log := s.log(t, a.ID)
	if !strings.Contains(log, fingerprint) {
		t.Fatalf("ssh-add -l did not list %s:\n%s", fingerprint, log)
	}
	m := regexp.MustCompile(` O agent at (\S+)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no socket in log:\n%s", log)
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("agent socket %s still exists after the job: %v", m[1], err)
	}
	if _, err := os.Stat(filepath.Dir(m[1])); !os.IsNotExist(err) {
		t.Errorf("agent directory %s still exists after the job", filepath.Dir(m[1]))
	}
}

// mailbox is a real SMTP server on loopback that keeps what it receives.
type mailbox struct {
	mu   sync.Mutex
	msgs []received
}

type received struct {
	From string
	To   []string
	Data string
}

func (mb *mailbox) NewSession(*smtp.Conn) (smtp.Session, error) { return &mailSession{mb: mb}, nil }

type mailSession struct {
	mb *mailbox
	m  received
}

func (s *mailSession) AuthPlain(string, string) error              { return nil }
func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error { s.m.From = from; return nil }
func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.m.To = append(s.m.To, to)
	return nil
}
func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.m.Data = string(b)
	s.mb.mu.Lock()
	s.mb.msgs = append(s.mb.msgs, s.m)
	s.mb.mu.Unlock()
	return err
}
func (s *mailSession) Reset()        { s.m = received{} }
func (s *mailSession) Logout() error { return nil }

func (mb *mailbox) all() []received {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return slices.Clone(mb.msgs)
}

func startMailbox(t *testing.T) (*mailbox, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.Need(t, "smtp", err == nil, fmt.Sprint(err))
	mb := &mailbox{}
	srv := smtp.NewServer(mb)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return mb, ln.Addr().(*net.TCPAddr).Port
}

func TestEmailNotifications(t *testing.T) {
	repo := newTestRepo(t)
	mb, port := startMailbox(t)
	s := startServer(t, fmt.Sprintf(`
[_]
buildRoot = @ROOT@
mailto = team@example.com
mailFrom = mixmaster@example.com
smtpHost = 127.0.0.1
smtpPort = %d

[test-org/test-repo]
.repository = %s
production = echo deployed
master = echo broken >&2; exit 1
staging = echo quiet
`, port, repo.Dir))

	ok := s.submit(t, map[string]any{"project": "test-org/test-repo", "target": "production", "viewUrl": "http://example.com/view"})
	s.wait(t, ok.ID)
	bad := s.submit(t, map[string]any{"project": "test-org/test-repo", "target": "master"})
	s.wait(t, bad.ID)
	quiet := s.submit(t, map[string]any{"project": "test-org/test-repo", "target": "staging", "notifications": "none"})
	s.wait(t, quiet.ID)

	deadline := time.Now().Add(10 * time.Second)
	for len(mb.all()) < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // anything for the quiet job would arrive now
	msgs := mb.all()
	if len(msgs) != 4 {
		t.Fatalf("got %d mails, want 4 (start+finish, start+failure):\n%+v", len(msgs), msgs)
	}
	var subjects []string
	for _, m := range msgs {
		if !slices.Equal(m.To, []string{"team@example.com"}) || m.From != "mixmaster@example.com" {
			t.Errorf("envelope from %q to %v", m.From, m.To)
		}
		if strings.Contains(m.Data, "staging") {
			t.Errorf("a mail was sent for a build with notifications none:\n%s", m.Data)
		}
		subjects = append(subjects, regexp.MustCompile(`(?m)^Subject: (.*?)\r?$`).FindStringSubmatch(m.Data)[1])
	}
	joined := strings.Join(msgs2data(msgs), "\n----\n")
	for _, want := range []string{
		"Mixmaster has started building " + repo.Commits["production"][:8] + " on production.",
		"http://example.com/view",
		"Mixmaster has finished building " + repo.Commits["production"][:8] + " on production.",
		"O deployed",
		"Mixmaster was unable to build " + repo.Commits["master"][:8] + " on master.",
		"O broken", // stderr shares stdout's stream
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("no mail contains %q:\n%s", want, joined)
		}
	}
	slices.Sort(subjects)
	want := []string{"Re: [mixmaster] Building test-org/test-repo", "Re: [mixmaster] Building test-org/test-repo",
		"[mixmaster] Building test-org/test-repo", "[mixmaster] Building test-org/test-repo"}
	if !slices.Equal(subjects, want) {
		t.Errorf("subjects = %q", subjects)
	}
}

func msgs2data(msgs []received) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Data)
	}
	return out
}

func TestWebhookDockerExecutor(t *testing.T) {
	image := testenv.BusyboxImage(t)
	repo := newTestRepo(t)
	key, _ := writeKey(t)
	s := startServer(t, `
[_]
buildRoot = @ROOT@
sshKey = `+key+`

[test-org/test-repo]
.repository = `+repo.Dir+`
.executor = docker
.image = `+image+`
production = cat branch.txt; pwd; id -u; test -S "$SSH_AUTH_SOCK" && echo agent ok; echo kept > "$MIXMASTER_ARTIFACTS/r.txt"; ls /data
`)
	a := s.submit(t, map[string]any{"project": "test-org/test-repo", "target": "production"})
	j := s.wait(t, a.ID)
	log := s.log(t, a.ID)
	if j.Status != mixmaster.StatusSucceeded {
		t.Fatalf("job = %+v\n%s", j, log)
	}
	for _, want := range []string{" O production", " O /workspace", fmt.Sprintf(" O %d\n", os.Getuid()), " O agent ok", " O artifacts"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if b, err := os.ReadFile(filepath.Join(s.Config.BuildRoot, "jobs", a.ID.String(), "artifacts", "r.txt")); err != nil || string(b) != "kept\n" {
		t.Errorf("artifact: %q, %v", b, err)
	}
}
