package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

// checkSignature authorizes a webhook delivery before its body is acted
// on. A project with a secret (its .secret, else the global
// webhookSecret) accepts only deliveries signed with it; the body is read
// for the project's name first, and nothing else of it is trusted until the
// signature matches. Without a secret the delivery is a write like any
// other: a token, a trusted network, or — with no auth configured at all —
// this machine.
func (h *Handler) checkSignature(c echo.Context, body []byte) error {
	secret := ""
	if h.Secrets != nil {
		secret = h.Secrets(projectOf(body))
	}
	if secret != "" {
		return verifySignature(c.Request().Header, body, secret)
	}
	if h.Auth == nil {
		return nil
	}
	if _, ok := mixmaster.UserFrom(c.Request().Context()); ok {
		return nil
	}
	return mixmaster.Errorf(mixmaster.EUNAUTHORIZED, "Sign the webhook with the project's secret, or send a token.")
}

// projectOf finds the project a payload names: the forge's
// repository.full_name or the lightweight payload's project.
func projectOf(body []byte) string {
	var p struct {
		Project    string `json:"project"`
		Repository struct {
			FullName string `json:"full_name"`
		} `json:"repository"`
	}
	json.Unmarshal(body, &p) // a malformed body fails the signature check, or later the decoder
	if p.Repository.FullName != "" {
		return p.Repository.FullName
	}
	return p.Project
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
