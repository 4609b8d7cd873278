package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

const textPlain = "text/plain; charset=utf-8"

// jobLog handles GET /api/v1/jobs/:id/log[?follow=1][&color=1]: the log
// as plain text, either as it is now or followed until the job is over.
// Build output is meant for a terminal and may hold sequences that drive
// it (move the cursor, set the title, plant links): they are dropped, and
// so are colours unless color=1 asks for them.
func (h *Handler) jobLog(c echo.Context) error {
	id, err := jobID(c)
	if err != nil {
		return err
	}
	follow, err := boolParam(c, "follow")
	if err != nil {
		return err
	}
	color, err := boolParam(c, "color")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	// Asking the store first makes an unknown job a 404 rather than an
	// empty log, and tells a queued job (no log yet) apart from it.
	if _, err := h.Jobs.Job(ctx, id); err != nil {
		return err
	}
	if follow {
		return h.followLog(c, id, color)
	}

	f, err := h.Logs.Open(id)
	if mixmaster.ErrorCode(err) == mixmaster.ENOTFOUND {
		return c.Blob(http.StatusOK, textPlain, nil)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, textPlain)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	tw := mixmaster.NewTerminalWriter(w, color)
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("send log: %w", err)
	}
	return tw.Close()
}

// boolParam reads an optional boolean query parameter.
func boolParam(c echo.Context, name string) (bool, error) {
	s := c.QueryParam(name)
	if s == "" {
		return false, nil
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		return false, mixmaster.Errorf(mixmaster.EINVALID, "%s must be 1, 0, true or false.", name)
	}
	return v, nil
}

// followLog streams the log of job id as plain text, made safe for a
// terminal: what exists, then whatever is appended, until the job is
// final and everything has been sent.
func (h *Handler) followLog(c echo.Context, id mixmaster.JobID, color bool) error {
	release, err := h.acquireStream()
	if err != nil {
		return err
	}
	defer release()
	flush, err := startStream(c, textPlain)
	if err != nil {
		return nil // the client is gone
	}
	ctx := c.Request().Context()
	tw := mixmaster.NewTerminalWriter(c.Response(), color)
	_, err = h.follow(ctx, id, 0, func(p []byte) error {
		if _, err := tw.Write(p); err != nil {
			return err
		}
		return flush()
	}, nil)
	if err == nil {
		if err = tw.Close(); err == nil {
			err = flush()
		}
		if err != nil {
			err = fmt.Errorf("%w: %w", errWrite, err)
		}
	}
	h.followEnded(ctx, id, err)
	return nil // the status line is sent; ending the body is all we can do
}

// startStream sends the headers of a reply that lasts as long as a build
// and returns the function that pushes written bytes to the client.
func startStream(c echo.Context, contentType string) (flush func() error, err error) {
	w := c.Response()
	// The controller wraps echo's writer, not echo's Response: Response.Flush
	// panics when flushing is unsupported, the writer reports it instead.
	rc := http.NewResponseController(w.Writer)
	flush = func() error {
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return nil
	}
	// The server's write timeout suits ordinary replies, not a stream that
	// lasts as long as a build. Writers without deadlines are fine too.
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, err
	}
	w.Header().Set(echo.HeaderContentType, contentType)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Accel-Buffering", "no") // nginx would otherwise hold the stream back
	w.WriteHeader(http.StatusOK)
	return flush, flush()
}

// errWrite marks a follow that ended because the client could not be
// written to, which is how a departed client usually shows.
var errWrite = errors.New("write to client")

// follow reads the log of job id from byte offset on and hands what it
// reads to send, until the job is final and its whole log has been read
// (it then returns the final job), ctx ends, or send or ping fail. It
// wakes on job events and also polls, because a subscriber may miss
// events and the log of a queued job appears without one. ping, when not
// nil, is called every pingInterval to keep idle connections open.
//
// The job's status is read before each drain of the file. The runner closes
// the log before it records a final status, so once a drain that began
// after a final status reaches the end of the file, nothing is left.
func (h *Handler) follow(ctx context.Context, id mixmaster.JobID, offset int64, send func([]byte) error, ping func() error) (*mixmaster.Job, error) {
	// Subscribe before the first look so no change slips in between.
	// Without an event service, polling alone still gets there.
	var events <-chan mixmaster.Event
	if h.Events != nil {
		var unsubscribe func()
		events, unsubscribe = h.Events.Subscribe(id)
		defer unsubscribe()
	}
	poll := time.NewTicker(h.pollInterval())
	defer poll.Stop()
	var pings <-chan time.Time
	if ping != nil {
		t := time.NewTicker(h.pingInterval())
		defer t.Stop()
		pings = t.C
	}

	var f io.ReadSeekCloser
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		job, err := h.Jobs.Job(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("read job: %w", err)
		}
		if f == nil {
			if f, err = h.openLogAt(id, offset); err != nil {
				return nil, err
			}
		}
		// The file keeps its offset, so each drain reads only what is new.
		for f != nil {
			n, err := f.Read(buf)
			if n > 0 {
				if err := send(buf[:n]); err != nil {
					return nil, fmt.Errorf("%w: %w", errWrite, err)
				}
			}
			if err == io.EOF || n == 0 && err == nil {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("read log: %w", err)
			}
		}
		if job.Status.Done() {
			return job, nil
		}

		for woke := false; !woke; {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case _, ok := <-events:
				if !ok {
					// A closed subscription (shutdown) leaves only polling.
					events = nil
					continue
				}
				woke = true
			case <-poll.C:
				woke = true
			case <-pings:
				if err := ping(); err != nil {
					return nil, fmt.Errorf("%w: %w", errWrite, err)
				}
			}
		}
	}
}

// openLogAt opens the log of job id at offset; nil, nil when the job has
// no log yet.
func (h *Handler) openLogAt(id mixmaster.JobID, offset int64) (io.ReadSeekCloser, error) {
	f, err := h.Logs.Open(id)
	if mixmaster.ErrorCode(err) == mixmaster.ENOTFOUND {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("seek log: %w", err)
		}
	}
	return f, nil
}

// followEnded logs why a follow ended, unless the client simply left.
func (h *Handler) followEnded(ctx context.Context, id mixmaster.JobID, err error) {
	switch {
	case err == nil:
	case ctx.Err() != nil || errors.Is(err, errWrite):
		h.logger().Debug("follow log: client gone", "job_id", id, "err", err)
	default:
		h.logger().Warn("follow log", "job_id", id, "err", err)
	}
}

func (h *Handler) pollInterval() time.Duration {
	if h.pollEvery > 0 {
		return h.pollEvery
	}
	return time.Second
}
