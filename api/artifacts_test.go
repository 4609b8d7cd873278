package api

import (
	"archive/tar"
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/labstack/echo/v4"

	"mixmaster"
	"mixmaster/artifacts"
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
