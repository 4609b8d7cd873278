package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"mixmaster"
)

// Metrics counts builds under mistry's metric names, so that dashboards
// and alerts made for mistry keep working, plus a few of our own. It
// implements mixmaster.Metrics; a nil *Metrics counts nothing.
type Metrics struct {
	started     *prometheus.CounterVec
	finished    *prometheus.CounterVec
	coalesced   *prometheus.CounterVec
	incremental *prometheus.CounterVec
	cached      *prometheus.CounterVec
	succeeded   *prometheus.HistogramVec
	failed      *prometheus.HistogramVec
	jobs        *prometheus.CounterVec

	handler http.Handler
}

var _ mixmaster.Metrics = (*Metrics)(nil)

// NewMetrics registers the metrics with reg and returns them. reg is also
// what the handler serves when it is a prometheus.Gatherer (a
// *prometheus.Registry is both); otherwise the default gatherer is served.
// A nil reg gets a registry of its own. queueLen and hosted, when not
// nil, are called at each scrape: the number of queued jobs (the store's
// QueueLen), and the number of kept builds per project. The Go and
// process collectors are the caller's to add.
//
// Counters are named without the _total suffix, as mistry named them; the
// classic text format shows them as they are named.
func NewMetrics(reg prometheus.Registerer, queueLen func(context.Context) (int, error), hosted func() map[string]float64) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "mistry", Name: name, Help: help}, []string{"project"})
	}
	histogram := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "mistry", Name: name, Help: help,
			Buckets: []float64{120, 240, 360},
		}, []string{"project"})
	}
	m := &Metrics{
		started:     counter("builds_started", "Artifact build requests, including those answered from the cache or coalesced."),
		finished:    counter("builds_finished", "Artifact builds whose command ran to an exit code."),
		coalesced:   counter("builds_coalesced", "Artifact build requests that joined an identical build in progress."),
		incremental: counter("builds_processed_incrementally", "Successful artifact builds that started from their group's last good build."),
		cached:      counter("cache_utilization", "Artifact build requests answered from the result cache."),
		succeeded:   histogram("builds_succeeded_seconds", "Duration of artifact builds that exited 0."),
		failed:      histogram("builds_failed_seconds", "Duration of artifact builds that exited non-zero."),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mixmaster", Name: "jobs_total",
			Help: "Jobs of every kind that ended, by final status.",
		}, []string{"project", "status"}),
	}
	reg.MustRegister(m.started, m.finished, m.coalesced, m.incremental, m.cached, m.succeeded, m.failed, m.jobs)
	if queueLen != nil {
		reg.MustRegister(&queueCollector{
			desc: prometheus.NewDesc("mixmaster_queue_depth", "Jobs waiting in the queue.", nil, nil),
			fn:   queueLen,
		})
	}
	if hosted != nil {
		reg.MustRegister(&hostedCollector{
			desc: prometheus.NewDesc("mistry_builds_hosted", "Artifact builds kept on disk.", []string{"project"}, nil),
			fn:   hosted,
		})
	}

	g, ok := reg.(prometheus.Gatherer)
	if !ok {
		g = prometheus.DefaultGatherer
	}
	// A collector that fails must not hide the others.
	m.handler = promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return m
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler { return m.handler }

// BuildRequested counts an artifact request (mistry_builds_started).
func (m *Metrics) BuildRequested(project string) {
	if m != nil {
		m.started.WithLabelValues(project).Inc()
	}
}

// BuildCached counts a request answered from the cache
// (mistry_cache_utilization).
func (m *Metrics) BuildCached(project string) {
	if m != nil {
		m.cached.WithLabelValues(project).Inc()
	}
}

// BuildCoalesced counts a request that joined a build in progress
// (mistry_builds_coalesced).
func (m *Metrics) BuildCoalesced(project string) {
	if m != nil {
		m.coalesced.WithLabelValues(project).Inc()
	}
}

// JobFinished counts a job that ended (mixmaster_jobs_total). An artifact
// build whose command ran also counts as finished, with its duration in
// the histogram of its outcome, as mistry counted it; one that errored
// before its command ran does not.
func (m *Metrics) JobFinished(j *mixmaster.Job) {
	if m == nil || j == nil {
		return
	}
	m.jobs.WithLabelValues(j.Project, string(j.Status)).Inc()
	if j.Kind != mixmaster.KindArtifact || j.ExitCode == nil {
		return
	}
	m.finished.WithLabelValues(j.Project).Inc()
	seconds := j.Duration(time.Now()).Seconds() // FinishedAt when set
	if *j.ExitCode != 0 {
		m.failed.WithLabelValues(j.Project).Observe(seconds)
		return
	}
	m.succeeded.WithLabelValues(j.Project).Observe(seconds)
	if j.Incremental {
		m.incremental.WithLabelValues(j.Project).Inc()
	}
}

// hostedCollector reports mistry_builds_hosted from a function called at
// each scrape, so the number is never stale (mistry refreshed it every
// five minutes).
type hostedCollector struct {
	desc *prometheus.Desc
	fn   func() map[string]float64
}

// Describe implements prometheus.Collector.
func (c *hostedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *hostedCollector) Collect(ch chan<- prometheus.Metric) {
	for project, n := range c.fn() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, n, project)
	}
}

// queueCollector reports mixmaster_queue_depth. When the store cannot
// count the queue the sample is left out, not shown as 0 (an empty queue
// is good news), the scrape reports the error, and the log says so once
// per failing spell rather than at every scrape.
type queueCollector struct {
	desc    *prometheus.Desc
	fn      func(context.Context) (int, error)
	failing atomic.Bool
}

// Describe implements prometheus.Collector.
func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	n, err := c.fn(context.Background())
	if err != nil {
		if !c.failing.Swap(true) {
			slog.Warn("metrics: cannot count the queue; queue_depth left out until it can", "err", err)
		}
		ch <- prometheus.NewInvalidMetric(c.desc, fmt.Errorf("count queued jobs: %w", err))
		return
	}
	if c.failing.Swap(false) {
		slog.Info("metrics: counting the queue again")
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
}
