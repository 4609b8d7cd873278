package webui

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"mixmaster"
)

func withLogin(h *Handler) {
	h.Auth = &fakeAuth{users: map[string]string{"alice": "secret"}}
	h.NewSessionCookie = sessionCookie
}

func TestLogin(t *testing.T) {
	f := newFixture(t, withLogin)

	// Anonymous visitors get a login link that comes back to the page.
	body := wantPage(t, f.get("/project/demo/hello"), http.StatusOK)
	wantContains(t, body, `<a href="/login?next=%2Fproject%2Fdemo%2Fhello">Sign in</a>`)

	body = wantPage(t, f.get("/login?next=/project/demo/hello"), http.StatusOK)
	wantContains(t, body,
		`<form class="login" method="post" action="/login">`,
		`<input type="hidden" name="next" value="/project/demo/hello">`,
		`<label for="name">Name</label>`, `<label for="password">Password</label>`,
		`autocomplete="current-password"`,
	)
	wantAbsent(t, body, "Sign in</a>")

	// A wrong password is said on the page, keeping the name.
	body = wantPage(t, f.post("/login", url.Values{"name": {"alice"}, "password": {"nope"}, "next": {"/projects"}}, testToken), http.StatusUnauthorized)
	wantContains(t, body, "Wrong name or password.", `value="alice"`, `<input type="hidden" name="next" value="/projects">`)

	rec := f.post("/login", url.Values{"name": {"alice"}, "password": {"secret"}, "next": {"/projects"}}, testToken)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/projects" {
		t.Fatalf("login: %d %q\n%s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	var session *http.Cookie
	for _, ck := range rec.Result().Cookies() {
		if ck.Name == mixmaster.SessionCookie {
			session = ck
		}
	}
	if session == nil || session.Value != "session-alice" || !session.HttpOnly {
		t.Fatalf("session cookie = %+v", session)
	}

	// Only local paths are gone back to.
	for _, next := range []string{"//evil.example", "https://evil.example/", `/\evil.example`, ""} {
		rec := f.post("/login", url.Values{"name": {"alice"}, "password": {"secret"}, "next": {next}}, testToken)
		if loc := rec.Header().Get("Location"); loc != "/" {
			t.Errorf("next %q: Location %q", next, loc)
		}
	}

	// Signed in: the name and a sign-out button, no login link.
	body = wantPage(t, f.get("/", "Cookie", mixmaster.SessionCookie+"=session-alice"), http.StatusOK)
	wantContains(t, body, "Signed in as <strong>alice</strong>", `<form method="post" action="/logout">`)
	wantAbsent(t, body, "Sign in</a>")

	rec = f.post("/logout", nil, testToken, "Cookie", mixmaster.SessionCookie+"=session-alice")
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("logout: %d", rec.Code)
	}
	cleared := false
	for _, ck := range rec.Result().Cookies() {
		cleared = cleared || ck.Name == mixmaster.SessionCookie && ck.MaxAge < 0
	}
	if !cleared {
		t.Error("logout did not clear the session cookie")
	}
}

func TestLoginDisabled(t *testing.T) {
	for name, configure := range map[string]func(*Handler){
		"no authenticator": func(*Handler) {},
		"no users":         func(h *Handler) { h.Auth, h.NewSessionCookie = &fakeAuth{}, sessionCookie },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, configure)
			body := wantPage(t, f.get("/"), http.StatusOK)
			wantAbsent(t, body, "Sign in", "/login")
			body = wantPage(t, f.get("/login"), http.StatusOK)
			wantContains(t, body, "Sign-in is not set up on this server")
			wantAbsent(t, body, `name="password"`)
			wantPage(t, f.post("/login", url.Values{"name": {"a"}, "password": {"b"}}, testToken), http.StatusNotFound)
		})
	}
}

func TestRequireRead(t *testing.T) {
	f := newFixture(t, withLogin, func(h *Handler) { h.RequireRead = requireUser })
	f.create(&mixmaster.Job{Project: "demo/hello", Target: "master"})
	for _, path := range []string{"/", "/projects", "/project/demo/hello", "/job/demo/hello/1", "/events"} {
		if rec := f.get(path); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s: status %d", path, rec.Code)
		}
	}
	// The login page and the static files stay open.
	wantPage(t, f.get("/login"), http.StatusOK)
	if rec := f.get(staticURL("app.css")); rec.Code != http.StatusOK {
		t.Errorf("static: %d", rec.Code)
	}
	wantPage(t, f.get("/job/demo/hello/1", "Cookie", mixmaster.SessionCookie+"=session-alice"), http.StatusOK)
}

func TestStatic(t *testing.T) {
	f := newFixture(t)
	body := wantPage(t, f.get("/"), http.StatusOK)
	for name, ctype := range map[string]string{
		"app.css":  "text/css; charset=utf-8",
		"app.js":   "text/javascript; charset=utf-8",
		"icon.svg": "image/svg+xml",
	} {
		u := staticURL(name)
		if !strings.Contains(body, u) {
			t.Errorf("page does not use %s", u)
		}
		rec := f.get(u)
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != ctype ||
			rec.Header().Get("Cache-Control") != "public, max-age=31536000, immutable" {
			t.Errorf("%s: %d %q %q", u, rec.Code, rec.Header().Get("Content-Type"), rec.Header().Get("Cache-Control"))
		}
		want, _ := staticFS.ReadFile("static/" + name)
		if got, _ := io.ReadAll(rec.Body); string(got) != string(want) {
			t.Errorf("%s: wrong body", u)
		}
	}
	for _, path := range []string{"/static/app.css", "/static/nope.js", "/static/../handler.go"} {
		if rec := f.get(path); rec.Code != http.StatusNotFound {
			t.Errorf("%s: status %d", path, rec.Code)
		}
	}
}
