package webui

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"mixmaster"
)

// jobRow is a job as the lists show it, with every derived value worked
// out once in Go, so the templates stay plain.
type jobRow struct {
	*mixmaster.Job
	URL        string
	ProjectURL string
	Label      string // target (and task) or group
	CommitURL  string // "" unless ViewURL is an http(s) URL
	Queued     timeView
	Started    timeView
	Finished   timeView
	Duration   string
}

// timeView is a time as pages show it: a short text for people and the
// exact instant for the script, which shows it in local time.
type timeView struct {
	Text  string
	ISO   string
	Title string
}

func newTimeView(t, now time.Time) timeView {
	if t.IsZero() {
		return timeView{}
	}
	t = t.UTC()
	text := t.Format("Jan 2 15:04")
	if t.Year() != now.Year() {
		text = t.Format("2006-01-02 15:04")
	}
	return timeView{Text: text, ISO: t.Format(time.RFC3339), Title: t.Format("2006-01-02 15:04:05 UTC")}
}

func newJobRow(j *mixmaster.Job, now time.Time) jobRow {
	r := jobRow{
		Job:        j,
		URL:        jobURL(j.Project, j.ID),
		ProjectURL: projectURL(j.Project),
		Label:      jobLabel(j),
		CommitURL:  webURL(j.ViewURL),
		Queued:     newTimeView(j.QueuedAt, now),
		Started:    newTimeView(j.StartedAt, now),
		Finished:   newTimeView(j.FinishedAt, now),
	}
	if !j.StartedAt.IsZero() {
		r.Duration = formatDuration(j.Duration(now))
	}
	return r
}

// jobLabel names what a job built: its target and task, or its group.
func jobLabel(j *mixmaster.Job) string {
	if j.Kind == mixmaster.KindArtifact {
		return j.Group
	}
	if j.Task != "" {
		return j.Target + " · " + j.Task
	}
	return j.Target
}

// pathSegments escapes each slash-separated part of a project name on its
// own, so that owner/name keeps its slash.
func pathSegments(project string) string {
	segs := strings.Split(project, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// jobURL is the page of a job, the address the mistry client prints.
func jobURL(project string, id mixmaster.JobID) string {
	return mixmaster.JobPath(project, id)
}

func projectURL(project string) string {
	return "/project/" + pathSegments(project)
}

// webURL returns u when it is an absolute http or https URL with a host,
// and "" otherwise: a view URL comes from a webhook payload, and a
// javascript: or data: URL in a link would run in this site's pages.
func webURL(u string) string {
	if u == "" {
		return ""
	}
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return ""
	}
	switch strings.ToLower(p.Scheme) {
	case "http", "https":
		return p.String()
	}
	return ""
}

// formatDuration writes d briefly: "450ms", "12.3s", "4m 05s", "2h 03m".
func formatDuration(d time.Duration) string {
	switch {
	case d < 0:
		return ""
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	return fmt.Sprintf("%dh %02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
}
