package api

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

// Forgejo, GitHub and GitLab name their headers differently; Gitea sends
// several of these at once, so the first non-empty one wins. A delivery id
// makes a repeated delivery return the job of the first.
var (
	eventHeaders    = []string{"X-Gitea-Event", "X-Forgejo-Event", "X-GitHub-Event"}
	deliveryHeaders = []string{"X-Gitea-Delivery", "X-Forgejo-Delivery", "X-GitHub-Delivery", "X-Gitlab-Event-UUID"}
)

// giteaPush holds the fields of a Gitea/Forgejo push payload that a build
// needs. Everything else in the payload is ignored.
type giteaPush struct {
	Ref        string `json:"ref"`
	After      string `json:"after"`
	CompareURL string `json:"compare_url"`
	Commits    []struct {
		ID      string `json:"id"`
		Message string `json:"message"`
		URL     string `json:"url"`
	} `json:"commits"`
	Repository struct {
		FullName string `json:"full_name"`
		SSHURL   string `json:"ssh_url"`
		CloneURL string `json:"clone_url"`
		HTMLURL  string `json:"html_url"`
	} `json:"repository"`
}

// gitea handles POST /gitea.
func (h *Handler) gitea(c echo.Context) error {
	return h.webhook(c, decodeGitea)
}

var (
	eventRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	deletedRE = regexp.MustCompile(`^(0{40}|0{64})$`)
)

// decodeGitea turns a Gitea/Forgejo push delivery into a request. skip is
// non-empty when the delivery is fine but nothing should be built (a ping,
// another event, a tag push, a branch deletion); it is the reply text.
// Every error is coded.
func decodeGitea(header http.Header, body []byte) (r mixmaster.Request, skip string, err error) {
	switch event := strings.ToLower(firstHeader(header, eventHeaders)); {
	case event == "ping":
		return r, "pong", nil
	case event != "" && event != "push":
		if !eventRE.MatchString(event) {
			return r, "ignoring unsupported event", nil
		}
		return r, "ignoring " + event + " event", nil
	}

	var p giteaPush
	if err := json.Unmarshal(body, &p); err != nil {
		return r, "", jsonError(err)
	}

	// Tags and deletions are skipped before anything else is required:
	// they are normal deliveries, just not builds.
	if strings.HasPrefix(p.Ref, "refs/tags/") {
		return r, "ignoring tag push", nil
	}
	if deletedRE.MatchString(p.After) {
		return r, "ignoring branch deletion", nil
	}
	if p.Repository.FullName == "" {
		return r, "", mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "repository.full_name not specified")
	}
	if p.Ref == "" {
		return r, "", mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "ref not specified")
	}
	target, ok := strings.CutPrefix(p.Ref, "refs/heads/")
	if !ok || target == "" {
		return r, "", mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "Unsupported ref '%s'", printable(p.Ref))
	}

	r = mixmaster.Request{
		Trigger:       mixmaster.TriggerGitea,
		Project:       p.Repository.FullName,
		Target:        target,
		Commit:        p.After,
		RepositoryURL: p.Repository.SSHURL,
		ViewURL:       p.CompareURL,
		Notify:        true,
		DeliveryID:    firstHeader(header, deliveryHeaders),
	}
	if r.RepositoryURL == "" {
		r.RepositoryURL = p.Repository.CloneURL
	}
	// A push without new commits (a reset to an older one) has neither a
	// compare URL nor commits; the repository page is better than nothing.
	if r.ViewURL == "" && len(p.Commits) > 0 {
		r.ViewURL = p.Commits[0].URL
	}
	if r.ViewURL == "" {
		r.ViewURL = p.Repository.HTMLURL
	}
	lines := make([]string, 0, len(p.Commits))
	for _, cm := range p.Commits {
		subject, _, _ := strings.Cut(cm.Message, "\n")
		lines = append(lines, strings.TrimSpace(prefix(cm.ID, 8)+" "+strings.TrimSpace(subject)))
	}
	r.Message = strings.Join(lines, "\n")
	return r, "", nil
}

func firstHeader(h http.Header, names []string) string {
	for _, n := range names {
		if v := strings.TrimSpace(h.Get(n)); v != "" {
			return v
		}
	}
	return ""
}

// prefix returns the first n characters of s, never splitting one.
func prefix(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}
