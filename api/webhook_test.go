package api

import (
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
