package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

const textPlain = "text/plain; charset=utf-8"

// jobLog handles GET /api/v1/jobs/:id/log[?follow=1]: the log as plain
// text, either as it is now or followed until the job is over.
func (h *Handler) jobLog(c echo.Context) error {
	id, err := jobID(c)
	if err != nil {
		return err
	}
	follow := false
	if s := c.QueryParam("follow"); s != "" {
		if follow, err = strconv.ParseBool(s); err != nil {
			return mixmaster.Errorf(mixmaster.EINVALID, "follow must be 1, 0, true or false.")
		}
	}
	ctx := c.Request().Context()
	// Asking the store first makes an unknown job a 404 rather than an
	// empty log, and tells a queued job (no log yet) apart from it.
	if _, err := h.Jobs.Job(ctx, id); err != nil {
		return err
	}
	if follow {
		return h.followLog(c, id)
	}

	f, err := h.Logs.Open(id)
	if mixmaster.ErrorCode(err) == mixmaster.ENOTFOUND {
		return c.Blob(http.StatusOK, textPlain, nil)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	c.Response().Header().Set("X-Content-Type-Options", "nosniff")
	return c.Stream(http.StatusOK, textPlain, f)
}

// followLog streams the log of job id: what exists, then whatever is
// appended, until the job is final and everything has been sent. It wakes
// on job events and also polls, because a subscriber may miss events and
// the log of a queued job appears without one.
//
// The job's status is read before each drain of the file. The runner closes
// the log before it records a final status, so once a drain that began
// after a final status reaches the end of the file, nothing is left.
func (h *Handler) followLog(c echo.Context, id mixmaster.JobID) error {
	ctx := c.Request().Context()
	// Subscribe before the first look so no change slips in between.
	// Without an event service, polling alone still gets there.
	var events <-chan mixmaster.Event
	if h.Events != nil {
		var unsubscribe func()
		events, unsubscribe = h.Events.Subscribe(id)
		defer unsubscribe()
	}

	w := c.Response()
	// The controller wraps echo's writer, not echo's Response: Response.Flush
	// panics when flushing is unsupported, the writer reports it instead.
	rc := http.NewResponseController(w.Writer)
	flush := func() error {
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return nil
	}
	// The server's write timeout suits ordinary replies, not a stream that
	// lasts as long as a build. Writers without deadlines are fine too.
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	w.Header().Set(echo.HeaderContentType, textPlain)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Accel-Buffering", "no") // nginx would otherwise hold the stream back
	w.WriteHeader(http.StatusOK)
	if err := flush(); err != nil {
		return nil // the client is gone
	}

	poll := time.NewTicker(h.pollInterval())
	defer poll.Stop()
	var f io.ReadSeekCloser
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for {
		job, err := h.Jobs.Job(ctx, id)
		if err != nil {
			if ctx.Err() == nil {
				h.logger().Warn("follow log: read job", "job_id", id, "err", err)
			}
			return nil // the status line is sent; ending the body is all we can do
		}
		if f == nil {
			f, err = h.Logs.Open(id)
			if err != nil {
				f = nil
				if mixmaster.ErrorCode(err) != mixmaster.ENOTFOUND {
					h.logger().Warn("follow log: open", "job_id", id, "err", err)
					return nil
				}
			}
		}
		if f != nil {
			// The file keeps its offset, so each copy sends only what is new.
			n, err := io.Copy(w, f)
			if n > 0 {
				if ferr := flush(); ferr != nil {
					return nil
				}
			}
			if err != nil {
				if ctx.Err() == nil {
					h.logger().Debug("follow log: copy", "job_id", id, "err", err)
				}
				return nil
			}
		}
		if job.Status.Done() {
			return nil
		}
		if !wait(ctx, events, poll.C) {
			return nil
		}
	}
}

// wait blocks until an event, a tick or the end of ctx, and reports
// whether to go on.
func wait(ctx context.Context, events <-chan mixmaster.Event, tick <-chan time.Time) bool {
	select {
	case <-ctx.Done():
		return false
	case _, ok := <-events:
		if !ok {
			// A closed subscription (shutdown) leaves only polling.
			select {
			case <-ctx.Done():
				return false
			case <-tick:
			}
		}
	case <-tick:
	}
	return true
}

func (h *Handler) pollInterval() time.Duration {
	if h.pollEvery > 0 {
		return h.pollEvery
	}
	return time.Second
}
