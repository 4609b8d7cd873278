package webui

import (
	"container/list"
	"crypto/sha256"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

const (
	// loginFailures failed sign-ins per loginWindow are allowed for each
	// client address and for each name; then both wait for the window to
	// end.
	loginFailures = 5
	loginWindow   = time.Minute
	// loginCounters caps the counters kept; a flood of random names pushes
	// out the oldest, never grows the map.
	loginCounters = 10000
	// busyRetry is the Retry-After of a login refused while every password
	// check was busy.
	busyRetry = time.Second
)

// loginData is the body of the login page.
type loginData struct {
	Enabled bool
	Name    string
	Next    string
}

// loginPage handles GET /login?next=.
func (h *Handler) loginPage(c echo.Context) error {
	return h.renderLogin(c, http.StatusOK, "", "")
}

func (h *Handler) renderLogin(c echo.Context, status int, name, msg string) error {
	next := c.FormValue("next")
	if !localPath(next) {
		next = "/"
	}
	p := h.newPage(c, "Sign in", "login")
	p.Error = msg
	p.Data = &loginData{Enabled: h.loginEnabled(), Name: name, Next: next}
	return h.render(c, status, "login", p)
}

// login handles POST /login: a right name and password get a session
// cookie and go back to where they came from. Failures are limited per
// client address and per name; a success does not count.
func (h *Handler) login(c echo.Context) error {
	if !h.loginEnabled() {
		return h.renderLogin(c, http.StatusNotFound, "", "")
	}
	name, password := c.FormValue("name"), c.FormValue("password")
	keys := []loginKey{counterKey("addr", clientAddr(c)), counterKey("name", name)}
	if wait, ok := h.logins.take(h.clock(), keys...); !ok {
		return h.refuseLogin(c, name, wait, mixmaster.Errorf(mixmaster.ETOOMANY,
			"Too many failed sign-ins; wait a minute and try again."))
	}
	session, err := h.Auth.Login(name, password)
	if mixmaster.ErrorCode(err) != mixmaster.EUNAUTHORIZED {
		// Only a wrong name or password is a failed attempt.
		h.logins.refund(keys...)
	}
	switch mixmaster.ErrorCode(err) {
	case "":
	case mixmaster.EUNAVAILABLE, mixmaster.ETOOMANY:
		return h.refuseLogin(c, name, busyRetry, err)
	default:
		status, msg, ok := userError(err)
		if !ok {
			return err
		}
		return h.renderLogin(c, status, name, msg)
	}
	c.SetCookie(h.sessionCookie(c, session))
	next := c.FormValue("next")
	if !localPath(next) {
		next = "/"
	}
	return c.Redirect(http.StatusSeeOther, next)
}

// refuseLogin shows the login page again with err, saying when to retry.
func (h *Handler) refuseLogin(c echo.Context, name string, wait time.Duration, err error) error {
	status, msg, _ := userError(err)
	c.Response().Header().Set("Retry-After", seconds(wait))
	return h.renderLogin(c, status, name, msg)
}

// seconds is d in whole seconds, rounded up, at least one.
func seconds(d time.Duration) string {
	return strconv.FormatInt(max(1, int64((d+time.Second-1)/time.Second)), 10)
}

// logout handles POST /logout: the session cookie is removed.
func (h *Handler) logout(c echo.Context) error {
	if h.NewSessionCookie != nil {
		ck := h.sessionCookie(c, "")
		ck.MaxAge = -1
		c.SetCookie(ck)
	} else {
		c.SetCookie(&http.Cookie{Name: mixmaster.SessionCookie, Path: "/", MaxAge: -1, HttpOnly: true})
	}
	return c.Redirect(http.StatusSeeOther, "/")
}

// sessionCookie is the login cookie for the request: Secure when the
// request came over HTTPS, which a proxy may have ended.
func (h *Handler) sessionCookie(c echo.Context, value string) *http.Cookie {
	secure := c.IsTLS()
	if h.IsHTTPS != nil {
		secure = h.IsHTTPS(c.Request())
	}
	return h.NewSessionCookie(value, secure)
}

// clientAddr is the client's address as the server's IPExtractor sees it;
// without one only the socket peer counts, because echo's fallback would
// believe X-Forwarded-For from anyone.
func clientAddr(c echo.Context) string {
	if c.Echo().IPExtractor != nil {
		return c.RealIP()
	}
	return echo.ExtractIPDirect()(c.Request())
}

// loginKey names a counter: a digest, so that a long name costs no more
// memory than a short one.
type loginKey [sha256.Size]byte

func counterKey(kind, value string) loginKey {
	return sha256.Sum256([]byte(kind + "\x00" + value))
}

// loginLimiter counts sign-in attempts in fixed windows. Its zero value is
// ready to use.
type loginLimiter struct {
	mu sync.Mutex
	// order holds the *loginCount, oldest window first; counts indexes it.
	order  list.List
	counts map[loginKey]*list.Element
}

type loginCount struct {
	key   loginKey
	start time.Time
	n     int
}

// take counts an attempt against every key, unless one of them has no
// attempt left in its window: then it counts nothing and says how long
// until that window ends.
func (l *loginLimiter) take(now time.Time, keys ...loginKey) (wait time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire(now)
	for _, k := range keys {
		if e, found := l.counts[k]; found {
			if c := e.Value.(*loginCount); c.n >= loginFailures {
				wait = max(wait, c.start.Add(loginWindow).Sub(now))
			}
		}
	}
	if wait > 0 {
		return wait, false
	}
	for _, k := range keys {
		l.counter(k, now).n++
	}
	return 0, true
}

// refund gives back an attempt that did not fail. Attempts are counted
// before the check, so that many at once cannot all slip through.
func (l *loginLimiter) refund(keys ...loginKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if e, found := l.counts[k]; found {
			c := e.Value.(*loginCount)
			c.n = max(0, c.n-1)
		}
	}
}

// expire drops the counters whose window has ended. They are in the
// order their windows started, so only the front needs looking at.
func (l *loginLimiter) expire(now time.Time) {
	for e := l.order.Front(); e != nil; e = l.order.Front() {
		c := e.Value.(*loginCount)
		if now.Before(c.start.Add(loginWindow)) {
			return
		}
		l.drop(e)
	}
}

// counter returns the counter of k, starting one (and dropping the oldest
// when there are loginCounters) when there is none.
func (l *loginLimiter) counter(k loginKey, now time.Time) *loginCount {
	if e, found := l.counts[k]; found {
		return e.Value.(*loginCount)
	}
	if l.counts == nil {
		l.counts = map[loginKey]*list.Element{}
	}
	if len(l.counts) >= loginCounters {
		l.drop(l.order.Front())
	}
	c := &loginCount{key: k, start: now}
	l.counts[k] = l.order.PushBack(c)
	return c
}

func (l *loginLimiter) drop(e *list.Element) {
	delete(l.counts, e.Value.(*loginCount).key)
	l.order.Remove(e)
}
