package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mixmaster"
	"mixmaster/artifacts"
)

// acceptClients is how many clients post webhooks at once in
// BenchmarkWebhookAccept: a burst such as a mass push or a forge
// redelivering a backlog.
const acceptClients = 64

// BenchmarkWebhookAccept measures how many webhooks per second the service
// accepts, each answered 202 only after its job is durably committed. The
// runner works through the queued jobs at the same time, as it would in
// production; their command is `true`, so it is the checkouts and the
// runner's own commits that compete with the accept path.
func BenchmarkWebhookAccept(b *testing.B) {
	noDocker(b)
	repo := newTestRepo(b)
	s := startServer(b, `
[_]
buildRoot = @ROOT@/builds
jobConcurrency = 1
; never refuse: the benchmark measures acceptance, not back-pressure
jobBacklog = 1000000

[bench/accept]
.repository = file://`+repo.Dir+`
production = true
`)
	transport := &http.Transport{MaxIdleConns: 2 * acceptClients, MaxIdleConnsPerHost: 2 * acceptClients}
	client := &http.Client{Transport: transport, Timeout: time.Minute}
	b.Cleanup(transport.CloseIdleConnections)
	body := []byte(`{"project":"bench/accept","target":"production"}`)

	var mu sync.Mutex
	var latencies []time.Duration
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((acceptClients + procs - 1) / procs) // RunParallel starts this many per P
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		defer func() {
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		}()
		for pb.Next() {
			start := time.Now()
			resp, err := client.Post(s.URL+"/", "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err) // Fatal may only be called from the benchmark's goroutine
				return
			}
			reply, _ := io.ReadAll(resp.Body) // read to the end so the connection is reused
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("POST /: %d %s", resp.StatusCode, reply)
				return
			}
			mine = append(mine, time.Since(start))
		}
	})
	b.StopTimer()
	if b.Failed() {
		b.FailNow()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "accepted/s")
	slices.Sort(latencies)
	b.ReportMetric(ms(percentile(latencies, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(latencies, 0.99)), "p99-ms")
}

// BenchmarkWebhookToFirstOutput measures the time from posting a webhook to
// the first line of the build command's output appearing in the job log,
// with the mirror and the workspace already in place. The log's own time
// stamps split it into queue and claim, checkout (ssh-agent, git and
// recording the commit) and starting the command.
//
// known-commit posts the commit ID, which the mirror already has, so git
// only updates the workspace; branch posts the branch name, which always
// fetches the mirror from the origin first (a local file:// origin here).
func BenchmarkWebhookToFirstOutput(b *testing.B) {
	noDocker(b)
	repo := newTestRepo(b)
	b.Run("known-commit", func(b *testing.B) {
		benchFirstOutput(b, repo, map[string]any{"project": "bench/first", "target": "production", "commit": repo.Commits["production"]})
	})
	b.Run("branch", func(b *testing.B) {
		benchFirstOutput(b, repo, map[string]any{"project": "bench/first", "target": "production"})
	})
}

func benchFirstOutput(b *testing.B, repo *testRepo, payload map[string]any) {
	s := startServer(b, `
[_]
buildRoot = @ROOT@/builds
jobConcurrency = 2

[bench/first]
.repository = file://`+repo.Dir+`
production = echo first
`)
	body, _ := json.Marshal(payload)
	// Every log write publishes an event, so the log is read only when it
	// has grown rather than polled in a loop that would compete for CPU.
	events, unsubscribe := s.Runner.Events.Subscribe(0)
	defer unsubscribe()

	// The first build clones the mirror and creates the workspace.
	warm := s.submit(b, payload)
	if j := waitDone(b, s, warm.ID); j.Status != mixmaster.StatusSucceeded {
		b.Fatalf("warm-up job: %+v\n%s", j, s.log(b, warm.ID))
	}

	var total, accept, queue, checkout, exec time.Duration
	for b.Loop() {
		drain(events)
		start := time.Now()
		var a accepted
		if code := s.post(b, "/", string(body), nil, &a); code != http.StatusAccepted {
			b.Fatalf("POST /: %d", code)
		}
		accept += time.Since(start)
		lines := waitFirstOutput(b, s, a.ID, events)
		total += time.Since(start)

		b.StopTimer()
		// Let the job finish, so that the next one finds the workspace free
		// and the store and disk quiet.
		j := waitDone(b, s, a.ID)
		if j.Status != mixmaster.StatusSucceeded {
			b.Fatalf("job %d: %+v\n%s", a.ID, j, s.log(b, a.ID))
		}
		queue += lines.started.Sub(j.QueuedAt)
		checkout += lines.command.Sub(lines.started)
		exec += lines.output.Sub(lines.command)
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(ms(total)/n, "total-ms")
	b.ReportMetric(ms(accept)/n, "accept-ms")
	b.ReportMetric(ms(queue)/n, "queue-ms")
	b.ReportMetric(ms(checkout)/n, "checkout-ms")
	b.ReportMetric(ms(exec)/n, "exec-ms")
	b.ReportMetric(ms(total-checkout)/n, "overhead-ms")
}

// logTimes are the time stamps of the log lines that mark a build's phases.
type logTimes struct {
	started time.Time // "# Build started …": the runner claimed the job
	command time.Time // "$ echo first": the checkout is done
	output  time.Time // "O first": the command's first output
}

// waitFirstOutput waits until job id's log holds the command's first output
// line and returns the phase time stamps.
func waitFirstOutput(b *testing.B, s *server, id mixmaster.JobID, events <-chan mixmaster.Event) logTimes {
	b.Helper()
	path := filepath.Join(s.Config.BuildRoot, "jobs", id.String(), "log")
	// A fallback tick in case the log appeared between reading it and
	// waiting; events are never all dropped, but a stall must not hang.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(time.Minute)
	for {
		if lt, ok := readLogTimes(b, path); ok {
			return lt
		}
		select {
		case <-events:
		case <-tick.C:
		case <-deadline:
			b.Fatalf("job %d: no output after a minute\n%s", id, s.log(b, id))
		}
	}
}

// readLogTimes parses a job log (lines "<time> <mark> <text>") and reports
// whether it has reached the command's output yet.
func readLogTimes(b *testing.B, path string) (logTimes, bool) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return logTimes{}, false
	}
	if err != nil {
		b.Fatal(err)
	}
	var lt logTimes
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if len(line) < len(artifacts.TimeLayout)+3 {
			continue
		}
		stamp, rest := line[:len(artifacts.TimeLayout)], line[len(artifacts.TimeLayout)+1:]
		at, err := time.Parse(artifacts.TimeLayout, stamp)
		if err != nil {
			b.Fatalf("log line %q: %v", line, err)
		}
		switch {
		case strings.HasPrefix(rest, "# Build started"):
			lt.started = at
		case rest == "$ echo first":
			lt.command = at
		case rest == "O first" && !lt.command.IsZero():
			lt.output = at
			return lt, true
		}
	}
	return lt, false
}

// waitDone polls the store until job id is final. It reads the store
// directly rather than through the API so that it returns promptly.
func waitDone(b *testing.B, s *server, id mixmaster.JobID) *mixmaster.Job {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		j, err := s.DB.Job(context.Background(), id)
		if err != nil {
			b.Fatal(err)
		}
		if j.Status.Done() {
			return j
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatalf("job %d did not finish", id)
	return nil
}

// noDocker keeps the service from connecting to a Docker engine: these
// builds run in the shell, and the engine's start-up log line would land
// in the middle of a benchmark's result line.
func noDocker(b *testing.B) {
	b.Setenv("MIXMASTER_DOCKER", "off")
}

func drain(ch <-chan mixmaster.Event) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
