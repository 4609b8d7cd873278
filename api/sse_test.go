package api

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mixmaster"
)

type sseEvent struct {
	id, event, data string
}

// sseStream reads Server-Sent Events in the background.
type sseStream struct {
	events   chan sseEvent
	comments chan string
	done     chan error // the error that ended the body; io.EOF when complete
}

// openSSE connects to url, resuming after lastID when it is not empty.
func openSSE(t *testing.T, ctx context.Context, url, lastID string) *sseStream {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status = %d: %s", resp.StatusCode, b)
	}
	for name, want := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
	} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	s := &sseStream{events: make(chan sseEvent, 100), comments: make(chan string, 100), done: make(chan error, 1)}
	go func() {
		r := bufio.NewReader(resp.Body)
		var ev sseEvent
		var data []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				s.done <- err
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "":
				if data != nil || ev.event != "" {
					ev.data = strings.Join(data, "\n")
					s.events <- ev
				}
				ev, data = sseEvent{}, nil
			case strings.HasPrefix(line, ":"):
				select {
				case s.comments <- strings.TrimSpace(line[1:]):
				default:
				}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[len("id: "):]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				data = append(data, line[len("data: "):])
			default:
				s.done <- io.ErrUnexpectedEOF
				return
			}
		}
	}()
	return s
}

// want receives the next event, which must be a log line.
func (s *sseStream) want(t *testing.T, id int, data string) {
	t.Helper()
	select {
	case ev := <-s.events:
		if ev != (sseEvent{id: strconv.Itoa(id), data: data}) {
			t.Fatalf("event = %+v, want id %d data %q", ev, id, data)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no event %q within 10s", data)
	}
}

// wantEnd receives the end event and the end of the body.
func (s *sseStream) wantEnd(t *testing.T, status mixmaster.Status) {
	t.Helper()
	select {
	case ev := <-s.events:
		if ev != (sseEvent{event: "end", data: string(status)}) {
			t.Fatalf("event = %+v, want the end with %s", ev, status)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no end event within 10s")
	}
	select {
	case err := <-s.done:
		if err != io.EOF {
			t.Fatalf("body ended with %v, want EOF", err)
		}
	case ev := <-s.events:
		t.Fatalf("event after the end: %+v", ev)
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not close within 10s")
	}
}

// quiet checks that no event arrives for a moment.
func (s *sseStream) quiet(t *testing.T) {
	t.Helper()
	select {
	case ev := <-s.events:
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
}

// line is a log line as the log store writes it.
func line(mark, text string) string {
	return "2026-11-21T00:46:56.295Z " + mark + " " + text + "\n"
}

// sseFixture serves one artifact job, 9 of project ok, with its log in a
// file that the test appends to.
type sseFixture struct {
	store  *memStore
	events *broker
	h      *Handler
	srv    *httptest.Server
	log    string // the log file
}

func newSSEFixture(t *testing.T, status mixmaster.Status, h *Handler) *sseFixture {
	t.Helper()
	f := &sseFixture{store: &memStore{}, events: &broker{}, h: h}
	f.store.put(&mixmaster.Job{ID: 9, Kind: mixmaster.KindArtifact, Project: "ok", Status: status})
	dir, logs := logDir(t)
	f.log = filepath.Join(dir, "9.log")
	h.Jobs, h.Logs, h.Events = f.store.fake(), logs, f.events
	if h.pollEvery == 0 {
		h.pollEvery = time.Hour // only events wake the stream
	}
	if h.pingEvery == 0 {
		h.pingEvery = time.Hour
	}
	e, _ := newEcho(t, h)
	f.srv = httptest.NewServer(e)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *sseFixture) url() string { return f.srv.URL + "/log/ok/9" }

// write appends to the log and says so, as the log store does.
func (f *sseFixture) write(t *testing.T, s string) {
	appendFile(t, f.log, s)
	f.events.Publish(mixmaster.Event{JobID: 9})
}

func (f *sseFixture) finish(st mixmaster.Status) {
	f.store.update(9, func(j *mixmaster.Job) { j.Status = st })
	f.events.Publish(mixmaster.Event{JobID: 9, Status: st})
}

// released waits until every stream has let go of its slot and its
// subscription.
func (f *sseFixture) released(t *testing.T) {
	t.Helper()
	waitFor(t, "unsubscribe", func() bool { return f.events.subscribers() == 0 })
	waitFor(t, "stream slot", func() bool { return f.h.streams.Load() == 0 })
}

func TestSSEStream(t *testing.T) {
	f := newSSEFixture(t, mixmaster.StatusRunning, &Handler{})
	l1, l2, l3 := line("#", "Build started"), line("O", "hello"), line("!", "a\rb <i>")
	appendFile(t, f.log, l1+l2+"partial li")

	s := openSSE(t, t.Context(), f.url(), "")
	s.want(t, len(l1), strings.TrimSuffix(l1, "\n"))
	s.want(t, len(l1+l2), strings.TrimSuffix(l2, "\n"))
	// Half a line waits for its end.
	s.quiet(t)
	f.write(t, "ne\n")
	s.want(t, len(l1+l2+"partial line\n"), "partial line")

	// A CR cannot end the data field: the client gets a newline instead.
	f.write(t, l3)
	s.want(t, len(l1+l2+"partial line\n"+l3), "2026-11-21T00:46:56.295Z ! a\nb <i>")

	appendFile(t, f.log, line("#", "Build finished"))
	f.finish(mixmaster.StatusSucceeded)
	s.want(t, len(l1+l2+"partial line\n"+l3+line("#", "Build finished")), strings.TrimSuffix(line("#", "Build finished"), "\n"))
	s.wantEnd(t, mixmaster.StatusSucceeded)
	f.released(t)
}

func TestSSEResume(t *testing.T) {
	f := newSSEFixture(t, mixmaster.StatusRunning, &Handler{})
	var lines []string
	for i := range 5 {
		lines = append(lines, line("O", "line "+strconv.Itoa(i)))
	}
	appendFile(t, f.log, lines[0]+lines[1]+lines[2])

	ctx, cancel := context.WithCancel(t.Context())
	a := openSSE(t, ctx, f.url(), "")
	off := 0
	var got []string
	for _, l := range lines[:3] {
		off += len(l)
		a.want(t, off, strings.TrimSuffix(l, "\n"))
		got = append(got, l)
	}
	// The client goes away; the handler lets go of everything.
	cancel()
	f.released(t)

	// Say the client had only processed two lines; more were written since.
	appendFile(t, f.log, lines[3]+lines[4])
	resume := len(lines[0] + lines[1])
	got = got[:2]
	b := openSSE(t, t.Context(), f.url(), strconv.Itoa(resume))
	off = resume
	for _, l := range lines[2:] {
		off += len(l)
		b.want(t, off, strings.TrimSuffix(l, "\n"))
		got = append(got, l)
	}
	b.quiet(t)
	if strings.Join(got, "") != strings.Join(lines, "") {
		t.Errorf("lines across the reconnect:\n%q\nwant\n%q", got, lines)
	}
	f.finish(mixmaster.StatusFailed)
	b.wantEnd(t, mixmaster.StatusFailed)

	// Resuming a final job at its end gives only the end.
	c := openSSE(t, t.Context(), f.url(), strconv.Itoa(off))
	c.wantEnd(t, mixmaster.StatusFailed)
	f.released(t)
}

// A page that already shows part of a log opens the stream at ?offset=;
// a reconnect's Last-Event-ID, which is newer, wins over it.
func TestSSEOffset(t *testing.T) {
	f := newSSEFixture(t, mixmaster.StatusRunning, &Handler{})
	l1, l2, l3 := line("O", "one"), line("O", "two"), line("O", "three")
	appendFile(t, f.log, l1+l2+l3)

	a := openSSE(t, t.Context(), f.url()+"?offset="+strconv.Itoa(len(l1)), "")
	a.want(t, len(l1+l2), strings.TrimSuffix(l2, "\n"))
	a.want(t, len(l1+l2+l3), strings.TrimSuffix(l3, "\n"))
	a.quiet(t)

	b := openSSE(t, t.Context(), f.url()+"?offset="+strconv.Itoa(len(l1)), strconv.Itoa(len(l1+l2)))
	b.want(t, len(l1+l2+l3), strings.TrimSuffix(l3, "\n"))
	b.quiet(t)

	f.finish(mixmaster.StatusSucceeded)
	a.wantEnd(t, mixmaster.StatusSucceeded)
	b.wantEnd(t, mixmaster.StatusSucceeded)
	f.released(t)
}

// A queued job has no log yet: the stream waits for it (mistry crashed
// here), woken by polling alone.
func TestSSEQueuedJob(t *testing.T) {
	f := newSSEFixture(t, mixmaster.StatusQueued, &Handler{pollEvery: 10 * time.Millisecond})
	f.h.Events = nil
	s := openSSE(t, t.Context(), f.url(), "")
	s.quiet(t)

	f.store.update(9, func(j *mixmaster.Job) { j.Status = mixmaster.StatusRunning })
	appendFile(t, f.log, line("#", "Build started"))
	s.want(t, len(line("#", "Build started")), strings.TrimSuffix(line("#", "Build started"), "\n"))
	f.store.update(9, func(j *mixmaster.Job) { j.Status = mixmaster.StatusErrored })
	s.wantEnd(t, mixmaster.StatusErrored)
}

func TestSSEFinalJob(t *testing.T) {
	f := newSSEFixture(t, mixmaster.StatusSucceeded, &Handler{})
	appendFile(t, f.log, "one\ntwo") // an unfinished last line is sent at the end
	s := openSSE(t, t.Context(), f.url(), "")
	s.want(t, 4, "one")
	s.want(t, 7, "two")
	s.wantEnd(t, mixmaster.StatusSucceeded)

	// A canceled job that never ran has no log at all.
	f2 := newSSEFixture(t, mixmaster.StatusCanceled, &Handler{})
	openSSE(t, t.Context(), f2.url(), "").wantEnd(t, mixmaster.StatusCanceled)
}

func TestSSEPing(t *testing.T) {
	f := newSSEFixture(t, mixmaster.StatusRunning, &Handler{pingEvery: 10 * time.Millisecond})
	s := openSSE(t, t.Context(), f.url(), "")
	select {
	case c := <-s.comments:
		if c != "ping" {
			t.Errorf("comment = %q", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no ping within 10s")
	}
	// Pings do not disturb the lines.
	f.write(t, "x\n")
	s.want(t, 2, "x")
}

func TestSSEStreamLimit(t *testing.T) {
	f := newSSEFixture(t, mixmaster.StatusRunning, &Handler{MaxStreams: 1})
	ctx, cancel := context.WithCancel(t.Context())
	openSSE(t, ctx, f.url(), "")

	e := f.srv.Config.Handler
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/log/ok/9", nil))
	wantText(t, rec, http.StatusServiceUnavailable, "Too many log streams are open (limit 1); try again later.\n")
	rec = httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/jobs/9/log?follow=1", nil))
	wantJSONError(t, rec, http.StatusServiceUnavailable, "Too many log streams are open (limit 1); try again later.")
	// A log that is not followed is not a stream.
	rec = httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/jobs/9/log", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("plain log: %d", rec.Code)
	}

	cancel()
	f.released(t)
	openSSE(t, t.Context(), f.url(), "")

	if DefaultMaxStreams != 256 {
		t.Errorf("DefaultMaxStreams = %d", DefaultMaxStreams)
	}
}

func TestSSERefused(t *testing.T) {
	f := newSSEFixture(t, mixmaster.StatusRunning, &Handler{})
	e := f.srv.Config.Handler
	for _, tc := range []struct {
		path, lastID string
		status       int
	}{
		{"/log/other/9", "", http.StatusNotFound},
		{"/log/ok/10", "", http.StatusNotFound},
		{"/log/ok", "", http.StatusNotFound},
		{"/log/ok/9", "x", http.StatusBadRequest},
		{"/log/ok/9", "-5", http.StatusBadRequest},
		{"/log/ok/9?offset=x", "", http.StatusBadRequest},
		{"/log/ok/9?offset=-1", "", http.StatusBadRequest},
	} {
		req := httptest.NewRequest(http.MethodGet, tc.path, nil)
		if tc.lastID != "" {
			req.Header.Set("Last-Event-ID", tc.lastID)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != tc.status {
			t.Errorf("%s (Last-Event-ID %q): status = %d, want %d", tc.path, tc.lastID, rec.Code, tc.status)
		}
	}
	if n := f.h.streams.Load(); n != 0 {
		t.Errorf("%d stream slots taken", n)
	}
}
