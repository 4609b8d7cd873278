package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mixmaster"
)

// TestDeliveriesNeedProof runs a service with a token and a project
// secret: unsigned or unauthenticated requests are refused and queue
// nothing; signed deliveries and token-bearing requests are accepted.
func TestDeliveriesNeedProof(t *testing.T) {
	repo := newTestRepo(t)
	projects := t.TempDir()
	os.MkdirAll(filepath.Join(projects, "p"), 0o755)
	os.WriteFile(filepath.Join(projects, "p", "build"), []byte("#!/bin/sh\necho ok > artifacts/ok\n"), 0o755)
	s := startServer(t, `
[_]
buildRoot = @ROOT@
projectsPath = `+projects+`
tokens = t0k3n

[test-org/test-repo]
.repository = `+repo.Dir+`
.secret = s3cret
production = echo deployed

[test-org/open]
.repository = `+repo.Dir+`
production = echo open
`)
	signed := `{"project": "test-org/test-repo", "target": "production"}`
	mac := hmac.New(sha256.New, []byte("s3cret"))
	mac.Write([]byte(signed))
	signature := hex.EncodeToString(mac.Sum(nil))

	tests := []struct {
		name, path, body string
		header           map[string]string
		status           int
	}{
		{"unsigned delivery", "/", signed, nil, http.StatusUnauthorized},
		// The delivery is decoded before its signature is checked, with
		// the secret of the project it names: a Gitea push for /gitea.
		{"empty signature", "/gitea", `{"ref": "refs/heads/production", "repository": {"full_name": "test-org/test-repo"}}`, map[string]string{"X-Gitea-Signature": ""}, http.StatusUnauthorized},
		{"wrong signature", "/", signed, map[string]string{"X-Hub-Signature-256": "sha256=" + strings.Repeat("0", 64)}, http.StatusUnauthorized},
		{"a token is no signature", "/", signed, map[string]string{"Authorization": "Bearer t0k3n"}, http.StatusUnauthorized},
		{"no secret, no token", "/", `{"project": "test-org/open", "target": "production"}`, nil, http.StatusUnauthorized},
		{"wrong token", "/", `{"project": "test-org/open", "target": "production"}`, map[string]string{"Authorization": "Bearer nope"}, http.StatusUnauthorized},
		{"artifact build without a token", "/jobs", `{"Project": "p"}`, nil, http.StatusUnauthorized},
		{"signed delivery", "/", signed, map[string]string{"X-Hub-Signature-256": "sha256=" + signature}, http.StatusAccepted},
		{"no secret, token", "/", `{"project": "test-org/open", "target": "production"}`, map[string]string{"Authorization": "Bearer t0k3n"}, http.StatusAccepted},
		{"artifact build with a token", "/jobs", `{"Project": "p"}`, map[string]string{"Authorization": "Bearer t0k3n"}, http.StatusCreated},
	}
	accepted := 0
	for _, tt := range tests {
		if code := s.post(t, tt.path, tt.body, tt.header, nil); code != tt.status {
			t.Errorf("%s: POST %s = %d, want %d", tt.name, tt.path, code, tt.status)
		}
		if tt.status != http.StatusUnauthorized {
			accepted++
		}
	}
	jobs, _ := s.DB.Jobs(t.Context(), mixmaster.JobFilter{})
	if len(jobs) != accepted {
		t.Errorf("%d jobs queued, want %d", len(jobs), accepted)
	}
}
