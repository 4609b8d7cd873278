package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

const (
	// maxWatch caps the job IDs one events stream watches: a page holds
	// at most pageSize of them.
	maxWatch = 200
	// settle is how long the events stream gathers wake-ups before it
	// reads the store, so a chatty build's log costs a read per interval,
	// not one per line.
	settle = 150 * time.Millisecond
	// newScan is how many of the newest jobs are looked at for new ones.
	newScan = 100
)

// jobEvent is what GET /events sends about a job.
type jobEvent struct {
	ID         mixmaster.JobID  `json:"id"`
	Status     mixmaster.Status `json:"status"`
	Project    string           `json:"project"`
	Label      string           `json:"label"`
	URL        string           `json:"url"`
	StartedAt  string           `json:"startedAt,omitempty"`
	FinishedAt string           `json:"finishedAt,omitempty"`
	Duration   string           `json:"duration,omitempty"`
	// New marks a job created after the page was rendered.
	New bool `json:"new,omitempty"`
}

// events handles GET /events?watch=<id>,…&after=<id>: a Server-Sent Event
// "job" whenever a watched job changes status, and one for each job newer
// than after (or than the newest job when the stream opened). Broker
// events only wake the stream, which then reads the jobs from the store:
// a subscriber may miss events, so a timer re-reads the watched jobs too.
func (h *Handler) events(c echo.Context) error {
	q := c.QueryParams()
	var watch []mixmaster.JobID
	for s := range strings.SplitSeq(q.Get("watch"), ",") {
		if s == "" {
			continue
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 || len(watch) == maxWatch {
			return mixmaster.Errorf(mixmaster.EINVALID, "watch must be at most %d job IDs.", maxWatch)
		}
		watch = append(watch, mixmaster.JobID(n))
	}
	var after mixmaster.JobID
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return mixmaster.Errorf(mixmaster.EINVALID, "after must be a job ID.")
		}
		after = mixmaster.JobID(n)
	}
	if h.streams.Add(1) > maxStreams {
		h.streams.Add(-1)
		return mixmaster.Errorf(mixmaster.EUNAVAILABLE, "Too many live pages are open; try again later.")
	}
	defer h.streams.Add(-1)

	ctx := c.Request().Context()
	// Subscribe before the first look so that no change slips in between.
	wake, unsubscribe := h.Events.Subscribe(0)
	defer unsubscribe()

	s := &jobStream{h: h, ctx: ctx, known: map[mixmaster.JobID]mixmaster.Status{}, newest: after}
	if q.Get("after") == "" {
		latest, err := h.Jobs.Jobs(ctx, mixmaster.JobFilter{Limit: 1})
		if err != nil {
			return err
		}
		if len(latest) > 0 {
			s.newest = latest[0].ID
		}
	}
	flush, err := startEventStream(c)
	if err != nil {
		return nil // the client is gone
	}
	s.w, s.flush = c.Response(), flush

	err = s.run(watch, wake)
	if err != nil && ctx.Err() == nil && !errors.Is(err, errClientGone) {
		h.logger().Warn("job events", "err", err)
	}
	return nil // the status line is sent; ending the body is all we can do
}

// errClientGone marks a write that failed, which is how a departed client
// usually shows.
var errClientGone = errors.New("client gone")

// jobStream is the state of one GET /events stream.
type jobStream struct {
	h      *Handler
	ctx    context.Context
	w      http.ResponseWriter
	flush  func() error
	buf    bytes.Buffer
	known  map[mixmaster.JobID]mixmaster.Status // the last status sent, per job
	newest mixmaster.JobID                      // jobs above it are new
}

func (s *jobStream) run(watch []mixmaster.JobID, wake <-chan mixmaster.Event) error {
	tickEvery, pingEvery := s.h.tickEvery, s.h.pingEvery
	if tickEvery <= 0 {
		tickEvery = 2 * time.Second
	}
	if pingEvery <= 0 {
		pingEvery = 15 * time.Second
	}
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()

	// The page's jobs may have moved on while it was on its way.
	for _, id := range watch {
		s.known[id] = ""
	}
	if err := s.check(watch); err != nil {
		return err
	}
	if err := s.scanNew(); err != nil {
		return err
	}

	pending := map[mixmaster.JobID]bool{}
	var settled <-chan time.Time
	for {
		select {
		case <-s.ctx.Done():
			return nil
		case ev, ok := <-wake:
			if !ok {
				wake = nil // shutting down: the timer alone keeps the page live
				continue
			}
			pending[ev.JobID] = true
			if settled == nil {
				settled = time.After(settle)
			}
		case <-settled:
			settled = nil
			var ids []mixmaster.JobID
			fresh := false
			for id := range pending {
				if id > s.newest {
					fresh = true
				} else if _, ok := s.known[id]; ok {
					ids = append(ids, id)
				}
			}
			clear(pending)
			if err := s.check(ids); err != nil {
				return err
			}
			if fresh {
				if err := s.scanNew(); err != nil {
					return err
				}
			}
		case <-tick.C:
			var ids []mixmaster.JobID
			for id, st := range s.known {
				if !st.Done() {
					ids = append(ids, id)
				}
			}
			if err := s.check(ids); err != nil {
				return err
			}
			if err := s.scanNew(); err != nil {
				return err
			}
		case <-ping.C:
			s.buf.WriteString(": ping\n\n")
			if err := s.send(); err != nil {
				return err
			}
		}
	}
}

// check reads the jobs ids and sends those whose status changed.
func (s *jobStream) check(ids []mixmaster.JobID) error {
	for _, id := range ids {
		j, err := s.h.Jobs.Job(s.ctx, id)
		if mixmaster.ErrorCode(err) == mixmaster.ENOTFOUND {
			delete(s.known, id)
			continue
		}
		if err != nil {
			return err
		}
		if s.known[id] != j.Status {
			s.event(j, false)
		}
	}
	return s.send()
}

// scanNew sends the jobs created since the last look, oldest first.
func (s *jobStream) scanNew() error {
	jobs, err := s.h.Jobs.Jobs(s.ctx, mixmaster.JobFilter{Limit: newScan})
	if err != nil {
		return err
	}
	top := s.newest
	for i := len(jobs) - 1; i >= 0; i-- {
		if j := jobs[i]; j.ID > s.newest {
			s.event(j, true)
			top = max(top, j.ID)
		}
	}
	s.newest = top
	return s.send()
}

// event formats one job event and records what the client now knows.
func (s *jobStream) event(j *mixmaster.Job, isNew bool) {
	s.known[j.ID] = j.Status
	ev := jobEvent{
		ID: j.ID, Status: j.Status, Project: j.Project, Label: jobLabel(j),
		URL: jobURL(j.Project, j.ID), New: isNew,
	}
	if !j.StartedAt.IsZero() {
		ev.StartedAt = j.StartedAt.UTC().Format(time.RFC3339Nano)
	}
	if !j.FinishedAt.IsZero() {
		ev.FinishedAt = j.FinishedAt.UTC().Format(time.RFC3339Nano)
		ev.Duration = formatDuration(j.Duration(j.FinishedAt))
	}
	data, _ := json.Marshal(ev) // plain values: cannot fail
	s.buf.WriteString("event: job\ndata: ")
	s.buf.Write(data) // JSON holds no newline
	s.buf.WriteString("\n\n")
}

// send writes what event and ping gathered.
func (s *jobStream) send() error {
	if s.buf.Len() == 0 {
		return nil
	}
	defer s.buf.Reset()
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return errClientGone
	}
	if err := s.flush(); err != nil {
		return errClientGone
	}
	return nil
}

// startEventStream sends the headers of an event stream and returns the
// function that pushes written bytes to the client.
func startEventStream(c echo.Context) (flush func() error, err error) {
	w := c.Response()
	rc := http.NewResponseController(w.Writer)
	flush = func() error {
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return nil
	}
	// A stream lasts as long as the page is open, beyond any write
	// timeout meant for ordinary replies.
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, err
	}
	hd := w.Header()
	hd.Set(echo.HeaderContentType, "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Accel-Buffering", "no") // nginx would otherwise hold events back
	w.WriteHeader(http.StatusOK)
	return flush, flush()
}
