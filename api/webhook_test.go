package api

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"mixmaster"
)

func FuzzDecodeLightweight(f *testing.F) {
	for _, seed := range []string{
		lightweightBody,
		`{"project":"p","target":"main"}`,
		`{"project":"p","target":"main","scm":"GIT","notifications":"None"}`,
		`{"project":1}`,
		`{"project":"p","target":null}`,
		`[]`,
		`null`,
		`{`,
		``,
		`{"scm":"\u0000\ud800"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeLightweight(body)
		if err != nil {
			if code := mixmaster.ErrorCode(err); code != mixmaster.EINVALID && code != mixmaster.EUNPROCESSABLE {
				t.Errorf("error %q has code %q", err, code)
			}
			return
		}
		if r.Project == "" || r.Target == "" || r.Trigger != mixmaster.TriggerWebhook {
			t.Errorf("accepted %+v", r)
		}
	})
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"svn":      "svn",
		"a\nb\x1b": "a?b?",
		"\xff":     "?",
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
	long := make([]rune, 150)
	for i := range long {
		long[i] = 'é'
	}
	if got := []rune(printable(string(long))); len(got) != 101 {
		t.Errorf("long value kept %d runes, want 100 and an ellipsis", len(got))
	}
}

// webhookRoutes are the routes that queue builds.
var webhookRoutes = []struct{ method, path, body string }{
	{http.MethodPost, "/", `{"project":"test-org/test-repo","target":"production"}`},
	{http.MethodPut, "/", `{"project":"test-org/test-repo","target":"production"}`},
	{http.MethodPost, "/gitea", giteaPushBody},
}

const giteaPushBody = `{"ref":"refs/heads/production","after":"9f2c4e1ab3d5f60718293a4b5c6d7e8f90a1b2c3","repository":{"full_name":"test-org/test-repo"}}`

// An unsigned delivery must be JSON: a page in a browser can send forms
// and text/plain to this machine without asking first, but not JSON.
func TestUnsignedDeliveryMustBeJSON(t *testing.T) {
	for _, rt := range webhookRoutes {
		for _, tc := range []struct {
			contentType string
			status      int
		}{
			{"application/json", http.StatusAccepted},
			{"application/json; charset=utf-8", http.StatusAccepted},
			{"Application/JSON", http.StatusAccepted},
			{"text/plain", http.StatusUnsupportedMediaType},
			{"text/plain; charset=utf-8", http.StatusUnsupportedMediaType},
			{"application/x-www-form-urlencoded", http.StatusUnsupportedMediaType},
			{"multipart/form-data; boundary=x", http.StatusUnsupportedMediaType},
			{"", http.StatusUnsupportedMediaType},
		} {
			t.Run(rt.method+rt.path+" "+tc.contentType, func(t *testing.T) {
				sub := &recordingSubmitter{id: 1, created: true}
				e, _ := newEcho(t, &Handler{Submitter: sub.fake()})
				body := rt.body
				if strings.HasPrefix(tc.contentType, "application/x-www-form-urlencoded") {
					body = url.Values{"payload": {rt.body}}.Encode()
				}
				rec := serve(e, rt.method, rt.path, body, "Content-Type", tc.contentType)
				if rec.Code != tc.status {
					t.Fatalf("status %d %q, want %d", rec.Code, rec.Body, tc.status)
				}
				if tc.status == http.StatusUnsupportedMediaType && !strings.Contains(rec.Body.String(), "application/json") {
					t.Errorf("body %q does not say what to send", rec.Body)
				}
				if queued := len(sub.requests()); (tc.status == http.StatusAccepted) != (queued == 1) {
					t.Errorf("%d jobs queued", queued)
				}
			})
		}
	}
}

// GitHub's default form encoding is accepted when signed: the signature
// is over the body as sent, the payload field holds the JSON.
func TestSignedFormDelivery(t *testing.T) {
	secrets := func(p string) string {
		if p == "test-org/test-repo" {
			return "s3cret"
		}
		return ""
	}
	for _, rt := range webhookRoutes {
		form := url.Values{"payload": {rt.body}}.Encode()
		for _, tc := range []struct {
			name, body, signature string
			status                int
		}{
			{"signed", form, sign("s3cret", form), http.StatusAccepted},
			{"signature of the json", form, sign("s3cret", rt.body), http.StatusUnauthorized},
			{"unsigned", form, "", http.StatusUnauthorized},
			{"no payload field", "json=" + url.QueryEscape(rt.body), sign("s3cret", "json="+url.QueryEscape(rt.body)), http.StatusBadRequest},
			{"two payload fields", form + "&" + form, sign("s3cret", form+"&"+form), http.StatusBadRequest},
		} {
			t.Run(rt.method+rt.path+" "+tc.name, func(t *testing.T) {
				sub := &recordingSubmitter{id: 1, created: true}
				e, _ := newEcho(t, &Handler{Submitter: sub.fake(), Secrets: secrets})
				rec := serve(e, rt.method, rt.path, tc.body, "Content-Type", "application/x-www-form-urlencoded",
					"X-Hub-Signature-256", "sha256="+tc.signature)
				if rec.Code != tc.status {
					t.Fatalf("status %d %q, want %d", rec.Code, rec.Body, tc.status)
				}
				got := sub.requests()
				if tc.status != http.StatusAccepted {
					if len(got) != 0 {
						t.Errorf("queued %+v", got)
					}
					return
				}
				if len(got) != 1 || got[0].Project != "test-org/test-repo" || got[0].Target != "production" || !got[0].Signed {
					t.Errorf("submitted %+v", got)
				}
			})
		}
	}
}

// A page on another site cannot queue a build through a visitor's
// browser, whatever it sends; forges send neither header and pass.
func TestWebhookRefusesCrossSite(t *testing.T) {
	for _, rt := range webhookRoutes {
		for _, tc := range []struct {
			name    string
			headers []string
			status  int
		}{
			{"forge", nil, http.StatusAccepted},
			{"same origin", []string{"Sec-Fetch-Site", "same-origin", "Origin", "http://example.com"}, http.StatusAccepted},
			{"typed by hand", []string{"Sec-Fetch-Site", "none"}, http.StatusAccepted},
			{"cross site", []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
			{"same site", []string{"Sec-Fetch-Site", "same-site"}, http.StatusForbidden},
			{"other origin", []string{"Origin", "http://evil.example"}, http.StatusForbidden},
		} {
			t.Run(rt.method+rt.path+" "+tc.name, func(t *testing.T) {
				sub := &recordingSubmitter{id: 1, created: true}
				e, _ := newEcho(t, &Handler{Submitter: sub.fake()})
				rec := serve(e, rt.method, rt.path, rt.body, append([]string{"Content-Type", "application/json"}, tc.headers...)...)
				if rec.Code != tc.status {
					t.Fatalf("status %d %q, want %d", rec.Code, rec.Body, tc.status)
				}
				if queued := len(sub.requests()); (tc.status == http.StatusAccepted) != (queued == 1) {
					t.Errorf("%d jobs queued", queued)
				}
			})
		}
	}
}

// The secret checked is that of the project built: a lightweight body
// naming another repository in repository.full_name gets no way around it.
func TestSignatureIsTheBuiltProjects(t *testing.T) {
	secrets := map[string]string{"test-org/test-repo": "s3cret"}
	body := `{"project":"test-org/test-repo","target":"production","repository":{"full_name":"other/unsigned"}}`
	for _, tc := range []struct {
		name    string
		headers []string
		status  int
	}{
		{"unsigned", nil, http.StatusUnauthorized},
		{"signed", []string{"X-Gitea-Signature", sign("s3cret", body)}, http.StatusAccepted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := &recordingSubmitter{id: 1, created: true}
			e, _ := newEcho(t, &Handler{Submitter: sub.fake(), Secrets: func(p string) string { return secrets[p] }})
			rec := postJSON(e, "/", body, tc.headers...)
			if rec.Code != tc.status {
				t.Fatalf("status %d %q, want %d", rec.Code, rec.Body, tc.status)
			}
			got := sub.requests()
			if tc.status == http.StatusAccepted && (len(got) != 1 || got[0].Project != "test-org/test-repo" || !got[0].Signed) {
				t.Errorf("submitted %+v", got)
			}
			if tc.status != http.StatusAccepted && len(got) != 0 {
				t.Errorf("queued %+v", got)
			}
		})
	}
}

// Signed is set only by a signature made with the project's secret.
func TestDeliverySigned(t *testing.T) {
	secrets := map[string]string{"test-org/test-repo": "s3cret"}
	signed := `{"project":"test-org/test-repo","target":"production"}`
	for _, tc := range []struct {
		name, path, body string
		headers          []string
		want             bool
	}{
		{"lightweight signed", "/", signed, []string{"X-Gitea-Signature", sign("s3cret", signed)}, true},
		{"gitea signed", "/gitea", giteaPushBody, []string{"X-Hub-Signature-256", "sha256=" + sign("s3cret", giteaPushBody)}, true},
		{"gitlab token", "/gitea", giteaPushBody, []string{"X-Gitlab-Token", "s3cret"}, true},
		{"project without a secret", "/", `{"project":"other/repo","target":"main"}`, []string{"X-Gitea-Signature", sign("", `{"project":"other/repo","target":"main"}`)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := &recordingSubmitter{id: 1, created: true}
			e, _ := newEcho(t, &Handler{Submitter: sub.fake(), Secrets: func(p string) string { return secrets[p] }})
			mustAccepted(t, postJSON(e, tc.path, tc.body, tc.headers...), http.StatusAccepted)
			if got := sub.requests(); len(got) != 1 || got[0].Signed != tc.want {
				t.Errorf("submitted %+v, want Signed %v", got, tc.want)
			}
		})
	}
}

// A ping answers without a signature, since it queues nothing.
func TestPingNeedsNoSignature(t *testing.T) {
	e, _ := newEcho(t, &Handler{Submitter: refusingSubmitter(t), Secrets: func(string) string { return "s3cret" }})
	wantText(t, postJSON(e, "/gitea", giteaPushBody, "X-Gitea-Event", "ping"), http.StatusOK, "pong\n")
}
