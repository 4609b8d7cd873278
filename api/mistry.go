package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

// DefaultJobBodyLimit caps POST /jobs bodies when Handler.JobBodyLimit is
// zero. A request is a project name, a group and a few params.
const DefaultJobBodyLimit int64 = 64 << 10

const (
	// pendingExitCode is mistry's ExitCode for a build whose command has
	// not exited: still pending, or never run.
	pendingExitCode = -999
	// unknownDuration is mistry's Duration when it is not known.
	unknownDuration = -time.Second
	// maxReplyLog caps how much of a log goes into one reply; the end of
	// the log is kept, as it says how the build ended.
	maxReplyLog = 4 << 20
	// indexLength and indexScan bound GET /index/: the artifact jobs shown
	// and the jobs of any kind looked at to find them.
	indexLength = 500
	indexScan   = 5000
	// logStampWidth is the width of the time stamp that starts every log
	// line ("2006-01-02T15:04:05.000Z"); a space and the mark follow.
	logStampWidth = 24
)

func (h *Handler) jobBodyLimit() int64 {
	if h.JobBodyLimit > 0 {
		return h.JobBodyLimit
	}
	return DefaultJobBodyLimit
}

// BuildInfo is the result of an artifact build as mistry reports it. The
// fields carry no JSON tags: mistry's client and scripts expect exactly
// these names, in this order.
type BuildInfo struct {
	// Params are the job's params; null when there are none.
	Params map[string]string
	Group  string
	// Path is the absolute server path of the artifacts, for scp or rsync.
	Path string
	// Cached is set when an earlier successful build answered the request.
	Cached bool
	// Coalesced is set when the request joined an identical build that was
	// already queued or running.
	Coalesced bool
	// Incremental is set when the build started from the group's last
	// good build.
	Incremental bool
	// ExitCode is the command's exit status, or -999 when it has none.
	ExitCode int
	// ErrBuild says why a job errored or was canceled, "" otherwise.
	ErrBuild string
	// ContainerStdouterr is the job's log as stored: every line with its
	// time stamp and mark. Only its last 4 MiB are kept.
	ContainerStdouterr string `json:",omitempty"`
	// ContainerStderr is the text of the log's stderr lines, without time
	// stamps and marks, as the command wrote it.
	ContainerStderr string `json:",omitempty"`
	// TransportMethod is always "rsync", as in mistry; clients ignore it.
	TransportMethod string
	// StartedAt is when the job was requested.
	StartedAt time.Time
	// Duration is how long the job ran, in milliseconds' precision; -1s
	// while it is unknown.
	Duration time.Duration
	// URL is the job's page relative to the server root.
	URL string
}

// buildInfo describes job. With logs, the end of its log is read too; a
// log that cannot be read is left out rather than failing the reply,
// since the build itself is over.
func (h *Handler) buildInfo(job *mixmaster.Job, res mixmaster.ArtifactResult, logs bool) *BuildInfo {
	bi := &BuildInfo{
		Params:          job.Params,
		Group:           job.Group,
		Cached:          res.Cached,
		Coalesced:       res.Coalesced,
		Incremental:     job.Incremental,
		ExitCode:        pendingExitCode,
		TransportMethod: "rsync",
		StartedAt:       job.QueuedAt,
		Duration:        unknownDuration,
		URL:             jobPath(job.Project, job.ID),
	}
	if len(bi.Params) == 0 {
		bi.Params = nil // mistry's null, whether stored empty or absent
	}
	if h.Artifacts != nil {
		bi.Path = h.Artifacts.ArtifactsDir(job)
	}
	if job.ExitCode != nil {
		bi.ExitCode = *job.ExitCode
	}
	// A job that ended without its command's exit code (an error of ours,
	// a cancel, a timeout) says why, so the client can print it.
	if job.Status.Done() && job.ExitCode == nil {
		bi.ErrBuild = job.Error
	}
	if !job.StartedAt.IsZero() && !job.FinishedAt.IsZero() {
		bi.Duration = job.FinishedAt.Sub(job.StartedAt).Truncate(time.Millisecond)
	}
	if logs {
		text, err := h.logTail(job.ID, maxReplyLog)
		if err != nil {
			h.logger().Warn("read log for build info", "job_id", job.ID, "err", err)
		}
		bi.ContainerStdouterr = text
		bi.ContainerStderr = stderrText(text)
	}
	return bi
}

// logTail returns the last limit bytes of a job's log, from the start of
// a line; "" when the job has no log yet.
func (h *Handler) logTail(id mixmaster.JobID, limit int64) (string, error) {
	f, err := h.Logs.Open(id)
	if mixmaster.ErrorCode(err) == mixmaster.ENOTFOUND {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, b, err := mixmaster.TailLines(f, limit)
	return string(b), err
}

// stderrText returns the text of the log lines marked "!" (the command's
// standard error), one per line. An executor that keeps the order of the
// output gives the command one stream for both (the shell's), so its log
// has no "!" lines: then the whole output is what the error logs are.
func stderrText(log string) string {
	if text := markedText(log, '!'); text != "" {
		return text
	}
	return markedText(log, 'O')
}

// markedText returns the text of the log lines with the given mark.
func markedText(log string, mark byte) string {
	var b strings.Builder
	for line := range strings.Lines(log) {
		line = strings.TrimSuffix(line, "\n")
		if len(line) < logStampWidth+2 || line[logStampWidth] != ' ' || line[logStampWidth+1] != mark {
			continue
		}
		text := line[logStampWidth+2:]
		text = strings.TrimPrefix(text, " ")
		b.WriteString(text)
		b.WriteByte('\n')
	}
	return b.String()
}

// newArtifactJob handles POST /jobs[?async]: mistry's build request.
//
// A build that ran is answered 201 whatever its exit code, as mistry does.
// A build that errored before its command ran (say the image did not
// build) is answered 201 too, with ExitCode -999 and ErrBuild set, where
// mistry answered 500: the mistry client reads any status but 201 as a
// failure to schedule, while a 201 makes it show the error and exit 1
// because the exit code is not 0.
func (h *Handler) newArtifactJob(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	r, err := decodeArtifactRequest(body)
	if err != nil {
		return err
	}
	req := c.Request()
	r.Trigger = mixmaster.TriggerAPI
	if ua := req.UserAgent(); strings.HasPrefix(ua, "Go-http-client") || strings.HasPrefix(ua, "mixmaster") {
		r.Trigger = mixmaster.TriggerClient
	}
	ctx := req.Context()
	res, err := h.Artifacts.SubmitArtifact(ctx, r)
	if err != nil {
		return err
	}
	job := res.Job
	// mistry counts the key's presence, whatever its value: ?async=0 is
	// asynchronous too.
	if _, async := c.QueryParams()["async"]; async {
		// mistry answered with no body; its client ignores the body, so
		// the job as it stands is free to give.
		return c.JSON(http.StatusCreated, h.buildInfo(job, res, false))
	}
	if !job.Status.Done() {
		// A client that hangs up stops only the waiting; the build goes on.
		if job, err = h.Artifacts.Wait(ctx, job.ID); err != nil {
			return fmt.Errorf("wait for job %d: %w", res.Job.ID, err)
		}
	}
	return c.JSON(http.StatusCreated, h.buildInfo(job, res, true))
}

// decodeArtifactRequest reads mistry's request body. As in mistry, keys
// match the field names case-insensitively and unknown keys are ignored.
func decodeArtifactRequest(body []byte) (mixmaster.ArtifactRequest, error) {
	var in struct {
		Project string
		Params  map[string]string
		Group   string
		Rebuild bool
	}
	if err := json.Unmarshal(body, &in); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && strings.HasPrefix(strings.ToLower(te.Field), "params") {
			return mixmaster.ArtifactRequest{}, mixmaster.Errorf(mixmaster.EINVALID, "Params must be an object of string values.")
		}
		return mixmaster.ArtifactRequest{}, jsonError(err)
	}
	return mixmaster.ArtifactRequest{Project: in.Project, Params: in.Params, Group: in.Group, Rebuild: in.Rebuild}, nil
}

// indexEntry is one job of GET /index/, shaped as mistry's web view reads it.
type indexEntry struct {
	ID        string     `json:"id"`
	Project   string     `json:"project"`
	StartedAt string     `json:"startedAt"`
	BuildInfo *BuildInfo `json:"buildInfo"`
	State     string     `json:"state"`
}

// indexRedirect sends /index to /index/, as mistry's ServeMux did.
func (h *Handler) indexRedirect(c echo.Context) error {
	u := *c.Request().URL
	u.Path, u.RawPath = "/index/", ""
	return c.Redirect(http.StatusMovedPermanently, u.RequestURI())
}

// index handles GET /index/: the newest artifact jobs, newest first,
// without their logs. Unlike mistry's, it lists queued jobs too, and one
// odd job cannot fail the whole list.
func (h *Handler) index(c echo.Context) error {
	ctx := c.Request().Context()
	list := []indexEntry{}
	f := mixmaster.JobFilter{Limit: maxPageSize}
	for scanned := 0; scanned < indexScan && len(list) < indexLength; {
		jobs, err := h.Jobs.Jobs(ctx, f)
		if err != nil {
			return err
		}
		for _, j := range jobs {
			if j.Kind != mixmaster.KindArtifact || len(list) == indexLength {
				continue
			}
			list = append(list, indexEntry{
				ID:        j.ID.String(),
				Project:   j.Project,
				StartedAt: j.QueuedAt.Local().Format("Mon, 02 Jan 2006 15:04:05"),
				BuildInfo: h.buildInfo(j, mixmaster.ArtifactResult{}, false),
				State:     state(j),
			})
		}
		scanned += len(jobs)
		if len(jobs) < f.Limit {
			break
		}
		f.Before = jobs[len(jobs)-1].ID
	}
	return c.JSON(http.StatusOK, list)
}

// state is mistry's name for where a job is: "pending" until it is final,
// then "ready".
func state(j *mixmaster.Job) string {
	if j.Status.Done() {
		return "ready"
	}
	return "pending"
}

// jobView is the JSON of GET /job/<project>/<id>. mistry's web view and
// tests read ID, Project, State and BuildInfo under these names.
type jobView struct {
	ID        string
	Project   string
	State     string
	BuildInfo *BuildInfo
	Job       *mixmaster.Job
}

// showJob handles GET /job/<project>/<id>: JSON when the request says it
// sends or accepts JSON (mistry's page asks with Content-Type), else HTML.
func (h *Handler) showJob(c echo.Context) error {
	job, err := h.jobFromPath(c, "/job/")
	if err != nil {
		return err
	}
	job = shown(job)
	req := c.Request()
	ct, _, _ := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	if ct == echo.MIMEApplicationJSON || wantsJSON(req) {
		return c.JSON(http.StatusOK, h.viewOf(job))
	}
	if h.JobPage != nil {
		return h.JobPage(c, job)
	}
	var b bytes.Buffer
	if err := jobPage.Execute(&b, h.viewOf(job)); err != nil {
		return fmt.Errorf("render job page: %w", err)
	}
	hd := c.Response().Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	// The page shows build output; nothing in it may run or load.
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	return c.HTMLBlob(http.StatusOK, b.Bytes())
}

// viewOf describes a job, with the end of its log.
func (h *Handler) viewOf(job *mixmaster.Job) jobView {
	return jobView{
		ID:        job.ID.String(),
		Project:   job.Project,
		State:     state(job),
		BuildInfo: h.buildInfo(job, mixmaster.ArtifactResult{}, true),
		Job:       job,
	}
}

// jobPage is the page GET /job/… shows when no dashboard renders it.
var jobPage = template.Must(template.New("job").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
{{- if eq .State "pending"}}<meta http-equiv="refresh" content="5">{{end}}
<title>Job {{.ID}} of {{.Project}}</title>
<style>th{text-align:left;padding-right:1em}pre{white-space:pre-wrap}</style></head>
<body><h1>Job {{.ID}}</h1>
<table>
<tr><th>Project</th><td>{{.Project}}</td></tr>
<tr><th>Group</th><td>{{.BuildInfo.Group}}</td></tr>
<tr><th>State</th><td>{{.State}} ({{.Job.Status}})</td></tr>
<tr><th>Started at</th><td>{{.BuildInfo.StartedAt.Format "2006-01-02 15:04:05 MST"}}</td></tr>
<tr><th>Duration</th><td>{{.BuildInfo.Duration}}</td></tr>
<tr><th>Path</th><td>{{.BuildInfo.Path}}</td></tr>
<tr><th>Params</th><td>{{range $k, $v := .BuildInfo.Params}}{{$k}}={{$v}}<br>{{end}}</td></tr>
<tr><th>Cached</th><td>{{.BuildInfo.Cached}}</td></tr>
<tr><th>Coalesced</th><td>{{.BuildInfo.Coalesced}}</td></tr>
<tr><th>Incremental</th><td>{{.BuildInfo.Incremental}}</td></tr>
<tr><th>Exit code</th><td>{{.BuildInfo.ExitCode}}</td></tr>
<tr><th>Transport method</th><td>{{.BuildInfo.TransportMethod}}</td></tr>
<tr><th>Error</th><td>{{.BuildInfo.ErrBuild}}</td></tr>
</table>
<h2>Log</h2>
<pre>{{.BuildInfo.ContainerStdouterr}}</pre>
</body></html>
`))

// jobFromPath finds the job that the path names after prefix:
// <project>/<id>, where the project may hold slashes (owner/name). A path
// that names no job, or names it under another project, is a 404.
func (h *Handler) jobFromPath(c echo.Context, prefix string) (*mixmaster.Job, error) {
	notFound := mixmaster.Errorf(mixmaster.ENOTFOUND, "Job not found.")
	// The decoded path, whether or not the router matched the raw one.
	rest, ok := strings.CutPrefix(c.Request().URL.Path, prefix)
	if !ok {
		return nil, notFound
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 {
		return nil, notFound
	}
	project := rest[:i]
	n, err := strconv.ParseUint(rest[i+1:], 10, 64)
	if err != nil || n == 0 {
		return nil, notFound
	}
	job, err := h.Jobs.Job(c.Request().Context(), mixmaster.JobID(n))
	if mixmaster.ErrorCode(err) == mixmaster.ENOTFOUND {
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	if job.Project != project {
		return nil, notFound
	}
	return job, nil
}

// jobPath is the address of a job's page relative to the server root, as
// mistry's BuildInfo.URL gives it.
func jobPath(project string, id mixmaster.JobID) string {
	return strings.TrimPrefix(mixmaster.JobPath(project, id), "/")
}
