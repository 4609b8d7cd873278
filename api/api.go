package api

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

// DefaultBodyLimit caps request bodies when Handler.BodyLimit is zero. Gitea
// push payloads with many commits stay well below it.
const DefaultBodyLimit int64 = 1 << 20

// DefaultBodyTimeout bounds the arrival of a request body when
// Handler.BodyTimeout is zero. A megabyte takes well under a second on any
// link a forge uses; a client that trickles is holding a connection open.
const DefaultBodyTimeout = 30 * time.Second

// Handler serves the webhook endpoints and the JSON API. Its fields are set
// before Register is called and not changed afterwards.
type Handler struct {
	// Jobs is read through Job and Jobs only; the runner owns every change.
	Jobs mixmaster.JobStore
	// Submitter validates, routes and durably queues webhook builds.
	Submitter mixmaster.Submitter
	// Canceler stops queued and running jobs for the cancel route.
	Canceler mixmaster.Canceler
	// Rerunner queues a finished job again for the rerun route; without
	// it the route is absent.
	Rerunner mixmaster.Rerunner
	// Auth guards the routes that read and change jobs; nil lets every
	// request through. Its Identify middleware must run first, on the
	// whole server.
	Auth *Auth
	// Logs opens job logs for reading.
	Logs mixmaster.LogStore
	// Events wakes log followers; without it they only poll.
	Events mixmaster.EventService
	// Version is shown by GET /version.
	Version string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// BodyLimit caps POST bodies in bytes; zero means DefaultBodyLimit.
	BodyLimit int64
	// BodyTimeout is how long a POST body may take to arrive, from the
	// end of its headers; zero means DefaultBodyTimeout.
	BodyTimeout time.Duration

	// Backup writes a consistent copy of the database, for GET
	// /api/v1/backup; without it the route is absent.
	Backup func(w io.Writer) (int64, error)

	// Secrets returns the webhook secret of a project (its .secret, else
	// the global webhookSecret); "" means deliveries need no signature.
	Secrets func(project string) string

	// Artifacts accepts cached-artifact builds (POST /jobs) and says where
	// their files lie. Without it POST /jobs is not served.
	Artifacts mixmaster.ArtifactSubmitter
	// Metrics is served on GET /metrics; without it the route is absent.
	Metrics *Metrics
	// JobBodyLimit caps POST /jobs bodies in bytes; zero means
	// DefaultJobBodyLimit.
	JobBodyLimit int64
	// WriteTar streams a directory as a tar archive, for artifact
	// downloads; without it (or Artifacts) the download routes are absent.
	WriteTar func(w io.Writer, dir string) error
	// JobPage renders the HTML page of a job for GET /job/<project>/<id>;
	// nil means a small built-in page.
	JobPage func(c echo.Context, job *mixmaster.Job) error
	// MaxStreams caps the log streams open at once, SSE and followed plain
	// text together; zero means DefaultMaxStreams.
	MaxStreams int

	// streams counts the open log streams.
	streams atomic.Int64

	// pollEvery is how often a followed log is checked without an event;
	// zero means one second. Tests shorten it.
	pollEvery time.Duration
	// pingEvery is how often an idle event stream gets a keepalive
	// comment; zero means 15 seconds. Tests shorten it.
	pingEvery time.Duration
}

// Register adds every route of the handler to e.
func (h *Handler) Register(e *echo.Echo) {
	limit := h.limitBody(h.bodyLimit())
	read, write := h.requireRead(), h.requireWrite()

	// Webhooks, as the original Mixmaster bridge served them. The
	// handlers authorize each delivery themselves: by the project's
	// signature, which needs the body, else like any other write.
	e.POST("/", h.lightweight, limit)
	e.PUT("/", h.lightweight, limit)
	e.POST("/gitea", h.gitea, limit)
	e.GET("/version", h.version)

	// JSON API. The guard comes before the body limit, so that an
	// anonymous client is told to sign in rather than that its body is
	// too large.
	v1 := e.Group("/api/v1")
	v1.GET("/jobs", h.listJobs, read)
	v1.GET("/jobs/:id", h.getJob, read)
	v1.GET("/jobs/:id/log", h.jobLog, read)
	v1.POST("/jobs/:id/cancel", h.cancelJob, write, limit)
	if h.Rerunner != nil {
		v1.POST("/jobs/:id/rerun", h.rerunJob, write, limit)
	}
	if h.Artifacts != nil && h.WriteTar != nil {
		v1.GET("/jobs/:id/artifacts", h.artifacts, read)
	}
	if h.Backup != nil {
		// Every job's commands and params are in it: a write's guard.
		v1.GET("/backup", h.backup, write)
	}

	// mistry's API, for its client and its web view. The unchanged mistry
	// client sends no token: let it in through trustedNetworks.
	if h.Artifacts != nil {
		e.POST("/jobs", h.newArtifactJob, write, h.limitBody(h.jobBodyLimit()))
	}
	e.GET("/index", h.indexRedirect, read)
	e.GET("/index/*", h.index, read)
	e.GET("/job/*", h.showJob, read)
	e.GET("/log/*", h.streamLog, read)
	if h.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(h.Metrics.Handler()), read)
	}
}

// requireRead is Auth.RequireRead, or nothing without Auth.
func (h *Handler) requireRead() echo.MiddlewareFunc {
	if h.Auth == nil {
		return pass
	}
	return h.Auth.RequireRead()
}

// requireWrite is Auth.RequireWrite, or nothing without Auth.
func (h *Handler) requireWrite() echo.MiddlewareFunc {
	if h.Auth == nil {
		return pass
	}
	return h.Auth.RequireWrite()
}

// pass is middleware that does nothing.
func pass(next echo.HandlerFunc) echo.HandlerFunc { return next }

// rerunJob handles POST /api/v1/jobs/:id/rerun: it queues a finished job
// again and answers 202 with the new job.
func (h *Handler) rerunJob(c echo.Context) error {
	id, err := jobID(c)
	if err != nil {
		return err
	}
	job, err := h.Rerunner.Rerun(c.Request().Context(), id, mixmaster.TriggerAPI)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, shown(job))
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

func (h *Handler) bodyLimit() int64 {
	if h.BodyLimit > 0 {
		return h.BodyLimit
	}
	return DefaultBodyLimit
}

// limitBody refuses bodies over limit bytes: at once when Content-Length
// says so, and while reading otherwise (chunked bodies have no length). It
// also bounds the time the body may take to arrive. The server has no
// ReadTimeout, since that would also cut the log streams, so this read
// deadline is what stops a client that trickles its body; readBody lifts
// it once the body is in.
func (h *Handler) limitBody(limit int64) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if r.ContentLength > limit {
				// Else the server would read on through the body it
				// refuses, for as long as the client trickles it.
				_ = setReadDeadline(c, time.Now())
				return tooLarge(limit)
			}
			if err := setReadDeadline(c, time.Now().Add(h.bodyTimeout())); err != nil {
				return fmt.Errorf("bound body read: %w", err)
			}
			r.Body = http.MaxBytesReader(c.Response(), r.Body, limit)
			return next(c)
		}
	}
}

func (h *Handler) bodyTimeout() time.Duration {
	if h.BodyTimeout > 0 {
		return h.BodyTimeout
	}
	return DefaultBodyTimeout
}

// setReadDeadline sets the read deadline of the request's connection;
// writers without one (tests' recorders) need none.
func setReadDeadline(c echo.Context, t time.Time) error {
	err := http.NewResponseController(c.Response().Writer).SetReadDeadline(t)
	if errors.Is(err, http.ErrNotSupported) {
		return nil
	}
	return err
}

func tooLarge(limit int64) error {
	return mixmaster.Errorf(mixmaster.ETOOLARGE, "Request body too large (limit %d bytes).", limit)
}

// readBody reads the whole request body, which limitBody has bounded in
// size and time. Once it is in, the deadline is lifted, so that a handler
// that then waits long (for a build, say) keeps its connection whatever
// the server does with deadlines of its own.
func readBody(c echo.Context) ([]byte, error) {
	b, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(mbe.Limit)
		}
		var he *echo.HTTPError
		if errors.As(err, &he) {
			return nil, he
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, mixmaster.Errorf(mixmaster.ETIMEOUT, "The request body did not arrive in time.")
		}
		// Almost always a client that hung up mid-body.
		return nil, mixmaster.Errorf(mixmaster.EINVALID, "Could not read the request body.")
	}
	if err := setReadDeadline(c, time.Time{}); err != nil {
		return nil, fmt.Errorf("lift body deadline: %w", err)
	}
	return b, nil
}

func (h *Handler) version(c echo.Context) error {
	v := h.Version
	if v == "" {
		v = "dev"
	}
	return c.String(http.StatusOK, "mixmaster "+v+"\n")
}

// accepted is the reply to a queued (or already queued) build.
type accepted struct {
	ID  mixmaster.JobID `json:"id"`
	URL string          `json:"url"`
}

// submit queues r and answers 202, or 200 when the delivery was a repeat
// and the earlier job is returned instead.
func (h *Handler) submit(c echo.Context, r mixmaster.Request) error {
	job, created, err := h.Submitter.Submit(c.Request().Context(), r)
	if err != nil {
		return fmt.Errorf("submit %s: %w", r.Trigger, err)
	}
	status := http.StatusAccepted
	if !created {
		status = http.StatusOK
	}
	return c.JSON(status, accepted{ID: job.ID, URL: jobURL(c.Scheme(), c.Request().Host, job.Project, job.ID)})
}

// jobURL is the absolute address of a job's page.
func jobURL(scheme, host, project string, id mixmaster.JobID) string {
	return scheme + "://" + host + "/" + jobPath(project, id)
}
