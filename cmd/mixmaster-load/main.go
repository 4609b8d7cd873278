// Command mixmaster-load sends mixed traffic to a mixmaster service on
// loopback and checks that it holds up: no 5xx, 503 only from the backlog
// limit of POST /jobs (never for a webhook), memory bounded. It prints a
// Markdown table for BENCHMARKS.md.
//
// By default it starts its own demo service (`serve --demo` in a temporary
// build root) from -bin, or from a binary it builds when -bin is empty, and
// stops it at the end; with -url it loads a service that is already running.
//
//	go run ./cmd/mixmaster-load -bin dist/mixmaster -c 64 -d 60s
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// backlogMessage is the one 503 the load is allowed to provoke, and only
// for POST /jobs: the demo's builds sleep for seconds, so the queue fills
// and the service refuses more artifact builds.
const backlogMessage = "build queue is full"

const (
	requestTimeout = 10 * time.Second
	streamFor      = 2 * time.Second
)

type options struct {
	url    string
	bin    string
	c      int
	d      time.Duration
	seed   uint64
	maxRSS int64 // MB
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "", "base URL of a running service on loopback; empty: start a demo service")
	flag.StringVar(&o.bin, "bin", "", "mixmaster binary to start; empty: build one")
	flag.IntVar(&o.c, "c", 64, "concurrent clients")
	flag.DurationVar(&o.d, "d", 60*time.Second, "how long to send requests")
	flag.Uint64Var(&o.seed, "seed", 1, "random seed")
	flag.Int64Var(&o.maxRSS, "max-rss", 256, "fail when the service's resident memory exceeds this many MB")
	flag.Parse()
	if flag.NArg() > 0 || o.c < 1 || o.d <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, o)
	stop()
	os.Exit(code)
}

// run returns the exit status: 0 when the service held up, 1 otherwise.
func run(ctx context.Context, o options) int {
	base := o.url
	var srv *server
	if base == "" {
		var err error
		if srv, err = startServer(ctx, o.bin); err != nil {
			fmt.Fprintln(os.Stderr, "mixmaster-load:", err)
			return 1
		}
		defer srv.stop()
		base = srv.url
	} else if err := checkLoopback(base); err != nil {
		fmt.Fprintln(os.Stderr, "mixmaster-load:", err)
		return 2
	}
	base = strings.TrimSuffix(base, "/")

	var rss rssSampler
	if srv != nil {
		rss.start(srv.cmd.Process.Pid)
	}
	res := load(ctx, base, o)
	rss.stop()

	var problems []string
	if srv != nil {
		if srv.exited() {
			problems = append(problems, "the service exited during the run; its log: "+srv.logPath)
		}
		if limit := o.maxRSS << 20; rss.max > limit {
			problems = append(problems, fmt.Sprintf("service RSS peaked at %d MB, above -max-rss %d MB", rss.max>>20, o.maxRSS))
		}
	}
	report(os.Stdout, res, o, rss, srv != nil)
	problems = append(problems, res.problems()...)
	if len(problems) > 0 {
		if srv != nil {
			srv.keep = true // the log explains the failure
		}
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, "FAIL:", p)
		}
		return 1
	}
	return 0
}

// checkLoopback refuses to load anything but this machine: the program is
// a stress test, never to be pointed at someone else's service.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-url %q: want http://127.0.0.1:PORT", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("-url %q: only loopback addresses may be loaded", raw)
}

// server is a demo service this program started and must stop.
type server struct {
	cmd     *exec.Cmd
	url     string
	dir     string
	logPath string
	done    chan struct{}
	keep    bool
}

// startServer starts `serve --demo` in a temporary build root on a free
// loopback port and waits until it answers.
func startServer(ctx context.Context, bin string) (*server, error) {
	dir, err := os.MkdirTemp("", "mixmaster-load-")
	if err != nil {
		return nil, err
	}
	if bin == "" {
		// Built rather than `go run`, so that the PID we sample is the
		// service itself and not the go command.
		bin = filepath.Join(dir, "mixmaster")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/mixmaster")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("build the service: %w", err)
		}
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// A short grace: at the end queued builds need not finish.
	cmd := exec.Command(bin, "serve", "--demo", "--build-root", filepath.Join(dir, "root"),
		"--listen", addr, "--shutdown-grace", "1s")
	// Docker is irrelevant to the demo's shell builds and would only slow
	// the start down.
	cmd.Env = append(os.Environ(), "MIXMASTER_DOCKER=off")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start the service: %w", err)
	}
	s := &server{cmd: cmd, url: "http://" + addr, dir: dir, logPath: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(s.done)
	}()
	if err := s.waitReady(ctx); err != nil {
		s.keep = true
		s.stop()
		return nil, err
	}
	return s, nil
}

// freePort asks the kernel for an unused loopback port. Another process
// could take it before the service binds it; the service then fails to
// start and says so.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (s *server) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if s.exited() {
			return fmt.Errorf("the service exited at start; its log: %s", s.logPath)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/api/v1/jobs", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("the service did not answer within 30 s; its log: %s", s.logPath)
}

func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// stop ends the service by its PID: SIGTERM, then SIGKILL if it lingers.
func (s *server) stop() {
	if !s.exited() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	if s.keep {
		fmt.Fprintln(os.Stderr, "service files kept in", s.dir)
		return
	}
	os.RemoveAll(s.dir)
}

// rssSampler reads the service's resident memory once a second.
type rssSampler struct {
	max, last int64 // bytes
	quit      chan struct{}
	done      chan struct{}
}

func (r *rssSampler) start(pid int) {
	r.quit, r.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(r.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			if n, err := readRSS(pid); err == nil {
				r.last, r.max = n, max(r.max, n)
			}
			select {
			case <-r.quit:
				return
			case <-t.C:
			}
		}
	}()
}

func (r *rssSampler) stop() {
	if r.quit != nil {
		close(r.quit)
		<-r.done
	}
}

// readRSS returns VmRSS from /proc/<pid>/status in bytes.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// The kinds of request, in the order the table lists them.
const (
	kindWebhook = iota
	kindArtifact
	kindDashboard
	kindList
	kindStream
	nKinds
)

var kindNames = [nKinds]string{
	"webhook `POST /`",
	"artifact `POST /jobs?async`",
	"dashboard `GET /`",
	"list `GET /api/v1/jobs`",
	"log stream `…/log?follow=1`",
}

// pickKind draws a kind with the mix 25/25/25/15/10 %.
func pickKind(r *rand.Rand) int {
	switch n := r.IntN(100); {
	case n < 25:
		return kindWebhook
	case n < 50:
		return kindArtifact
	case n < 75:
		return kindDashboard
	case n < 90:
		return kindList
	default:
		return kindStream
	}
}

// A small set of names, so that artifact builds repeat and some are
// answered from the cache or joined to a build under way.
var names = []string{"world", "alice", "bob", "carol", "dave"}

// stats is one worker's tally for one kind; workers merge theirs at the end
// so that counting needs no locks.
type stats struct {
	latencies                      []time.Duration
	ok, busy, client, server, errs int
	badBusy                        []string // 503 messages other than the POST /jobs backlog's
	serverMsgs                     []string
	errMsgs                        []string // why requests got no answer
}

func (s *stats) merge(o *stats) {
	s.latencies = append(s.latencies, o.latencies...)
	s.ok += o.ok
	s.busy += o.busy
	s.client += o.client
	s.server += o.server
	s.errs += o.errs
	s.badBusy = append(s.badBusy, o.badBusy...)
	s.serverMsgs = append(s.serverMsgs, o.serverMsgs...)
	s.errMsgs = append(s.errMsgs, o.errMsgs...)
}

type results struct {
	kinds   [nKinds]stats
	elapsed time.Duration
}

// problems lists what makes the run a failure.
func (r *results) problems() []string {
	var out []string
	for k := range r.kinds {
		s := &r.kinds[k]
		if s.server > 0 {
			out = append(out, fmt.Sprintf("%s: %d answers 5xx (other than 503), first: %s", kindNames[k], s.server, first(s.serverMsgs)))
		}
		// A request the service never answered is worse than a 5xx.
		if s.errs > 0 {
			out = append(out, fmt.Sprintf("%s: %d requests got no answer, first: %s", kindNames[k], s.errs, first(s.errMsgs)))
		}
		if len(s.badBusy) > 0 {
			out = append(out, fmt.Sprintf("%s: %d answers 503 not from the POST /jobs backlog, first: %s", kindNames[k], len(s.badBusy), s.badBusy[0]))
		}
	}
	return out
}

func first(msgs []string) string {
	if len(msgs) == 0 {
		return "?"
	}
	return msgs[0]
}

// loader is what the workers share.
type loader struct {
	base   string
	client *http.Client
	// lastID is the newest job id seen, for the log streams to follow.
	lastID atomic.Uint64
}

// load runs o.c workers until o.d has passed; requests under way then run
// to their own timeout, so the run ends at most requestTimeout later.
func load(ctx context.Context, base string, o options) *results {
	l := &loader{
		base: base,
		client: &http.Client{Transport: &http.Transport{
			MaxIdleConns:        o.c,
			MaxIdleConnsPerHost: o.c,
			IdleConnTimeout:     30 * time.Second,
		}},
	}
	ctx, cancel := context.WithTimeout(ctx, o.d)
	defer cancel()
	perWorker := make([][nKinds]stats, o.c)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range o.c {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(o.seed, uint64(w)))
			st := &perWorker[w]
			for ctx.Err() == nil {
				k := pickKind(r)
				l.do(k, r, &st[k])
			}
		})
	}
	wg.Wait()
	res := &results{elapsed: time.Since(start)}
	for w := range perWorker {
		for k := range nKinds {
			res.kinds[k].merge(&perWorker[w][k])
		}
	}
	return res
}

// do sends one request of kind k and tallies its answer. Each request has
// its own timeout, independent of the run's end, so that the end of the
// run does not show up as failed requests.
func (l *loader) do(k int, r *rand.Rand, st *stats) {
	var method, path, body string
	switch k {
	case kindWebhook:
		// No commit: the service builds the tip of master.
		method, path = http.MethodPost, "/"
		body = `{"project":"demo/hello","target":"master","notifications":"none"}`
	case kindArtifact:
		method, path = http.MethodPost, "/jobs?async"
		body = fmt.Sprintf(`{"project":"greeting","params":{"name":%q}}`, names[r.IntN(len(names))])
	case kindDashboard:
		method, path = http.MethodGet, "/"
	case kindList:
		method, path = http.MethodGet, "/api/v1/jobs"
	case kindStream:
		last := l.lastID.Load()
		if last == 0 {
			// No job yet: nothing to follow.
			method, path, k = http.MethodGet, "/api/v1/jobs", kindList
			break
		}
		id := last - min(last-1, r.Uint64N(8))
		method, path = http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d/log?follow=1", id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, l.base+path, strings.NewReader(body))
	if err != nil {
		st.errs++
		st.errMsgs = append(st.errMsgs, err.Error())
		return
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	t0 := time.Now()
	resp, err := l.client.Do(req)
	if err != nil {
		st.errs++
		st.errMsgs = append(st.errMsgs, err.Error())
		return
	}
	defer resp.Body.Close()
	// Latency is the time to the answer's headers: for a stream the rest
	// is the build's own pace.
	st.latencies = append(st.latencies, time.Since(t0))
	if k == kindStream && resp.StatusCode == http.StatusOK {
		// Read until the job ends or the 2 s are up; both are success.
		defer time.AfterFunc(streamFor, cancel).Stop()
		_, _ = io.Copy(io.Discard, resp.Body)
		st.ok++
		return
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch code := resp.StatusCode; {
	case err != nil:
		st.errs++
		st.errMsgs = append(st.errMsgs, err.Error())
	case code >= 200 && code < 300:
		st.ok++
		if k == kindWebhook {
			l.noteID(b)
		}
	case code == http.StatusServiceUnavailable:
		st.busy++
		if !backlogRefusal(k, b) {
			st.badBusy = append(st.badBusy, strings.TrimSpace(string(b)))
		}
	case code >= 500:
		st.server++
		st.serverMsgs = append(st.serverMsgs, fmt.Sprintf("%d %s", code, strings.TrimSpace(string(b))))
	default:
		st.client++
	}
}

// backlogRefusal reports whether a 503 is the one the load may provoke:
// POST /jobs refused because the queue is full. A webhook build is durable
// work that must queue, so any 503 for a webhook is a failure.
func backlogRefusal(k int, body []byte) bool {
	return k == kindArtifact && bytes.Contains(body, []byte(backlogMessage))
}

// noteID records the id of a job a webhook queued.
func (l *loader) noteID(b []byte) {
	var v struct {
		ID uint64 `json:"id"`
	}
	if json.Unmarshal(b, &v) != nil || v.ID == 0 {
		return
	}
	for {
		old := l.lastID.Load()
		if v.ID <= old || l.lastID.CompareAndSwap(old, v.ID) {
			return
		}
	}
}

// report prints the run as Markdown.
func report(w io.Writer, res *results, o options, rss rssSampler, ownServer bool) {
	secs := res.elapsed.Seconds()
	fmt.Fprintf(w, "\nmixmaster-load: %d clients for %s (%.1f s with the last requests), seed %d, %d CPUs, %s/%s\n\n",
		o.c, o.d, secs, o.seed, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintln(w, "| kind | requests | req/s | p50 | p99 | 2xx | 503 | other 4xx | 5xx | no answer |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	var total stats
	for k := range res.kinds {
		s := &res.kinds[k]
		row(w, kindNames[k], s, secs)
		total.merge(s)
	}
	row(w, "**all**", &total, secs)
	if ownServer {
		fmt.Fprintf(w, "\nService RSS: max %.1f MB, at the end %.1f MB (limit %d MB).\n",
			float64(rss.max)/(1<<20), float64(rss.last)/(1<<20), o.maxRSS)
	}
}

func row(w io.Writer, name string, s *stats, secs float64) {
	n := s.ok + s.busy + s.client + s.server + s.errs
	slices.Sort(s.latencies)
	fmt.Fprintf(w, "| %s | %d | %.1f | %s | %s | %d | %d | %d | %d | %d |\n",
		name, n, float64(n)/secs, percentile(s.latencies, 0.50), percentile(s.latencies, 0.99),
		s.ok, s.busy, s.client, s.server, s.errs)
}

// percentile of sorted durations, rounded for the table.
func percentile(sorted []time.Duration, p float64) string {
	if len(sorted) == 0 {
		return "–"
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	d := sorted[max(0, min(i, len(sorted)-1))]
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}
