package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

// authorizeDelivery authorizes a webhook delivery for project, the project
// the decoded delivery builds. A project with a secret (its .secret, else
// the global webhookSecret) accepts only deliveries whose raw body is
// signed with it; signed reports that one was. Without a secret the
// delivery is a write like any other: a token, a trusted network, or —
// with no auth configured at all — this machine; and it must be JSON.
func (h *Handler) authorizeDelivery(c echo.Context, project string, body []byte, form bool) (signed bool, err error) {
	secret := ""
	if h.Secrets != nil {
		secret = h.Secrets(project)
	}
	if secret != "" {
		if err := verifySignature(c.Request().Header, body, secret); err != nil {
			return false, err
		}
		return true, nil
	}
	if form {
		return false, unsupportedType()
	}
	if h.Auth == nil {
		return false, nil
	}
	if _, ok := mixmaster.UserFrom(c.Request().Context()); ok {
		return false, nil
	}
	return false, mixmaster.Errorf(mixmaster.EUNAUTHORIZED, "Sign the webhook with the project's secret, or send a token.")
}

// verifySignature accepts any of the schemes forges use, each compared in
// constant time: Gitea's and Forgejo's bare hex HMAC-SHA256 of the raw
// body, the "sha256=<hex>" form Gitea, Forgejo and GitHub send as
// X-Hub-Signature-256, and GitLab's shared token. An empty header counts
// as missing: Gitea sends empty signatures when it has no secret.
func verifySignature(header http.Header, body []byte, secret string) error {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	want := mac.Sum(nil)
	seen := false
	for _, name := range []string{"X-Gitea-Signature", "X-Forgejo-Signature", "X-Hub-Signature-256"} {
		v := strings.TrimSpace(header.Get(name))
		if v == "" {
			continue
		}
		seen = true
		got, err := hex.DecodeString(strings.TrimPrefix(v, "sha256="))
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	if token := header.Get("X-Gitlab-Token"); token != "" {
		seen = true
		if subtle.ConstantTimeCompare([]byte(token), []byte(secret)) == 1 {
			return nil
		}
	}
	if !seen {
		return mixmaster.Errorf(mixmaster.EUNAUTHORIZED, "Missing webhook signature: this project has a secret; set it in the webhook.")
	}
	return mixmaster.Errorf(mixmaster.EUNAUTHORIZED, "Invalid webhook signature.")
}
