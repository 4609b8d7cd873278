package webui

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mixmaster"
)

func TestDashboardLists(t *testing.T) {
	f := newFixture(t)
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "master", Commit: strings.Repeat("ab", 20),
		ViewURL: "https://git.example.com/demo/hello/commit/abab"}, mixmaster.StatusSucceeded)
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "master", Task: "test"}, mixmaster.StatusFailed)
	f.run(&mixmaster.Job{Kind: mixmaster.KindArtifact, Trigger: mixmaster.TriggerClient, Project: "greeting", Group: "nightly", Incremental: true}, mixmaster.StatusRunning)
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "production"}, mixmaster.StatusQueued)

	rec := f.get("/")
	body := wantPage(t, rec, http.StatusOK)
	if got := rowIDs(body); !slices.Equal(got, []int{4, 3, 2, 1}) {
		t.Errorf("rows = %v, want newest first", got)
	}
	wantContains(t, body,
		`<span class="badge st-succeeded">`, `<span class="word">succeeded</span>`,
		`<span class="word">failed</span>`, `<span class="word">running</span>`, `<span class="word">queued</span>`,
		`<a href="/job/demo/hello/1" aria-label="Job 1">#1</a>`,
		`<a href="/project/demo/hello">demo/hello</a>`,
		`<a href="https://git.example.com/demo/hello/commit/abab" rel="noreferrer noopener"><code>abababab</code></a>`,
		`master · test`, `nightly`, `incremental</span>`, `<td class="c-trigger">client</td>`,
		`<time datetime="2026-11-21T09:00:01Z" title="2026-11-21 09:00:01 UTC">Nov 21 09:00</time>`,
		// The running job counts up in the page; the others are fixed.
		`<span class="dur" data-since="`,
		// The live stream watches the unfinished rows and announces jobs
		// above the newest.
		`data-events="/events?after=4&amp;watch=4%2C3"`,
		`<option value="demo/hello">demo/hello</option>`, `<option value="greeting">greeting</option>`,
		`<template id="badges">`,
	)
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", rec.Header().Get("Cache-Control"))
	}
	// No login is configured: no login link.
	wantAbsent(t, body, "Sign in", `href="/login`)
}

func TestDashboardEmpty(t *testing.T) {
	f := newFixture(t)
	body := wantPage(t, f.get("/"), http.StatusOK)
	wantContains(t, body, "No jobs yet.")
}

func TestDashboardFilters(t *testing.T) {
	f := newFixture(t)
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "master"}, mixmaster.StatusSucceeded) // 1
	f.run(&mixmaster.Job{Project: "other", Target: "master"}, mixmaster.StatusFailed)         // 2
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "master"}, mixmaster.StatusFailed)    // 3
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "master"}, mixmaster.StatusQueued)    // 4

	for _, tc := range []struct {
		query  string
		status int
		rows   []int
		want   []string
	}{
		{"/?project=demo%2Fhello", http.StatusOK, []int{4, 3, 1},
			[]string{`<option value="demo/hello" selected>`, `<a class="clear" href="/">Clear filters</a>`}},
		{"/?status=failed", http.StatusOK, []int{3, 2}, []string{`<option value="failed" selected>`}},
		{"/?project=demo%2Fhello&status=failed", http.StatusOK, []int{3}, nil},
		// A project that is no longer configured can still be picked.
		{"/?project=other", http.StatusOK, []int{2}, []string{`<option value="other" selected>other</option>`}},
		{"/?project=nobody", http.StatusOK, nil, []string{"No jobs match these filters."}},
		{"/?status=bogus", http.StatusBadRequest, []int{4, 3, 2, 1}, []string{"Unknown status; showing every status."}},
		{"/?before=x", http.StatusBadRequest, []int{4, 3, 2, 1}, []string{"The page address is not valid"}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			body := wantPage(t, f.get(tc.query), tc.status)
			if got := rowIDs(body); !slices.Equal(got, tc.rows) {
				t.Errorf("rows = %v, want %v", got, tc.rows)
			}
			wantContains(t, body, tc.want...)
		})
	}
}

func TestDashboardPagination(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < 120; i++ {
		f.create(&mixmaster.Job{Project: "demo/hello", Target: "master"})
	}
	body := wantPage(t, f.get("/"), http.StatusOK)
	if got := rowIDs(body); !slices.Equal(got, seq(120, 71)) {
		t.Fatalf("first page = %v", got)
	}
	wantContains(t, body, `<a class="older" href="/?before=71">Older jobs →</a>`)
	wantAbsent(t, body, "Newest jobs")

	body = wantPage(t, f.get("/?before=71"), http.StatusOK)
	if got := rowIDs(body); !slices.Equal(got, seq(70, 21)) {
		t.Fatalf("second page = %v", got)
	}
	wantContains(t, body, `href="/?before=21"`, `<a href="/">← Newest jobs</a>`)
	// Only the first page announces new jobs.
	wantAbsent(t, body, "after=", "data-announce")

	body = wantPage(t, f.get("/?before=21"), http.StatusOK)
	if got := rowIDs(body); !slices.Equal(got, seq(20, 1)) {
		t.Fatalf("last page = %v", got)
	}
	wantAbsent(t, body, "Older jobs")

	// Filters stay on the page links.
	body = wantPage(t, f.get("/?project=demo%2Fhello&status=queued"), http.StatusOK)
	wantContains(t, body, `href="/?before=71&amp;project=demo%2Fhello&amp;status=queued"`)
}

// Every value a webhook can send is shown as text, and a view URL that is
// not http(s) is not linked.
func TestDashboardEscapesHostileValues(t *testing.T) {
	f := newFixture(t)
	hostile := f.run(&mixmaster.Job{
		Project: `<script>alert("p")</script>/x`,
		Target:  `"><img src=x onerror=alert(1)>`,
		Task:    `<b>t</b>`,
		Commit:  `<i>c</i>1234567`,
		ViewURL: "javascript:alert(document.cookie)",
		Message: "<script>alert('m')</script>",
	}, mixmaster.StatusFailed)
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "master", Commit: "0123456789",
		ViewURL: `https://example.com/compare/a...b?x=1&y="2"`}, mixmaster.StatusSucceeded)
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "master", Commit: "9876543210",
		ViewURL: "data:text/html,<script>alert(1)</script>"}, mixmaster.StatusSucceeded)
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "master", Commit: "5555555555",
		ViewURL: " JavaScript:alert(1)"}, mixmaster.StatusSucceeded)

	check := func(body string) {
		t.Helper()
		wantAbsent(t, body, `<script>alert`, `<img src=x`, `<b>t</b>`, `<i>c</i>`, "javascript:", "JavaScript:", "data:text")
	}
	body := wantPage(t, f.get("/"), http.StatusOK)
	check(body)
	wantContains(t, body,
		`&lt;script&gt;alert(&#34;p&#34;)&lt;/script&gt;/x`,
		`&#34;&gt;&lt;img src=x onerror=alert(1)&gt; · &lt;b&gt;t&lt;/b&gt;`,
		`<code>&lt;i&gt;c&lt;/i&gt;</code>`,
		`<a href="https://example.com/compare/a...b?x=1&amp;y=%222%22" rel="noreferrer noopener"><code>01234567</code></a>`,
		`<code>98765432</code>`,
	)
	// The project link keeps the name's slash and escapes the rest.
	wantContains(t, body, `href="/project/%3Cscript%3Ealert%28%22p%22%29%3C/script%3E/x"`)

	body = wantPage(t, f.get(jobURL(hostile.Project, hostile.ID)), http.StatusOK)
	check(body)
	wantContains(t, body, `<pre class="code">&lt;script&gt;alert(&#39;m&#39;)&lt;/script&gt;</pre>`)

	body = wantPage(t, f.get(projectURL(hostile.Project)), http.StatusOK)
	check(body)
	wantContains(t, body, `<h1>&lt;script&gt;alert(&#34;p&#34;)&lt;/script&gt;/x</h1>`, "No longer configured")
}

func TestProjectsPage(t *testing.T) {
	f := newFixture(t)
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "master"}, mixmaster.StatusFailed)
	body := wantPage(t, f.get("/projects"), http.StatusOK)
	wantContains(t, body,
		`<a href="/project/demo/hello"><strong>demo/hello</strong></a>`, "webhook · 3 targets",
		`<a href="/project/greeting"><strong>greeting</strong></a>`, "cached artifacts",
		`<span class="word">failed</span>`, "never built",
	)
}

// The rows of a page, with the store's clock fixed, match the golden file.
func TestDashboardGolden(t *testing.T) {
	f := newFixture(t)
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "master", Commit: strings.Repeat("c0ffee", 7)[:40],
		ViewURL: "https://git.example.com/demo/hello/commit/c0ffee"}, mixmaster.StatusSucceeded)
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "master", Task: "test", Trigger: mixmaster.TriggerUI}, mixmaster.StatusFailed)
	f.run(&mixmaster.Job{Kind: mixmaster.KindArtifact, Trigger: mixmaster.TriggerClient, Project: "greeting",
		Group: "nightly", Incremental: true, Rebuild: true}, mixmaster.StatusErrored)
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "production"}, mixmaster.StatusCanceled)
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "production"}, mixmaster.StatusQueued)

	body := wantPage(t, f.get("/"), http.StatusOK)
	start, end := strings.Index(body, "<tbody>"), strings.Index(body, "</tbody>")
	got := body[start : end+len("</tbody>")]
	golden := filepath.Join("testdata", "dashboard-rows.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("rows differ from %s (run with -update to accept):\n%s", golden, diffLines(string(want), got))
	}
}

// diffLines shows the first lines where want and got differ.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)) && b.Len() < 2000; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n- %s\n+ %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}
