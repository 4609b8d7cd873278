package webui

import (
	"context"
	"flag"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"mixmaster"
	"mixmaster/artifacts"
	"mixmaster/jobs"
	"mixmaster/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// clock moves one second per reading, so stored times are predictable.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

// fixture is a dashboard over a real store, real logs and the real job
// service, with a webhook project demo/hello and an artifact project
// greeting.
type fixture struct {
	t      testing.TB
	root   string
	db     *store.DB
	files  *artifacts.Files
	broker *jobs.Broker
	svc    *jobs.Service
	h      *Handler
	e      *echo.Echo
}

const testToken = "test-csrf-token"

func newFixture(t testing.TB, configure ...func(*Handler)) *fixture {
	t.Helper()
	root := t.TempDir()
	db, err := store.Open(filepath.Join(root, "mixmaster.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.Now = (&clock{t: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}).Now

	projects := filepath.Join(root, "projects")
	mustWrite(t, filepath.Join(projects, "greeting", "build"), "#!/bin/sh\necho hi > artifacts/out.txt\n", 0o755)
	config := map[string]*mixmaster.Project{
		"demo/hello": {
			Name:       "demo/hello",
			Repository: "https://git.example.com/demo/hello.git",
			Targets:    map[string]string{"master": "sh build.sh", "master/test": "sh test.sh", "production": "make deploy"},
		},
	}
	broker := jobs.NewBroker()
	files := &artifacts.Files{Root: root, Events: broker}
	svc := &jobs.Service{
		Store: db,
		Projects: func(name string) (*mixmaster.Project, bool) {
			p, ok := config[name]
			return p, ok
		},
		ProjectNames:        func() []string { return []string{"demo/hello"} },
		Folders:             &jobs.Folders{Dir: projects},
		Events:              broker,
		Root:                root,
		WebhookArtifactsDir: files.ArtifactsDir,
	}
	h := &Handler{
		Jobs: db, Logs: files, Events: broker,
		Canceler: &canceler{db: db}, Rerunner: svc, Submitter: svc, Artifacts: svc, Catalog: svc,
		Version: "test",
		now:     func() time.Time { return time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC) },
	}
	for _, c := range configure {
		c(h)
	}
	e := echo.New()
	e.HideBanner = true
	// The service's error handler lives in the api package; this one maps
	// codes the same way.
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		if status, msg, ok := userError(err); ok {
			c.String(status, msg)
			return
		}
		e.DefaultHTTPErrorHandler(err, c)
	}
	e.Use(identify)
	// The api package serves GET /job/…; this stands in for it.
	e.GET("/job/*", func(c echo.Context) error {
		path := c.Request().URL.Path
		n, _ := strconv.ParseUint(path[strings.LastIndexByte(path, '/')+1:], 10, 64)
		job, err := db.Job(c.Request().Context(), mixmaster.JobID(n))
		if err != nil {
			return echo.ErrNotFound
		}
		return h.JobPage(c, job)
	})
	h.Register(e)
	return &fixture{t: t, root: root, db: db, files: files, broker: broker, svc: svc, h: h, e: e}
}

// identify stands in for the real auth: a session cookie "session-<name>"
// signs <name> in.
func identify(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if ck, err := c.Cookie(mixmaster.SessionCookie); err == nil {
			if name, ok := strings.CutPrefix(ck.Value, "session-"); ok {
				r := c.Request()
				c.SetRequest(r.WithContext(mixmaster.WithUser(r.Context(), mixmaster.User{Name: name, Via: "session"})))
			}
		}
		return next(c)
	}
}

// requireUser refuses anonymous requests, as the real RequireWrite does.
func requireUser(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, ok := mixmaster.UserFrom(c.Request().Context()); !ok {
			return echo.NewHTTPError(http.StatusUnauthorized, "sign in")
		}
		return next(c)
	}
}

// fakeAuth accepts the passwords in users; while busy it checks none.
type fakeAuth struct {
	users map[string]string
	busy  bool
}

func (a *fakeAuth) Login(name, password string) (string, error) {
	if a.busy {
		return "", mixmaster.Errorf(mixmaster.EUNAVAILABLE, "Too many sign-ins at once; try again in a moment.")
	}
	if pw, ok := a.users[name]; ok && pw == password {
		return "session-" + name, nil
	}
	return "", mixmaster.Errorf(mixmaster.EUNAUTHORIZED, "Wrong name or password.")
}

func (a *fakeAuth) Enabled() bool { return len(a.users) > 0 }

func sessionCookie(value string, secure bool) *http.Cookie {
	return &http.Cookie{Name: mixmaster.SessionCookie, Value: value, Path: "/", HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode}
}

// canceler cancels in the store, as the runner records it.
type canceler struct{ db *store.DB }

func (c *canceler) Cancel(ctx context.Context, id mixmaster.JobID) (*mixmaster.Job, error) {
	job, err := c.db.Job(ctx, id)
	if err != nil {
		return nil, err
	}
	switch job.Status {
	case mixmaster.StatusQueued:
		return c.db.CancelQueued(ctx, id, "canceled by a user")
	case mixmaster.StatusRunning:
		return c.db.Finish(ctx, id, mixmaster.Outcome{Status: mixmaster.StatusCanceled, Error: "canceled by a user"})
	}
	return nil, mixmaster.Errorf(mixmaster.ECONFLICT, "job %d already %s", id, job.Status)
}

// get sends a GET through the whole echo stack.
func (f *fixture) get(target string, header ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("Accept", "text/html")
	addHeader(req, header)
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	return rec
}

// post sends a form with a valid CSRF token unless token is "" (none) or
// another value.
func (f *fixture) post(target string, form url.Values, token string, header ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if token != "" {
		form.Set(csrfField, token)
	}
	req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	req.AddCookie(&http.Cookie{Name: csrfCookie, Value: testToken})
	addHeader(req, header)
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	return rec
}

// addHeader adds name, value pairs to req; the pseudo-header "RemoteAddr"
// sets the client's address instead.
func addHeader(req *http.Request, header []string) {
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "RemoteAddr" {
			req.RemoteAddr = header[i+1]
			continue
		}
		req.Header.Add(header[i], header[i+1])
	}
}

// create stores a queued job.
func (f *fixture) create(j *mixmaster.Job) *mixmaster.Job {
	f.t.Helper()
	if j.Kind == "" {
		j.Kind = mixmaster.KindWebhook
	}
	if j.Trigger == "" {
		j.Trigger = mixmaster.TriggerWebhook
	}
	stored, _, err := f.db.CreateJob(context.Background(), j)
	if err != nil {
		f.t.Fatal(err)
	}
	return stored
}

// start moves job id to running.
func (f *fixture) start(id mixmaster.JobID) *mixmaster.Job {
	f.t.Helper()
	job, err := f.db.Claim(context.Background(), func(j *mixmaster.Job) bool { return j.ID == id })
	if err != nil || job == nil {
		f.t.Fatalf("claim %d: %v, %v", id, job, err)
	}
	f.broker.Publish(mixmaster.Event{JobID: id, Status: job.Status})
	return job
}

// finish moves running job id to status.
func (f *fixture) finish(id mixmaster.JobID, status mixmaster.Status, code int) *mixmaster.Job {
	f.t.Helper()
	o := mixmaster.Outcome{Status: status}
	if status == mixmaster.StatusSucceeded || status == mixmaster.StatusFailed {
		o.ExitCode = &code
	}
	if status == mixmaster.StatusErrored {
		o.Error = "checkout: exit status 128"
	}
	job, err := f.db.Finish(context.Background(), id, o)
	if err != nil {
		f.t.Fatal(err)
	}
	f.broker.Publish(mixmaster.Event{JobID: id, Status: status})
	return job
}

// run creates a job and takes it to status.
func (f *fixture) run(j *mixmaster.Job, status mixmaster.Status) *mixmaster.Job {
	f.t.Helper()
	j = f.create(j)
	if status == mixmaster.StatusQueued {
		return j
	}
	j = f.start(j.ID)
	if status == mixmaster.StatusRunning {
		return j
	}
	return f.finish(j.ID, status, map[bool]int{true: 0, false: 2}[status == mixmaster.StatusSucceeded])
}

func mustWrite(t testing.TB, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
}

// wantPage checks the status and the headers of an HTML page.
func wantPage(t testing.TB, rec *httptest.ResponseRecorder, status int) string {
	t.Helper()
	body := rec.Body.String()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d:\n%s", rec.Code, status, body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type = %q", ct)
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, " style=") || strings.Contains(body, " on") && hasHandlerAttr(body) {
		t.Errorf("page has inline script or style:\n%s", body)
	}
	return body
}

// hasHandlerAttr reports whether an HTML tag in body carries an event
// handler attribute such as onclick=.
func hasHandlerAttr(body string) bool {
	for part := range strings.SplitSeq(body, "<") {
		tag, _, _ := strings.Cut(part, ">")
		for field := range strings.FieldsSeq(tag) {
			if name, _, ok := strings.Cut(field, "="); ok && strings.HasPrefix(strings.ToLower(name), "on") {
				return true
			}
		}
	}
	return false
}

// rowIDs lists the job IDs of the table rows in body, in order.
func rowIDs(body string) []int {
	var ids []int
	for _, part := range strings.Split(body, `<tr data-job="`)[1:] {
		n, _ := strconv.Atoi(part[:strings.IndexByte(part, '"')])
		ids = append(ids, n)
	}
	return ids
}

func wantContains(t testing.TB, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("page lacks %q", w)
		}
	}
}

func wantAbsent(t testing.TB, body string, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(body, b) {
			t.Errorf("page contains %q", b)
		}
	}
}

func seq(from, to int) []int {
	var out []int
	for i := from; i >= to; i-- {
		out = append(out, i)
	}
	return out
}
