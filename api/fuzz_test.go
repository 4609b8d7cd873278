package api

import (
	"testing"
	"unicode/utf8"

	"mixmaster"
)

// FuzzDecodeJobRequest feeds mistry's POST /jobs body decoder arbitrary
// bytes: the body comes from anyone who reaches the port, so it must never
// panic, and a bad body must be the client's error (a 4xx), never ours.
func FuzzDecodeJobRequest(f *testing.F) {
	for _, seed := range []string{
		`{"project":"simple","group":"g","params":{"foo":"bar"},"rebuild":true}`,
		`{"Project":"simple","Params":{"_opaque":"x"}}`,
		`{"PROJECT":"simple","unknown":[1,2,3]}`,
		`{"project":"simple","params":{"n":1}}`,
		`{"project":"simple","params":["a"]}`,
		`{"project":"simple","params":null}`,
		`{"project":"simple","rebuild":"yes"}`,
		`{"project":"../../etc","group":"../x","params":{"../k":"v"}}`,
		`{"project":"p","params":{"k":"\ud800\u0000"}}`,
		`{"project":"p"}{"project":"q"}`,
		`[]`,
		`null`,
		`"s"`,
		`{`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeArtifactRequest(body)
		if err != nil {
			if code := mixmaster.ErrorCode(err); code == mixmaster.EINTERNAL {
				t.Errorf("bad body %q gave an internal error: %v", body, err)
			}
			return
		}
		// What is accepted goes on into names, keys and logs: it must
		// be text, whatever bytes the body held.
		for _, s := range []string{r.Project, r.Group} {
			if !utf8.ValidString(s) {
				t.Errorf("accepted invalid UTF-8 %q", s)
			}
		}
		for k, v := range r.Params {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				t.Errorf("accepted param %q=%q with invalid UTF-8", k, v)
			}
		}
		if r.Trigger != "" {
			t.Errorf("the decoder set trigger %q; the handler sets it", r.Trigger)
		}
	})
}
