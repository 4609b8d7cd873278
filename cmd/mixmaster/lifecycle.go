package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/labstack/echo/v4"
)

// How the service stops. The unit's TimeoutStopSec (60 s) must stay longer
// than the grace, the executors' kill grace and the drain together, or
// systemd kills what it should have let finish.
const (
	// defaultShutdownGrace is how long running jobs may finish after
	// SIGTERM before they are stopped and left to be rerun.
	defaultShutdownGrace = 30 * time.Second
	// httpDrain is how long requests still open when the jobs are done
	// (live logs of stopped jobs, mostly) may go on before their
	// connections are cut.
	httpDrain = 5 * time.Second
)

// lifecycle is the part of Main that knows when the service was last
// used and stops its HTTP server in two steps.
type lifecycle struct {
	mu       sync.Mutex
	inFlight int       // requests being served
	last     time.Time // when something last happened

	stopOnce   sync.Once
	httpDone   chan struct{} // closed once every request has ended
	stopCancel context.CancelFunc
	endOnce    sync.Once
	httpErr    error // what Serve returned, other than ErrServerClosed
}

// trackActivity returns middleware that counts the requests under way and
// records when one last began or ended, for idle exit.
func (m *Main) trackActivity() echo.MiddlewareFunc {
	l := &m.life
	l.mu.Lock()
	l.last = time.Now()
	l.mu.Unlock()
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			l.mu.Lock()
			l.inFlight++
			l.last = time.Now()
			l.mu.Unlock()
			defer func() {
				l.mu.Lock()
				l.inFlight--
				l.last = time.Now()
				l.mu.Unlock()
			}()
			return next(c)
		}
	}
}

// jobsBusy reports whether a job is queued or running. The queue is read
// first: a job moves from the queue to the runner, never back, so it
// cannot slip between the two reads.
func (m *Main) jobsBusy(ctx context.Context) bool {
	n, err := m.DB.QueueLen(ctx)
	return err != nil || n > 0 || m.Runner.Running() > 0
}

// idleFor returns how long no request has been under way and no job
// queued or running.
func (m *Main) idleFor(ctx context.Context) time.Duration {
	busy := m.jobsBusy(ctx)
	l := &m.life
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if busy || l.inFlight > 0 {
		l.last = now
	}
	return now.Sub(l.last)
}

// serveUntilDone tells systemd that the service is ready (Open has
// recovered the jobs and serves the listener), then runs until ctx ends
// (SIGTERM, SIGINT) or, with idle > 0, until it has been idle that long,
// and stops the service. Idle, it exits cleanly: with socket activation
// systemd holds the socket and starts it again on the next connection.
func (m *Main) serveUntilDone(ctx context.Context, idle time.Duration) error {
	sdNotify(m.Logger, daemon.SdNotifyReady)
	var tick <-chan time.Time
	if idle > 0 {
		m.Logger.Info("stopping when idle", "idle_exit", idle)
		t := time.NewTicker(min(max(idle/10, 10*time.Millisecond), time.Second))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			m.Logger.Info("stopping")
			sdNotify(m.Logger, daemon.SdNotifyStopping)
			return m.Close()
		case <-tick:
			if m.idleFor(ctx) < idle {
				continue
			}
			m.Logger.Info("idle: stopping", "idle_exit", idle)
			sdNotify(m.Logger, daemon.SdNotifyStopping)
			return m.stopIdle(ctx)
		}
	}
}

// stopIdle stops an idle service. A request can still arrive between
// the idle check and the listener's closing; it is served, and a job it
// queued runs before the exit: nothing would start the service for it
// afterwards.
func (m *Main) stopIdle(ctx context.Context) error {
	m.beginHTTPStop()
	quiet := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		if m.jobsBusy(ctx) {
			quiet = time.Now()
		} else if m.httpStopped() || time.Since(quiet) > httpDrain {
			break
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	return m.Close()
}

// beginHTTPStop closes the listener and lets the requests under way go on.
// It may be called more than once.
func (m *Main) beginHTTPStop() {
	l := &m.life
	l.stopOnce.Do(func() {
		l.httpDone = make(chan struct{})
		if m.server == nil {
			close(l.httpDone)
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		l.stopCancel = cancel
		go func() {
			// Shutdown's error only says it was cut short.
			m.server.Shutdown(ctx)
			close(l.httpDone)
		}()
	})
}

// httpStopped reports whether every request has ended since
// beginHTTPStop.
func (m *Main) httpStopped() bool {
	select {
	case <-m.life.httpDone:
		return true
	default:
		return false
	}
}

// endHTTPStop waits up to wait for the requests under way, then cuts the
// connections still open, and returns the server's own error, if any.
func (m *Main) endHTTPStop(wait time.Duration) error {
	m.beginHTTPStop()
	if m.server == nil {
		return nil
	}
	l := &m.life
	l.endOnce.Do(func() {
		select {
		case <-l.httpDone:
		case <-time.After(wait):
			m.Logger.Warn("cutting requests still open", "after", wait)
			l.stopCancel()
			m.server.Close()
			<-l.httpDone
		}
		l.stopCancel()
		if err := <-m.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.httpErr = err
		}
	})
	return l.httpErr
}

// grace is how long Close lets running jobs finish.
func (m *Main) grace() time.Duration {
	if m.Grace > 0 {
		return m.Grace
	}
	return defaultShutdownGrace
}

// sdNotify sends state to systemd when it started the service with
// NOTIFY_SOCKET (Type=notify); elsewhere it does nothing. STOPPING=1 is the
// last message, so it also removes NOTIFY_SOCKET from the environment.
func sdNotify(logger *slog.Logger, state string) {
	if _, err := daemon.SdNotify(state == daemon.SdNotifyStopping, state); err != nil {
		logger.Warn("tell systemd", "state", state, "err", err)
	}
}
