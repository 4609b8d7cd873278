package artifacts

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"mixmaster"
)

// The marks that start the text of each log line, after the time stamp.
const (
	markStatus  = '#'
	markCommand = '$'
	markStdout  = 'O'
	markStderr  = '!'
)

// TimeLayout is the UTC time stamp at the start of every log line. It has a
// fixed width, so the mark is always at byte len(TimeLayout)+1.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// flushSize is how much formatted text is gathered before it is written;
// one Write of many short lines then costs one system call, not one each.
const flushSize = 64 << 10

var errClosed = errors.New("log closed")

// fileLog is the mixmaster.Log that Files.Create returns. One mutex orders
// everything, so lines from stdout, stderr and status never interleave.
type fileLog struct {
	id     mixmaster.JobID
	events mixmaster.EventService
	now    func() time.Time
	limit  int64

	stdout, stderr *stream

	mu        sync.Mutex
	file      *os.File
	written   int64  // bytes in the file, including what was there at open
	pending   []byte // formatted lines not yet written
	truncated bool   // the limit was reached; output lines are dropped
	dropped   int64  // bytes of output dropped since
	err       error  // first write error; later writes are skipped
	closed    bool
}

// Status writes a status line. Without args, format is written as it is,
// so a message that holds a % sign needs no escaping. Each line of a
// multi-line message gets its own mark.
func (l *fileLog) Status(format string, args ...any) {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	l.writeText(markStatus, msg)
}

// Command writes the command about to run.
func (l *fileLog) Command(cmd string) {
	l.writeText(markCommand, cmd)
}

// Stdout returns the writer for the command's standard output.
func (l *fileLog) Stdout() io.Writer { return l.stdout }

// Stderr returns the writer for the command's standard error.
func (l *fileLog) Stderr() io.Writer { return l.stderr }

// writeText writes msg as one or more lines marked mark. Status and command
// lines ignore the limit: they are few, and they show how the job ended.
func (l *fileLog) writeText(mark byte, msg string) {
	msg = strings.TrimRight(msg, "\r\n")
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	before := l.written
	for line := range strings.SplitSeq(msg, "\n") {
		l.appendLine(mark, []byte(strings.TrimSuffix(line, "\r")))
	}
	l.flush()
	wrote := l.written > before
	l.mu.Unlock()
	l.publish(wrote)
}

// Close writes out partial output lines and a note about dropped output,
// then syncs and closes the file. It returns the first write error the log
// met. Calling Close again does nothing.
func (l *fileLog) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	before := l.written
	l.stdout.finish()
	l.stderr.finish()
	if l.dropped > 0 {
		l.appendLine(markStatus, fmt.Appendf(nil, "[log truncated: %d bytes of output dropped]", l.dropped))
	}
	l.flush()
	wrote := l.written > before
	err := l.err
	if serr := l.file.Sync(); serr != nil && err == nil {
		err = fmt.Errorf("sync log: %w", serr)
	}
	if cerr := l.file.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close log: %w", cerr)
	}
	l.mu.Unlock()
	l.publish(wrote)
	return err
}

// output handles one piece of command output. raw is how many input bytes
// it stands for, newline included, so that dropped output is counted
// exactly. l.mu is held.
func (l *fileLog) output(mark byte, text []byte, raw int) {
	if !l.truncated && l.written+int64(len(l.pending))+lineSize(text) > l.limit {
		l.truncated = true
		l.appendLine(markStatus, fmt.Appendf(nil, "[log truncated: output beyond %d bytes is dropped]", l.limit))
	}
	if l.truncated {
		l.dropped += int64(raw)
		return
	}
	l.appendLine(mark, text)
}

// lineSize is the size of text once formatted as a log line.
func lineSize(text []byte) int64 {
	return int64(len(TimeLayout) + 3 + len(text) + 1)
}

// appendLine formats text as log lines, splitting it into MaxLine pieces,
// and queues them. l.mu is held.
func (l *fileLog) appendLine(mark byte, text []byte) {
	ts := l.now().UTC()
	for {
		piece := text
		if len(piece) > MaxLine {
			piece = text[:cutPoint(text)]
		}
		l.pending = ts.AppendFormat(l.pending, TimeLayout)
		l.pending = append(l.pending, ' ', mark, ' ')
		l.pending = append(l.pending, piece...)
		l.pending = append(l.pending, '\n')
		if len(l.pending) >= flushSize {
			l.flush()
		}
		text = text[len(piece):]
		if len(text) == 0 {
			return
		}
	}
}

// cutPoint returns where to split text, which is longer than MaxLine: at
// MaxLine, moved back to the start of a UTF-8 sequence so that a character
// is not torn in two.
func cutPoint(text []byte) int {
	cut := MaxLine
	for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(text[cut]); i++ {
		cut--
	}
	if !utf8.RuneStart(text[cut]) {
		return MaxLine // not UTF-8 anyway
	}
	return cut
}

// flush writes the queued lines. After a write error nothing more is
// written: the error is kept for Close. l.mu is held.
func (l *fileLog) flush() {
	if len(l.pending) == 0 {
		return
	}
	if l.err == nil {
		n, err := l.file.Write(l.pending)
		l.written += int64(n)
		if err != nil {
			l.err = fmt.Errorf("write log: %w", err)
		}
	}
	l.pending = l.pending[:0]
}

// publish tells live viewers that the log grew. It runs without l.mu so
// that a subscriber reacting to the event can never wait on the writer.
func (l *fileLog) publish(wrote bool) {
	if wrote && l.events != nil {
		l.events.Publish(mixmaster.Event{JobID: l.id})
	}
}

// stream turns one output stream into lines. Each stream keeps its own
// partial line, so stdout and stderr can be written by separate goroutines
// without mixing their halves.
type stream struct {
	log     *fileLog
	mark    byte
	partial []byte // an unfinished line, at most MaxLine+2 bytes
}

// Write splits p into lines and logs the complete ones. It keeps the
// unfinished tail for the next Write. Output beyond the limit is dropped
// silently: the command must not fail because its log is full.
func (s *stream) Write(p []byte) (int, error) {
	l := s.log
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, errClosed
	}
	n := len(p)
	before := l.written
	for len(p) > 0 {
		// Never take more than fits in partial, so that a huge line is
		// handled in MaxLine pieces rather than copied whole. splitLong
		// keeps partial at MaxLine+1 bytes or less, so chunk is never empty.
		chunk := p[:min(len(p), MaxLine+2-len(s.partial))]
		if i := bytes.IndexByte(chunk, '\n'); i >= 0 {
			s.partial = append(s.partial, chunk[:i]...)
			raw := len(s.partial) + 1
			l.output(s.mark, bytes.TrimSuffix(s.partial, []byte{'\r'}), raw)
			s.partial = s.partial[:0]
			p = p[i+1:]
			continue
		}
		s.partial = append(s.partial, chunk...)
		p = p[len(chunk):]
		s.splitLong()
	}
	l.flush()
	wrote := l.written > before
	err := l.err
	l.mu.Unlock()
	l.publish(wrote)
	return n, err
}

// splitLong logs the first piece of a partial line that has grown past
// MaxLine. A lone \r just past MaxLine is kept back: it may be half of the
// \r\n that ends a line of exactly MaxLine bytes.
func (s *stream) splitLong() {
	if len(s.partial) <= MaxLine || (len(s.partial) == MaxLine+1 && s.partial[MaxLine] == '\r') {
		return
	}
	cut := cutPoint(s.partial)
	s.log.output(s.mark, s.partial[:cut], cut)
	s.partial = s.partial[:copy(s.partial, s.partial[cut:])]
}

// finish logs a final line that had no newline. l.mu is held.
func (s *stream) finish() {
	if len(s.partial) > 0 {
		s.log.output(s.mark, bytes.TrimSuffix(s.partial, []byte{'\r'}), len(s.partial))
		s.partial = nil
	}
}
