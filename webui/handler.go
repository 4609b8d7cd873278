package webui

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"mixmaster"
)

// Handler serves the dashboard. Its fields are set before Register is
// called and not changed afterwards; nil services switch off the pages and
// forms that need them.
type Handler struct {
	// Jobs is read only; the runner owns every change to a job.
	Jobs mixmaster.JobStore
	// Logs opens job logs for the log tail on job pages.
	Logs mixmaster.LogStore
	// Events wakes the live job list (GET /events).
	Events mixmaster.EventService
	// Canceler stops queued and running jobs for the cancel button.
	Canceler mixmaster.Canceler
	// Rerunner queues finished jobs again for the re-run button.
	Rerunner mixmaster.Rerunner
	// Submitter queues webhook builds from the project page.
	Submitter mixmaster.Submitter
	// Artifacts queues cached-artifact builds from the project page and
	// says where a job's files lie, for the artifact tree.
	Artifacts mixmaster.ArtifactSubmitter
	// Catalog lists the configured projects.
	Catalog mixmaster.Catalog
	// Auth checks logins; nil means there is no login.
	Auth mixmaster.Authenticator
	// RequireRead guards the pages and RequireWrite the forms that change
	// something; nil lets every request through.
	RequireRead, RequireWrite echo.MiddlewareFunc
	// NewSessionCookie makes the cookie that carries a login; secure says
	// whether the login came over HTTPS. Needed when Auth is set.
	NewSessionCookie func(value string, secure bool) *http.Cookie
	// IsHTTPS says whether a request came over HTTPS, directly or through
	// a trusted proxy; nil means only a direct TLS connection counts.
	IsHTTPS func(r *http.Request) bool
	// Version is shown in the page footer.
	Version string
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	csrfOnce sync.Once
	csrfMW   echo.MiddlewareFunc

	// logins counts failed sign-ins per client address and per name.
	logins loginLimiter
	// formTimeout bounds reading a form body; zero means formReadTimeout.
	// Tests shorten it.
	formTimeout time.Duration

	// streams counts the open GET /events streams.
	streams atomic.Int64
	// tickEvery and pingEvery pace GET /events; tests shorten them.
	tickEvery, pingEvery time.Duration
	// now is the clock; nil means time.Now. Tests fix it.
	now func() time.Time
}

func (h *Handler) clock() time.Time {
	if h.now != nil {
		return h.now()
	}
	return time.Now()
}

const (
	// pageSize is the number of jobs on a page of the dashboard.
	pageSize = 50
	// formLimit caps form bodies: a target, a task or a few params.
	formLimit = 64 << 10
	// formReadTimeout bounds reading a form body, so that a client that
	// trickles one cannot hold a connection and a handler for long.
	formReadTimeout = 10 * time.Second
	// maxStreams caps the GET /events streams open at once; each holds a
	// connection and a subscription.
	maxStreams = 256
	// csrfField is the form field, and csrfCookie the cookie, carrying the
	// CSRF token.
	csrfField  = "_csrf"
	csrfCookie = "mixmaster_csrf"
)

// Register adds the dashboard's routes to e. GET /job/<project>/<id> is the
// api package's route, which calls JobPage for browsers.
func (h *Handler) Register(e *echo.Echo) {
	read := guards(h.RequireRead, h.csrf())
	write := guards(h.readForm(), h.RequireWrite, h.csrf())
	anyone := guards(h.readForm(), h.csrf())

	e.GET("/static/*", serveStatic)
	e.GET("/", h.dashboard, read...)
	e.GET("/projects", h.projects, read...)
	e.GET("/project/*", h.project, read...)
	if h.Events != nil {
		e.GET("/events", h.events, guards(h.RequireRead)...)
	}
	e.POST("/project/*", h.trigger, write...)
	e.POST("/ui/jobs/:id/cancel", h.cancel, write...)
	e.POST("/ui/jobs/:id/rerun", h.rerun, write...)
	e.GET("/login", h.loginPage, anyone...)
	e.POST("/login", h.login, anyone...)
	e.POST("/logout", h.logout, anyone...)
}

// guards drops the nil middleware from ms.
func guards(ms ...echo.MiddlewareFunc) []echo.MiddlewareFunc {
	out := make([]echo.MiddlewareFunc, 0, len(ms))
	for _, m := range ms {
		if m != nil {
			out = append(out, m)
		}
	}
	return out
}

// chain wraps next in ms, the first outermost, as echo does for route
// middleware.
func chain(next echo.HandlerFunc, ms ...echo.MiddlewareFunc) echo.HandlerFunc {
	for i := len(ms) - 1; i >= 0; i-- {
		next = ms[i](next)
	}
	return next
}

// csrf returns the CSRF middleware shared by every form, the login and
// the logout too. A form a browser marks as sent from another origin
// (Sec-Fetch-Site, else Origin against Host), same-site pages included,
// is refused, as the API's writes are. Browsers that send neither header
// must return the token, which lives in a cookie that only this site's
// pages send (SameSite Strict), in a hidden form field.
func (h *Handler) csrf() echo.MiddlewareFunc {
	h.csrfOnce.Do(func() {
		cop := http.NewCrossOriginProtection()
		token := middleware.CSRFWithConfig(middleware.CSRFConfig{
			TokenLookup:    "form:" + csrfField,
			CookieName:     csrfCookie,
			CookiePath:     "/",
			CookieHTTPOnly: true,
			CookieSameSite: http.SameSiteStrictMode,
			ErrorHandler:   h.csrfError,
		})
		h.csrfMW = func(next echo.HandlerFunc) echo.HandlerFunc {
			withToken := token(next)
			return func(c echo.Context) error {
				if err := cop.Check(c.Request()); err != nil {
					return h.csrfError(echo.NewHTTPError(http.StatusForbidden, err.Error()), c)
				}
				return withToken(c)
			}
		}
	})
	return h.csrfMW
}

// csrfError answers a form that came without a valid token: most often a
// page left open for a day, so the page says how to recover.
func (h *Handler) csrfError(err error, c echo.Context) error {
	status := http.StatusForbidden
	if he, ok := err.(*echo.HTTPError); ok && he.Code >= 400 && he.Code < 500 {
		status = he.Code
	}
	p := h.newPage(c, "Form expired", "")
	p.Error = "This form has expired or was sent from another site. Go back, reload the page and try again."
	return h.render(c, status, "error", p)
}

// readForm reads the form of a request before anything else looks at it:
// at most formLimit bytes, within the form read timeout.
func (h *Handler) readForm() echo.MiddlewareFunc {
	timeout := h.formTimeout
	if timeout <= 0 {
		timeout = formReadTimeout
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			// Setting deadlines fails only where there is no connection
			// (tests), and then there is nothing to wait for.
			rc := http.NewResponseController(c.Response())
			if r.ContentLength > formLimit {
				_ = rc.SetReadDeadline(time.Now())
				return mixmaster.Errorf(mixmaster.ETOOLARGE, "Form too large.")
			}
			r.Body = http.MaxBytesReader(c.Response(), r.Body, formLimit)
			_ = rc.SetReadDeadline(time.Now().Add(timeout))
			if _, err := c.FormParams(); err != nil {
				// Else the server would wait for the rest of the body
				// before answering, for as long as the client trickles it.
				_ = rc.SetReadDeadline(time.Now())
				return formError(err)
			}
			// The rest of the request is the handler's, unhurried.
			_ = rc.SetReadDeadline(time.Time{})
			return next(c)
		}
	}
}

// formError says why a form could not be read.
func formError(err error) error {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return mixmaster.Errorf(mixmaster.ETOOLARGE, "Form too large.")
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return mixmaster.Errorf(mixmaster.EINVALID, "The form took too long to arrive.")
	}
	return mixmaster.Errorf(mixmaster.EINVALID, "Could not read the form.")
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// page is what every template gets: the frame of the page and the data of
// its body.
type page struct {
	Title   string
	Nav     string // the menu entry to mark as current
	User    *mixmaster.User
	Logout  bool   // the user signed in with a session and may sign out
	Login   string // the login link, "" when none is shown
	CSRF    string
	Version string
	Error   string // a message for the user, shown above the content
	Notice  string // a note that is not an error
	Data    any
}

// newPage fills the frame of a page for the request.
func (h *Handler) newPage(c echo.Context, title, nav string) *page {
	p := &page{Title: title, Nav: nav, Version: h.Version}
	if p.Version == "" {
		p.Version = "dev"
	}
	if u, ok := mixmaster.UserFrom(c.Request().Context()); ok {
		p.User = &u
		p.Logout = u.Via == "session"
	}
	if h.loginEnabled() && (p.User == nil || p.User.Name == "") && c.Path() != "/login" {
		p.Login = loginURL(c.Request().URL.RequestURI())
	}
	p.CSRF, _ = c.Get("csrf").(string)
	return p
}

func (h *Handler) loginEnabled() bool {
	return h.Auth != nil && h.Auth.Enabled() && h.NewSessionCookie != nil
}

// loginURL is the login page, returning to next afterwards.
func loginURL(next string) string {
	if !localPath(next) || next == "/" {
		return "/login"
	}
	return "/login?" + url.Values{"next": {next}}.Encode()
}

// localPath reports whether p is safe to redirect to: a path on this site,
// not "//host" or "/\host", which browsers read as another site.
func localPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, `/\`) {
		return false
	}
	return !strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// contentSecurityPolicy lets pages load only this site's files: no inline
// script or style, so that nothing a build printed can ever run.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"

// render executes the named page and sends it with status.
func (h *Handler) render(c echo.Context, status int, name string, p *page) error {
	t, ok := pages[name]
	if !ok {
		return fmt.Errorf("render: no page %q", name)
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "base", p); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	hd := c.Response().Header()
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "same-origin")
	// Pages carry a CSRF token and live state: never from a cache.
	hd.Set("Cache-Control", "no-store")
	return c.HTMLBlob(status, b.Bytes())
}

// userError returns the status and message of an error the user caused
// (a form naming an unknown target, a cancel of a finished job), which
// the page shows; ok is false for internal errors, which go to the
// server's error handler and its log. Pages answer in HTML, so they do not
// go through the API's error handler.
func userError(err error) (status int, msg string, ok bool) {
	code := mixmaster.ErrorCode(err)
	if code == mixmaster.EINTERNAL || code == "" {
		return 0, "", false
	}
	return mixmaster.HTTPStatus(code), sentence(mixmaster.ErrorMessage(err)), true
}

// sentence capitalises msg and ends it with a full stop, since services
// word some messages for logs.
func sentence(msg string) string {
	if msg == "" {
		return msg
	}
	if c := msg[0]; 'a' <= c && c <= 'z' {
		msg = string(c-'a'+'A') + msg[1:]
	}
	if !strings.HasSuffix(msg, ".") && !strings.HasSuffix(msg, "?") && !strings.HasSuffix(msg, "!") {
		msg += "."
	}
	return msg
}

// notFound renders the error page with a 404.
func (h *Handler) notFound(c echo.Context, msg string) error {
	p := h.newPage(c, "Not found", "")
	p.Error = msg
	return h.render(c, http.StatusNotFound, "error", p)
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pages holds one template set per page, each with the shared layout.
var pages = parsePages()

func parsePages() map[string]*template.Template {
	// The badge of each status is rendered once: a page shows one per row.
	rendered := map[mixmaster.Status]template.HTML{}
	funcs := template.FuncMap{
		"static":   staticURL,
		"statuses": func() []mixmaster.Status { return mixmaster.Statuses },
		"badge": func(s mixmaster.Status) template.HTML {
			if b, ok := rendered[s]; ok {
				return b
			}
			return template.HTML(`<span class="badge">` + template.HTMLEscapeString(string(s)) + `</span>`)
		},
	}
	shared := template.Must(template.New("").Funcs(funcs).ParseFS(templateFS, "templates/base.html", "templates/parts.html"))
	// A template that has run cannot be cloned: render from a copy.
	scratch := template.Must(shared.Clone())
	for _, s := range mixmaster.Statuses {
		var b strings.Builder
		if err := scratch.ExecuteTemplate(&b, "badge", s); err != nil {
			panic(err)
		}
		// The template escaped everything it wrote.
		rendered[s] = template.HTML(b.String())
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	out := map[string]*template.Template{}
	for _, file := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(file, "templates/"), ".html")
		if name == "base" || name == "parts" {
			continue
		}
		out[name] = template.Must(template.Must(shared.Clone()).ParseFS(templateFS, file))
	}
	return out
}
