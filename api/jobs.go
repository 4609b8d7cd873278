package api

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

// Page sizes for GET /api/v1/jobs.
const (
	defaultPageSize = 50
	maxPageSize     = 500
)

// jobList is a page of jobs, newest first. Next, when set, is the cursor
// for the following page: pass it as ?before=.
type jobList struct {
	Jobs []*mixmaster.Job `json:"jobs"`
	Next mixmaster.JobID  `json:"next,omitempty"`
}

// listJobs handles GET /api/v1/jobs?project=&status=&before=&limit=.
func (h *Handler) listJobs(c echo.Context) error {
	f := mixmaster.JobFilter{Project: c.QueryParam("project"), Limit: defaultPageSize}
	if s := c.QueryParam("status"); s != "" {
		f.Status = mixmaster.Status(s)
		if !f.Status.Valid() {
			return mixmaster.Errorf(mixmaster.EINVALID, "Unknown status '%s'.", printable(s))
		}
	}
	if s := c.QueryParam("before"); s != "" {
		id, err := strconv.ParseUint(s, 10, 64)
		if err != nil || id == 0 {
			return mixmaster.Errorf(mixmaster.EINVALID, "before must be a job id.")
		}
		f.Before = mixmaster.JobID(id)
	}
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPageSize {
			return mixmaster.Errorf(mixmaster.EINVALID, "limit must be a number from 1 to %d.", maxPageSize)
		}
		f.Limit = n
	}

	jobs, err := h.Jobs.Jobs(c.Request().Context(), f)
	if err != nil {
		return err
	}
	page := jobList{Jobs: make([]*mixmaster.Job, len(jobs))} // [] rather than null for clients
	for i, j := range jobs {
		page.Jobs[i] = shown(j)
	}
	// A full page may have a successor; a short one certainly has not.
	if len(jobs) == f.Limit {
		page.Next = jobs[len(jobs)-1].ID
	}
	return c.JSON(http.StatusOK, page)
}

// getJob handles GET /api/v1/jobs/:id.
func (h *Handler) getJob(c echo.Context) error {
	job, err := h.job(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, shown(job))
}

// shown is the copy of a job that a reply carries: a clone URL may hold
// a token or a password (https://user:secret@host/…), which is hidden.
// Every reply about a job goes through it.
func shown(job *mixmaster.Job) *mixmaster.Job {
	if job == nil {
		return nil
	}
	c := *job
	c.RepositoryURL = mixmaster.RedactURL(job.RepositoryURL)
	return &c
}

// job reads the job the :id route parameter names.
func (h *Handler) job(c echo.Context) (*mixmaster.Job, error) {
	id, err := jobID(c)
	if err != nil {
		return nil, err
	}
	return h.Jobs.Job(c.Request().Context(), id)
}

// cancelJob handles POST /api/v1/jobs/:id/cancel. It answers 200 with the
// job when the job is already final (a queued job is canceled at once), and
// 202 with the job when it is still running: the runner has been told to
// stop it and records the outcome when the command has exited.
func (h *Handler) cancelJob(c echo.Context) error {
	id, err := jobID(c)
	if err != nil {
		return err
	}
	job, err := h.Canceler.Cancel(c.Request().Context(), id)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if !job.Status.Done() {
		status = http.StatusAccepted
	}
	return c.JSON(status, shown(job))
}

// jobID parses the :id route parameter.
func jobID(c echo.Context) (mixmaster.JobID, error) {
	id, err := strconv.ParseUint(c.Param("id"), 10, 64)
	if err != nil || id == 0 {
		return 0, mixmaster.Errorf(mixmaster.EINVALID, "Invalid job id '%s'.", printable(c.Param("id")))
	}
	return mixmaster.JobID(id), nil
}

// backup handles GET /api/v1/backup: a hot, consistent copy of the
// database, streamed while the service keeps running.
func (h *Handler) backup(c echo.Context) error {
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "application/octet-stream")
	w.Header().Set(echo.HeaderContentDisposition, `attachment; filename="mixmaster.db"`)
	w.WriteHeader(http.StatusOK)
	if _, err := h.Backup(w); err != nil {
		// The status is out: cut the stream so the client sees it short.
		h.logger().Error("backup", "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}
