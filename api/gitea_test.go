package api

import (
	"net/http"
	"strings"
	"testing"

	"mixmaster"
)

func TestGiteaPushAccepted(t *testing.T) {
	sub := &recordingSubmitter{id: 12, created: true}
	e, _ := newEcho(t, &Handler{Submitter: sub.fake()})

	rec := postJSON(e, "/gitea", mustReadFile(t, "testdata/gitea.json"),
		"Content-Type", "application/json",
		"X-Gitea-Event", "push",
		"X-Gitea-Delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473")

	a := mustAccepted(t, rec, http.StatusAccepted)
	if a.ID != 12 || a.URL != "http://example.com/job/test-org/test-repo/12" {
		t.Errorf("reply = %+v", a)
	}
	want := mixmaster.Request{
		Trigger:       mixmaster.TriggerGitea,
		Project:       "test-org/test-repo",
		Target:        "production",
		Commit:        "9f2c4e1ab3d5f60718293a4b5c6d7e8f90a1b2c3",
		RepositoryURL: "git@git.example.com:test-org/test-repo",
		ViewURL:       "http://example.com/compare_url",
		Message:       "4b825dc6 Test commit message\n9f2c4e1a Commit message for yyy test commit",
		Notify:        true,
		DeliveryID:    "f6266f16-1bf3-46a5-9ea4-602e06ead473",
	}
	if got := sub.requests(); len(got) != 1 || got[0] != want {
		t.Errorf("submitted\n%+v\nwant\n%+v", got, want)
	}
}

func TestGiteaRedelivery(t *testing.T) {
	sub := &recordingSubmitter{id: 12, created: false}
	e, _ := newEcho(t, &Handler{Submitter: sub.fake()})
	rec := postJSON(e, "/gitea", mustReadFile(t, "testdata/gitea.json"),
		"X-Forgejo-Event", "push", "X-Forgejo-Delivery", "d-1")
	a := mustAccepted(t, rec, http.StatusOK)
	if a.ID != 12 {
		t.Errorf("id = %d", a.ID)
	}
	if got := sub.requests(); len(got) != 1 || got[0].DeliveryID != "d-1" {
		t.Errorf("submitted %+v, want delivery d-1", got)
	}
}

// The original test fixture stands "HEAD" in for a SHA. Commits are not
// checked here: the submitter decides.
func TestGiteaOriginalFixture(t *testing.T) {
	sub := &recordingSubmitter{id: 1, created: true}
	e, _ := newEcho(t, &Handler{Submitter: sub.fake()})
	mustAccepted(t, postJSON(e, "/gitea", mustReadFile(t, "testdata/gitea-original.json")), http.StatusAccepted)
	got := sub.requests()
	if len(got) != 1 {
		t.Fatalf("submitted %d requests", len(got))
	}
	if got[0].Commit != "HEAD" || got[0].Target != "production" || got[0].DeliveryID != "" {
		t.Errorf("submitted %+v", got[0])
	}
	if want := "xxx Test commit message\nyyy Commit message for yyy test commit"; got[0].Message != want {
		t.Errorf("Message = %q, want %q", got[0].Message, want)
	}
}

func TestGiteaSkipped(t *testing.T) {
	fixture := mustReadFile(t, "testdata/gitea.json")
	tag := strings.Replace(fixture, `"refs/heads/production"`, `"refs/tags/v1.0"`, 1)
	deleted := strings.Replace(fixture, `"9f2c4e1ab3d5f60718293a4b5c6d7e8f90a1b2c3",
  "compare_url"`, `"0000000000000000000000000000000000000000",
  "compare_url"`, 1)
	if deleted == fixture {
		t.Fatal("fixture changed; cannot build the deletion payload")
	}
	for _, tc := range []struct {
		name, body string
		headers    []string
		reply      string
	}{
		{"ping", `{"hook_id": 1}`, []string{"X-Gitea-Event", "ping"}, "pong\n"},
		{"github ping", `{}`, []string{"X-GitHub-Event", "ping"}, "pong\n"},
		{"other event", `{"action":"opened"}`, []string{"X-Gitea-Event", "pull_request"}, "ignoring pull_request event\n"},
		{"odd event name", `{}`, []string{"X-Gitea-Event", "<b>bold</b>"}, "ignoring unsupported event\n"},
		{"tag push", tag, []string{"X-Gitea-Event", "push"}, "ignoring tag push\n"},
		{"branch deletion", deleted, []string{"X-Gitea-Event", "push"}, "ignoring branch deletion\n"},
		{"branch deletion without event header", deleted, nil, "ignoring branch deletion\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newEcho(t, &Handler{Submitter: refusingSubmitter(t)})
			wantText(t, postJSON(e, "/gitea", tc.body, tc.headers...), http.StatusOK, tc.reply)
		})
	}
}

func TestGiteaRejected(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		status     int
		msg        string
	}{
		{"no repository", `{"ref":"refs/heads/main","after":"abc"}`, 422, "repository.full_name not specified\n"},
		{"no ref", `{"repository":{"full_name":"o/r"},"after":"abc"}`, 422, "ref not specified\n"},
		{"pull ref", `{"ref":"refs/pull/1/head","repository":{"full_name":"o/r"}}`, 422, "Unsupported ref 'refs/pull/1/head'\n"},
		{"bare heads", `{"ref":"refs/heads/","repository":{"full_name":"o/r"}}`, 422, "Unsupported ref 'refs/heads/'\n"},
		{"short ref", `{"ref":"main","repository":{"full_name":"o/r"}}`, 422, "Unsupported ref 'main'\n"},
		{"number full_name", `{"ref":"refs/heads/main","repository":{"full_name":1}}`, 400, "repository.full_name must be a string.\n"},
		{"commits not an array", `{"commits":"x"}`, 400, "commits must be an array.\n"},
		{"malformed", `{"ref":`, 400, "Malformed JSON at byte 7: unexpected end of JSON input.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newEcho(t, &Handler{Submitter: refusingSubmitter(t)})
			wantText(t, postJSON(e, "/gitea", tc.body, "X-Gitea-Event", "push"), tc.status, tc.msg)
		})
	}
}

func TestDecodeGitea(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		header     http.Header
		want       mixmaster.Request
	}{
		{
			name: "clone url and first commit url as fallbacks",
			body: `{"ref":"refs/heads/feature/x","after":"abc","repository":{"full_name":"o/r","clone_url":"https://g/o/r.git"},
				"commits":[{"id":"abc","message":"Subject line\r\n\r\nBody\n","url":"https://g/o/r/commit/abc"},
				           {"id":"0123456789abcdef","message":"","url":"u2"}]}`,
			header: http.Header{"X-Github-Delivery": {"gh-1"}},
			want: mixmaster.Request{
				Trigger: mixmaster.TriggerGitea, Project: "o/r", Target: "feature/x", Commit: "abc",
				RepositoryURL: "https://g/o/r.git", ViewURL: "https://g/o/r/commit/abc",
				Message: "abc Subject line\n01234567", Notify: true, DeliveryID: "gh-1",
			},
		},
		{
			name: "repository page when nothing else",
			body: `{"ref":"refs/heads/main","after":"abc","repository":{"full_name":"o/r","html_url":"https://g/o/r"},"commits":null}`,
			want: mixmaster.Request{
				Trigger: mixmaster.TriggerGitea, Project: "o/r", Target: "main", Commit: "abc",
				ViewURL: "https://g/o/r", Notify: true,
			},
		},
		{
			name:   "event names are case-insensitive",
			body:   `{"ref":"refs/heads/main","after":"abc","repository":{"full_name":"o/r"}}`,
			header: http.Header{"X-Gitea-Event": {"Push"}},
			want: mixmaster.Request{
				Trigger: mixmaster.TriggerGitea, Project: "o/r", Target: "main", Commit: "abc", Notify: true,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, skip, err := decodeGitea(tc.header, []byte(tc.body))
			if err != nil || skip != "" {
				t.Fatalf("skip %q, err %v", skip, err)
			}
			if got != tc.want {
				t.Errorf("got\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestDecodeGiteaSHA256Deletion(t *testing.T) {
	body := `{"ref":"refs/heads/main","after":"` + strings.Repeat("0", 64) + `","repository":{"full_name":"o/r"}}`
	_, skip, err := decodeGitea(nil, []byte(body))
	if err != nil || skip != "ignoring branch deletion" {
		t.Errorf("skip %q, err %v", skip, err)
	}
}

func FuzzDecodeGitea(f *testing.F) {
	for _, path := range []string{"testdata/gitea.json", "testdata/gitea-original.json"} {
		f.Add("push", mustReadFile(f, path))
	}
	f.Add("", `{"ref":"refs/tags/v1","after":"abc"}`)
	f.Add("push", `{"ref":"refs/heads/","repository":{"full_name":"o/r"}}`)
	f.Add("push", `{"commits":[{"id":"\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9","message":"a\nb"}]}`)
	f.Add("ping", ``)
	f.Add("issues", `{`)
	f.Add("push", `[1,2]`)
	f.Fuzz(func(t *testing.T, event, body string) {
		h := http.Header{}
		h.Set("X-Gitea-Event", event)
		r, skip, err := decodeGitea(h, []byte(body))
		switch {
		case err != nil:
			if code := mixmaster.ErrorCode(err); code != mixmaster.EINVALID && code != mixmaster.EUNPROCESSABLE {
				t.Errorf("error %q has code %q", err, code)
			}
		case skip != "":
			if r != (mixmaster.Request{}) {
				t.Errorf("skipped with a request %+v", r)
			}
		default:
			if r.Project == "" || r.Target == "" || r.Trigger != mixmaster.TriggerGitea || !r.Notify {
				t.Errorf("accepted %+v", r)
			}
		}
	})
}
