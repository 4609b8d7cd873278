package webui

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"mixmaster"
)

// openEvents connects to GET /events and returns its job events.
func openEvents(t *testing.T, srv *httptest.Server, query string) <-chan jobEvent {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/events"+query, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" ||
		resp.Header.Get("X-Accel-Buffering") != "no" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	ch := make(chan jobEvent, 100)
	go func() {
		defer close(ch)
		r := bufio.NewReader(resp.Body)
		var name string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case strings.HasPrefix(line, "event: "):
				name = line[len("event: "):]
			case strings.HasPrefix(line, "data: ") && name == "job":
				var ev jobEvent
				if err := json.Unmarshal([]byte(line[len("data: "):]), &ev); err != nil {
					t.Errorf("bad event %q: %v", line, err)
					return
				}
				ch <- ev
			case line == "":
				name = ""
			}
		}
	}()
	return ch
}

func nextEvent(t *testing.T, ch <-chan jobEvent) jobEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return jobEvent{}
}

func TestEvents(t *testing.T) {
	f := newFixture(t, func(h *Handler) { h.tickEvery = time.Hour })
	srv := httptest.NewServer(f.e)
	t.Cleanup(srv.Close)
	f.create(&mixmaster.Job{Project: "demo/hello", Target: "master"})                         // 1
	f.run(&mixmaster.Job{Project: "demo/hello", Target: "master"}, mixmaster.StatusSucceeded) // 2

	ch := openEvents(t, srv, "?watch=1&after=2")
	// The watched job as it is now.
	if ev := nextEvent(t, ch); ev.ID != 1 || ev.Status != mixmaster.StatusQueued || ev.New {
		t.Fatalf("first event = %+v", ev)
	}
	f.start(1)
	ev := nextEvent(t, ch)
	if ev.ID != 1 || ev.Status != mixmaster.StatusRunning || ev.StartedAt == "" || ev.URL != "/job/demo/hello/1" {
		t.Fatalf("start event = %+v", ev)
	}
	// Log lines wake the stream but change no status: nothing is sent.
	f.broker.Publish(mixmaster.Event{JobID: 1})
	f.broker.Publish(mixmaster.Event{JobID: 2})
	// A new job is announced.
	f.create(&mixmaster.Job{Project: "demo/hello", Target: "master", Task: "test"})
	f.broker.Publish(mixmaster.Event{JobID: 3, Status: mixmaster.StatusQueued})
	if ev := nextEvent(t, ch); ev.ID != 3 || !ev.New || ev.Label != "master · test" || ev.Project != "demo/hello" {
		t.Fatalf("new job event = %+v", ev)
	}
	f.finish(1, mixmaster.StatusFailed, 2)
	if ev := nextEvent(t, ch); ev.ID != 1 || ev.Status != mixmaster.StatusFailed || ev.FinishedAt == "" || ev.Duration != "2.0s" {
		t.Fatalf("finish event = %+v", ev)
	}
}

// Events may be dropped; the timer catches up with the store.
func TestEventsWithoutWakeUps(t *testing.T) {
	f := newFixture(t, func(h *Handler) { h.tickEvery = 20 * time.Millisecond })
	srv := httptest.NewServer(f.e)
	t.Cleanup(srv.Close)
	f.create(&mixmaster.Job{Project: "demo/hello", Target: "master"})

	ch := openEvents(t, srv, "?watch=1") // no after: new means newer than job 1
	if ev := nextEvent(t, ch); ev.ID != 1 || ev.Status != mixmaster.StatusQueued {
		t.Fatalf("first event = %+v", ev)
	}
	if _, err := f.db.Claim(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, ch); ev.ID != 1 || ev.Status != mixmaster.StatusRunning {
		t.Fatalf("event = %+v", ev)
	}
	f.create(&mixmaster.Job{Project: "demo/hello", Target: "master"})
	if ev := nextEvent(t, ch); ev.ID != 2 || !ev.New {
		t.Fatalf("event = %+v", ev)
	}
}

func TestEventsRefused(t *testing.T) {
	f := newFixture(t)
	for _, q := range []string{"?watch=x", "?watch=0", "?after=x", "?watch=" + strings.Repeat("1,", maxWatch+1)} {
		if rec := f.get("/events" + q); rec.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d", q, rec.Code)
		}
	}
	f.h.streams.Store(maxStreams)
	if rec := f.get("/events"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("over the limit: status %d", rec.Code)
	}
}
