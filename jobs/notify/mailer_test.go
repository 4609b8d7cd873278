package notify

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"mixmaster"
)

// received is one message as the relay saw it.
type received struct {
	From string
	To   []string
	Data []byte
}

// relay is a real SMTP server on loopback that keeps what it receives.
type relay struct {
	Port int

	mu       sync.Mutex
	sessions int
	msgs     []received
	auths    []string // "user:password" of each login attempt
}

func startRelay(t *testing.T) *relay {
	t.Helper()
	r := &relay{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		r.mu.Lock()
		r.sessions++
		r.mu.Unlock()
		return &session{r: r}, nil
	}))
	srv.Domain = "localhost"
	// Offer AUTH without TLS, so that a client willing to send a password
	// in clear would do so and the test would see it.
	srv.AllowInsecureAuth = true
	srv.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.Port = ln.Addr().(*net.TCPAddr).Port
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

func (r *relay) messages() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.msgs...)
}

func (r *relay) counts() (sessions int, auths []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sessions, append([]string(nil), r.auths...)
}

type session struct {
	r    *relay
	from string
	to   []string
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error { s.from = from; return nil }
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error   { s.to = append(s.to, to); return nil }
func (s *session) Reset()                                      { s.from, s.to = "", nil }
func (s *session) Logout() error                               { return nil }

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.r.mu.Lock()
	s.r.msgs = append(s.r.msgs, received{From: s.from, To: s.to, Data: b})
	s.r.mu.Unlock()
	return nil
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		s.r.mu.Lock()
		s.r.auths = append(s.r.auths, user+":"+pass)
		s.r.mu.Unlock()
		return nil
	}), nil
}

// logBuffer collects slog output from the sending goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLogger() (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// parsed is a received message with its headers decoded.
type parsed struct {
	Header mail.Header
	Body   string
}

func (p parsed) get(key string) string {
	v, err := new(mime.WordDecoder).DecodeHeader(p.Header.Get(key))
	if err != nil {
		panic(err)
	}
	return v
}

func parse(t *testing.T, data []byte) parsed {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parse message: %v\n%s", err, data)
	}
	var body io.Reader = m.Body
	if strings.EqualFold(m.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		body = quotedprintable.NewReader(body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	return parsed{Header: m.Header, Body: strings.ReplaceAll(string(b), "\r\n", "\n")}
}

func testJob() mixmaster.Job {
	code := 2
	return mixmaster.Job{
		ID:       42,
		Kind:     mixmaster.KindWebhook,
		Status:   mixmaster.StatusRunning,
		Project:  "acme/site",
		Target:   "production",
		Commit:   "0123456789abcdef0123456789abcdef01234567",
		ViewURL:  "https://git.example/acme/site/commit/0123456789",
		Message:  "Fix the header\n\nAnd the footer.",
		Notify:   true,
		ExitCode: &code,
		QueuedAt: time.Unix(1767225600, 0),
	}
}

func TestSMTPStartFinishFailure(t *testing.T) {
	r := startRelay(t)
	logger, logs := newLogger()
	m := &Mailer{
		To:       "dev@example.com",
		From:     "ci@example.com",
		SMTPHost: "127.0.0.1",
		SMTPPort: r.Port,
		Hostname: "build.example",
		Logger:   logger,
		Timeout:  5 * time.Second,
	}
	defer m.Close()
	job := testJob()
	m.Notify(t.Context(), mixmaster.Notification{Kind: mixmaster.NotifyStart, Job: job})
	m.Wait()
	job.Status = mixmaster.StatusSucceeded
	job.ExitCode = new(int)
	m.Notify(t.Context(), mixmaster.Notification{Kind: mixmaster.NotifyFinish, Job: job, Log: "line one\nline two\n"})
	m.Wait()
	job.Status = mixmaster.StatusFailed
	job.ExitCode = new(2)
	job.Error = "command exited non-zero (2)"
	m.Notify(t.Context(), mixmaster.Notification{Kind: mixmaster.NotifyFailure, Job: job, Log: "error: boom\n"})
	m.Wait()

	msgs := r.messages()
	if len(msgs) != 3 {
		t.Fatalf("relay got %d messages, want 3; log:\n%s", len(msgs), logs)
	}
	startID := "<mixmaster-job-42.1767225600@build.example>"
	for i, tc := range []struct {
		subject, body, id string
	}{
		{
			"[mixmaster] Building acme/site",
			"Mixmaster has started building 01234567 on production.\n\n" +
				"https://git.example/acme/site/commit/0123456789\n\n" +
				"Fix the header\n\nAnd the footer.\n",
			startID,
		},
		{
			"Re: [mixmaster] Building acme/site",
			"Mixmaster has finished building 01234567 on production.\n\n" +
				"https://git.example/acme/site/commit/0123456789\n\n" +
				"Build log:\nline one\nline two\n",
			"<mixmaster-job-42.1767225600.finish@build.example>",
		},
		{
			"Re: [mixmaster] Building acme/site",
			"Mixmaster was unable to build 01234567 on production.\n\n" +
				"Status: failed (exit code 2)\nError: command exited non-zero (2)\n\n" +
				"https://git.example/acme/site/commit/0123456789\n\n" +
				"Build log:\nerror: boom\n",
			"<mixmaster-job-42.1767225600.failure@build.example>",
		},
	} {
		got := msgs[i]
		if got.From != "ci@example.com" || len(got.To) != 1 || got.To[0] != "dev@example.com" {
			t.Errorf("message %d: envelope from %q to %q", i, got.From, got.To)
		}
		p := parse(t, got.Data)
		if s := p.get("Subject"); s != tc.subject {
			t.Errorf("message %d: subject %q, want %q", i, s, tc.subject)
		}
		if p.Body != tc.body {
			t.Errorf("message %d: body\n%q\nwant\n%q", i, p.Body, tc.body)
		}
		if id := p.Header.Get("Message-Id"); id != tc.id {
			t.Errorf("message %d: Message-ID %q, want %q", i, id, tc.id)
		}
		if i > 0 {
			if v := p.Header.Get("In-Reply-To"); v != startID {
				t.Errorf("message %d: In-Reply-To %q", i, v)
			}
			if v := p.Header.Get("References"); v != startID {
				t.Errorf("message %d: References %q", i, v)
			}
		}
		if _, err := p.Header.Date(); err != nil {
			t.Errorf("message %d: Date: %v", i, err)
		}
		if ct := p.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || !strings.Contains(strings.ToLower(ct), "utf-8") {
			t.Errorf("message %d: Content-Type %q", i, ct)
		}
		if to := p.Header.Get("To"); to != "<dev@example.com>" && to != "dev@example.com" {
			t.Errorf("message %d: To %q", i, to)
		}
	}
	if _, auths := r.counts(); len(auths) != 0 {
		t.Errorf("logged in without SMTPUser: %q", auths)
	}
}

// TestMailHidesCredentials sends a failure mail about a job whose URLs
// carry a password and checks that the relay never sees it.
func TestMailHidesCredentials(t *testing.T) {
	r := startRelay(t)
	logger, logs := newLogger()
	m := &Mailer{To: "dev@example.com", SMTPHost: "127.0.0.1", SMTPPort: r.Port, Logger: logger, Timeout: 5 * time.Second}
	defer m.Close()
	job := testJob()
	job.Status = mixmaster.StatusErrored
	job.RepositoryURL = "https://ci:s3cret@git.example/acme/site.git"
	job.ViewURL = "https://ci:s3cret@git.example/acme/site/commit/0123456789"
	job.Error = "checkout: commit 01234567 is not on branch production"
	m.Notify(t.Context(), mixmaster.Notification{Kind: mixmaster.NotifyFailure, Job: job, Log: "# Checking out production of https://xxxxx@git.example/acme/site.git\n"})
	m.Wait()

	msgs := r.messages()
	if len(msgs) != 1 {
		t.Fatalf("relay got %d messages, want 1; log:\n%s", len(msgs), logs)
	}
	p := parse(t, msgs[0].Data)
	if !strings.Contains(p.Body, "\nhttps://xxxxx@git.example/acme/site/commit/0123456789\n") {
		t.Errorf("the view URL is not shown redacted:\n%s", p.Body)
	}
	if strings.Contains(string(msgs[0].Data), "s3cret") {
		t.Errorf("the mail shows the password:\n%s", msgs[0].Data)
	}
}

func TestNoMailWhenNotWanted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		to     string
		notify bool
	}{
		{"job asked for none", "dev@example.com", false},
		{"no recipient", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t)
			logger, logs := newLogger()
			m := &Mailer{To: tc.to, SMTPHost: "127.0.0.1", SMTPPort: r.Port, Logger: logger}
			job := testJob()
			job.Notify = tc.notify
			for _, kind := range []mixmaster.NotificationKind{mixmaster.NotifyStart, mixmaster.NotifyFinish, mixmaster.NotifyFailure} {
				m.Notify(t.Context(), mixmaster.Notification{Kind: kind, Job: job, Log: "x"})
			}
			m.Close()
			if sessions, _ := r.counts(); sessions != 0 {
				t.Errorf("%d SMTP sessions, want none", sessions)
			}
			if logs.String() != "" {
				t.Errorf("unexpected log:\n%s", logs)
			}
		})
	}
}

func TestDeadRelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	logger, logs := newLogger()
	m := &Mailer{To: "dev@example.com", SMTPHost: "127.0.0.1", SMTPPort: port, Logger: logger, Timeout: 5 * time.Second}
	start := time.Now()
	m.Notify(t.Context(), mixmaster.Notification{Kind: mixmaster.NotifyStart, Job: testJob()})
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("Notify took %v", d)
	}
	m.Close()
	out := logs.String()
	for _, want := range []string{"level=ERROR", "mail not sent", "job_id=42", "kind=start", "connection refused"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// TestHungRelay points the mailer at a server that accepts connections and
// never greets: sends end at the timeout, and sends beyond MaxInFlight are
// dropped at once instead of piling up.
func TestHungRelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()

	logger, logs := newLogger()
	m := &Mailer{
		To:          "dev@example.com",
		SMTPHost:    "127.0.0.1",
		SMTPPort:    ln.Addr().(*net.TCPAddr).Port,
		Logger:      logger,
		Timeout:     300 * time.Millisecond,
		MaxInFlight: 2,
	}
	start := time.Now()
	for range 3 {
		m.Notify(t.Context(), mixmaster.Notification{Kind: mixmaster.NotifyStart, Job: testJob()})
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("Notify took %v", d)
	}
	if out := logs.String(); strings.Count(out, "too many sends in flight") != 1 {
		t.Errorf("want one dropped mail logged, got:\n%s", out)
	}
	m.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close returned after %v; the timeout is 300ms", d)
	}
	if out := logs.String(); strings.Count(out, "mail not sent") != 2 {
		t.Errorf("want two failed sends logged, got:\n%s", out)
	}
	// Once closed, Notify drops mail rather than start a send.
	m.Notify(t.Context(), mixmaster.Notification{Kind: mixmaster.NotifyStart, Job: testJob()})
	if !strings.Contains(logs.String(), "mailer closed") {
		t.Errorf("Notify after Close not logged:\n%s", logs)
	}
}

func TestHeaderInjection(t *testing.T) {
	r := startRelay(t)
	logger, logs := newLogger()
	m := &Mailer{To: "dev@example.com", SMTPHost: "127.0.0.1", SMTPPort: r.Port, Logger: logger, Hostname: "h\r\nBcc: evil@x"}
	job := testJob()
	job.Project = "acme\r\nBcc: evil@x"
	job.Target = "main\r\nBcc: evil@x"
	m.Notify(t.Context(), mixmaster.Notification{Kind: mixmaster.NotifyStart, Job: job})
	m.Notify(t.Context(), mixmaster.Notification{Kind: mixmaster.NotifyFinish, Job: job})
	m.Close()
	msgs := r.messages()
	if len(msgs) != 2 {
		t.Fatalf("relay got %d messages, want 2; log:\n%s", len(msgs), logs)
	}
	for _, got := range msgs {
		if len(got.To) != 1 || got.To[0] != "dev@example.com" {
			t.Errorf("recipients %q", got.To)
		}
		p := parse(t, got.Data)
		if _, ok := p.Header["Bcc"]; ok {
			t.Errorf("Bcc header present:\n%s", got.Data)
		}
		head, _, _ := strings.Cut(string(got.Data), "\r\n\r\n")
		for line := range strings.SplitSeq(head, "\r\n") {
			if strings.HasPrefix(strings.ToLower(line), "bcc:") {
				t.Errorf("Bcc line in message:\n%s", got.Data)
			}
		}
		if s := p.get("Subject"); !strings.Contains(s, "acme  Bcc: evil@x") {
			t.Errorf("subject %q", s)
		}
	}
}

func TestBadRecipientLogged(t *testing.T) {
	r := startRelay(t)
	logger, logs := newLogger()
	m := &Mailer{To: "dev@example.com\r\nBcc: evil@x", SMTPHost: "127.0.0.1", SMTPPort: r.Port, Logger: logger}
	m.Notify(t.Context(), mixmaster.Notification{Kind: mixmaster.NotifyStart, Job: testJob()})
	m.Close()
	if msgs := r.messages(); len(msgs) != 0 {
		t.Errorf("sent to a malformed recipient: %q", msgs[0].To)
	}
	if !strings.Contains(logs.String(), "mail not sent") {
		t.Errorf("not logged:\n%s", logs)
	}
}

// TestSMTPAuthNeedsTLS checks that a password is not offered to a relay
// that does not encrypt, even when it advertises PLAIN.
func TestSMTPAuthNeedsTLS(t *testing.T) {
	r := startRelay(t)
	logger, logs := newLogger()
	m := &Mailer{
		To: "dev@example.com", SMTPHost: "127.0.0.1", SMTPPort: r.Port, Logger: logger,
		SMTPUser: "ci", SMTPPassword: "secret",
	}
	m.Notify(t.Context(), mixmaster.Notification{Kind: mixmaster.NotifyStart, Job: testJob()})
	m.Close()
	if _, auths := r.counts(); len(auths) != 0 {
		t.Errorf("credentials sent in clear: %q", auths)
	}
	if len(r.messages()) != 0 {
		t.Error("mail sent without the login asked for")
	}
	if out := logs.String(); !strings.Contains(out, "mail not sent") || strings.Contains(out, "secret") {
		t.Errorf("log:\n%s", out)
	}
}

// writeScript writes an executable shell script that plays sendmail.
func writeScript(t *testing.T, body string) (script, dir string) {
	t.Helper()
	dir = t.TempDir()
	script = filepath.Join(dir, "sendmail")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, dir
}

func TestSendmailCommand(t *testing.T) {
	script, dir := writeScript(t, `d=$(dirname "$0"); echo "$@" > "$d/args"; cat > "$d/msg"`+"\n")
	logger, logs := newLogger()
	m := &Mailer{To: "dev@example.com", Command: script + " -oi -t", Logger: logger, Hostname: "build.example"}
	job := testJob()
	job.Task = "deploy"
	m.Notify(context.Background(), mixmaster.Notification{Kind: mixmaster.NotifyStart, Job: job})
	m.Close()

	args, err := os.ReadFile(filepath.Join(dir, "args"))
	if err != nil {
		t.Fatalf("script did not run: %v; log:\n%s", err, logs)
	}
	if string(args) != "-oi -t\n" {
		t.Errorf("args %q", args)
	}
	data, err := os.ReadFile(filepath.Join(dir, "msg"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("\r")) {
		t.Error("message piped with CR line endings")
	}
	p := parse(t, data)
	if s := p.get("Subject"); s != "[mixmaster] Building acme/site" {
		t.Errorf("subject %q", s)
	}
	if to := p.Header.Get("To"); !strings.Contains(to, "dev@example.com") {
		t.Errorf("To %q", to)
	}
	if from := p.Header.Get("From"); from != "" {
		t.Errorf("From %q; sendmail should pick it", from)
	}
	if want := "Mixmaster has started the deploy task on 01234567 on production.\n"; !strings.HasPrefix(p.Body, want) {
		t.Errorf("body %q", p.Body)
	}
	if id := p.Header.Get("Message-Id"); id != "<mixmaster-job-42.1767225600@build.example>" {
		t.Errorf("Message-ID %q", id)
	}
}

func TestSendmailCommandFails(t *testing.T) {
	script, _ := writeScript(t, "cat >/dev/null; echo 'no such user' >&2; exit 67\n")
	logger, logs := newLogger()
	m := &Mailer{To: "dev@example.com", Command: script, Logger: logger}
	m.Notify(context.Background(), mixmaster.Notification{Kind: mixmaster.NotifyFailure, Job: testJob()})
	m.Close()
	out := logs.String()
	for _, want := range []string{"mail not sent", "exit status 67", "no such user"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestSendmailCommandTimeout(t *testing.T) {
	script, _ := writeScript(t, "exec sleep 30\n")
	logger, logs := newLogger()
	m := &Mailer{To: "dev@example.com", Command: script, Logger: logger, Timeout: 200 * time.Millisecond}
	start := time.Now()
	m.Notify(context.Background(), mixmaster.Notification{Kind: mixmaster.NotifyStart, Job: testJob()})
	m.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if out := logs.String(); !strings.Contains(out, "mail not sent") || !strings.Contains(out, "deadline exceeded") {
		t.Errorf("log:\n%s", out)
	}
}
