package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"mixmaster"
	"mixmaster/internal/testenv"
)

// browser drives one tab of a headless Chromium against a service.
type browser struct {
	t       *testing.T
	ctx     context.Context
	base    string
	dialogs atomic.Int32 // JavaScript dialogs the pages opened
}

// newBrowser starts Debian's Chromium with a fresh profile. Without it the
// test skips, or fails when MIXMASTER_TEST_REQUIRE names chromium.
func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/chromium"); serr == nil {
			path, err = "/usr/bin/chromium", nil
		}
	}
	testenv.Need(t, "chromium", err == nil, "chromium not found (apt-get install chromium)")

	profile, err := os.MkdirTemp("", "mixmaster-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Chromium's helpers may still write for a moment after it exits.
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.NoSandbox,
		chromedp.ExecPath(path),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1366, 768),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, base: base}
	// The first run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// A dialog would mean a page ran script it must not have; it is
	// counted, then closed so that the page does not hang.
	opened := make(chan struct{}, 16)
	if err := chromedp.Listen(ctx, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			b.dialogs.Add(1)
			select {
			case opened <- struct{}{}:
			default:
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-opened:
				chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
			}
		}
	}()
	return b
}

// do runs actions with a time limit.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// open loads a page of the service.
func (b *browser) open(path string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.base+path), chromedp.WaitVisible(chromedp.CSS("footer")))
}

// follow runs action (a click) and waits for the page it loads.
func (b *browser) follow(what string, action chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, action)); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// eval returns the value of a JavaScript expression.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls the page until expr is true.
func (b *browser) waitFor(what, expr string, timeout time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(timeout))); err != nil {
		b.t.Fatalf("%s: %v (location %s)", what, err, eval[string](b, "location.href"))
	}
}

func (b *browser) path() string {
	return strings.TrimPrefix(eval[string](b, "location.href"), b.base)
}

// statusIs is an expression true when the badge under sel shows status.
func statusIs(sel string, status mixmaster.Status) string {
	return fmt.Sprintf(`!!document.querySelector(%q + ' .badge.st-%s')`, sel, status)
}

// TestBrowserDashboard drives the dashboard in a real browser: sign in,
// start a build from the project page, watch its log arrive live, see it
// succeed without a reload, cancel a running build from its page, watch
// the job list update live, and start an artifact build with a parameter.
// It saves screenshots of each page at laptop and phone sizes.
func TestBrowserDashboard(t *testing.T) {
	repo := newTestRepo(t)
	projects := t.TempDir()
	if err := os.MkdirAll(filepath.Join(projects, "greeting"), 0o755); err != nil {
		t.Fatal(err)
	}
	build := "#!/bin/sh\necho \"hello $(cat params/who)\" | tee artifacts/greeting.txt\nmkdir -p artifacts/docs && echo notes > artifacts/docs/notes.md\n"
	if err := os.WriteFile(filepath.Join(projects, "greeting", "build"), []byte(build), 0o755); err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("hunter2"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, `
[_]
buildRoot = @ROOT@/builds
projectsPath = `+projects+`
jobConcurrency = 3
users = alice:`+string(hash)+`
tokens = e2e-token

[test-org/test-repo]
.repository = file://`+repo.Dir+`
master = for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done; echo '<script>alert(1)</script>'; printf '\033[31mred\033[0m\n'
production = echo deploying; sleep 60
staging = sleep 1; seq 1 60000
`)
	b := newBrowser(t, s.URL)
	const job = "#job-status"

	dir, err := os.MkdirTemp("", "mixmaster-screenshots-")
	if err != nil {
		t.Fatal(err)
	}
	// The login page, as a visitor sees it.
	for _, size := range screenSizes {
		b.resize(size)
		b.open("/login")
		b.shot(dir, size, "login")
	}
	b.resize(screenSizes[0])

	// The dashboard is public; building needs a login.
	b.open("/")
	b.waitFor("login link", `!!document.querySelector('.who a[href^="/login"]')`, 5*time.Second)
	b.follow("go to the login page", chromedp.Click(chromedp.CSS(`.who a[href^="/login"]`)))
	b.do("fill in the login",
		chromedp.SendKeys(chromedp.ID("name"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), "hunter2"))
	b.follow("sign in", chromedp.Click(chromedp.CSS(`form.login button[type=submit]`)))
	if got := eval[string](b, `document.querySelector('.who').textContent`); !strings.Contains(got, "Signed in as alice") {
		t.Fatalf("after the login the header says %q (at %s)", got, b.path())
	}

	// Start a build from the project page and land on its page.
	b.open("/project/test-org/test-repo")
	b.do("fill in the build form", chromedp.SendKeys(chromedp.ID("target"), "master"))
	b.follow("start the build", chromedp.Click(chromedp.CSS(`.build-form button[type=submit]`)))
	if p := b.path(); p != "/job/test-org/test-repo/1" {
		t.Fatalf("after the build form the browser is at %s", p)
	}
	eval[bool](b, `window.e2eMarker = true`)

	// The log arrives while the job runs, then the status flips, all
	// without a reload.
	logText := `document.getElementById('log').textContent`
	b.waitFor("line 3", logText+`.includes('line 3')`, 20*time.Second)
	if !eval[bool](b, statusIs(job, mixmaster.StatusRunning)) {
		t.Errorf("the job was not shown running when line 3 arrived: %s", eval[string](b, `document.querySelector('#job-status').textContent`))
	}
	b.waitFor("line 5", logText+`.includes('line 5')`, 10*time.Second)
	b.waitFor("succeeded", statusIs(job, mixmaster.StatusSucceeded), 20*time.Second)
	b.waitFor("artifacts section after the end", `!!document.getElementById('artifacts')`, 10*time.Second)
	if !eval[bool](b, `window.e2eMarker === true`) {
		t.Error("the job page reloaded")
	}
	checkLog := func(when string) {
		t.Helper()
		if !eval[bool](b, `[...document.querySelectorAll('#log .tx')].some(e => e.textContent === '<script>alert(1)</script>')`) {
			t.Errorf("%s: the script line is not shown as text", when)
		}
		if n := eval[int](b, `document.querySelectorAll('#log script, #log img').length`); n != 0 {
			t.Errorf("%s: %d elements were made from log text", when, n)
		}
		if got := eval[string](b, `(document.querySelector('#log .ansi-31') || {}).textContent || ''`); got != "red" {
			t.Errorf("%s: red text = %q", when, got)
		}
		if n := eval[int](b, `[...document.querySelectorAll('#log .tx')].filter(e => /^line \d$/.test(e.textContent)).length`); n != 5 {
			t.Errorf("%s: %d numbered lines, want 5 (no gaps, no duplicates)", when, n)
		}
	}
	checkLog("live")
	// The same log rendered by the server looks the same.
	b.open("/job/test-org/test-repo/1")
	checkLog("rendered")
	if n := b.dialogs.Load(); n != 0 {
		t.Errorf("%d JavaScript dialogs opened", n)
	}

	// The job list follows a running job without a reload.
	var long accepted
	if code := s.post(t, "/", `{"project": "test-org/test-repo", "target": "production"}`, tokenHeader, &long); code != http.StatusAccepted {
		t.Fatalf("queue the long build: %d", code)
	}
	waitStatus(t, s, long.ID, mixmaster.StatusRunning)
	b.open("/")
	eval[bool](b, `window.e2eMarker = true`)
	row := fmt.Sprintf(`tr[data-job="%d"]`, long.ID)
	b.waitFor("running row", statusIs(row, mixmaster.StatusRunning), 5*time.Second)
	// A job started elsewhere is announced.
	var next accepted
	if code := s.post(t, "/", `{"project": "test-org/test-repo", "target": "production"}`, tokenHeader, &next); code != http.StatusAccepted {
		t.Fatalf("queue another build: %d", code)
	}
	b.waitFor("new job notice", `!document.querySelector('.new-jobs').hidden && document.querySelector('.new-jobs').textContent.includes('1 new job')`, 10*time.Second)
	if code := s.post(t, fmt.Sprintf("/api/v1/jobs/%d/cancel", long.ID), "", tokenHeader, nil); code != http.StatusAccepted && code != http.StatusOK {
		t.Fatalf("cancel through the API: %d", code)
	}
	b.waitFor("row turns canceled", statusIs(row, mixmaster.StatusCanceled), 15*time.Second)
	if !eval[bool](b, `window.e2eMarker === true`) {
		t.Error("the dashboard reloaded")
	}

	// Cancel a running build from its page.
	waitStatus(t, s, next.ID, mixmaster.StatusRunning)
	b.open(fmt.Sprintf("/job/test-org/test-repo/%d", next.ID))
	b.waitFor("running", statusIs(job, mixmaster.StatusRunning), 5*time.Second)
	b.follow("cancel", chromedp.Click(chromedp.CSS(`#job-actions button.danger`)))
	b.waitFor("canceled", statusIs(job, mixmaster.StatusCanceled), 15*time.Second)
	if j := waitStatus(t, s, next.ID, mixmaster.StatusCanceled); j.Error == "" {
		t.Errorf("canceled job = %+v", j)
	}

	// A flood of output reaches the page in batches, and the page keeps
	// only its newest lines.
	var flood accepted
	if code := s.post(t, "/", `{"project": "test-org/test-repo", "target": "staging/x"}`, tokenHeader, &flood); code != http.StatusAccepted {
		t.Fatalf("queue the flood: %d", code)
	}
	b.open(fmt.Sprintf("/job/test-org/test-repo/%d", flood.ID))
	b.waitFor("flood ends", statusIs(job, mixmaster.StatusSucceeded), 30*time.Second)
	b.waitFor("last line", `[...document.querySelectorAll('#log .tx')].slice(-3).some(e => e.textContent === '60000')`, 10*time.Second)
	if n := eval[int](b, `document.getElementById('log').childElementCount`); n > 5000 {
		t.Errorf("the page keeps %d log lines", n)
	}
	if !eval[bool](b, `[...document.querySelectorAll('.log-note')].some(e => e.textContent.includes('full log'))`) {
		t.Error("no note says that earlier lines were removed")
	}

	// An artifact build with a parameter, and its files.
	b.open("/project/greeting")
	b.do("fill in the parameters",
		chromedp.SendKeys(chromedp.CSS(`.param-row input[name=param]`), "who"),
		chromedp.SendKeys(chromedp.CSS(`.param-row input[name=value]`), "world"))
	b.follow("start the artifact build", chromedp.Click(chromedp.CSS(`.build-form button[type=submit]`)))
	artifactJob := b.path()
	if !strings.HasPrefix(artifactJob, "/job/greeting/") {
		t.Fatalf("after the artifact form the browser is at %s", artifactJob)
	}
	b.waitFor("artifact build succeeded", statusIs(job, mixmaster.StatusSucceeded), 20*time.Second)
	b.waitFor("artifact links", `!!document.querySelector('#artifacts a[href$="artifacts?path=greeting.txt"]')`, 10*time.Second)
	b.waitFor("log of the artifact build", logText+`.includes('hello world')`, 5*time.Second)

	// Screenshots of every page at a laptop's and a phone's size.
	for _, size := range screenSizes {
		b.resize(size)
		for _, p := range []struct{ name, path string }{
			{"dashboard", "/"},
			{"job", "/job/test-org/test-repo/1"},
			{"job-artifacts", artifactJob},
			{"project", "/project/test-org/test-repo"},
			{"project-artifacts", "/project/greeting"},
			{"projects", "/projects"},
		} {
			b.open(p.path)
			b.shot(dir, size, p.name)
		}
	}
	t.Logf("screenshots in %s", dir)
	if n := b.dialogs.Load(); n != 0 {
		t.Errorf("%d JavaScript dialogs opened", n)
	}
}

// screenSize is a window size the screenshots are taken at.
type screenSize struct {
	w, h   int64
	mobile bool
}

var screenSizes = []screenSize{{1366, 768, false}, {390, 844, true}}

func (b *browser) resize(size screenSize) {
	b.t.Helper()
	var opts []chromedp.EmulateViewportOption
	if size.mobile {
		opts = append(opts, chromedp.EmulateMobile)
	}
	b.do("resize", chromedp.EmulateViewport(size.w, size.h, opts...))
}

// shot saves a full-page PNG of the current page into dir.
func (b *browser) shot(dir string, size screenSize, name string) {
	b.t.Helper()
	// Let the script settle first: local times, colours, the log's end.
	b.waitFor("page ready", `document.readyState === 'complete'`, 5*time.Second)
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	file := filepath.Join(dir, fmt.Sprintf("%dx%d-%s.png", size.w, size.h, name))
	if err := os.WriteFile(file, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// waitStatus polls the API until job id has status.
func waitStatus(t *testing.T, s *server, id mixmaster.JobID, status mixmaster.Status) *mixmaster.Job {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := s.get(t, fmt.Sprintf("/api/v1/jobs/%d", id))
		var j mixmaster.Job
		if code == http.StatusOK && json.Unmarshal([]byte(body), &j) == nil && j.Status == status {
			return &j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d is not %s: %d %s", id, status, code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tokenHeader authenticates the test's own API requests: the service has
// users and a token configured, so nothing anonymous may queue builds.
var tokenHeader = map[string]string{"Authorization": "Bearer e2e-token"}
