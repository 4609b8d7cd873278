package webui

import (
	"context"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"mixmaster"
)

func TestProjectPageWebhook(t *testing.T) {
	f := newFixture(t)
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "master"}, mixmaster.StatusFailed)               // 1
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "master"}, mixmaster.StatusSucceeded)            // 2
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "master"}, mixmaster.StatusRunning)              // 3
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "master", Task: "test"}, mixmaster.StatusFailed) // 4
	f.run(&mixmaster.Job{Project: "other", Target: "master"}, mixmaster.StatusSucceeded)                 // 5

	for _, path := range []string{"/project/demo/hello", "/project/demo%2Fhello", "/project/demo/hello/"} {
		body := wantPage(t, f.get(path), http.StatusOK)
		wantContains(t, body,
			"<h1>demo/hello</h1>", "Webhook project",
			// The form posts to the page; the repository is the config's.
			`<form class="build-form" method="post" action="/project/demo/hello">`,
			`<input id="target" name="target" value="" required`,
			`<option value="master"><option value="production">`, `<option value="test">`,
			// Targets and tasks with one-click builds.
			`<th scope="row"><code>master/test</code><br><span class="muted">task test on master</span></th>`,
			`<pre class="code">make deploy</pre>`,
			`<input type="hidden" name="target" value="master"><input type="hidden" name="task" value="test">`,
			`Run test on master`, `Build production`,
			`href="/?project=demo%2Fhello"`,
		)
		if got := rowIDs(body); len(got) != 4 || got[0] != 4 {
			t.Errorf("%s: recent builds = %v", path, got)
		}
	}
	// Last results: master last succeeded in #2, with #3 running now;
	// the task last failed in #4.
	body := wantPage(t, f.get("/project/demo/hello"), http.StatusOK)
	wantContains(t, body,
		`<th scope="row">master</th>`+"\n"+`<td><span class="badge st-succeeded">`,
		`<a href="/job/demo/hello/2">#2</a>`,
		`<a href="/job/demo/hello/3">#3</a></td>`,
		`<th scope="row">master · test</th>`,
		`<a href="/job/demo/hello/4">#4</a>`,
	)
	wantAbsent(t, body, `<a href="/job/demo/hello/1">#1</a> `)

	body = wantPage(t, f.get("/project/nope"), http.StatusNotFound)
	wantContains(t, body, "There is no project of that name.")
}

func TestProjectPageArtifact(t *testing.T) {
	f := newFixture(t)
	body := wantPage(t, f.get("/project/greeting"), http.StatusOK)
	wantContains(t, body,
		"Cached-artifact project", `<input id="group" name="group" value=""`,
		`<input name="param" value=""`, `<input name="value" value=""`,
		`<input type="checkbox" id="rebuild" name="rebuild" value="1">`,
		"Nothing has been built yet.", "No builds yet.",
	)
	wantAbsent(t, body, "Configured targets")
}

func TestTriggerWebhook(t *testing.T) {
	f := newFixture(t)
	rec := f.post("/project/demo/hello", url.Values{"target": {"master"}, "task": {"test"}, "notify": {"1"}}, testToken)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/job/demo/hello/1" {
		t.Fatalf("trigger: %d %q\n%s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	job, err := f.db.Job(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if job.Trigger != mixmaster.TriggerUI || job.Target != "master" || job.Task != "test" || !job.Notify ||
		job.RepositoryURL != "https://git.example.com/demo/hello.git" || job.Command != "sh test.sh" {
		t.Errorf("job = %+v", job)
	}

	// A refusal is shown on the page with what was entered.
	body := wantPage(t, f.post("/project/demo/hello", url.Values{"target": {"nope"}}, testToken), http.StatusUnprocessableEntity)
	wantContains(t, body, "Not set up to build nope.", `<input id="target" name="target" value="nope"`,
		`<input type="checkbox" id="notify" name="notify" value="1">`)
	body = wantPage(t, f.post("/project/demo/hello", url.Values{"target": {"master"}, "task": {"nope"}}, testToken), http.StatusUnprocessableEntity)
	wantContains(t, body, "Not set up for nope task.")
	body = wantPage(t, f.post("/project/demo/hello", url.Values{"target": {"--upload-pack=x"}}, testToken), http.StatusUnprocessableEntity)
	wantContains(t, body, "is not a valid branch name")

	body = wantPage(t, f.post("/project/nope", url.Values{"target": {"master"}}, testToken), http.StatusNotFound)
	wantContains(t, body, "There is no project of that name.")
	if n, _ := f.db.CountJobs(context.Background()); n != 1 {
		t.Errorf("%d jobs stored, want 1", n)
	}
}

func TestTriggerArtifact(t *testing.T) {
	f := newFixture(t)
	form := url.Values{"group": {"g1"}, "param": {"name", "", "lang"}, "value": {"world", "", "en"}}
	rec := f.post("/project/greeting", form, testToken)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/job/greeting/1" {
		t.Fatalf("trigger: %d %q\n%s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	job, err := f.db.Job(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if job.Trigger != mixmaster.TriggerUI || job.Group != "g1" || job.Rebuild ||
		!maps.Equal(job.Params, map[string]string{"name": "world", "lang": "en"}) {
		t.Errorf("job = %+v", job)
	}

	// The same request joins the build under way.
	rec = f.post("/project/greeting", form, testToken)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/job/greeting/1?from=coalesced" {
		t.Fatalf("again: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	// Once built, it is answered from the cache, unless a rebuild is asked.
	f.start(1)
	f.finish(1, mixmaster.StatusSucceeded, 0)
	job, _ = f.db.Job(context.Background(), 1)
	if err := os.MkdirAll(filepath.Join(f.svc.ArtifactsDir(job)), 0o755); err != nil {
		t.Fatal(err)
	}
	rec = f.post("/project/greeting", form, testToken)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/job/greeting/1?from=cached" {
		t.Fatalf("cached: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	form.Set("rebuild", "1")
	rec = f.post("/project/greeting", form, testToken)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/job/greeting/2" {
		t.Fatalf("rebuild: %d %q", rec.Code, rec.Header().Get("Location"))
	}

	for _, tc := range []struct {
		form url.Values
		want string
	}{
		{url.Values{"param": {"a", "a"}, "value": {"1", "2"}}, "The parameter a is given twice."},
		{url.Values{"param": {""}, "value": {"1"}}, "Every parameter with a value needs a name."},
		{url.Values{"param": {"../x"}, "value": {"1"}}, "<input name=\"param\" value=\"../x\""},
		{url.Values{"group": {"../g"}}, "<input id=\"group\" name=\"group\" value=\"../g\""},
	} {
		body := wantPage(t, f.post("/project/greeting", tc.form, testToken), http.StatusUnprocessableEntity)
		wantContains(t, body, tc.want, `<div class="alert error" role="alert">`)
	}
}

// Forms need a CSRF token; pages do not.
func TestCSRF(t *testing.T) {
	f := newFixture(t)
	f.create(&mixmaster.Job{Project: "demo/hello", Target: "master"})
	for _, path := range []string{"/ui/jobs/1/cancel", "/ui/jobs/1/rerun", "/project/demo/hello", "/project/greeting", "/login", "/logout"} {
		form := url.Values{"target": {"master"}}
		body := wantPage(t, f.post(path, form, ""), http.StatusBadRequest)
		wantContains(t, body, "This form has expired")
		wantPage(t, f.post(path, form, "wrong"), http.StatusForbidden)
	}
	// A browser's cross-site request is refused whatever it carries.
	if rec := f.post("/ui/jobs/1/cancel", nil, testToken, "Sec-Fetch-Site", "cross-site"); rec.Code != http.StatusForbidden {
		t.Errorf("cross-site: status %d", rec.Code)
	}
	if j, _ := f.db.Job(context.Background(), 1); j.Status != mixmaster.StatusQueued {
		t.Fatalf("status = %s after refused forms", j.Status)
	}
	if n, _ := f.db.CountJobs(context.Background()); n != 1 {
		t.Errorf("%d jobs stored, want 1", n)
	}

	// A page sets the cookie and puts its token in the forms.
	rec := f.get("/job/demo/hello/1")
	body := wantPage(t, rec, http.StatusOK)
	var token string
	for _, ck := range rec.Result().Cookies() {
		if ck.Name == csrfCookie {
			token = ck.Value
			if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" {
				t.Errorf("cookie = %+v", ck)
			}
		}
	}
	if token == "" {
		t.Fatal("no CSRF cookie")
	}
	wantContains(t, body, `<input type="hidden" name="_csrf" value="`+token+`">`)
}

// Without a signed-in user the forms are refused before anything happens.
func TestRequireWrite(t *testing.T) {
	f := newFixture(t, func(h *Handler) { h.RequireWrite = requireUser })
	f.create(&mixmaster.Job{Project: "demo/hello", Target: "master"})
	for _, path := range []string{"/ui/jobs/1/cancel", "/project/demo/hello"} {
		if rec := f.post(path, url.Values{"target": {"master"}}, testToken); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s: status %d", path, rec.Code)
		}
	}
	rec := f.post("/ui/jobs/1/cancel", nil, testToken, "Cookie", mixmaster.SessionCookie+"=session-alice")
	if rec.Code != http.StatusSeeOther {
		t.Errorf("signed in: status %d\n%s", rec.Code, rec.Body)
	}
}
