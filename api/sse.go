package api

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

// DefaultMaxStreams caps the log streams open at once when
// Handler.MaxStreams is zero. Each holds a connection, a file and a
// subscription for as long as a build runs.
const DefaultMaxStreams = 256

// maxEventLine caps the bytes kept while waiting for the end of a line; a
// longer run without a newline is sent as it is. Log lines are far shorter.
const maxEventLine = 1 << 20

// streamLog handles GET /log/<project>/<id>: the job's log as Server-Sent
// Events, one event per line, whose id is the byte offset just past the
// line. A client that reconnects with Last-Event-ID resumes right after
// the last line it got; ?offset= starts a first connection at a byte
// offset, such as the end of the part of the log a page already shows. A
// job without a log yet is waited for. When the job is final and its whole
// log was sent, an "end" event carrying the final status closes the
// stream; EventSource clients should close on it, or they reconnect and
// get the "end" event again.
func (h *Handler) streamLog(c echo.Context) error {
	job, err := h.jobFromPath(c, "/log/")
	if err != nil {
		return err
	}
	// A page that shows the start of a log opens the stream at ?offset=,
	// since EventSource sends Last-Event-ID only when it reconnects; on a
	// reconnect the header, which is newer, wins.
	var offset int64
	from, at := "Last-Event-ID", c.Request().Header.Get("Last-Event-ID")
	if at == "" {
		from, at = "offset", c.QueryParam("offset")
	}
	if at != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(at), 10, 64)
		if err != nil || n < 0 {
			return mixmaster.Errorf(mixmaster.EINVALID, "%s must be a byte offset.", from)
		}
		offset = n
	}
	release, err := h.acquireStream()
	if err != nil {
		return err
	}
	defer release()
	flush, err := startStream(c, "text/event-stream")
	if err != nil {
		return nil // the client is gone
	}

	ctx := c.Request().Context()
	s := &sseWriter{w: c.Response(), flush: flush, off: offset}
	final, err := h.follow(ctx, job.ID, offset, s.lines, s.ping)
	if err == nil {
		err = s.end(final.Status)
	}
	h.followEnded(ctx, job.ID, err)
	return nil // the status line is sent; ending the body is all we can do
}

// sseWriter turns log bytes into events, one per complete line.
type sseWriter struct {
	w     io.Writer
	flush func() error
	off   int64  // the log offset just past the last line sent
	part  []byte // the start of a line whose end has not been read yet
	buf   bytes.Buffer
}

// lines sends every line that p completes, and keeps the rest for later.
func (s *sseWriter) lines(p []byte) error {
	s.buf.Reset()
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.part = append(s.part, p...)
			if len(s.part) > maxEventLine {
				s.event(s.part, len(s.part))
				s.part = s.part[:0]
			}
			break
		}
		line := p[:i]
		if len(s.part) > 0 {
			line = append(s.part, line...)
			s.part = s.part[:0]
		}
		s.event(line, len(line)+1)
		p = p[i+1:]
	}
	return s.send()
}

// event formats one line that spans n bytes of the log.
func (s *sseWriter) event(line []byte, n int) {
	s.off += int64(n)
	s.buf.WriteString("id: ")
	s.buf.WriteString(strconv.FormatInt(s.off, 10))
	s.buf.WriteByte('\n')
	// A CR also ends a field in SSE, so each CR-separated piece becomes a
	// data field of its own; the client joins them with newlines. A CR
	// in build output can then never smuggle in a field of its own.
	for piece := range bytes.SplitSeq(line, []byte{'\r'}) {
		s.buf.WriteString("data: ")
		s.buf.Write(piece)
		s.buf.WriteByte('\n')
	}
	s.buf.WriteByte('\n')
}

// end sends what is left of an unfinished last line, then the end event.
func (s *sseWriter) end(status mixmaster.Status) error {
	s.buf.Reset()
	if len(s.part) > 0 {
		s.event(s.part, len(s.part))
		s.part = s.part[:0]
	}
	s.buf.WriteString("event: end\ndata: ")
	s.buf.WriteString(string(status))
	s.buf.WriteString("\n\n")
	return s.send()
}

// ping keeps an idle connection open through proxies; clients ignore
// comments.
func (s *sseWriter) ping() error {
	s.buf.Reset()
	s.buf.WriteString(": ping\n\n")
	return s.send()
}

func (s *sseWriter) send() error {
	if s.buf.Len() == 0 {
		return nil
	}
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return err
	}
	return s.flush()
}

// acquireStream takes one of the MaxStreams log stream slots and returns
// the function that gives it back, or a 503 when none is free.
func (h *Handler) acquireStream() (release func(), err error) {
	limit := int64(h.MaxStreams)
	if limit <= 0 {
		limit = DefaultMaxStreams
	}
	if h.streams.Add(1) > limit {
		h.streams.Add(-1)
		return nil, mixmaster.Errorf(mixmaster.EUNAVAILABLE, "Too many log streams are open (limit %d); try again later.", limit)
	}
	return func() { h.streams.Add(-1) }, nil
}

// pingInterval is how often an idle event stream gets a comment.
func (h *Handler) pingInterval() time.Duration {
	if h.pingEvery > 0 {
		return h.pingEvery
	}
	return 15 * time.Second
}
