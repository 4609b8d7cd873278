package webui

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

const (
	// logTailSize is how much of the end of a log a job page shows; the
	// rest is a link away, so a 50 MB log costs the page no more.
	logTailSize = 256 << 10
	// maxArtifacts caps the entries of the artifact tree on a page.
	maxArtifacts = 1000
	// stampWidth is the width of the time stamp that starts every log
	// line ("2006-01-02T15:04:05.000Z"); a space, the mark and a space
	// follow.
	stampWidth = 24
)

// jobData is the body of a job page.
type jobData struct {
	Row       jobRow
	Repo      string // the clone URL without its credentials
	Params    []param
	ExitCode  string
	CanCancel bool
	CanRerun  bool
	// Artifacts is nil while the job runs or without an ArtifactSubmitter.
	Artifacts *artifactTree
	Log       logView
}

type param struct{ Key, Value string }

// logView is the end of a log as a job page shows it. Start and End are
// byte offsets in the log: the live stream continues from End, so the
// page gets every line exactly once.
type logView struct {
	Lines     []logLine
	Blocks    []logBlock // Lines, with each checkout folded
	Fold      foldMarks
	Start     int64
	End       int64
	Size      int64
	SizeText  string
	TailText  string
	Truncated bool   // lines before Start are left out
	Stream    string // the SSE address that continues the log
	Full      string // the whole log as text
}

// logBlock is one line of a log, or a checkout folded under the status
// line that closed it (under the one that opened it while it runs).
type logBlock struct {
	logLine
	Fold []logLine // the checkout's lines; empty for a plain line
	Open bool      // the checkout is still running
}

// foldMarks are the texts that bracket a checkout, for the page's script,
// which folds live lines the same way.
type foldMarks struct{ Begin, Done, Failed string }

var checkoutMarks = foldMarks{mixmaster.CheckoutBegin, mixmaster.CheckoutDone, mixmaster.CheckoutFailed}

// logLine is one line of a log, split into its parts. The text is raw:
// the page's script turns ANSI colour codes into colours, for these lines
// and for live ones alike.
type logLine struct {
	Class string // the mark: s status, c command, o stdout, e stderr
	Time  string // "15:04:05", "" when the line has no time stamp
	Text  string
}

// JobPage renders the page of a job, for api.Handler.JobPage: its details,
// the tail of its log (continued live while it runs), its artifacts and
// the buttons that cancel or re-run it.
func (h *Handler) JobPage(c echo.Context, job *mixmaster.Job) error {
	// The route is the api package's; the guards are applied here.
	return chain(func(c echo.Context) error {
		return h.renderJob(c, job, http.StatusOK, "")
	}, guards(h.RequireRead, h.csrf())...)(c)
}

// renderJob renders the page of job with status and an error message.
func (h *Handler) renderJob(c echo.Context, job *mixmaster.Job, status int, msg string) error {
	d := &jobData{
		Row:       newJobRow(job, h.clock()),
		Repo:      mixmaster.RedactURL(job.RepositoryURL),
		CanCancel: h.Canceler != nil && !job.Status.Done(),
		CanRerun:  h.Rerunner != nil && job.Status.Done(),
	}
	for _, k := range sortedKeys(job.Params) {
		d.Params = append(d.Params, param{k, job.Params[k]})
	}
	if job.ExitCode != nil {
		d.ExitCode = strconv.Itoa(*job.ExitCode)
	}
	if h.Artifacts != nil && job.Status.Done() {
		tree, err := readArtifacts(h.Artifacts.ArtifactsDir(job), job.ID)
		if err != nil {
			return err
		}
		d.Artifacts = tree
	}
	lv, err := h.readLog(job)
	if err != nil {
		return err
	}
	d.Log = lv

	p := h.newPage(c, fmt.Sprintf("Job %d · %s", job.ID, job.Project), "")
	p.Error = msg
	switch c.QueryParam("from") {
	case "cached":
		p.Notice = "An earlier build with the same inputs answered this request from the cache."
	case "coalesced":
		p.Notice = "An identical build was already under way; this request joined it."
	}
	p.Data = d
	return h.render(c, status, "job", p)
}

// readLog reads the tail of a job's log, cut at line boundaries.
func (h *Handler) readLog(job *mixmaster.Job) (logView, error) {
	lv := logView{
		Fold:   checkoutMarks,
		Stream: "/log/" + pathSegments(job.Project) + "/" + job.ID.String(),
		Full:   "/api/v1/jobs/" + job.ID.String() + "/log",
	}
	if h.Logs == nil {
		return lv, nil
	}
	f, err := h.Logs.Open(job.ID)
	if mixmaster.ErrorCode(err) == mixmaster.ENOTFOUND {
		lv.Stream += "?offset=0"
		return lv, nil // not started yet: the stream waits for it
	}
	if err != nil {
		return lv, err
	}
	defer f.Close()
	start, text, err := tail(f, logTailSize, job.Status.Done())
	if err != nil {
		return lv, fmt.Errorf("read log of job %d: %w", job.ID, err)
	}
	lv.Start, lv.End = start, start+int64(len(text))
	lv.Size = lv.End
	if size, err := f.Seek(0, io.SeekEnd); err == nil {
		lv.Size = size
	}
	lv.Truncated = start > 0
	lv.SizeText, lv.TailText = mixmaster.FormatSize(lv.Size), mixmaster.FormatSize(lv.End-lv.Start)
	lv.Stream += "?offset=" + strconv.FormatInt(lv.End, 10)
	lv.Lines = make([]logLine, 0, bytes.Count(text, []byte{'\n'}))
	for line := range bytes.Lines(text) {
		lv.Lines = append(lv.Lines, parseLine(string(bytes.TrimSuffix(line, []byte{'\n'}))))
	}
	lv.Blocks = foldCheckouts(lv.Lines, !job.Status.Done())
	return lv, nil
}

// foldCheckouts groups lines into blocks, folding the lines of each
// checkout, from the status line that opens it to the one that closes it,
// under the closing one. A checkout the log does not close stays open
// while the job runs (live lines continue it) and is folded under its
// opening line once the job is over.
func foldCheckouts(lines []logLine, live bool) []logBlock {
	blocks := make([]logBlock, 0, len(lines))
	open := -1 // the block of the checkout not closed yet
	for _, l := range lines {
		status := l.Class == "s"
		switch {
		case open < 0 && status && strings.HasPrefix(l.Text, mixmaster.CheckoutBegin):
			open = len(blocks)
			blocks = append(blocks, logBlock{logLine: l, Fold: []logLine{l}, Open: live})
		case open >= 0 && status && mixmaster.ClosesCheckout(l.Text):
			blocks[open].logLine, blocks[open].Open = l, false
			open = -1
		case open >= 0:
			blocks[open].Fold = append(blocks[open].Fold, l)
		default:
			blocks = append(blocks, logBlock{logLine: l})
		}
	}
	return blocks
}

// tail reads the last (at most) n bytes of r as whole lines and, unless
// whole is set (the log is complete), stops after the last newline read,
// so a line still being written is left to the live stream. It returns
// the offset of the first byte.
func tail(r io.ReadSeeker, n int64, whole bool) (int64, []byte, error) {
	off, b, err := mixmaster.TailLines(r, n)
	if err != nil || whole {
		return off, b, err
	}
	return off, b[:bytes.LastIndexByte(b, '\n')+1], nil
}

// parseLine splits a log line into its time stamp, mark and text.
func parseLine(line string) logLine {
	if len(line) >= stampWidth+2 && line[stampWidth] == ' ' && line[10] == 'T' {
		class := ""
		switch line[stampWidth+1] {
		case '#':
			class = "s"
		case '$':
			class = "c"
		case 'O':
			class = "o"
		case '!':
			class = "e"
		}
		if class != "" {
			text := line[stampWidth+2:]
			text = strings.TrimPrefix(text, " ")
			return logLine{Class: class, Time: line[11:19], Text: text}
		}
	}
	return logLine{Class: "o", Text: line}
}

// artifactTree is the list of files a job kept.
type artifactTree struct {
	Entries []artifactEntry
	More    bool   // the list stopped at maxArtifacts
	Missing bool   // the job kept nothing
	All     string // the whole tree as a tar
}

type artifactEntry struct {
	Name  string // the last path element
	Path  string // relative to the tree
	Depth int
	Dir   bool
	Link  bool   // a symbolic link, listed but not offered
	URL   string // the download of a regular file
	Size  string
}

// readArtifacts lists the tree in dir through an os.Root, which never
// follows a link out of the tree; links are listed, not followed.
func readArtifacts(dir string, id mixmaster.JobID) (*artifactTree, error) {
	base := "/api/v1/jobs/" + id.String() + "/artifacts"
	t := &artifactTree{All: base}
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		t.Missing = true
		return t, nil
	}
	if err != nil {
		return nil, fmt.Errorf("artifacts of job %d: %w", id, err)
	}
	defer root.Close()
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		if len(t.Entries) == maxArtifacts {
			t.More = true
			return fs.SkipAll
		}
		e := artifactEntry{Name: d.Name(), Path: p, Depth: min(strings.Count(p, "/"), 8)}
		switch {
		case d.IsDir():
			e.Dir = true
		case d.Type()&fs.ModeSymlink != 0:
			e.Link = true
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			e.Size = mixmaster.FormatSize(info.Size())
			e.URL = base + "?" + url.Values{"path": {p}}.Encode()
		default:
			return nil // sockets, devices: nothing to show
		}
		t.Entries = append(t.Entries, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("artifacts of job %d: %w", id, err)
	}
	t.Missing = len(t.Entries) == 0
	return t, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// formJob reads the job the :id route parameter names.
func (h *Handler) formJob(c echo.Context) (*mixmaster.Job, error) {
	n, err := strconv.ParseUint(c.Param("id"), 10, 64)
	if err != nil || n == 0 {
		return nil, mixmaster.Errorf(mixmaster.ENOTFOUND, "Job not found.")
	}
	return h.Jobs.Job(c.Request().Context(), mixmaster.JobID(n))
}

// cancel handles POST /ui/jobs/:id/cancel and returns to the job page.
func (h *Handler) cancel(c echo.Context) error {
	return h.jobAction(c, h.Canceler != nil, func(job *mixmaster.Job) (*mixmaster.Job, error) {
		if _, err := h.Canceler.Cancel(c.Request().Context(), job.ID); err != nil {
			return nil, err
		}
		return job, nil
	})
}

// rerun handles POST /ui/jobs/:id/rerun and goes to the new job's page.
func (h *Handler) rerun(c echo.Context) error {
	return h.jobAction(c, h.Rerunner != nil, func(job *mixmaster.Job) (*mixmaster.Job, error) {
		return h.Rerunner.Rerun(c.Request().Context(), job.ID, mixmaster.TriggerUI)
	})
}

// jobAction runs act on the job of the route and redirects to the job it
// returns; a refusal is shown on the job's page.
func (h *Handler) jobAction(c echo.Context, enabled bool, act func(*mixmaster.Job) (*mixmaster.Job, error)) error {
	job, err := h.formJob(c)
	if mixmaster.ErrorCode(err) == mixmaster.ENOTFOUND {
		return h.notFound(c, "Job not found.")
	}
	if err != nil {
		return err
	}
	if !enabled {
		return h.renderJob(c, job, http.StatusNotFound, "This action is not available.")
	}
	next, err := act(job)
	if err != nil {
		status, msg, ok := userError(err)
		if !ok {
			return err
		}
		// The job may have moved on; show it as it is now.
		if fresh, ferr := h.Jobs.Job(c.Request().Context(), job.ID); ferr == nil {
			job = fresh
		}
		return h.renderJob(c, job, status, msg)
	}
	return c.Redirect(http.StatusSeeOther, jobURL(next.Project, next.ID))
}
