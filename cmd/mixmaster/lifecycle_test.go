package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"mixmaster"
	"mixmaster/internal/testenv"
	"mixmaster/store"
)

// activate is how the tests start a binary the way systemd does: the
// socket is fd 3, and LISTEN_PID names the process that exec keeps.
const activate = `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"`

// child is the service running as a process of its own.
type child struct {
	cmd    *exec.Cmd
	log    *syncBuffer
	exited chan struct{}
	err    error // how it exited, once exited is closed
}

// syncBuffer collects a service's log, written from many goroutines
// while a test may read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// listenFile makes a loopback listener and returns it as a file, as
// systemd holds a socket unit's socket, and its URL.
func listenFile(t testing.TB) (*os.File, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // f is a socket of its own: it keeps listening
	t.Cleanup(func() { f.Close() })
	return f, url
}

// startActivated runs `mixmaster <args>` with sock as its activation
// socket (when not nil) and env added to its environment.
func startActivated(t testing.TB, sock *os.File, env []string, args ...string) *child {
	t.Helper()
	var cmd *exec.Cmd
	if sock != nil {
		cmd = exec.Command("sh", append([]string{"-c", activate, binary(t)}, args...)...)
		cmd.ExtraFiles = []*os.File{sock}
	} else {
		cmd = exec.Command(binary(t), args...)
	}
	cmd.Env = append(os.Environ(), env...)
	c := &child{cmd: cmd, log: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = c.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.exited
		if t.Failed() {
			t.Logf("service log:\n%s", c.log.String())
		}
	})
	return c
}

// waitExit waits for the child to exit and returns its exit code.
func (c *child) waitExit(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case <-c.exited:
	case <-time.After(within):
		t.Fatalf("the service did not exit within %s", within)
	}
	var ee *exec.ExitError
	if errors.As(c.err, &ee) {
		return ee.ExitCode()
	}
	if c.err != nil {
		t.Fatal(c.err)
	}
	return 0
}

// waitLog waits until the child's log has s in it.
func (c *child) waitLog(t testing.TB, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(c.log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the log never says %q", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeServeConfig writes a config for a service in a new build root and
// returns its path and the root.
func writeServeConfig(t testing.TB, extra string) (string, string) {
	t.Helper()
	root := t.TempDir()
	path := filepath.Join(root, "mixmaster.ini")
	text := fmt.Sprintf("[_]\nbuildRoot = %s\n%s", root, strings.ReplaceAll(extra, "@ROOT@", root))
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, root
}

// freshClient opens a new connection for every request: a kept-alive one
// would outlive the process that accepted it.
var freshClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// getVersion asks the service for its version and expects 200.
func getVersion(t testing.TB, url string) {
	t.Helper()
	resp, err := freshClient.Get(url + "/version")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /version: %d %s", resp.StatusCode, b)
	}
}

// noDockerEnv keeps the service from talking to a Docker engine that
// these tests do not need.
var noDockerEnv = []string{"MIXMASTER_DOCKER=off"}

// TestActivationPassedSocket starts serve the way systemd does, with
// the socket as fd 3, and checks that it serves that socket rather than
// binding the configured address.
func TestActivationPassedSocket(t *testing.T) {
	sock, url := listenFile(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	// The configured address is taken: binding it would fail.
	config, _ := writeServeConfig(t, "listen = "+busy.Addr().String()+"\n")
	c := startActivated(t, sock, noDockerEnv, "serve", "--config", config)
	getVersion(t, url)
	// The request may be answered before the line is written.
	c.waitLog(t, "addr="+url)
	c.cmd.Process.Signal(syscall.SIGTERM)
	if code := c.waitExit(t, 20*time.Second); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
}

// TestActivationSystemdSocketActivate lets systemd's own tool hold the
// socket and start the service on the first connection.
func TestActivationSystemdSocketActivate(t *testing.T) {
	tool, err := exec.LookPath("systemd-socket-activate")
	testenv.Need(t, "systemd", err == nil, "systemd-socket-activate not on PATH")
	port := mistryFreePort(t)
	config, _ := writeServeConfig(t, "")
	// The tool passes on only the environment it is told to.
	cmd := exec.Command(tool, "-l", "127.0.0.1:"+port, "-E", noDockerEnv[0],
		binary(t), "serve", "--config", config, "--idle-exit", "1s")
	var log syncBuffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
		if t.Failed() {
			t.Logf("log:\n%s", log.String())
		}
	})
	// The tool binds the port after it starts; the first connection that
	// gets through starts the service.
	addr := "127.0.0.1:" + port
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd-socket-activate does not listen: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	getVersion(t, "http://"+addr)
	// Idle, it exits cleanly.
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the service did not exit when idle")
	}
}

// notifySocket listens where a service started with NOTIFY_SOCKET sends
// its state, and returns the messages as they come.
func notifySocket(t testing.TB) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	msgs := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return path, msgs
}

func expectMessage(t *testing.T, msgs <-chan string, want string) {
	t.Helper()
	select {
	case m := <-msgs:
		if m != want {
			t.Fatalf("systemd got %q, want %q", m, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("systemd got no %s", want)
	}
}

// TestNotifyReadyAndStopping plays systemd's part of Type=notify: READY=1
// comes once the service answers, STOPPING=1 when SIGTERM stops it.
func TestNotifyReadyAndStopping(t *testing.T) {
	sock, url := listenFile(t)
	path, msgs := notifySocket(t)
	config, _ := writeServeConfig(t, "")
	c := startActivated(t, sock, append([]string{"NOTIFY_SOCKET=" + path}, noDockerEnv...), "serve", "--config", config)
	expectMessage(t, msgs, "READY=1")
	// Ready means serving: the first request is answered at once, not
	// just held in the backlog.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url + "/version")
	if err != nil {
		t.Fatalf("not serving after READY=1: %v", err)
	}
	resp.Body.Close()
	c.cmd.Process.Signal(syscall.SIGTERM)
	expectMessage(t, msgs, "STOPPING=1")
	if code := c.waitExit(t, 20*time.Second); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
}

// waitConnection waits until a connection is pending on the socket, as
// systemd does before it starts the service of a socket unit.
func waitConnection(t *testing.T, sock *os.File, within time.Duration) {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(sock.Fd()), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, int(within/time.Millisecond))
	if err != nil || n != 1 {
		t.Fatalf("no connection waits on the socket: %d, %v", n, err)
	}
}

// TestIdleExitAndRestartOnNextRequest runs serve --idle-exit 2s like a
// socket unit would: it exits 0 two seconds after the last request, the
// next request waits on the socket until a new process takes it, and is
// answered.
func TestIdleExitAndRestartOnNextRequest(t *testing.T) {
	sock, url := listenFile(t)
	config, _ := writeServeConfig(t, "")
	args := []string{"serve", "--config", config, "--idle-exit", "2s"}
	c := startActivated(t, sock, noDockerEnv, args...)
	getVersion(t, url)
	last := time.Now()
	// Requests keep it running.
	for range 3 {
		time.Sleep(500 * time.Millisecond)
		getVersion(t, url)
		last = time.Now()
	}
	if code := c.waitExit(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code after idling = %d, want 0", code)
	}
	if idle := time.Since(last); idle < 2*time.Second {
		t.Errorf("exited %s after the last request, before --idle-exit 2s", idle)
	}
	c.waitLog(t, "idle: stopping")

	// The next request: nobody serves the socket, so it waits there.
	answered := make(chan error, 1)
	go func() {
		resp, err := freshClient.Get(url + "/version")
		if err == nil {
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			resp.Body.Close()
		}
		answered <- err
	}()
	waitConnection(t, sock, 10*time.Second)
	select {
	case err := <-answered:
		t.Fatalf("answered with no service running: %v", err)
	default:
	}
	startActivated(t, sock, noDockerEnv, args...)
	if err := <-answered; err != nil {
		t.Fatalf("the request that started the service: %v", err)
	}
}

// TestIdleExitWaitsForJobs sets idleExit in the config, below how long a
// build runs: the service stays while the build runs and exits after it.
func TestIdleExitWaitsForJobs(t *testing.T) {
	repo := newTestRepo(t)
	sock, url := listenFile(t)
	config, root := writeServeConfig(t, fmt.Sprintf(`idleExit = 300ms
jobConcurrency = 1

[test-org/test-repo]
.repository = %s
production = sleep 2; touch @ROOT@/built
`, repo.Dir))
	c := startActivated(t, sock, noDockerEnv, "serve", "--config", config)
	s := &server{URL: url}
	a := s.submit(t, map[string]any{"project": "test-org/test-repo", "target": "production"})
	start := time.Now()
	if code := c.waitExit(t, 60*time.Second); code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
	if _, err := os.Stat(filepath.Join(root, "built")); err != nil {
		t.Fatalf("the service exited before its build finished (after %s)", time.Since(start))
	}
	db, err := store.Open(filepath.Join(root, "mixmaster.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	j, err := db.Job(context.Background(), a.ID)
	if err != nil || j.Status != mixmaster.StatusSucceeded {
		t.Errorf("job = %+v, %v; want succeeded", j, err)
	}
}

// termConfig is a project whose production build runs long the first
// time and quickly once the file "second" exists in the build root.
func termConfig(t *testing.T, repo *testRepo) (string, string) {
	return writeServeConfig(t, fmt.Sprintf(`jobConcurrency = 1

[test-org/test-repo]
.repository = %s
production = if [ -e @ROOT@/second ]; then echo quick; else touch @ROOT@/started; sleep 60; fi
staging = echo queued
`, repo.Dir))
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTermDuringBuildRequeues sends SIGTERM while a build outlasts the
// shutdown grace: the service exits cleanly within the grace (and the
// build's kill grace), leaves the build recorded as running and the
// queued jobs queued, and the next start errors the build "interrupted
// by restart", reruns it and runs the queued jobs.
func TestTermDuringBuildRequeues(t *testing.T) {
	repo := newTestRepo(t)
	sock, url := listenFile(t)
	config, root := termConfig(t, repo)
	args := []string{"serve", "--config", config, "--shutdown-grace", "1s"}
	c := startActivated(t, sock, noDockerEnv, args...)
	s := &server{URL: url}
	first := s.submit(t, map[string]any{"project": "test-org/test-repo", "target": "production"})
	queued := []mixmaster.JobID{
		s.submit(t, map[string]any{"project": "test-org/test-repo", "target": "staging/x"}).ID,
		s.submit(t, map[string]any{"project": "test-org/test-repo", "target": "staging/x"}).ID,
	}
	waitFile(t, filepath.Join(root, "started"))

	stop := time.Now()
	c.cmd.Process.Signal(syscall.SIGTERM)
	if code := c.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	// Grace 1 s, then SIGTERM to the build and SIGKILL 5 s later at most.
	if took := time.Since(stop); took > 10*time.Second {
		t.Errorf("stopping took %s", took)
	}
	c.waitLog(t, "job interrupted by shutdown")

	// What the store says between the two processes.
	db, err := store.Open(filepath.Join(root, "mixmaster.db"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[mixmaster.JobID]mixmaster.Status{first.ID: mixmaster.StatusRunning, queued[0]: mixmaster.StatusQueued, queued[1]: mixmaster.StatusQueued}
	for id, status := range want {
		if j, err := db.Job(context.Background(), id); err != nil || j.Status != status {
			t.Errorf("after SIGTERM job %d = %+v, %v; want %s", id, j, err, status)
		}
	}
	db.Close()

	os.WriteFile(filepath.Join(root, "second"), nil, 0o644)
	startActivated(t, sock, noDockerEnv, args...)
	var interrupted *mixmaster.Job
	deadline := time.Now().Add(60 * time.Second)
	for {
		var page struct{ Jobs []mixmaster.Job }
		getJSON(t, url+"/api/v1/jobs?limit=100", &page)
		done := len(page.Jobs) == 4
		var retry *mixmaster.Job
		for i, j := range page.Jobs {
			done = done && j.Status.Done()
			if j.ID == first.ID {
				interrupted = &page.Jobs[i]
			}
			if j.RetryOf == first.ID {
				retry = &page.Jobs[i]
			}
		}
		if done {
			if interrupted.Status != mixmaster.StatusErrored || interrupted.Error != "interrupted by restart" {
				t.Errorf("interrupted job = %+v", interrupted)
			}
			if retry == nil || retry.Status != mixmaster.StatusSucceeded {
				t.Errorf("its rerun = %+v", retry)
			}
			for _, j := range page.Jobs {
				if (j.ID == queued[0] || j.ID == queued[1]) && j.Status != mixmaster.StatusSucceeded {
					t.Errorf("queued job %d = %s (%s)", j.ID, j.Status, j.Error)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs did not settle: %+v", page.Jobs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTermLetsBuildFinish sends SIGTERM during a build shorter than the
// grace: the build finishes and is recorded, then the service exits.
func TestTermLetsBuildFinish(t *testing.T) {
	repo := newTestRepo(t)
	sock, url := listenFile(t)
	config, root := writeServeConfig(t, fmt.Sprintf(`
[test-org/test-repo]
.repository = %s
production = touch @ROOT@/started; sleep 1; echo finished
`, repo.Dir))
	c := startActivated(t, sock, noDockerEnv, "serve", "--config", config, "--shutdown-grace", "20s")
	a := (&server{URL: url}).submit(t, map[string]any{"project": "test-org/test-repo", "target": "production"})
	waitFile(t, filepath.Join(root, "started"))
	c.cmd.Process.Signal(syscall.SIGTERM)
	if code := c.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
	db, err := store.Open(filepath.Join(root, "mixmaster.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if j, err := db.Job(context.Background(), a.ID); err != nil || j.Status != mixmaster.StatusSucceeded {
		t.Errorf("job = %+v, %v; want succeeded", j, err)
	}
}

// TestLifecycleIdleTracking checks, in process, what counts as activity:
// a request under way, and a job queued or running.
func TestLifecycleIdleTracking(t *testing.T) {
	repo := newTestRepo(t)
	s := startServer(t, fmt.Sprintf(`
[_]
buildRoot = @ROOT@
jobConcurrency = 1

[test-org/test-repo]
.repository = %s
production = sleep 1
`, repo.Dir))
	ctx := context.Background()
	time.Sleep(50 * time.Millisecond)
	if d := s.idleFor(ctx); d < 50*time.Millisecond {
		t.Errorf("idle for %s after 50ms of nothing", d)
	}
	a := s.submit(t, map[string]any{"project": "test-org/test-repo", "target": "production"})
	if d := s.idleFor(ctx); d > 20*time.Millisecond {
		t.Errorf("idle for %s with a job queued or running", d)
	}
	s.wait(t, a.ID)
	time.Sleep(100 * time.Millisecond)
	if d := s.idleFor(ctx); d < 90*time.Millisecond {
		t.Errorf("idle for %s, 100ms after the job", d)
	}
	// A request under way is activity however long it takes.
	s.life.mu.Lock()
	s.life.inFlight++
	s.life.mu.Unlock()
	time.Sleep(30 * time.Millisecond)
	if d := s.idleFor(ctx); d != 0 {
		t.Errorf("idle for %s with a request under way", d)
	}
	s.life.mu.Lock()
	s.life.inFlight--
	s.life.mu.Unlock()
}

// BenchmarkIdleRSS measures the resident memory of an idle `serve`
// process, started with a config and an empty build root.
func BenchmarkIdleRSS(b *testing.B) {
	var total float64
	for range b.N {
		sock, url := listenFile(b)
		config, _ := writeServeConfig(b, "")
		c := startActivated(b, sock, nil, "serve", "--config", config)
		getVersion(b, url)
		time.Sleep(500 * time.Millisecond) // settled, as between requests
		total += rssMB(b, c.cmd.Process.Pid)
		c.cmd.Process.Signal(syscall.SIGTERM)
		c.waitExit(b, 20*time.Second)
	}
	b.ReportMetric(total/float64(b.N), "MB-RSS")
	b.ReportMetric(0, "ns/op")
}

// rssMB reads VmRSS of a process, in MB.
func rssMB(tb testing.TB, pid int) float64 {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatalf("read the RSS: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				tb.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}

// BenchmarkActivationToFirstResponse measures a socket-activated start:
// the request is already waiting on the socket, as when a webhook wakes
// an idle service, and the clock runs from starting the process to the
// answer. The build root is reused, as on every start after the first.
func BenchmarkActivationToFirstResponse(b *testing.B) {
	sock, url := listenFile(b)
	config, _ := writeServeConfig(b, "")
	var total time.Duration
	for range b.N {
		answered := make(chan error, 1)
		go func() {
			resp, err := freshClient.Get(url + "/version")
			if err == nil {
				resp.Body.Close()
			}
			answered <- err
		}()
		time.Sleep(20 * time.Millisecond) // the request waits on the socket
		start := time.Now()
		c := startActivated(b, sock, nil, "serve", "--config", config)
		if err := <-answered; err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		c.cmd.Process.Signal(syscall.SIGTERM)
		c.waitExit(b, 20*time.Second)
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/first-response")
	b.ReportMetric(0, "ns/op")
}
