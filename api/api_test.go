package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

// syncBuffer is a log sink that handlers and tests may use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newEcho wires h into a fresh echo with the real error handler and
// returns it with the log output.
func newEcho(t testing.TB, h *Handler) (*echo.Echo, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if h.Logger == nil {
		h.Logger = logger
	}
	e := echo.New()
	e.HideBanner = true
	e.HTTPErrorHandler = NewErrorHandler(logger)
	h.Register(e)
	return e, logs
}

// serve sends one request through the whole echo stack. headers are
// name, value pairs.
func serve(e *echo.Echo, method, target, body string, headers ...string) *httptest.ResponseRecorder {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

// postJSON posts a webhook delivery as JSON, as forges send it.
func postJSON(e *echo.Echo, target, body string, headers ...string) *httptest.ResponseRecorder {
	return serve(e, http.MethodPost, target, body, append([]string{"Content-Type", "application/json"}, headers...)...)
}

// recordingSubmitter accepts every request as job id, remembering them.
type recordingSubmitter struct {
	mu      sync.Mutex
	got     []mixmaster.Request
	id      mixmaster.JobID
	created bool
	err     error
}

func (s *recordingSubmitter) fake() *fakeSubmitter {
	return &fakeSubmitter{SubmitFn: func(_ context.Context, r mixmaster.Request) (*mixmaster.Job, bool, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.got = append(s.got, r)
		if s.err != nil {
			return nil, false, s.err
		}
		return &mixmaster.Job{ID: s.id, Project: r.Project, Status: mixmaster.StatusQueued}, s.created, nil
	}}
}

func (s *recordingSubmitter) requests() []mixmaster.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mixmaster.Request(nil), s.got...)
}

// refusingSubmitter fails the test when anything is submitted.
func refusingSubmitter(t *testing.T) *fakeSubmitter {
	return &fakeSubmitter{SubmitFn: func(_ context.Context, r mixmaster.Request) (*mixmaster.Job, bool, error) {
		t.Errorf("Submit called with %+v; want nothing queued", r)
		return nil, false, errors.New("unexpected submit")
	}}
}

func mustReadFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustAccepted(t testing.TB, rec *httptest.ResponseRecorder, status int) accepted {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %q", rec.Code, status, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want JSON", ct)
	}
	var a accepted
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	return a
}

func wantText(t testing.TB, rec *httptest.ResponseRecorder, status int, body string) {
	t.Helper()
	if rec.Code != status || rec.Body.String() != body {
		t.Errorf("got %d %q, want %d %q", rec.Code, rec.Body.String(), status, body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
}

func wantJSONError(t testing.TB, rec *httptest.ResponseRecorder, status int, msg string) {
	t.Helper()
	if rec.Code != status {
		t.Errorf("status = %d, want %d; body %q", rec.Code, status, rec.Body.String())
	}
	var body struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q is not a JSON error: %v", rec.Body.String(), err)
	}
	if msg != "" && body.Error != msg {
		t.Errorf("error = %q, want %q", body.Error, msg)
	}
}

const lightweightBody = `{
	"scm": "git",
	"repositoryUrl": "git@git.example.com:test-org/test-repo.git",
	"project": "test-org/test-repo",
	"commit": "9f2c4e1ab3d5f60718293a4b5c6d7e8f90a1b2c3",
	"target": "staging/my-feature",
	"task": "docs",
	"message": "Fix the docs",
	"viewUrl": "https://git.example.com/test-org/test-repo/commit/9f2c4e1a",
	"notifications": "all",
	"extra": {"ignored": [1, 2, 3]}
}`

func TestLightweightAccepted(t *testing.T) {
	for _, method := range []string{http.MethodPost, http.MethodPut} {
		t.Run(method, func(t *testing.T) {
			sub := &recordingSubmitter{id: 7, created: true}
			e, _ := newEcho(t, &Handler{Submitter: sub.fake()})

			rec := serve(e, method, "/", lightweightBody, "Content-Type", "application/json")

			a := mustAccepted(t, rec, http.StatusAccepted)
			if a.ID != 7 || a.URL != "http://example.com/job/test-org/test-repo/7" {
				t.Errorf("reply = %+v", a)
			}
			want := mixmaster.Request{
				Trigger:       mixmaster.TriggerWebhook,
				Project:       "test-org/test-repo",
				Target:        "staging/my-feature",
				Task:          "docs",
				Commit:        "9f2c4e1ab3d5f60718293a4b5c6d7e8f90a1b2c3",
				RepositoryURL: "git@git.example.com:test-org/test-repo.git",
				ViewURL:       "https://git.example.com/test-org/test-repo/commit/9f2c4e1a",
				Message:       "Fix the docs",
				Notify:        true,
			}
			if got := sub.requests(); len(got) != 1 || got[0] != want {
				t.Errorf("submitted %+v, want %+v", got, want)
			}
		})
	}
}

func TestLightweightRedelivery(t *testing.T) {
	sub := &recordingSubmitter{id: 3, created: false}
	e, _ := newEcho(t, &Handler{Submitter: sub.fake()})
	a := mustAccepted(t, postJSON(e, "/", `{"project":"p","target":"main"}`), http.StatusOK)
	if a.ID != 3 {
		t.Errorf("id = %d, want 3", a.ID)
	}
}

func TestLightweightNotifications(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  bool
	}{
		{`"none"`, false},
		{`"NONE"`, false},
		{`"all"`, true},
		{`"email"`, true},
		{`null`, true},
		{``, true},
	} {
		t.Run(tc.value, func(t *testing.T) {
			sub := &recordingSubmitter{id: 1, created: true}
			e, _ := newEcho(t, &Handler{Submitter: sub.fake()})
			body := `{"project":"p","target":"main"}`
			if tc.value != "" {
				body = `{"project":"p","target":"main","notifications":` + tc.value + `}`
			}
			mustAccepted(t, postJSON(e, "/", body), http.StatusAccepted)
			if got := sub.requests(); len(got) != 1 || got[0].Notify != tc.want {
				t.Errorf("submitted %+v, want Notify %v", got, tc.want)
			}
		})
	}
}

func TestLightweightRejected(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		status     int
		msg        string
	}{
		{"empty object", `{}`, 422, "project not specified\n"},
		{"null project", `{"project":null,"target":"main"}`, 422, "project not specified\n"},
		{"empty project", `{"project":"","target":"main"}`, 422, "project not specified\n"},
		{"missing target", `{"project":"p"}`, 422, "target not specified\n"},
		{"unsupported scm", `{"scm":"svn","project":"p","target":"main"}`, 422, "Unsupported scm 'svn'\n"},
		{"scm with a newline", `{"scm":"x\ny","project":"p","target":"main"}`, 422, "Unsupported scm 'x?y'\n"},
		{"number project", `{"project":5,"target":"main"}`, 400, "project must be a string.\n"},
		{"object notifications", `{"project":"p","target":"main","notifications":{}}`, 400, "notifications must be a string.\n"},
		{"array payload", `["project"]`, 400, "The payload must be a JSON object.\n"},
		{"empty body", ``, 400, "Malformed JSON at byte 0: unexpected end of JSON input.\n"},
		{"truncated", `{`, 400, "Malformed JSON at byte 1: unexpected end of JSON input.\n"},
		{"trailing data", `{"project":"p","target":"t"} x`, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newEcho(t, &Handler{Submitter: refusingSubmitter(t)})
			rec := postJSON(e, "/", tc.body)
			if tc.msg == "" {
				if rec.Code != tc.status || !strings.HasPrefix(rec.Body.String(), "Malformed JSON") {
					t.Errorf("got %d %q", rec.Code, rec.Body.String())
				}
				return
			}
			wantText(t, rec, tc.status, tc.msg)
		})
	}
}

func TestMalformedBodyNotEchoed(t *testing.T) {
	e, _ := newEcho(t, &Handler{Submitter: refusingSubmitter(t)})
	rec := postJSON(e, "/", `{"project": "p", "token": "s3cr3t-value" oops}`)
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status = %d", rec.Code)
	}
	if strings.Contains(rec.Body.String(), "s3cr3t") || strings.Contains(rec.Body.String(), "oops") {
		t.Errorf("reply repeats the body: %q", rec.Body.String())
	}
}

func TestBodyLimit(t *testing.T) {
	big := `{"project":"p","target":"main","message":"` + strings.Repeat("x", 200) + `"}`
	for _, tc := range []struct {
		name    string
		chunked bool
	}{{"content-length", false}, {"chunked", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newEcho(t, &Handler{Submitter: refusingSubmitter(t), BodyLimit: 64})
			var body io.Reader = strings.NewReader(big)
			if tc.chunked {
				body = io.MultiReader(body) // hides the length
			}
			req := httptest.NewRequest(http.MethodPost, "/gitea", body)
			req.Header.Set("Content-Type", "application/json")
			if !tc.chunked && req.ContentLength != int64(len(big)) || tc.chunked && req.ContentLength != -1 {
				t.Fatalf("ContentLength = %d", req.ContentLength)
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			wantText(t, rec, http.StatusRequestEntityTooLarge, "Request body too large (limit 64 bytes).\n")
		})
	}
}

func TestRoutingErrors(t *testing.T) {
	e, _ := newEcho(t, &Handler{Submitter: refusingSubmitter(t)})

	rec := serve(e, http.MethodGet, "/gitea", "")
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET /gitea: status = %d", rec.Code)
	}
	if allow := rec.Header().Get("Allow"); !strings.Contains(allow, "POST") {
		t.Errorf("Allow = %q", allow)
	}
	if !strings.HasPrefix(rec.Body.String(), "Method GET is not allowed here; allowed: ") {
		t.Errorf("body = %q", rec.Body.String())
	}

	wantText(t, serve(e, http.MethodGet, "/no/such/page", ""), http.StatusNotFound, "Not found.\n")
	wantJSONError(t, serve(e, http.MethodGet, "/api/v1/nothing", ""), http.StatusNotFound, "Not found.")
	wantJSONError(t, serve(e, http.MethodDelete, "/api/v1/jobs", ""), http.StatusMethodNotAllowed, "")

	rec = serve(e, http.MethodHead, "/no/such/page", "")
	if rec.Code != http.StatusNotFound || rec.Body.Len() != 0 {
		t.Errorf("HEAD: %d %q", rec.Code, rec.Body.String())
	}
}

func TestSubmitErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		msg    string
	}{
		{"unknown project", mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "Unknown project"), 422, "Unknown project"},
		{"bad commit", mixmaster.Errorf(mixmaster.EINVALID, "Invalid commit"), 400, "Invalid commit"},
		{"backlog full", mixmaster.Errorf(mixmaster.EUNAVAILABLE, "Too many queued jobs."), 503, "Too many queued jobs."},
		{"forbidden", mixmaster.Errorf(mixmaster.EFORBIDDEN, "No."), 403, "No."},
		{"unauthorized", mixmaster.Errorf(mixmaster.EUNAUTHORIZED, "Bad signature."), 401, "Bad signature."},
		{"conflict", mixmaster.Errorf(mixmaster.ECONFLICT, "Busy."), 409, "Busy."},
		{"not found", mixmaster.Errorf(mixmaster.ENOTFOUND, "Gone."), 404, "Gone."},
		{"too large", mixmaster.Errorf(mixmaster.ETOOLARGE, "Big."), 413, "Big."},
		{"unknown code", mixmaster.Errorf("weird", "do not show"), 500, "Internal error."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := &recordingSubmitter{err: tc.err}
			e, _ := newEcho(t, &Handler{Submitter: sub.fake()})
			wantText(t, postJSON(e, "/", `{"project":"p","target":"main"}`), tc.status, tc.msg+"\n")
		})
	}
}

func TestInternalErrorHidden(t *testing.T) {
	sub := &recordingSubmitter{err: errors.New("open /var/lib/secret/db: permission denied")}
	e, logs := newEcho(t, &Handler{Submitter: sub.fake()})

	rec := postJSON(e, "/", `{"project":"p","target":"main"}`)
	wantText(t, rec, http.StatusInternalServerError, "Internal error.\n")
	if !strings.Contains(logs.String(), "permission denied") {
		t.Errorf("the real error was not logged; log: %s", logs.String())
	}

	rec = postJSON(e, "/", `{"project":"p","target":"main"}`, "Accept", "application/json")
	wantJSONError(t, rec, http.StatusInternalServerError, "Internal error.")
}

func TestErrorAsJSONWhenAsked(t *testing.T) {
	e, _ := newEcho(t, &Handler{Submitter: refusingSubmitter(t)})
	rec := postJSON(e, "/", `{}`, "Accept", "application/json, text/plain")
	wantJSONError(t, rec, http.StatusUnprocessableEntity, "project not specified")
}

func TestVersion(t *testing.T) {
	e, _ := newEcho(t, &Handler{Version: "1.2.3"})
	wantText(t, serve(e, http.MethodGet, "/version", ""), http.StatusOK, "mixmaster 1.2.3\n")
}

func TestJobURL(t *testing.T) {
	for _, tc := range []struct{ project, want string }{
		{"test-org/test-repo", "https://ci.example.com:8585/job/test-org/test-repo/42"},
		{"plain", "https://ci.example.com:8585/job/plain/42"},
		{"we ird/na?me#x", "https://ci.example.com:8585/job/we%20ird/na%3Fme%23x/42"},
	} {
		if got := jobURL("https", "ci.example.com:8585", tc.project, 42); got != tc.want {
			t.Errorf("jobURL(%q) = %q, want %q", tc.project, got, tc.want)
		}
	}
}

func TestUnknownCodeLoggedAsError(t *testing.T) {
	sub := &recordingSubmitter{err: mixmaster.Errorf("weird", "do not show")}
	e, logs := newEcho(t, &Handler{Submitter: sub.fake()})
	wantText(t, postJSON(e, "/", `{"project":"p","target":"main"}`), http.StatusInternalServerError, "Internal error.\n")
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "do not show") {
		t.Errorf("log: %s", logs.String())
	}
}

func TestEchoHTTPErrors(t *testing.T) {
	e := echo.New()
	e.HTTPErrorHandler = NewErrorHandler(slog.New(slog.DiscardHandler))
	e.GET("/auth", func(echo.Context) error { return echo.NewHTTPError(http.StatusUnauthorized, "missing key") })
	e.GET("/bare", func(echo.Context) error { return echo.ErrForbidden })
	e.GET("/large", func(echo.Context) error { return echo.ErrStatusRequestEntityTooLarge })
	e.GET("/odd", func(echo.Context) error { return echo.NewHTTPError(0) })
	e.GET("/boom", func(echo.Context) error {
		return echo.NewHTTPError(http.StatusBadGateway, "upstream at 10.0.0.3 said no")
	})

	wantText(t, serve(e, http.MethodGet, "/auth", ""), http.StatusUnauthorized, "missing key\n")
	wantText(t, serve(e, http.MethodGet, "/bare", ""), http.StatusForbidden, "Forbidden.\n")
	wantText(t, serve(e, http.MethodGet, "/large", ""), http.StatusRequestEntityTooLarge, "Request body too large.\n")
	wantText(t, serve(e, http.MethodGet, "/odd", ""), http.StatusInternalServerError, "Internal error.\n")
	wantText(t, serve(e, http.MethodGet, "/boom", ""), http.StatusBadGateway, "Internal error.\n")
}
