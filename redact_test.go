package mixmaster

import "testing"

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://example.com/a/b.git", "https://example.com/a/b.git"},
		{"https://user:secret@example.com/a.git", "https://xxxxx@example.com/a.git"},
		{"https://ghp_token@github.com/o/r.git", "https://xxxxx@github.com/o/r.git"},
		{"http://oauth2:glpat-1@gitlab.example/o/r", "http://xxxxx@gitlab.example/o/r"},
		{"ssh://git@example.com/o/r.git", "ssh://git@example.com/o/r.git"},
		{"ssh://git:pw@example.com/o/r.git", "ssh://xxxxx@example.com/o/r.git"},
		{"git@example.com:o/r.git", "git@example.com:o/r.git"},
		{"/srv/git/r.git", "/srv/git/r.git"},
		{"https://u:p%zz@example.com/r", "https://xxxxx@example.com/r"},
		{"not a url", "not a url"},
		{"", ""},
	} {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
