package webui

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

// jobList is a table of jobs that stays live: its rows are watched over
// GET /events.
type jobList struct {
	Rows []jobRow
	// Events is the stream that updates the rows, "" without one.
	Events string
	// Project and Status filter the new jobs the page announces.
	Project string
	Status  mixmaster.Status
	// Announce says whether new jobs are worth announcing: only on the
	// first page.
	Announce bool
	// Empty is what an empty table says.
	Empty string
	// HideProject leaves out the project column, for lists of one
	// project.
	HideProject bool
}

// dashboardData is the body of GET /.
type dashboardData struct {
	List     jobList
	Projects []string
	Statuses []mixmaster.Status
	Project  string
	Status   mixmaster.Status
	Older    string // the next page, "" on the last
	Newest   string // the first page, "" when on it
	Filtered bool
}

// dashboard handles GET /?project=&status=&before=: every job, newest
// first, a page at a time. Pages are cut with the store's cursors, so a
// page deep in a large store costs no more than the first.
func (h *Handler) dashboard(c echo.Context) error {
	p := h.newPage(c, "Jobs", "jobs")
	q := c.QueryParams()
	d := &dashboardData{Project: q.Get("project"), Statuses: mixmaster.Statuses}
	f := mixmaster.JobFilter{Project: d.Project, Limit: pageSize + 1}
	status := http.StatusOK
	if s := q.Get("status"); s != "" {
		if mixmaster.Status(s).Valid() {
			d.Status, f.Status = mixmaster.Status(s), mixmaster.Status(s)
		} else {
			p.Error, status = "Unknown status; showing every status.", http.StatusBadRequest
		}
	}
	if s := q.Get("before"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			p.Error, status = "The page address is not valid; showing the newest jobs.", http.StatusBadRequest
		} else {
			f.Before = mixmaster.JobID(n)
		}
	}
	d.Filtered = f.Project != "" || f.Status != ""

	ctx := c.Request().Context()
	jobs, err := h.Jobs.Jobs(ctx, f)
	if err != nil {
		return err
	}
	if len(jobs) > pageSize {
		jobs = jobs[:pageSize]
		d.Older = listURL(d.Project, d.Status, jobs[len(jobs)-1].ID)
	}
	if f.Before != 0 {
		d.Newest = listURL(d.Project, d.Status, 0)
	}
	d.List = h.newJobList(jobs, d.Project, d.Status, f.Before == 0)
	switch {
	case d.Filtered:
		d.List.Empty = "No jobs match these filters."
	case f.Before != 0:
		d.List.Empty = "No older jobs."
	default:
		d.List.Empty = "No jobs yet. Start one from a project's page."
	}

	for _, info := range h.catalog() {
		d.Projects = append(d.Projects, info.Name)
	}
	if d.Project != "" && !slices.Contains(d.Projects, d.Project) {
		d.Projects = append(d.Projects, d.Project) // a project since removed from the config
	}
	p.Data = d
	return h.render(c, status, "dashboard", p)
}

// newJobList builds the rows of a live job table.
func (h *Handler) newJobList(jobs []*mixmaster.Job, project string, status mixmaster.Status, first bool) jobList {
	now := h.clock()
	l := jobList{Rows: make([]jobRow, len(jobs)), Project: project, Status: status, Announce: first, HideProject: project != ""}
	var watch []string
	var newest mixmaster.JobID
	for i, j := range jobs {
		l.Rows[i] = newJobRow(j, now)
		if !j.Status.Done() {
			watch = append(watch, j.ID.String())
		}
		newest = max(newest, j.ID)
	}
	if h.Events != nil {
		v := url.Values{}
		if len(watch) > 0 {
			v.Set("watch", strings.Join(watch, ","))
		}
		if first {
			v.Set("after", newest.String())
		}
		l.Events = "/events"
		if len(v) > 0 {
			l.Events += "?" + v.Encode()
		}
	}
	return l
}

// listURL is a page of the dashboard.
func listURL(project string, status mixmaster.Status, before mixmaster.JobID) string {
	v := url.Values{}
	if project != "" {
		v.Set("project", project)
	}
	if status != "" {
		v.Set("status", string(status))
	}
	if before != 0 {
		v.Set("before", before.String())
	}
	if len(v) == 0 {
		return "/"
	}
	return "/?" + v.Encode()
}

// catalog lists the configured projects; none without a Catalog.
func (h *Handler) catalog() []mixmaster.ProjectInfo {
	if h.Catalog == nil {
		return nil
	}
	return h.Catalog.ListProjects()
}

// projectsData is the body of GET /projects.
type projectsData struct {
	Projects []projectRow
}

type projectRow struct {
	mixmaster.ProjectInfo
	URL     string
	Targets int
	Last    *jobRow // the newest job, nil when there is none
}

// projects handles GET /projects: every configured project with its newest
// job.
func (h *Handler) projects(c echo.Context) error {
	ctx := c.Request().Context()
	now := h.clock()
	d := &projectsData{}
	for _, info := range h.catalog() {
		row := projectRow{ProjectInfo: info, URL: projectURL(info.Name), Targets: len(info.Targets)}
		jobs, err := h.Jobs.Jobs(ctx, mixmaster.JobFilter{Project: info.Name, Limit: 1})
		if err != nil {
			return err
		}
		if len(jobs) > 0 {
			r := newJobRow(jobs[0], now)
			row.Last = &r
		}
		d.Projects = append(d.Projects, row)
	}
	p := h.newPage(c, "Projects", "projects")
	p.Data = d
	return h.render(c, http.StatusOK, "projects", p)
}
