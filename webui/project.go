package webui

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

const (
	// recentJobs is the number of builds a project page lists.
	recentJobs = 20
	// latestScan is how many of a project's newest jobs are looked at for
	// the last result of each target or group.
	latestScan = 500
	// paramRows is the number of empty parameter rows a form offers.
	paramRows = 3
)

// projectData is the body of a project page.
type projectData struct {
	Name string
	// Info is nil for a project that is no longer configured but still
	// has jobs.
	Info    *mixmaster.ProjectInfo
	Webhook bool
	List    jobList
	Latest  []latest
	Targets []target
	Form    buildForm
	Action  string // where the build form posts
	AllJobs string // the dashboard filtered by this project
}

// latest is the last result of one target or group, and the job after
// it when one is queued or running.
type latest struct {
	Label   string
	Done    *jobRow
	Current *jobRow
}

// target is one key of a webhook project's config.
type target struct {
	Key     string
	Command string
	// Target and Task are what the key's build button sends: a key with a
	// slash is a task ("master/docs": task docs on master).
	Target, Task string
}

// buildForm holds what the build form shows, and, after a refusal, what
// the user had entered.
type buildForm struct {
	Target, Task string
	Notify       bool
	Group        string
	Params       []param
	Rebuild      bool
}

// projectName returns the project a /project/… path names.
func projectName(c echo.Context) string {
	// The decoded path, so that an owner/name keeps its slash whether or
	// not the client escaped it.
	name := strings.TrimPrefix(c.Request().URL.Path, "/project/")
	return strings.TrimSuffix(name, "/")
}

// findProject looks a project up in the catalog.
func (h *Handler) findProject(name string) *mixmaster.ProjectInfo {
	for _, info := range h.catalog() {
		if info.Name == name {
			return &info
		}
	}
	return nil
}

// project handles GET /project/<name>.
func (h *Handler) project(c echo.Context) error {
	name := projectName(c)
	info := h.findProject(name)
	form := buildForm{Notify: true}
	if info != nil && info.Kind == mixmaster.KindArtifact {
		form.Params = make([]param, paramRows)
	}
	return h.renderProject(c, name, info, form, http.StatusOK, "")
}

// renderProject renders a project page with status and an error message.
func (h *Handler) renderProject(c echo.Context, name string, info *mixmaster.ProjectInfo, form buildForm, status int, msg string) error {
	ctx := c.Request().Context()
	var jobs []*mixmaster.Job
	if name != "" {
		var err error
		jobs, err = h.Jobs.Jobs(ctx, mixmaster.JobFilter{Project: name, Limit: latestScan})
		if err != nil {
			return err
		}
	}
	if info == nil && len(jobs) == 0 {
		return h.notFound(c, "There is no project of that name.")
	}
	now := h.clock()
	d := &projectData{
		Name:    name,
		Info:    info,
		Webhook: info != nil && info.Kind == mixmaster.KindWebhook,
		List:    h.newJobList(jobs[:min(len(jobs), recentJobs)], name, "", true),
		Form:    form,
		Action:  projectURL(name),
		AllJobs: listURL(name, "", 0),
	}
	d.List.Empty = "No builds yet."
	d.Latest = latestResults(jobs, now)
	if d.Webhook {
		for _, key := range sortedKeys(info.Targets) {
			t := target{Key: key, Command: info.Targets[key], Target: key}
			if i := strings.LastIndexByte(key, '/'); i > 0 {
				t.Target, t.Task = key[:i], key[i+1:]
			}
			d.Targets = append(d.Targets, t)
		}
	}
	p := h.newPage(c, name, "projects")
	p.Error = msg
	p.Data = d
	return h.render(c, status, "project", p)
}

// latestResults finds, for each target (and task) or group, its newest
// finished job and any newer job still queued or running.
func latestResults(jobs []*mixmaster.Job, now time.Time) []latest {
	var out []latest
	index := map[string]int{}
	for _, j := range jobs {
		label := jobLabel(j)
		i, ok := index[label]
		if !ok {
			i = len(out)
			index[label] = i
			out = append(out, latest{Label: label})
		}
		l := &out[i]
		if l.Done != nil {
			continue
		}
		row := newJobRow(j, now)
		if j.Status.Done() {
			l.Done = &row
		} else if l.Current == nil {
			l.Current = &row
		}
	}
	slices.SortFunc(out, func(a, b latest) int { return strings.Compare(a.Label, b.Label) })
	return out
}

// trigger handles POST /project/<name>: the build form. It queues a
// webhook build or an artifact build and goes to its page; a refused
// request is shown on the project page with what was entered.
func (h *Handler) trigger(c echo.Context) error {
	name := projectName(c)
	info := h.findProject(name)
	if info == nil {
		return h.notFound(c, "There is no project of that name.")
	}
	r := c.Request()
	if err := r.ParseForm(); err != nil {
		p := h.newPage(c, name, "projects")
		p.Error = "The form could not be read."
		return h.render(c, http.StatusBadRequest, "error", p)
	}
	form := r.PostForm
	ctx := r.Context()

	if info.Kind == mixmaster.KindWebhook {
		f := buildForm{
			Target: strings.TrimSpace(form.Get("target")),
			Task:   strings.TrimSpace(form.Get("task")),
			Notify: form.Get("notify") != "",
		}
		if h.Submitter == nil {
			return h.renderProject(c, name, info, f, http.StatusNotFound, "Builds cannot be started here.")
		}
		// The project's configured repository is used: a form never
		// names what to clone.
		job, _, err := h.Submitter.Submit(ctx, mixmaster.Request{
			Trigger: mixmaster.TriggerUI, Project: name, Target: f.Target, Task: f.Task, Notify: f.Notify,
		})
		if err != nil {
			return h.refused(c, name, info, f, err)
		}
		return c.Redirect(http.StatusSeeOther, jobURL(job.Project, job.ID))
	}

	f := buildForm{Group: strings.TrimSpace(form.Get("group")), Rebuild: form.Get("rebuild") != ""}
	keys, values := form["param"], form["value"]
	params := map[string]string{}
	var problem string
	for i, k := range keys {
		k = strings.TrimSpace(k)
		v := ""
		if i < len(values) {
			v = values[i]
		}
		if k == "" && v == "" {
			continue
		}
		f.Params = append(f.Params, param{k, v})
		switch _, dup := params[k]; {
		case k == "" && problem == "":
			problem = "Every parameter with a value needs a name."
		case dup && problem == "":
			problem = "The parameter " + k + " is given twice."
		}
		params[k] = v
	}
	for len(f.Params) < paramRows {
		f.Params = append(f.Params, param{})
	}
	if problem != "" {
		return h.renderProject(c, name, info, f, http.StatusUnprocessableEntity, problem)
	}
	if h.Artifacts == nil {
		return h.renderProject(c, name, info, f, http.StatusNotFound, "Builds cannot be started here.")
	}
	res, err := h.Artifacts.SubmitArtifact(ctx, mixmaster.ArtifactRequest{
		Trigger: mixmaster.TriggerUI, Project: name, Params: params, Group: f.Group, Rebuild: f.Rebuild,
	})
	if err != nil {
		return h.refused(c, name, info, f, err)
	}
	to := jobURL(res.Job.Project, res.Job.ID)
	switch {
	case res.Cached:
		to += "?" + url.Values{"from": {"cached"}}.Encode()
	case res.Coalesced:
		to += "?" + url.Values{"from": {"coalesced"}}.Encode()
	}
	return c.Redirect(http.StatusSeeOther, to)
}

// refused shows why a build was not started, or hands an internal error
// to the server's error handler.
func (h *Handler) refused(c echo.Context, name string, info *mixmaster.ProjectInfo, f buildForm, err error) error {
	status, msg, ok := userError(err)
	if !ok {
		return err
	}
	return h.renderProject(c, name, info, f, status, msg)
}
