package jobs

import (
	"strings"
	"testing"
	"unicode/utf8"

	"mixmaster"
)

// fuzzProject has keys that overlap as prefixes of each other, task keys
// and a branch with a slash, so the fuzzer reaches every kind of match.
var fuzzProject = &mixmaster.Project{Name: "example-org/example-repo", Targets: map[string]string{
	"production":              "make deploy",
	"production-eu":           "make deploy-eu",
	"staging":                 "make staging",
	"master":                  "make",
	"master/update-libraries": "make update",
	"master/docs":             "make docs",
	"release/docs":            "make release-docs",
	"release/1.x":             "make release",
}}

// FuzzResolve checks branch routing with targets and tasks from payloads:
// no panic, and a match is always a configured key whose branch part
// starts the target, so a payload can never reach a command meant for
// another branch.
func FuzzResolve(f *testing.F) {
	for _, seed := range [][2]string{
		{"production", ""},
		{"production-eu", ""},
		{"staging/my-feature", ""},
		{"master", "docs"},
		{"master-2", "update-libraries"},
		{"release/1.2", "docs"},
		{"release/1.x/hotfix", ""},
		{"feature", "docs"},
		{"master", "deploy"},
		{"master", "docs/../x"},
		{"master/docs", ""},
		{"", ""},
		{"", "docs"},
		{"m", "aster/docs"},
		{"\xff", "\x00"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, target, task string) {
		r, err := Resolve(fuzzProject, target, task)
		if err != nil {
			if r != (Route{}) {
				t.Errorf("Resolve(%q, %q) = %+v with error %v", target, task, r, err)
			}
			if code := mixmaster.ErrorCode(err); code != mixmaster.EUNPROCESSABLE {
				t.Errorf("Resolve(%q, %q): error %v has code %q", target, task, err, code)
			}
			return
		}
		cmd, ok := fuzzProject.Targets[r.Key]
		if !ok {
			t.Fatalf("Resolve(%q, %q) = key %q, not a key of the project", target, task, r.Key)
		}
		if r.Command != cmd {
			t.Errorf("Resolve(%q, %q): command %q, want %q", target, task, r.Command, cmd)
		}
		branch := r.Key
		if task != "" {
			var ok bool
			if branch, ok = strings.CutSuffix(r.Key, "/"+task); !ok {
				t.Fatalf("Resolve(%q, %q) = key %q, not for that task", target, task, r.Key)
			}
		}
		if branch == "" || !strings.HasPrefix(target, branch) {
			t.Errorf("Resolve(%q, %q) = key %q, whose branch %q does not start the target", target, task, r.Key, branch)
		}
	})
}

// FuzzJobKey checks that the cache key is a function of the inputs that
// shape the artifacts: equal inputs give equal keys, and a different group
// or a different non-opaque param never shares a key, since a shared key
// would serve one build's artifacts for another.
func FuzzJobKey(f *testing.F) {
	for _, seed := range [][6]string{
		{"simple", "", "foo", "bar", "g", "content"},
		{"simple", "g1", "foo", "bar", "g2", ""},
		{"simple", "", "_opaque", "x", "", "c"},
		{"simple", "a", "k", "", "a\x00", "c"},
		{"p", "", "k", "v\"}", "\"", "c"},
		{"p", "g", "a,b", "c", "g ", "c"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3], seed[4], seed[5])
	}
	f.Fuzz(func(t *testing.T, project, group, key, value, otherGroup, content string) {
		// Requests reach JobKey through JSON decoding, which makes every
		// string valid UTF-8; the key's JSON encoding would fold invalid
		// bytes into U+FFFD.
		for _, s := range []string{project, group, key, value, otherGroup, content} {
			if !utf8.ValidString(s) {
				t.Skip()
			}
		}
		params := map[string]string{key: value, "fixed": "1"}
		k := JobKey(project, group, params, content)
		again := map[string]string{"fixed": "1", key: value}
		if k2 := JobKey(project, group, again, content); k2 != k {
			t.Fatalf("equal inputs gave keys %s and %s", k, k2)
		}
		if otherGroup != group && JobKey(project, otherGroup, params, content) == k {
			t.Errorf("groups %q and %q share key %s", group, otherGroup, k)
		}
		if key == "fixed" || strings.HasPrefix(key, "_") {
			return
		}
		changed := map[string]string{key: value + "x", "fixed": "1"}
		if JobKey(project, group, changed, content) == k {
			t.Errorf("param %q=%q and %q share key %s", key, value, value+"x", k)
		}
		without := map[string]string{"fixed": "1"}
		if JobKey(project, group, without, content) == k {
			t.Errorf("param %q=%q and no param share key %s", key, value, k)
		}
		// An opaque param is context, not input: it must not change the key.
		withOpaque := map[string]string{key: value, "fixed": "1", "_" + key: "y"}
		if JobKey(project, group, withOpaque, content) != k {
			t.Errorf("opaque param _%s changed the key", key)
		}
	})
}
