package webui

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"mixmaster"
)

// A browser marks a form sent by another site's page; every form that
// changes something, the login and the logout included, refuses it.
func TestFormsRefuseCrossSite(t *testing.T) {
	f := newFixture(t, withLogin)
	f.create(&mixmaster.Job{Project: "demo/hello", Target: "master"})
	signedIn := []string{"Cookie", mixmaster.SessionCookie + "=session-alice"}
	forms := map[string]url.Values{
		"/login":              {"name": {"alice"}, "password": {"secret"}},
		"/logout":             nil,
		"/project/demo/hello": {"target": {"master"}},
		"/ui/jobs/1/cancel":   nil,
		"/ui/jobs/1/rerun":    nil,
	}
	for path, form := range forms {
		for _, marks := range [][]string{
			{"Sec-Fetch-Site", "cross-site"},
			// A sibling subdomain can plant a CSRF cookie of its choosing.
			{"Sec-Fetch-Site", "same-site"},
			{"Origin", "https://evil.example"},
			{"Origin", "http://example.com.evil.example"},
		} {
			rec := f.post(path, copyForm(form), testToken, append(marks, signedIn...)...)
			body := wantPage(t, rec, http.StatusForbidden)
			wantContains(t, body, "sent from another site")
			for _, ck := range rec.Result().Cookies() {
				if ck.Name == mixmaster.SessionCookie {
					t.Errorf("%s %v: session cookie set", path, marks)
				}
			}
		}
	}
	if job, _ := f.db.Job(context.Background(), 1); job.Status != mixmaster.StatusQueued {
		t.Errorf("job 1 is %s after refused forms", job.Status)
	}
	if jobs, _ := f.db.Jobs(context.Background(), mixmaster.JobFilter{}); len(jobs) != 1 {
		t.Errorf("%d jobs after refused forms", len(jobs))
	}
	// The site's own pages pass, marked or not.
	for _, marks := range [][]string{{"Sec-Fetch-Site", "same-origin"}, {"Origin", "http://example.com"}, nil} {
		rec := f.post("/login", url.Values{"name": {"alice"}, "password": {"secret"}}, testToken, marks...)
		if rec.Code != http.StatusSeeOther {
			t.Errorf("login %v: %d\n%s", marks, rec.Code, rec.Body)
		}
	}
}

func copyForm(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// steppedClock is a clock tests move by hand.
type steppedClock struct{ t time.Time }

func (c *steppedClock) now() time.Time { return c.t }

func TestLoginRateLimit(t *testing.T) {
	clk := &steppedClock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	f := newFixture(t, withLogin, func(h *Handler) { h.now = clk.now })
	login := func(remote, name, password string) *httptest.ResponseRecorder {
		t.Helper()
		return f.post("/login", url.Values{"name": {name}, "password": {password}}, testToken, "RemoteAddr", remote)
	}
	const here, there, elsewhere = "192.0.2.1:1000", "198.51.100.7:2000", "203.0.113.9:3000"

	// Successes do not count.
	for range 2 * loginFailures {
		if rec := login(here, "alice", "secret"); rec.Code != http.StatusSeeOther {
			t.Fatalf("right password: %d", rec.Code)
		}
	}
	for i := range loginFailures {
		wantPage(t, login(here, "alice", fmt.Sprint("guess", i)), http.StatusUnauthorized)
	}
	limited := func(rec *httptest.ResponseRecorder, what string) {
		t.Helper()
		body := wantPage(t, rec, http.StatusTooManyRequests)
		wantContains(t, body, "Too many failed sign-ins; wait a minute and try again.")
		if got := rec.Header().Get("Retry-After"); got != "60" {
			t.Errorf("%s: Retry-After %q", what, got)
		}
	}
	// Even the right password waits: the limit is checked first.
	limited(login(here, "alice", "secret"), "the address and the name")
	limited(login(there, "alice", "secret"), "the name from elsewhere")
	limited(login(here, "bob", "x"), "another name from the address")
	wantPage(t, login(elsewhere, "bob", "x"), http.StatusUnauthorized)

	clk.t = clk.t.Add(30 * time.Second)
	rec := login(there, "alice", "secret")
	if got := rec.Header().Get("Retry-After"); rec.Code != http.StatusTooManyRequests || got != "30" {
		t.Errorf("half a minute on: %d, Retry-After %q", rec.Code, got)
	}
	clk.t = clk.t.Add(30 * time.Second)
	if rec := login(here, "alice", "secret"); rec.Code != http.StatusSeeOther {
		t.Errorf("after the window: %d", rec.Code)
	}
}

func TestLoginBusy(t *testing.T) {
	busy := &fakeAuth{users: map[string]string{"alice": "secret"}, busy: true}
	f := newFixture(t, func(h *Handler) { h.Auth, h.NewSessionCookie = busy, sessionCookie })
	for range loginFailures + 1 {
		rec := f.post("/login", url.Values{"name": {"alice"}, "password": {"secret"}}, testToken)
		body := wantPage(t, rec, http.StatusServiceUnavailable)
		wantContains(t, body, "Too many sign-ins at once; try again in a moment.")
		if got := rec.Header().Get("Retry-After"); got != "1" {
			t.Errorf("Retry-After %q", got)
		}
	}
	// Refusals for want of a free check are no failed attempts.
	busy.busy = false
	if rec := f.post("/login", url.Values{"name": {"alice"}, "password": {"secret"}}, testToken); rec.Code != http.StatusSeeOther {
		t.Errorf("once free: %d\n%s", rec.Code, rec.Body)
	}
}

func TestLoginLimiterBounded(t *testing.T) {
	var l loginLimiter
	start := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	// A flood of random names keeps at most loginCounters counters, the
	// newest.
	for i := range 3 * loginCounters {
		l.take(start.Add(time.Duration(i)*time.Millisecond), counterKey("name", fmt.Sprint("n", i)))
	}
	if n := len(l.counts); n != loginCounters || l.order.Len() != n {
		t.Fatalf("%d counters (%d in order), want %d", n, l.order.Len(), loginCounters)
	}
	if _, kept := l.counts[counterKey("name", "n0")]; kept {
		t.Error("the oldest counter was kept")
	}
	if _, kept := l.counts[counterKey("name", fmt.Sprint("n", 3*loginCounters-1))]; !kept {
		t.Error("the newest counter was dropped")
	}
	// Ended windows go.
	l.take(start.Add(time.Hour), counterKey("name", "late"))
	if n := len(l.counts); n != 1 {
		t.Errorf("%d counters after the windows ended", n)
	}
	// A refund never goes below nothing.
	k := counterKey("addr", "192.0.2.1")
	l.refund(k)
	for range loginFailures {
		if _, ok := l.take(start.Add(time.Hour), k); !ok {
			t.Fatal("refused within the limit")
		}
	}
	if _, ok := l.take(start.Add(time.Hour), k); ok {
		t.Error("allowed over the limit")
	}
}

func TestLoginCookieSecure(t *testing.T) {
	secureOf := func(rec *httptest.ResponseRecorder) bool {
		t.Helper()
		for _, ck := range rec.Result().Cookies() {
			if ck.Name == mixmaster.SessionCookie {
				return ck.Secure
			}
		}
		t.Fatalf("no session cookie: %d %v", rec.Code, rec.Header())
		return false
	}
	form := func() url.Values { return url.Values{"name": {"alice"}, "password": {"secret"}} }
	// The service decides, as its proxies tell it.
	viaProxy := func(r *http.Request) bool { return r.Header.Get("X-Forwarded-Proto") == "https" }
	f := newFixture(t, withLogin, func(h *Handler) { h.IsHTTPS = viaProxy })
	if !secureOf(f.post("/login", form(), testToken, "X-Forwarded-Proto", "https")) {
		t.Error("login over HTTPS: cookie not Secure")
	}
	if secureOf(f.post("/login", form(), testToken)) {
		t.Error("login over HTTP: cookie Secure")
	}
	if !secureOf(f.post("/logout", nil, testToken, "X-Forwarded-Proto", "https")) {
		t.Error("logout over HTTPS: cookie not Secure")
	}
	// Without it, a TLS connection counts.
	plain := newFixture(t, withLogin)
	srv := httptest.NewTLSServer(plain.e)
	defer srv.Close()
	jar := newJarClient(t, srv)
	resp, err := jar.Get(srv.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	token := cookieValue(jar, srv.URL, csrfCookie)
	resp, err = jar.PostForm(srv.URL+"/login", url.Values{"name": {"alice"}, "password": {"secret"}, csrfField: {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	found := false
	for _, ck := range resp.Cookies() {
		if ck.Name == mixmaster.SessionCookie {
			found = true
			if !ck.Secure {
				t.Error("login over TLS: cookie not Secure")
			}
		}
	}
	if !found {
		t.Errorf("login over TLS: %d, no session cookie", resp.StatusCode)
	}
}

// A client that trickles its form is cut off when the read timeout ends,
// not served for as long as it likes.
func TestFormReadTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: waits for a read timeout")
	}
	f := newFixture(t, withLogin, func(h *Handler) { h.formTimeout = 300 * time.Millisecond })
	srv := httptest.NewServer(f.e)
	defer srv.Close()

	for length, want := range map[int]string{
		// Within the limit: the read times out.
		5000: "The form took too long to arrive.",
		// Over it: refused at once, without waiting for the rest.
		100000: "Form too large.",
	} {
		status, body := trickle(t, srv, length)
		if status != http.StatusBadRequest && status != http.StatusRequestEntityTooLarge || !strings.Contains(body, want) {
			t.Errorf("trickled form of %d bytes: %d %q", length, status, body)
		}
	}

	// A form that arrives in time is served as ever, and so is the rest
	// of its request.
	jar := newJarClient(t, srv)
	resp, err := jar.Get(srv.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = jar.PostForm(srv.URL+"/login", url.Values{"name": {"alice"}, "password": {"nope"}, csrfField: {cookieValue(jar, srv.URL, csrfCookie)}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "Wrong name or password.") {
		t.Errorf("form in time: %d %q", resp.StatusCode, body)
	}
}

// newJarClient is a client of srv that keeps cookies, as a browser does,
// and does not follow redirects.
func newJarClient(t *testing.T, srv *httptest.Server) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := srv.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

// cookieValue is the value of the cookie name that c holds for rawURL.
func cookieValue(c *http.Client, rawURL, name string) string {
	u, _ := url.Parse(rawURL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

// trickle sends a form of length bytes to srv one byte at a time, every
// 10 ms, and returns the answer.
func trickle(t *testing.T, srv *httptest.Server, length int) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\nname=",
		srv.Listener.Addr(), length)
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte("a")); err != nil {
				return
			}
		}
	}()
	// Far longer than the timeout, and far shorter than the trickle.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a trickled form of %d bytes: %v", length, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
