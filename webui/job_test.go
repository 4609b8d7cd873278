package webui

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mixmaster"
)

// rawLine is a log line as the log store writes it.
func rawLine(mark, text string) string {
	return "2026-11-21T09:14:03.412Z " + mark + " " + text + "\n"
}

func TestJobPageWebhook(t *testing.T) {
	f := newFixture(t)
	job := f.run(&mixmaster.Job{Project: "demo/hello", Target: "master", Task: "test", Command: "sh test.sh",
		Commit: strings.Repeat("0f", 20), ViewURL: "https://git.example.com/c/0f0f",
		RepositoryURL: "https://deploy:s3cret@git.example.com/demo/hello.git", ConfigKey: "master/test"}, mixmaster.StatusFailed)
	mustWrite(t, f.files.LogPath(job.ID), rawLine("#", "Build started")+
		rawLine("$", "sh test.sh")+
		rawLine("O", "<script>alert(1)</script>")+
		rawLine("!", "\x1b[31mred\x1b[0m & more")+
		rawLine("#", "Build failed: command exited with status 2"), 0o640)
	dir := f.files.ArtifactsDir(job.ID)
	mustWrite(t, filepath.Join(dir, "report.txt"), "ok\n", 0o644)
	mustWrite(t, filepath.Join(dir, "sub dir", "a&b.bin"), strings.Repeat("x", 2048), 0o644)
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}

	body := wantPage(t, f.get(jobURL(job.Project, job.ID)), http.StatusOK)
	wantContains(t, body,
		`<h1>Job #1 <span id="job-status"><span class="badge st-failed">`,
		`<a href="https://git.example.com/c/0f0f" rel="noreferrer noopener"><code>0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f</code></a>`,
		`<dt>Task</dt><dd>test</dd>`, `<dt>Exit code</dt><dd><code>2</code></dd>`,
		`<pre class="code">sh test.sh</pre>`,
		// The clone URL's password is not shown.
		`<code>https://xxxxx@git.example.com/demo/hello.git</code>`,
		// Finished: no cancel, a re-run, the artifacts.
		`action="/ui/jobs/1/rerun"`, `name="_csrf"`,
		`<a class="button" href="/api/v1/jobs/1/artifacts" download>Download all (tar)</a>`,
		`<a href="/api/v1/jobs/1/artifacts?path=report.txt" download="report.txt">report.txt</a> <span class="muted">3 B</span>`,
		`<li class="d0"><span class="dir">sub dir/</span></li>`,
		`<li class="d1"><a href="/api/v1/jobs/1/artifacts?path=sub&#43;dir%2Fa%26b.bin" download="a&amp;b.bin">a&amp;b.bin</a> <span class="muted">2.0 KiB</span></li>`,
		`<li class="d0"><span>escape</span> <span class="muted">symbolic link</span></li>`,
		// The log: split into time, mark and escaped text; ANSI codes are
		// left for the script.
		`<div class="ln s"><span class="ts">09:14:03</span><span class="tx">Build started</span></div>`,
		`<div class="ln c"><span class="ts">09:14:03</span><span class="tx">sh test.sh</span></div>`,
		`<div class="ln o"><span class="ts">09:14:03</span><span class="tx">&lt;script&gt;alert(1)&lt;/script&gt;</span></div>`,
		"<div class=\"ln e\"><span class=\"ts\">09:14:03</span><span class=\"tx\">\x1b[31mred\x1b[0m &amp; more</span></div>",
		`<a href="/api/v1/jobs/1/log">Full log</a>`,
	)
	wantAbsent(t, body, "s3cret", "deploy", "/cancel", "data-stream", "Showing the last", "/etc/passwd")
}

// checkoutLog is the start of a webhook build's log: the checkout, which
// the runner brackets, then the build's own command.
func checkoutLog(closing string) string {
	return rawLine("#", "Build started for demo/hello production") +
		rawLine("#", mixmaster.CheckoutBegin+"production of https://xxxxx@git.example.com/demo/hello.git") +
		rawLine("$", "git clone --bare -- https://xxxxx@git.example.com/demo/hello.git /m/.x.tmp") +
		rawLine("#", "Cloning into bare repository '/m/.x.tmp'...") +
		rawLine("$", "git --git-dir=/w/.git checkout --force --detach 1a2b3c4d --") +
		rawLine("#", "HEAD is now at 1a2b3c4 Fix") +
		closing
}

// TestJobPageFoldsCheckout checks that the job page folds the service's
// git lines under the line that closed the checkout, in a <details> that
// works without script, so that the first command shown is the build's.
func TestJobPageFoldsCheckout(t *testing.T) {
	f := newFixture(t)
	job := f.run(&mixmaster.Job{Project: "demo/hello", Target: "production"}, mixmaster.StatusSucceeded)
	done := mixmaster.CheckoutDone + "1a2b3c4d of https://xxxxx@git.example.com/demo/hello.git (2 git commands, 0.4 s)"
	mustWrite(t, f.files.LogPath(job.ID), checkoutLog(rawLine("#", done))+
		rawLine("$", "make deploy")+
		rawLine("O", "deployed")+
		rawLine("#", "Build finished"), 0o640)

	body := wantPage(t, f.get(jobURL(job.Project, job.ID)), http.StatusOK)
	fold := `<details class="fold"><summary class="ln s"><span class="ts">09:14:03</span><span class="tx">` + done + `</span></summary>`
	wantContains(t, body, fold,
		`data-fold-begin="Checking out " data-fold-done="Checked out " data-fold-failed="Checkout failed"`)
	start := strings.Index(body, fold)
	end := start + strings.Index(body[max(start, 0):], "</details>")
	if start < 0 || end < start {
		t.Fatalf("no fold:\n%s", body)
	}
	inside, outside := body[start:end], body[:start]+body[end:]
	for _, line := range []string{"git clone --bare", "Cloning into bare repository", "HEAD is now at", mixmaster.CheckoutBegin + "production"} {
		if !strings.Contains(inside, line) || strings.Contains(outside, line) {
			t.Errorf("%q is not folded away", line)
		}
	}
	// What is shown unfolded: the build's command first, then its output.
	first := strings.Index(outside, `<div class="ln c">`)
	if first < 0 || !strings.HasPrefix(outside[first:], `<div class="ln c"><span class="ts">09:14:03</span><span class="tx">make deploy</span></div>`) {
		t.Errorf("the first command shown is not the build's:\n%s", outside)
	}
	if out := strings.Index(outside, ">deployed<"); out < first {
		t.Errorf("the build's output is not after its command")
	}

	// While the checkout runs, its fold is open for the live lines.
	running := f.run(&mixmaster.Job{Project: "demo/hello", Target: "production"}, mixmaster.StatusRunning)
	mustWrite(t, f.files.LogPath(running.ID), checkoutLog(""), 0o640)
	body = wantPage(t, f.get(jobURL(running.Project, running.ID)), http.StatusOK)
	wantContains(t, body, `<details class="fold" open data-open><summary class="ln s"><span class="ts">09:14:03</span><span class="tx">`+
		mixmaster.CheckoutBegin+`production of https://xxxxx@git.example.com/demo/hello.git</span></summary>`)
}

func TestFoldCheckouts(t *testing.T) {
	line := func(class, text string) logLine { return logLine{Class: class, Time: "09:14:03", Text: text} }
	begin := line("s", mixmaster.CheckoutBegin+"master of u")
	git := line("c", "git fetch")
	failed := line("s", mixmaster.CheckoutFailed+" (1 git command, 0.1 s)")
	build := line("c", "make")
	for _, tt := range []struct {
		name  string
		lines []logLine
		live  bool
		want  []logBlock
	}{
		{"failed", []logLine{begin, git, failed, line("s", "Build failed: checkout: x")}, false,
			[]logBlock{{logLine: failed, Fold: []logLine{begin, git}}, {logLine: line("s", "Build failed: checkout: x")}}},
		{"running", []logLine{begin, git}, true, []logBlock{{logLine: begin, Fold: []logLine{begin, git}, Open: true}}},
		{"cut short", []logLine{begin, git}, false, []logBlock{{logLine: begin, Fold: []logLine{begin, git}}}},
		// Output that looks like a bracket is not one; neither is a
		// closing line without an opening one (the tail cut it off).
		{"look-alikes", []logLine{line("o", mixmaster.CheckoutBegin+"x"), git, failed, build}, false,
			[]logBlock{{logLine: line("o", mixmaster.CheckoutBegin+"x")}, {logLine: git}, {logLine: failed}, {logLine: build}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := foldCheckouts(tt.lines, tt.live)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("foldCheckouts =\n%v\nwant\n%v", got, tt.want)
			}
		})
	}
}

func TestJobPageArtifact(t *testing.T) {
	f := newFixture(t)
	res, err := f.svc.SubmitArtifact(context.Background(), mixmaster.ArtifactRequest{
		Trigger: mixmaster.TriggerClient, Project: "greeting", Group: "g1", Params: map[string]string{"name": "<world>", "a": "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	job := res.Job
	f.start(job.ID)
	f.finish(job.ID, mixmaster.StatusSucceeded, 0)
	job, _ = f.db.Job(context.Background(), job.ID)
	mustWrite(t, filepath.Join(f.svc.ArtifactsDir(job), "out.txt"), "hi\n", 0o644)

	body := wantPage(t, f.get("/job/greeting/1"), http.StatusOK)
	wantContains(t, body,
		`<dt>Kind</dt><dd>cached-artifact build</dd>`, `<dt>Group</dt><dd>g1</dd>`,
		"<tr><td><code>a</code></td><td><code>1</code></td></tr><tr><td><code>name</code></td><td><code>&lt;world&gt;</code></td></tr>",
		`<dt>Content key</dt><dd><code class="break">`+job.Key+`</code></dd>`,
		`<a href="/api/v1/jobs/1/artifacts?path=out.txt" download="out.txt">out.txt</a>`,
		"This job printed nothing.",
	)

	// A request answered from the cache says so.
	body = wantPage(t, f.get("/job/greeting/1?from=cached"), http.StatusOK)
	wantContains(t, body, "answered this request from the cache")

	// A finished job without files says that instead.
	other := f.run(&mixmaster.Job{Project: "demo/hello", Target: "master"}, mixmaster.StatusSucceeded)
	body = wantPage(t, f.get(jobURL(other.Project, other.ID)), http.StatusOK)
	wantContains(t, body, "This job kept no files.")
}

func TestJobPageRunning(t *testing.T) {
	f := newFixture(t)
	queued := f.create(&mixmaster.Job{Project: "demo/hello", Target: "master"})
	body := wantPage(t, f.get(jobURL(queued.Project, queued.ID)), http.StatusOK)
	wantContains(t, body,
		`data-stream="/log/demo/hello/1?offset=0"`, "Waiting for output…",
		`action="/ui/jobs/1/cancel"`, "Cancel job",
	)
	wantAbsent(t, body, "/rerun", "Artifacts")

	// A line still being written is left to the stream, which starts
	// right after the last whole line.
	f.start(queued.ID)
	whole := rawLine("#", "Build started") + rawLine("O", "one")
	mustWrite(t, f.files.LogPath(queued.ID), whole+"2026-11-21T09:14:03.412Z O tw", 0o640)
	body = wantPage(t, f.get(jobURL(queued.Project, queued.ID)), http.StatusOK)
	wantContains(t, body, fmt.Sprintf(`data-stream="/log/demo/hello/1?offset=%d"`, len(whole)), `<span class="tx">one</span>`)
	wantAbsent(t, body, ">tw<", "Waiting for output")
}

// A 50 MB log costs the page only its tail, cut at a line boundary, and
// the stream continues where the tail ends.
func TestJobPageLargeLog(t *testing.T) {
	f := newFixture(t)
	job := f.run(&mixmaster.Job{Project: "demo/hello", Target: "master"}, mixmaster.StatusRunning)
	var b bytes.Buffer
	for i := 0; b.Len() < 50<<20; i++ {
		b.WriteString(rawLine("O", "line "+strconv.Itoa(i)+" "+strings.Repeat("=", 60)))
	}
	mustWrite(t, f.files.LogPath(job.ID), b.String(), 0o640)

	start := time.Now()
	rec := f.get(jobURL(job.Project, job.ID))
	elapsed := time.Since(start)
	body := wantPage(t, rec, http.StatusOK)
	if len(body) > 1<<20 {
		t.Errorf("page is %d bytes", len(body))
	}
	if elapsed > 2*time.Second {
		t.Errorf("page took %v", elapsed)
	}
	wantContains(t, body, "Showing the last 256.0 KiB of 50.0 MiB.", fmt.Sprintf(`?offset=%d"`, b.Len()))
	// The first line shown is whole.
	first := body[strings.Index(body, `<div class="ln `):]
	first = first[:strings.Index(first, "</div>")]
	if !strings.Contains(first, `<span class="tx">line `) || !strings.HasSuffix(first, "=</span>") {
		t.Errorf("first line = %q", first)
	}
	lines := strings.Count(body, `<div class="ln `)
	if want := (256 << 10) / len(rawLine("O", "line 100000 "+strings.Repeat("=", 60))); lines < want-10 || lines > want+10 {
		t.Errorf("%d lines shown, want about %d", lines, want)
	}
}

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		log    string
		n      int64
		whole  bool
		offset int64
		text   string
	}{
		{"", 10, false, 0, ""},
		{"a\nb\n", 10, false, 0, "a\nb\n"},
		{"a\nb\nc", 10, false, 0, "a\nb\n"},
		{"a\nb\nc", 10, true, 0, "a\nb\nc"},
		{"aaaa\nbb\ncc\n", 6, false, 5, "bb\ncc\n"}, // the cut falls just after a newline
		{"aaaa\nbb\ncc\n", 5, false, 8, "cc\n"},     // the cut falls inside bb
		{"aaaaaaaa\n", 4, false, 9, ""},             // no line ends in the tail
	} {
		off, text, err := tail(strings.NewReader(tc.log), tc.n, tc.whole)
		if err != nil || off != tc.offset || string(text) != tc.text {
			t.Errorf("tail(%q, %d, %v) = %d, %q, %v; want %d, %q", tc.log, tc.n, tc.whole, off, text, err, tc.offset, tc.text)
		}
	}
}

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want logLine
	}{
		{"2026-11-21T00:46:56.295Z # Build started", logLine{"s", "00:46:56", "Build started"}},
		{"2026-11-21T00:46:56.295Z $ make", logLine{"c", "00:46:56", "make"}},
		{"2026-11-21T00:46:56.295Z O  indented", logLine{"o", "00:46:56", " indented"}},
		{"2026-11-21T00:46:56.295Z ! oops", logLine{"e", "00:46:56", "oops"}},
		{"2026-11-21T00:46:56.295Z O", logLine{"o", "00:46:56", ""}},
		{"2026-11-21T00:46:56.295Z X what", logLine{"o", "", "2026-11-21T00:46:56.295Z X what"}},
		{"plain text", logLine{"o", "", "plain text"}},
	} {
		if got := parseLine(tc.in); got != tc.want {
			t.Errorf("parseLine(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestCancelAndRerun(t *testing.T) {
	f := newFixture(t)
	queued := f.create(&mixmaster.Job{Project: "demo/hello", Target: "master"})

	rec := f.post("/ui/jobs/1/cancel", nil, testToken)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/job/demo/hello/1" {
		t.Fatalf("cancel: %d %q\n%s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	if j, _ := f.db.Job(context.Background(), queued.ID); j.Status != mixmaster.StatusCanceled {
		t.Fatalf("status = %s", j.Status)
	}

	// Canceling again is refused on the page, with the job as it is.
	body := wantPage(t, f.post("/ui/jobs/1/cancel", nil, testToken), http.StatusConflict)
	wantContains(t, body, `<div class="alert error" role="alert">`, "Job 1 already canceled.", `<span class="word">canceled</span>`)

	// A finished job runs again as a new job started from the dashboard.
	rec = f.post("/ui/jobs/1/rerun", nil, testToken)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/job/demo/hello/2" {
		t.Fatalf("rerun: %d %q\n%s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	j2, err := f.db.Job(context.Background(), 2)
	if err != nil || j2.Trigger != mixmaster.TriggerUI || j2.Target != "master" || j2.Status != mixmaster.StatusQueued {
		t.Fatalf("new job = %+v, %v", j2, err)
	}
	body = wantPage(t, f.post("/ui/jobs/2/rerun", nil, testToken), http.StatusConflict)
	wantContains(t, body, "only a finished job can run again")

	body = wantPage(t, f.post("/ui/jobs/99/cancel", nil, testToken), http.StatusNotFound)
	wantContains(t, body, "Job not found.")
	body = wantPage(t, f.post("/ui/jobs/x/rerun", nil, testToken), http.StatusNotFound)
	wantContains(t, body, "Job not found.")
}
