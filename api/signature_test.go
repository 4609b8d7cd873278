package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

func sign(secret, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	return hex.EncodeToString(mac.Sum(nil))
}

func TestWebhookSignatures(t *testing.T) {
	gitea, err := os.ReadFile("testdata/gitea.json")
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"test-org/test-repo": "s3cret"}
	tests := []struct {
		name, path, body string
		header           []string
		status           int
	}{
		{"gitea signature", "/gitea", string(gitea), []string{"X-Gitea-Signature", sign("s3cret", string(gitea))}, http.StatusAccepted},
		{"hub signature", "/gitea", string(gitea), []string{"X-Hub-Signature-256", "sha256=" + sign("s3cret", string(gitea))}, http.StatusAccepted},
		{"forgejo signature", "/gitea", string(gitea), []string{"X-Forgejo-Signature", sign("s3cret", string(gitea))}, http.StatusAccepted},
		{"gitlab token", "/gitea", string(gitea), []string{"X-Gitlab-Token", "s3cret"}, http.StatusAccepted},
		{"wrong secret", "/gitea", string(gitea), []string{"X-Gitea-Signature", sign("other", string(gitea))}, http.StatusUnauthorized},
		{"signature of another body", "/gitea", string(gitea), []string{"X-Hub-Signature-256", "sha256=" + sign("s3cret", "{}")}, http.StatusUnauthorized},
		{"wrong token", "/gitea", string(gitea), []string{"X-Gitlab-Token", "s3cre"}, http.StatusUnauthorized},
		{"empty signature", "/gitea", string(gitea), []string{"X-Gitea-Signature", ""}, http.StatusUnauthorized},
		{"missing signature", "/gitea", string(gitea), nil, http.StatusUnauthorized},
		{"garbage signature", "/gitea", string(gitea), []string{"X-Gitea-Signature", "zz"}, http.StatusUnauthorized},
		{"lightweight signed", "/", lightweightBody, []string{"X-Hub-Signature-256", "sha256=" + sign("s3cret", lightweightBody)}, http.StatusAccepted},
		{"lightweight unsigned", "/", lightweightBody, nil, http.StatusUnauthorized},
		{"project without a secret", "/", `{"project": "other/repo", "target": "main"}`, nil, http.StatusAccepted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := &recordingSubmitter{id: 1, created: true}
			e, _ := newEcho(t, &Handler{Submitter: sub.fake(), Secrets: func(p string) string { return secrets[p] }})
			header := append([]string{"Content-Type", "application/json", "X-Gitea-Event", "push"}, tt.header...)
			rec := serve(e, http.MethodPost, tt.path, tt.body, header...)
			if rec.Code != tt.status {
				t.Fatalf("status %d %q, want %d", rec.Code, rec.Body, tt.status)
			}
			if queued := len(sub.requests()); (tt.status == http.StatusAccepted) != (queued == 1) {
				t.Errorf("%d jobs queued", queued)
			}
		})
	}
}

// TestWebhookNeedsAuthWithoutSecret: a project without a secret takes
// deliveries as any other write: with a token, from a trusted network, or,
// with no auth configured, from this machine.
func TestWebhookNeedsAuthWithoutSecret(t *testing.T) {
	tests := []struct {
		name   string
		auth   *Auth
		remote string
		header []string
		status int
	}{
		{"no auth, loopback", &Auth{}, "127.0.0.1:4000", nil, http.StatusAccepted},
		{"no auth, elsewhere", &Auth{}, "192.0.2.7:4000", nil, http.StatusUnauthorized},
		{"token", &Auth{Tokens: []string{"t0k3n"}}, "192.0.2.7:4000", []string{"Authorization", "Bearer t0k3n"}, http.StatusAccepted},
		{"no token", &Auth{Tokens: []string{"t0k3n"}}, "127.0.0.1:4000", nil, http.StatusUnauthorized},
		{"trusted network", &Auth{Tokens: []string{"t0k3n"}, TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}, "192.0.2.7:4000", nil, http.StatusAccepted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := &recordingSubmitter{id: 1, created: true}
			h := &Handler{Submitter: sub.fake(), Auth: tt.auth, Secrets: func(string) string { return "" }}
			h.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			e := echo.New()
			e.HTTPErrorHandler = NewErrorHandler(h.Logger)
			e.IPExtractor = echo.ExtractIPDirect()
			e.Use(tt.auth.Identify())
			h.Register(e)
			for _, path := range []string{"/", "/gitea"} {
				body := lightweightBody
				if path == "/gitea" {
					b, _ := os.ReadFile("testdata/gitea.json")
					body = string(b)
				}
				req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
				req.RemoteAddr = tt.remote
				req.Host = "localhost:8585" // the name a local client uses
				req.Header.Set("X-Gitea-Event", "push")
				req.Header.Set("Content-Type", "application/json")
				for i := 0; i+1 < len(tt.header); i += 2 {
					req.Header.Set(tt.header[i], tt.header[i+1])
				}
				rec := httptest.NewRecorder()
				e.ServeHTTP(rec, req)
				if rec.Code != tt.status {
					t.Errorf("POST %s: %d %q, want %d", path, rec.Code, rec.Body, tt.status)
				}
			}
		})
	}
}
