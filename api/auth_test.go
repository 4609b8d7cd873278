package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/bcrypt"

	"mixmaster"
)

// fakeRerunner is a mixmaster.Rerunner.
type fakeRerunner struct {
	RerunFn func(ctx context.Context, id mixmaster.JobID, trigger mixmaster.Trigger) (*mixmaster.Job, error)
}

func (r *fakeRerunner) Rerun(ctx context.Context, id mixmaster.JobID, trigger mixmaster.Trigger) (*mixmaster.Job, error) {
	return r.RerunFn(ctx, id, trigger)
}

// hash returns a cheap bcrypt hash of password.
func hash(t testing.TB, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// authEcho wires a and a handler with cancel and rerun into an echo like
// the command's, plus GET /whoami, which reports the identified user.
func authEcho(t testing.TB, a *Auth, extractor echo.IPExtractor) *echo.Echo {
	t.Helper()
	done := func(_ context.Context, id mixmaster.JobID) (*mixmaster.Job, error) {
		return &mixmaster.Job{ID: id, Status: mixmaster.StatusCanceled}, nil
	}
	rerun := func(_ context.Context, id mixmaster.JobID, trigger mixmaster.Trigger) (*mixmaster.Job, error) {
		if id == 9 {
			return nil, mixmaster.Errorf(mixmaster.ECONFLICT, "job 9 is running; only a finished job can run again")
		}
		return &mixmaster.Job{ID: id + 100, Trigger: trigger, Status: mixmaster.StatusQueued, Project: "p"}, nil
	}
	h := &Handler{
		Jobs: &fakeJobStore{JobsFn: func(context.Context, mixmaster.JobFilter) ([]*mixmaster.Job, error) {
			return nil, nil
		}},
		Canceler: &fakeCanceler{CancelFn: done},
		Rerunner: &fakeRerunner{RerunFn: rerun},
		Auth:     a,
	}
	e, _ := newEcho(t, h)
	e.IPExtractor = extractor
	e.Use(a.Identify())
	e.GET("/whoami", func(c echo.Context) error {
		u, ok := mixmaster.UserFrom(c.Request().Context())
		if !ok {
			return c.String(http.StatusOK, "nobody")
		}
		return c.String(http.StatusOK, u.Via+":"+u.Name)
	})
	// Stands in for the dashboard, which serves every other path.
	e.GET("/*", func(c echo.Context) error { return c.String(http.StatusOK, "page") }, a.RequireRead())
	return e
}

// send serves one request from remote (host:port) to the service at
// 127.0.0.1:8585. headers are name, value pairs; a "Host" pair names
// another host.
func send(e *echo.Echo, method, target, remote string, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	req.RemoteAddr = remote
	req.Host = "127.0.0.1:8585"
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Add(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

func whoami(t *testing.T, e *echo.Echo, remote string, headers ...string) string {
	t.Helper()
	rec := send(e, http.MethodGet, "/whoami", remote, headers...)
	if rec.Code != http.StatusOK {
		t.Fatalf("whoami: %d %q", rec.Code, rec.Body.String())
	}
	return rec.Body.String()
}

const stranger = "203.0.113.9:40000"

func TestAuthToken(t *testing.T) {
	e := authEcho(t, &Auth{Tokens: []string{"first", "second"}}, echo.ExtractIPDirect())
	if got := whoami(t, e, stranger, "Authorization", "Bearer second"); got != "token:token#2" {
		t.Errorf("second token: %q", got)
	}
	if got := whoami(t, e, stranger, "Authorization", "bearer first"); got != "token:token#1" {
		t.Errorf("first token, lower-case scheme: %q", got)
	}
	if got := whoami(t, e, stranger); got != "nobody" {
		t.Errorf("no token: %q", got)
	}
	// Other schemes are not ours.
	if got := whoami(t, e, stranger, "Authorization", "Basic YTpi"); got != "nobody" {
		t.Errorf("basic auth: %q", got)
	}
	for _, h := range []string{"Bearer wrong", "Bearer ", "Bearer", "Bearer secon", "Bearer second2"} {
		rec := send(e, http.MethodGet, "/api/v1/jobs", stranger, "Authorization", h)
		wantJSONError(t, rec, http.StatusUnauthorized, "Invalid token.")
		if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%q: WWW-Authenticate = %q", h, rec.Header().Get("WWW-Authenticate"))
		}
	}

	one := authEcho(t, &Auth{Tokens: []string{"only"}}, echo.ExtractIPDirect())
	if got := whoami(t, one, stranger, "Authorization", "Bearer only"); got != "token:token" {
		t.Errorf("single token: %q", got)
	}
}

func TestAuthTokenWithoutTokensConfigured(t *testing.T) {
	// Even on loopback, a token the server does not know is refused, so
	// the client learns its configuration is wrong.
	e := authEcho(t, &Auth{}, echo.ExtractIPDirect())
	rec := send(e, http.MethodGet, "/api/v1/jobs", "127.0.0.1:5000", "Authorization", "Bearer x")
	wantJSONError(t, rec, http.StatusUnauthorized, "Invalid token.")
}

func TestAuthLogin(t *testing.T) {
	a := &Auth{Users: map[string]string{"alice": hash(t, "wonderland")}}
	if _, err := a.Login("alice", "wonderland"); err != nil {
		t.Fatalf("right password: %v", err)
	}
	for _, c := range [][2]string{{"alice", "Wonderland"}, {"alice", ""}, {"bob", "wonderland"}, {"", ""}} {
		v, err := a.Login(c[0], c[1])
		if mixmaster.ErrorCode(err) != mixmaster.EUNAUTHORIZED || mixmaster.ErrorMessage(err) != "Wrong name or password." || v != "" {
			t.Errorf("Login(%q, %q) = %q, %v", c[0], c[1], v, err)
		}
	}
	// Unknown names cost as much as known ones.
	if cost, _ := bcrypt.Cost(a.dummyHash()); cost != bcrypt.MinCost {
		t.Errorf("dummy hash cost %d, want the users' %d", cost, bcrypt.MinCost)
	}
	if !a.Enabled() || (&Auth{}).Enabled() || !(&Auth{Tokens: []string{"t"}}).Enabled() {
		t.Error("Enabled is wrong")
	}
}

func TestAuthSession(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	a := &Auth{
		Users: map[string]string{"alice": hash(t, "wonderland"), "bob": hash(t, "builder")},
		Key:   []byte("0123456789abcdef0123456789abcdef"),
		Now:   func() time.Time { return now },
	}
	e := authEcho(t, a, echo.ExtractIPDirect())
	value, err := a.Login("alice", "wonderland")
	if err != nil {
		t.Fatal(err)
	}
	cookie := func(v string) []string {
		return []string{"Cookie", (&http.Cookie{Name: mixmaster.SessionCookie, Value: v}).String()}
	}
	if got := whoami(t, e, stranger, cookie(value)...); got != "session:alice" {
		t.Fatalf("fresh session: %q", got)
	}
	if !strings.HasPrefix(value, "alice|") {
		t.Errorf("cookie value %q does not start with the name", value)
	}

	parts := strings.Split(value, "|")
	tampered := map[string]string{
		"other user":     "bob|" + parts[1] + "|" + parts[2],
		"longer expiry":  parts[0] + "|" + parts[1] + "0|" + parts[2],
		"changed mac":    parts[0] + "|" + parts[1] + "|" + strings.Repeat("0", len(parts[2])),
		"no mac":         parts[0] + "|" + parts[1],
		"garbage":        "x",
		"empty":          "",
		"escaped name":   "%zz|" + parts[1] + "|" + parts[2],
		"extra field":    value + "|x",
		"unknown signer": mustLogin(t, &Auth{Users: a.Users, Now: a.Now}, "alice", "wonderland"),
	}
	for what, v := range tampered {
		if got := whoami(t, e, stranger, cookie(v)...); got != "nobody" {
			t.Errorf("%s: %q", what, got)
		}
	}

	// The same key accepts it in another process.
	again := authEcho(t, &Auth{Users: a.Users, Key: a.Key, Now: a.Now}, echo.ExtractIPDirect())
	if got := whoami(t, again, stranger, cookie(value)...); got != "session:alice" {
		t.Errorf("same key: %q", got)
	}

	now = now.Add(DefaultSessionTTL - time.Second)
	if got := whoami(t, e, stranger, cookie(value)...); got != "session:alice" {
		t.Errorf("just before expiry: %q", got)
	}
	now = now.Add(time.Second)
	if got := whoami(t, e, stranger, cookie(value)...); got != "nobody" {
		t.Errorf("expired: %q", got)
	}
}

func TestAuthSessionUserChanged(t *testing.T) {
	a := &Auth{Users: map[string]string{"alice": hash(t, "wonderland")}}
	e := authEcho(t, a, echo.ExtractIPDirect())
	value := mustLogin(t, a, "alice", "wonderland")
	ck := (&http.Cookie{Name: mixmaster.SessionCookie, Value: value}).String()

	a.Users["alice"] = hash(t, "looking-glass")
	if got := whoami(t, e, stranger, "Cookie", ck); got != "nobody" {
		t.Errorf("after a password change: %q", got)
	}
	delete(a.Users, "alice")
	if got := whoami(t, e, stranger, "Cookie", ck); got != "nobody" {
		t.Errorf("deleted user: %q", got)
	}
	rec := send(e, http.MethodPost, "/api/v1/jobs/1/cancel", stranger, "Cookie", ck)
	wantJSONError(t, rec, http.StatusUnauthorized, "Sign in or send a token.")
}

func TestAuthSessionOddName(t *testing.T) {
	// Names the config allows but a cookie cannot carry as they are.
	for _, name := range []string{"a|b", "é;x", `q"\`} {
		a := &Auth{Users: map[string]string{name: hash(t, "pw")}}
		e := authEcho(t, a, echo.ExtractIPDirect())
		ck := a.SessionCookie(mustLogin(t, a, name, "pw"), false)
		if err := ck.Valid(); err != nil {
			t.Errorf("%q: %v", name, err)
		}
		if got := whoami(t, e, stranger, "Cookie", ck.String()); got != "session:"+name {
			t.Errorf("%q: %q", name, got)
		}
	}
}

func mustLogin(t testing.TB, a *Auth, name, password string) string {
	t.Helper()
	v, err := a.Login(name, password)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestAuthSessionCookie(t *testing.T) {
	a := &Auth{SessionTTL: time.Hour}
	c := a.SessionCookie("v", true)
	if c.Name != mixmaster.SessionCookie || c.Value != "v" || c.Path != "/" || !c.HttpOnly || !c.Secure ||
		c.SameSite != http.SameSiteStrictMode || c.MaxAge != 3600 {
		t.Errorf("SessionCookie = %+v", c)
	}
	if c := a.SessionCookie("v", false); c.Secure {
		t.Error("Secure without TLS")
	}
	if c := a.ClearCookie(); c.Name != mixmaster.SessionCookie || c.MaxAge >= 0 || c.Value != "" || c.Path != "/" {
		t.Errorf("ClearCookie = %+v", c)
	}
	if c := (&Auth{}).SessionCookie("v", false); c.MaxAge != int(DefaultSessionTTL/time.Second) {
		t.Errorf("default MaxAge = %d", c.MaxAge)
	}
}

func TestAuthTrustedNetwork(t *testing.T) {
	a := &Auth{
		Tokens:          []string{"t"},
		TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")},
	}
	e := authEcho(t, a, echo.ExtractIPDirect())
	for remote, want := range map[string]string{
		"10.1.2.3:1000":           "network:",
		"[::ffff:10.1.2.3]:1000":  "network:",
		"[fd00::1]:1000":          "network:",
		"192.168.1.1:1000":        "nobody",
		"127.0.0.1:1000":          "nobody", // auth is configured: loopback is nobody special
		"[fe80::1%eth0]:1000":     "nobody",
		"not an address":          "nobody",
		"[fd00::1%eth0]:1000":     "network:",
		"11.0.0.1:1000":           "nobody",
		"[2001:db8::10.1.2.3]:80": "nobody",
	} {
		if got := whoami(t, e, remote); got != want {
			t.Errorf("%s: %q, want %q", remote, got, want)
		}
	}
	if rec := send(e, http.MethodPost, "/api/v1/jobs/1/cancel", "10.9.9.9:1"); rec.Code != http.StatusOK {
		t.Errorf("cancel from a trusted network: %d %q", rec.Code, rec.Body.String())
	}
}

func TestAuthLoopbackOnlyWithoutAuth(t *testing.T) {
	open := authEcho(t, &Auth{}, echo.ExtractIPDirect())
	for _, remote := range []string{"127.0.0.1:1", "127.8.0.1:1", "[::1]:1"} {
		if got := whoami(t, open, remote); got != "loopback:" {
			t.Errorf("%s: %q", remote, got)
		}
		if rec := send(open, http.MethodPost, "/api/v1/jobs/1/cancel", remote); rec.Code != http.StatusOK {
			t.Errorf("cancel from %s: %d %q", remote, rec.Code, rec.Body.String())
		}
	}
	rec := send(open, http.MethodPost, "/api/v1/jobs/1/cancel", "192.168.1.7:1")
	wantJSONError(t, rec, http.StatusUnauthorized, "Sign in or send a token.")
	if got := rec.Header().Get("WWW-Authenticate"); got != "Bearer" {
		t.Errorf("WWW-Authenticate = %q", got)
	}

	// With users configured, loopback must sign in like everyone else.
	closed := authEcho(t, &Auth{Users: map[string]string{"alice": hash(t, "pw")}}, echo.ExtractIPDirect())
	if got := whoami(t, closed, "127.0.0.1:1"); got != "nobody" {
		t.Errorf("loopback with users: %q", got)
	}
	rec = send(closed, http.MethodPost, "/api/v1/jobs/1/rerun", "127.0.0.1:1")
	wantJSONError(t, rec, http.StatusUnauthorized, "Sign in or send a token.")
}

func TestAuthRequireRead(t *testing.T) {
	public := authEcho(t, &Auth{Tokens: []string{"t"}, PublicDashboard: true}, echo.ExtractIPDirect())
	for _, path := range []string{"/api/v1/jobs", "/somewhere"} {
		if rec := send(public, http.MethodGet, path, stranger); rec.Code != http.StatusOK {
			t.Errorf("public %s: %d %q", path, rec.Code, rec.Body.String())
		}
	}
	// Reading is public, changing is not.
	rec := send(public, http.MethodPost, "/api/v1/jobs/1/cancel", stranger)
	wantJSONError(t, rec, http.StatusUnauthorized, "Sign in or send a token.")

	private := authEcho(t, &Auth{Tokens: []string{"t"}}, echo.ExtractIPDirect())
	rec = send(private, http.MethodGet, "/api/v1/jobs", stranger)
	wantJSONError(t, rec, http.StatusUnauthorized, "Sign in or send a token.")
	if got := rec.Header().Get("WWW-Authenticate"); got != "Bearer" {
		t.Errorf("WWW-Authenticate = %q", got)
	}
	for _, path := range []string{"/index/p", "/job/p/1", "/log/p/1", "/api/v1/jobs/1", "/api/v1/jobs/1/log"} {
		if rec := send(private, http.MethodGet, path, stranger); rec.Code != http.StatusUnauthorized {
			t.Errorf("private %s: %d", path, rec.Code)
		}
	}
	if rec := send(private, http.MethodGet, "/api/v1/jobs", stranger, "Authorization", "Bearer t"); rec.Code != http.StatusOK {
		t.Errorf("private with a token: %d %q", rec.Code, rec.Body.String())
	}

	const html = "text/html,application/xhtml+xml,*/*;q=0.8"
	for target, want := range map[string]string{
		"/job/p/1?tail=1": "/login?next=%2Fjob%2Fp%2F1%3Ftail%3D1",
		"/somewhere":      "/login?next=%2Fsomewhere",
		"//evil.com":      "/login",
		"//evil.com/x?y":  "/login",
		`/\evil.com`:      "/login?next=%2F%255Cevil.com", // escaped, so a local path
	} {
		rec := send(private, http.MethodGet, target, stranger, "Accept", html)
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != want {
			t.Errorf("%s: %d to %q, want 303 to %q", target, rec.Code, rec.Header().Get("Location"), want)
		}
	}
	// Writes from a browser go to the login page too.
	rec = send(private, http.MethodPost, "/api/v1/jobs/1/cancel", stranger, "Accept", html)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/login?next=%2Fapi%2Fv1%2Fjobs%2F1%2Fcancel" {
		t.Errorf("browser cancel: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
}

func TestAuthLocalPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/":             true,
		"/job/p/1?x=//": true,
		"":              false,
		"//evil.com":    false,
		`/\evil.com`:    false,
		"https://x.com": false,
		"evil.com":      false,
		"/a\nb":         false,
		"/a\x7fb":       false,
	} {
		if got := LocalPath(p); got != want {
			t.Errorf("LocalPath(%q) = %v", p, got)
		}
	}
}

func TestAuthForwardedFor(t *testing.T) {
	a := &Auth{
		Tokens:          []string{"t"},
		TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")},
	}
	proxy := "10.0.0.1:3000"
	e := authEcho(t, a, TrustedProxyExtractor([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}))
	cases := []struct {
		remote string
		xff    []string
		want   string
	}{
		{stranger, []string{"192.168.1.5"}, "nobody"},                // anyone can claim anything
		{"192.168.1.5:1", []string{"203.0.113.1"}, "network:"},       // a trusted client's own claim is ignored too
		{proxy, []string{"192.168.1.5"}, "network:"},                 // the proxy vouches for its client
		{proxy, []string{"203.0.113.9, 192.168.1.5"}, "network:"},    // the right-most is the one the proxy saw
		{proxy, []string{"192.168.1.5, 203.0.113.9"}, "nobody"},      // a forged left-most hop changes nothing
		{proxy, []string{"192.168.1.5", "203.0.113.9"}, "nobody"},    // several headers are one list
		{proxy, []string{"192.168.1.5, 10.0.0.2"}, "network:"},       // proxies in the chain are skipped
		{proxy, []string{"garbage, 203.0.113.9"}, "nobody"},          // a garbled hop left of the client is not reached
		{proxy, []string{"[::ffff:192.168.1.5]"}, "network:"},        // mapped and bracketed
		{proxy, nil, "nobody"},                                       // the proxy itself
		{"[::ffff:10.0.0.1]:1", []string{"192.168.7.7"}, "network:"}, // a mapped proxy address
	}
	for _, c := range cases {
		var h []string
		for _, v := range c.xff {
			h = append(h, "X-Forwarded-For", v)
		}
		if got := whoami(t, e, c.remote, h...); got != c.want {
			t.Errorf("from %s with %q: %q, want %q", c.remote, c.xff, got, c.want)
		}
	}

	// Without an extractor only the socket peer counts, though echo's own
	// fallback would believe the header.
	direct := authEcho(t, a, nil)
	if got := whoami(t, direct, stranger, "X-Forwarded-For", "192.168.1.5", "X-Real-IP", "192.168.1.5"); got != "nobody" {
		t.Errorf("no extractor: %q", got)
	}
}

func TestAuthTrustedProxyExtractor(t *testing.T) {
	x := TrustedProxyExtractor([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("::1/128")})
	for _, c := range []struct{ remote, xff, want string }{
		{"203.0.113.9:1", "1.2.3.4", "203.0.113.9"},
		{"10.0.0.5:1", "1.2.3.4", "1.2.3.4"},
		{"10.0.0.5:1", "", "10.0.0.5"},
		{"[::1]:1", "1.2.3.4, 10.0.0.7", "1.2.3.4"},
		{"[::1]:1", "[2001:db8::1]", "2001:db8::1"},
		{"10.0.0.5:1", "10.0.0.6, 10.0.0.7", "10.0.0.6"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := x(r); got != c.want {
			t.Errorf("%s with %q: %q, want %q", c.remote, c.xff, got, c.want)
		}
	}
}

func TestCancelRequiresAuth(t *testing.T) {
	e := authEcho(t, &Auth{Tokens: []string{"t"}}, echo.ExtractIPDirect())
	rec := send(e, http.MethodPost, "/api/v1/jobs/1/cancel", stranger)
	wantJSONError(t, rec, http.StatusUnauthorized, "Sign in or send a token.")
	rec = send(e, http.MethodPost, "/api/v1/jobs/1/cancel", stranger, "Authorization", "Bearer t")
	if rec.Code != http.StatusOK {
		t.Errorf("with a token: %d %q", rec.Code, rec.Body.String())
	}
}

func TestRerunJob(t *testing.T) {
	e := authEcho(t, &Auth{Tokens: []string{"t"}}, echo.ExtractIPDirect())
	rec := send(e, http.MethodPost, "/api/v1/jobs/7/rerun", stranger)
	wantJSONError(t, rec, http.StatusUnauthorized, "Sign in or send a token.")

	rec = send(e, http.MethodPost, "/api/v1/jobs/7/rerun", stranger, "Authorization", "Bearer t")
	if rec.Code != http.StatusAccepted {
		t.Fatalf("rerun: %d %q", rec.Code, rec.Body.String())
	}
	var job mixmaster.Job
	if err := json.Unmarshal(rec.Body.Bytes(), &job); err != nil {
		t.Fatal(err)
	}
	if job.ID != 107 || job.Trigger != mixmaster.TriggerAPI || job.Status != mixmaster.StatusQueued {
		t.Errorf("new job = %+v", job)
	}

	rec = send(e, http.MethodPost, "/api/v1/jobs/9/rerun", stranger, "Authorization", "Bearer t")
	wantJSONError(t, rec, http.StatusConflict, "")
	rec = send(e, http.MethodPost, "/api/v1/jobs/x/rerun", stranger, "Authorization", "Bearer t")
	wantJSONError(t, rec, http.StatusBadRequest, "Invalid job id 'x'.")
}

func TestRerunWithoutAuth(t *testing.T) {
	// Handler tests and embedders without Auth get every route open.
	e, _ := newEcho(t, &Handler{Rerunner: &fakeRerunner{RerunFn: func(_ context.Context, id mixmaster.JobID, tr mixmaster.Trigger) (*mixmaster.Job, error) {
		return &mixmaster.Job{ID: 2, Trigger: tr}, nil
	}}})
	if rec := serve(e, http.MethodPost, "/api/v1/jobs/1/rerun", ""); rec.Code != http.StatusAccepted {
		t.Errorf("rerun: %d %q", rec.Code, rec.Body.String())
	}
	// Without a Rerunner the route is absent.
	e, _ = newEcho(t, &Handler{})
	if rec := serve(e, http.MethodPost, "/api/v1/jobs/1/rerun", ""); rec.Code != http.StatusNotFound {
		t.Errorf("no rerunner: %d", rec.Code)
	}
}

func TestAuthCrossOriginWrite(t *testing.T) {
	// A page on another site must not act through the visitor's address.
	e := authEcho(t, &Auth{}, echo.ExtractIPDirect())
	rec := send(e, http.MethodPost, "/api/v1/jobs/1/cancel", "127.0.0.1:1", "Sec-Fetch-Site", "cross-site")
	wantJSONError(t, rec, http.StatusForbidden, "Cross-origin request refused.")
	rec = send(e, http.MethodPost, "/api/v1/jobs/1/rerun", "127.0.0.1:1", "Origin", "https://evil.example")
	wantJSONError(t, rec, http.StatusForbidden, "Cross-origin request refused.")
	rec = send(e, http.MethodPost, "/api/v1/jobs/1/cancel", "127.0.0.1:1", "Sec-Fetch-Site", "same-origin")
	if rec.Code != http.StatusOK {
		t.Errorf("same origin: %d %q", rec.Code, rec.Body.String())
	}
}

func TestAuthRebindingHost(t *testing.T) {
	// A page on evil.example, which its owner points at 127.0.0.1, talks
	// to the service from the loopback address: its Host gives it away.
	open := authEcho(t, &Auth{Hosts: []string{"build.example.com", "ci.example.com:8585"}}, echo.ExtractIPDirect())
	for _, host := range []string{"evil.example", "evil.example:8585", "localhost.evil.example", "build.example.com.evil.example"} {
		rec := send(open, http.MethodPost, "/api/v1/jobs/1/cancel", "127.0.0.1:1", "Host", host)
		wantJSONError(t, rec, http.StatusForbidden, fmt.Sprintf("Host %q is not a name this service answers to.", host))
		if got := whoami(t, open, "127.0.0.1:1", "Host", host); got != "nobody" {
			t.Errorf("%s: %q", host, got)
		}
		rec = send(open, http.MethodGet, "/api/v1/jobs", "[::1]:1", "Host", host)
		wantJSONError(t, rec, http.StatusForbidden, "")
	}
	for _, host := range []string{
		"127.0.0.1:8585", "127.0.0.1", "127.3.4.5:80", "localhost", "LocalHost:8585", "localhost.",
		"[::1]:8585", "[::1]", "192.0.2.4:8585", "build.example.com", "Build.Example.Com:443", "ci.example.com", "",
	} {
		if rec := send(open, http.MethodPost, "/api/v1/jobs/1/cancel", "127.0.0.1:1", "Host", host); rec.Code != http.StatusOK {
			t.Errorf("cancel with Host %q: %d %q", host, rec.Code, rec.Body)
		}
		if got := whoami(t, open, "[::1]:1", "Host", host); got != "loopback:" {
			t.Errorf("%q: %q", host, got)
		}
	}

	// A stranger is asked to sign in whatever host it names.
	rec := send(open, http.MethodPost, "/api/v1/jobs/1/cancel", stranger, "Host", "evil.example")
	wantJSONError(t, rec, http.StatusUnauthorized, "Sign in or send a token.")
}

func TestAuthRebindingTrustedNetwork(t *testing.T) {
	// A trusted network holding the loopback address is loopback too.
	a := &Auth{
		Tokens:          []string{"t"},
		TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")},
	}
	e := authEcho(t, a, echo.ExtractIPDirect())
	rec := send(e, http.MethodPost, "/api/v1/jobs/1/rerun", "127.0.0.1:1", "Host", "evil.example")
	wantJSONError(t, rec, http.StatusForbidden, `Host "evil.example" is not a name this service answers to.`)
	if got := whoami(t, e, "127.0.0.1:1", "Host", "evil.example"); got != "nobody" {
		t.Errorf("loopback network, foreign host: %q", got)
	}
	if got := whoami(t, e, "127.0.0.1:1", "Host", "localhost:8585"); got != "network:" {
		t.Errorf("loopback network, localhost: %q", got)
	}
	// Other networks name the service by whatever their DNS calls it.
	if got := whoami(t, e, "10.1.2.3:1", "Host", "buildbox.lan:8585"); got != "network:" {
		t.Errorf("LAN network: %q", got)
	}
	// A token is no browser's ambient trust: it counts with any host.
	if got := whoami(t, e, "127.0.0.1:1", "Host", "evil.example", "Authorization", "Bearer t"); got != "token:token" {
		t.Errorf("token, foreign host: %q", got)
	}
	// Loopback is nobody special once tokens are set, so the ordinary
	// answer stands.
	closed := authEcho(t, &Auth{Tokens: []string{"t"}}, echo.ExtractIPDirect())
	rec = send(closed, http.MethodPost, "/api/v1/jobs/1/cancel", "127.0.0.1:1", "Host", "evil.example")
	wantJSONError(t, rec, http.StatusUnauthorized, "Sign in or send a token.")
}

func TestAuthRebindingThroughProxy(t *testing.T) {
	// A proxy forwarding a client of this machine: the client's address
	// decides, and the Host it asked for.
	proxies := []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}
	e := authEcho(t, &Auth{}, TrustedProxyExtractor(proxies))
	if got := whoami(t, e, "192.0.2.1:1", "X-Forwarded-For", "127.0.0.1", "Host", "evil.example"); got != "nobody" {
		t.Errorf("forwarded loopback, foreign host: %q", got)
	}
	if got := whoami(t, e, "192.0.2.1:1", "X-Forwarded-For", "127.0.0.1", "Host", "localhost"); got != "loopback:" {
		t.Errorf("forwarded loopback, localhost: %q", got)
	}
}

func TestAuthRebindingWebhook(t *testing.T) {
	// A webhook without a signature is a write like any other.
	a := &Auth{}
	sub := &recordingSubmitter{id: 1, created: true}
	h := &Handler{Submitter: sub.fake(), Auth: a, Secrets: func(string) string { return "" }}
	e, _ := newEcho(t, h)
	e.IPExtractor = echo.ExtractIPDirect()
	e.Use(a.Identify())
	for host, status := range map[string]int{"evil.example:8585": http.StatusUnauthorized, "localhost:8585": http.StatusAccepted} {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(lightweightBody))
		req.RemoteAddr, req.Host = "127.0.0.1:4000", host
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != status {
			t.Errorf("Host %s: %d %q, want %d", host, rec.Code, rec.Body, status)
		}
	}
	if n := len(sub.requests()); n != 1 {
		t.Errorf("%d builds queued, want 1", n)
	}
}
