package jobs

import (
	"testing"

	"mixmaster"
)

func TestResolve(t *testing.T) {
	p := &mixmaster.Project{Name: "example-org/example-repo", Targets: map[string]string{
		"production":              "make deploy",
		"production-eu":           "make deploy-eu",
		"staging":                 "make deploy-to-staging",
		"master":                  "make",
		"master/update-libraries": "make update",
		"master/docs":             "make docs",
		"release/docs":            "make release-docs",
	}}
	tests := []struct {
		name, target, task string
		key, err           string
	}{
		{name: "exact", target: "production", key: "production"},
		{name: "longest wins", target: "production-eu", key: "production-eu"},
		{name: "starts with", target: "staging/my-feature", key: "staging"},
		{name: "branch with task keys", target: "master", key: "master"},
		{name: "task", target: "master", task: "docs", key: "master/docs"},
		{name: "task on a branch below the prefix", target: "master-2", task: "update-libraries", key: "master/update-libraries"},
		{name: "task picks its own prefix", target: "release/1.2", task: "docs", key: "release/docs"},
		{name: "unknown branch", target: "feature", err: "Not set up to build feature"},
		{name: "case matters", target: "Production", err: "Not set up to build Production"},
		{name: "unknown task", target: "master", task: "deploy", err: "Not set up for deploy task."},
		{name: "task on unknown branch", target: "feature", task: "docs", err: "Not set up to build feature"},
		{name: "empty target", target: "", err: "target not specified"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Resolve(p, tt.target, tt.task)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err || mixmaster.ErrorCode(err) != mixmaster.EUNPROCESSABLE {
					t.Fatalf("Resolve(%q, %q) = %v, %v; want 422 %q", tt.target, tt.task, r, err, tt.err)
				}
				return
			}
			if err != nil || r.Key != tt.key || r.Command != p.Targets[tt.key] {
				t.Fatalf("Resolve(%q, %q) = %+v, %v; want key %q", tt.target, tt.task, r, err, tt.key)
			}
		})
	}
}

func TestResolveOnlyTaskKey(t *testing.T) {
	// The original ran a task's command for a plain push when only the task
	// key existed; a push must not run a task.
	p := &mixmaster.Project{Targets: map[string]string{"master/my-task": "make my-task"}}
	if _, err := Resolve(p, "master", ""); err == nil {
		t.Fatal("a plain push to master ran the my-task command")
	}
	if r, err := Resolve(p, "master", "my-task"); err != nil || r.Key != "master/my-task" {
		t.Fatalf("task request: %+v, %v", r, err)
	}
}

func TestPathSegment(t *testing.T) {
	tests := map[string]string{
		"production":         "production",
		"staging/my-feature": "staging%2Fmy-feature",
		"feature-x":          "feature-x",
		"..":                 "%2E.",
		".hidden":            "%2Ehidden",
		"a b$(x)":            "a%20b%24%28x%29",
		"":                   "%",
		"v1.2":               "v1.2",
	}
	seen := map[string]string{}
	for in, want := range tests {
		got := pathSegment(in)
		if got != want {
			t.Errorf("pathSegment(%q) = %q, want %q", in, got, want)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("%q and %q share the directory %q", prev, in, got)
		}
		seen[got] = in
	}
}
