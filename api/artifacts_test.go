package api

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"mixmaster"
	"mixmaster/artifacts"
	"mixmaster/jobs"
	"mixmaster/store"
)

func TestArtifactDownloads(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "artifacts")
	os.MkdirAll(filepath.Join(tree, "sub"), 0o755)
	os.WriteFile(filepath.Join(tree, "a.txt"), []byte("alpha"), 0o644)
	os.WriteFile(filepath.Join(tree, "sub", "b.txt"), []byte("beta"), 0o644)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("secret"), 0o600)
	os.Symlink("../secret", filepath.Join(tree, "escape"))

	st := &memStore{}
	st.put(&mixmaster.Job{ID: 1, Project: "p", Kind: mixmaster.KindArtifact, Status: mixmaster.StatusSucceeded})
	st.put(&mixmaster.Job{ID: 2, Project: "p", Kind: mixmaster.KindArtifact, Status: mixmaster.StatusRunning})
	st.put(&mixmaster.Job{ID: 3, Project: "p", Kind: mixmaster.KindArtifact, Status: mixmaster.StatusFailed})
	h := &Handler{
		Jobs: st.fake(),
		Artifacts: &fakeArtifacts{ArtifactsDirFn: func(j *mixmaster.Job) string {
			if j.ID == 3 {
				return filepath.Join(dir, "none")
			}
			return tree
		}},
		WriteTar: artifacts.WriteTar,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	e := echo.New()
	e.HTTPErrorHandler = NewErrorHandler(h.Logger)
	h.Register(e)
	get := func(url string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, url, nil))
		return rec
	}

	rec := get("/api/v1/jobs/1/artifacts")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/x-tar" {
		t.Fatalf("tar: %d %s", rec.Code, rec.Body)
	}
	names := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(rec.Body.Bytes()))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		names[hdr.Name] = string(b)
		if hdr.Typeflag == tar.TypeSymlink {
			names[hdr.Name] = "-> " + hdr.Linkname
		}
	}
	if names["a.txt"] != "alpha" || names["sub/b.txt"] != "beta" || names["escape"] != "-> ../secret" {
		t.Errorf("tar entries = %q", names)
	}

	for _, tt := range []struct {
		url  string
		code int
		body string
	}{
		{"/api/v1/jobs/1/artifacts?path=a.txt", 200, "alpha"},
		{"/api/v1/jobs/1/artifacts?path=sub/b.txt", 200, "beta"},
		{"/api/v1/jobs/1/artifacts?path=../secret", 404, ""},
		{"/api/v1/jobs/1/artifacts?path=escape", 404, ""},
		{"/api/v1/jobs/1/artifacts?path=sub", 404, ""},
		{"/api/v1/jobs/2/artifacts", 409, "not ready"},
		{"/api/v1/jobs/3/artifacts", 404, "kept no artifacts"},
		{"/api/v1/jobs/9/artifacts", 404, ""},
	} {
		rec := get(tt.url)
		if rec.Code != tt.code || !bytes.Contains(rec.Body.Bytes(), []byte(tt.body)) || bytes.Contains(rec.Body.Bytes(), []byte("secret\n")) {
			t.Errorf("GET %s = %d %q; want %d with %q", tt.url, rec.Code, rec.Body, tt.code, tt.body)
		}
	}
}

// artifactStack serves the artifacts of one finished webhook job, over a
// real store, the real job service and the real tar writer. It returns
// the echo stack and the job's artifacts folder.
func artifactStack(t *testing.T) (*echo.Echo, string) {
	t.Helper()
	root := t.TempDir()
	db, err := store.Open(filepath.Join(root, "mixmaster.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	job, _, err := db.CreateJob(ctx, &mixmaster.Job{Kind: mixmaster.KindWebhook, Project: "p", Target: "master"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Claim(ctx, func(*mixmaster.Job) bool { return true }); err != nil {
		t.Fatal(err)
	}
	code := 0
	if _, err := db.Finish(ctx, job.ID, mixmaster.Outcome{Status: mixmaster.StatusSucceeded, ExitCode: &code}); err != nil {
		t.Fatal(err)
	}
	files := &artifacts.Files{Root: root}
	tree := files.ArtifactsDir(job.ID)
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	svc := &jobs.Service{Store: db, Root: root, WebhookArtifactsDir: files.ArtifactsDir}
	e, _ := newEcho(t, &Handler{Jobs: db, Logs: files, Artifacts: svc, WriteTar: artifacts.WriteTar})
	return e, tree
}

// serveWithin serves a request and fails the test if no answer came by a
// generous deadline, as when a handler blocks opening a FIFO.
func serveWithin(t *testing.T, e *echo.Echo, target string) *httptest.ResponseRecorder {
	t.Helper()
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- serve(e, http.MethodGet, target, "") }()
	select {
	case rec := <-done:
		return rec
	case <-time.After(30 * time.Second):
		t.Fatalf("GET %s: no answer", target)
		return nil
	}
}

// FIFOs, sockets and devices among a job's artifacts are neither served
// nor opened: asking for one is answered at once, and the archive of the
// tree leaves them out.
func TestArtifactSpecialFiles(t *testing.T) {
	e, tree := artifactStack(t)
	if err := os.WriteFile(filepath.Join(tree, "a.txt"), []byte("alpha"), 0o644); err != nil {
		t.Fatal(err)
	}
	specials := []string{"fifo", "sock"}
	if err := syscall.Mkfifo(filepath.Join(tree, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(tree, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if os.Geteuid() == 0 {
		// The null device's numbers: harmless if it were opened, but it
		// must not be.
		if err := syscall.Mknod(filepath.Join(tree, "null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
			t.Fatal(err)
		}
		specials = append(specials, "null")
	}

	for _, name := range specials {
		rec := serveWithin(t, e, "/api/v1/jobs/1/artifacts?path="+name)
		if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "not a regular file") {
			t.Errorf("GET %s: %d %q, want 404 saying it is not a regular file", name, rec.Code, rec.Body)
		}
	}

	rec := serveWithin(t, e, "/api/v1/jobs/1/artifacts")
	if rec.Code != http.StatusOK {
		t.Fatalf("tar: %d %q", rec.Code, rec.Body)
	}
	var names []string
	tr := tar.NewReader(bytes.NewReader(rec.Body.Bytes()))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("tar stream: %v", err)
		}
		names = append(names, hdr.Name)
	}
	if !slices.Equal(names, []string{"a.txt"}) {
		t.Errorf("tar entries %q, want only a.txt", names)
	}
}

// A single file is offered as a download under its own name, which the
// browser may not sniff into a page of the service's origin.
func TestArtifactFileHeaders(t *testing.T) {
	e, tree := artifactStack(t)
	for name, disposition := range map[string]string{
		"report.html":    `attachment; filename=report.html`,
		`say "hi".html`:  `attachment; filename="say \"hi\".html"`,
		"grüße.txt":      `attachment; filename*=utf-8''gr%C3%BC%C3%9Fe.txt`,
		"line\nbreak.sh": `attachment; filename*=utf-8''line%0Abreak.sh`,
	} {
		if err := os.MkdirAll(filepath.Join(tree, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tree, "sub", name), []byte("<script>alert(1)</script>"), 0o644); err != nil {
			t.Fatal(err)
		}
		rec := serve(e, http.MethodGet, "/api/v1/jobs/1/artifacts?"+url.Values{"path": {"sub/" + name}}.Encode(), "")
		if rec.Code != http.StatusOK || rec.Body.String() != "<script>alert(1)</script>" {
			t.Fatalf("GET %q: %d %q", name, rec.Code, rec.Body)
		}
		for header, want := range map[string]string{
			"Content-Type":           "application/octet-stream",
			"X-Content-Type-Options": "nosniff",
			"Content-Disposition":    disposition,
			"Content-Length":         "25",
		} {
			if got := rec.Header().Get(header); got != want {
				t.Errorf("GET %q: %s %q, want %q", name, header, got, want)
			}
		}
	}
}
