package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"mixmaster"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, func(context.Context) (int, error) { return 3, nil }, func() map[string]float64 { return map[string]float64{"ok": 2} })

	m.BuildRequested("ok")
	m.BuildRequested("ok")
	m.BuildCached("ok")
	m.BuildCoalesced("ok")
	start := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	job := func(kind mixmaster.Kind, st mixmaster.Status, code *int, incremental bool, d time.Duration) *mixmaster.Job {
		return &mixmaster.Job{Kind: kind, Project: "ok", Status: st, ExitCode: code, Incremental: incremental,
			StartedAt: start, FinishedAt: start.Add(d)}
	}
	m.JobFinished(job(mixmaster.KindArtifact, mixmaster.StatusSucceeded, intp(0), true, 100*time.Second))
	m.JobFinished(job(mixmaster.KindArtifact, mixmaster.StatusSucceeded, intp(0), false, 200*time.Second))
	m.JobFinished(job(mixmaster.KindArtifact, mixmaster.StatusFailed, intp(3), true, 500*time.Second))
	// Neither ran a command of mistry's kind: counted as jobs only.
	m.JobFinished(job(mixmaster.KindArtifact, mixmaster.StatusErrored, nil, false, time.Second))
	m.JobFinished(&mixmaster.Job{Kind: mixmaster.KindWebhook, Project: "org/repo", Status: mixmaster.StatusSucceeded, ExitCode: intp(0)})

	e, _ := newEcho(t, &Handler{Metrics: m})
	rec := serve(e, http.MethodGet, "/metrics", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d: %s", rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q", ct)
	}
	body := rec.Body.String()
	for _, want := range []string{
		"# TYPE mistry_builds_started counter",
		`mistry_builds_started{project="ok"} 2`,
		`mistry_builds_finished{project="ok"} 3`,
		`mistry_builds_coalesced{project="ok"} 1`,
		`mistry_builds_processed_incrementally{project="ok"} 1`,
		`mistry_cache_utilization{project="ok"} 1`,
		"# TYPE mistry_builds_succeeded_seconds histogram",
		`mistry_builds_succeeded_seconds_bucket{project="ok",le="120"} 1`,
		`mistry_builds_succeeded_seconds_bucket{project="ok",le="240"} 2`,
		`mistry_builds_succeeded_seconds_bucket{project="ok",le="360"} 2`,
		`mistry_builds_succeeded_seconds_bucket{project="ok",le="+Inf"} 2`,
		`mistry_builds_succeeded_seconds_sum{project="ok"} 300`,
		`mistry_builds_failed_seconds_bucket{project="ok",le="360"} 0`,
		`mistry_builds_failed_seconds_count{project="ok"} 1`,
		"# TYPE mistry_builds_hosted gauge",
		`mistry_builds_hosted{project="ok"} 2`,
		"# TYPE mixmaster_queue_depth gauge",
		"mixmaster_queue_depth 3",
		`mixmaster_jobs_total{project="ok",status="succeeded"} 2`,
		`mixmaster_jobs_total{project="ok",status="failed"} 1`,
		`mixmaster_jobs_total{project="ok",status="errored"} 1`,
		`mixmaster_jobs_total{project="org/repo",status="succeeded"} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	// mistry's counters have no _total suffix.
	if strings.Contains(body, "mistry_builds_started_total") || strings.Contains(body, "mistry_cache_utilization_total") {
		t.Errorf("a mistry counter gained _total:\n%s", body)
	}
	if strings.Contains(body, `mistry_builds_finished{project="org/repo"}`) {
		t.Error("a webhook job counted as a mistry build")
	}
}

func TestMetricsOptional(t *testing.T) {
	// Without the scrape-time functions, their metrics are simply absent.
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, nil, nil)
	m.BuildRequested("ok")
	e, _ := newEcho(t, &Handler{Metrics: m})
	body := serve(e, http.MethodGet, "/metrics", "").Body.String()
	if !strings.Contains(body, `mistry_builds_started{project="ok"} 1`) || strings.Contains(body, "queue_depth") {
		t.Errorf("metrics:\n%s", body)
	}

	// No Metrics, no route.
	e, _ = newEcho(t, &Handler{})
	if rec := serve(e, http.MethodGet, "/metrics", ""); rec.Code != http.StatusNotFound {
		t.Errorf("status = %d", rec.Code)
	}

	// A nil *Metrics, as a mixmaster.Metrics, counts nothing and does not panic.
	var none mixmaster.Metrics = (*Metrics)(nil)
	none.BuildRequested("ok")
	none.BuildCached("ok")
	none.BuildCoalesced("ok")
	none.JobFinished(&mixmaster.Job{})

	// A nil registerer gets a registry of its own.
	if NewMetrics(nil, nil, nil).Handler() == nil {
		t.Error("no handler")
	}
}

// A queue that cannot be counted is left out of the scrape, not shown as
// empty, and said so once in the log, however often it is scraped.
func TestMetricsQueueLenError(t *testing.T) {
	var logs syncBuffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })

	var fail atomic.Bool
	fail.Store(true)
	m := NewMetrics(prometheus.NewRegistry(), func(context.Context) (int, error) {
		if fail.Load() {
			return 0, errors.New("database not open")
		}
		return 4, nil
	}, nil)
	m.BuildRequested("ok")
	e, _ := newEcho(t, &Handler{Metrics: m})
	for range 3 {
		rec := serve(e, http.MethodGet, "/metrics", "")
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `mistry_builds_started{project="ok"} 1`) {
			t.Fatalf("the other metrics are lost: %d %s", rec.Code, rec.Body)
		}
		if strings.Contains(rec.Body.String(), "mixmaster_queue_depth") {
			t.Fatalf("a queue depth is reported without a count:\n%s", rec.Body)
		}
	}
	if n := strings.Count(logs.String(), "database not open"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logs.String())
	}
	fail.Store(false)
	if rec := serve(e, http.MethodGet, "/metrics", ""); !strings.Contains(rec.Body.String(), "mixmaster_queue_depth 4\n") {
		t.Errorf("queue depth not back:\n%s", rec.Body)
	}
}
