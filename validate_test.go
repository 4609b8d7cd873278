package mixmaster

import (
	"mixmaster/internal/testenv"
	"os/exec"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidCommit(t *testing.T) {
	sha1 := strings.Repeat("a1", 20)
	sha256 := strings.Repeat("0f", 32)
	tests := []struct {
		in   string
		want bool
	}{
		{sha1, true},
		{strings.ToUpper(sha1), true},
		{sha256, true},
		{strings.Repeat("AbCdEf0123", 4), true},
		{"", false},
		{sha1[:39], false},
		{sha1 + "a", false},
		{sha256[:63], false},
		{sha256 + "0", false},
		{strings.Repeat("g", 40), false},
		{strings.Repeat("a", 39) + " ", false},
		{"-" + sha1[1:], false},
		{"abc1234", false},
		{strings.Repeat("0", 40), true}, // a deletion's "after"; Checkout reports it as not found
	}
	for _, tt := range tests {
		if got := ValidCommit(tt.in); got != tt.want {
			t.Errorf("ValidCommit(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// refTests are shared with the cross-check against git check-ref-format.
var refTests = []struct {
	in   string
	want bool
}{
	{"master", true},
	{"production", true},
	{"staging/x", true},
	{"feature/JIRA-12_fix.v2", true},
	{"refs/heads/production", true},
	{"v1.2.3", true},
	{"a/@/b", true},
	{"a@b", true},
	{"HEAD", true},
	{"ünïcode", true},
	{"x.locked", true},
	{"a-", true},
	{strings.Repeat("a", 255), true},

	{"", false},
	{"@", false},
	{"..", false},
	{"a..b", false},
	{"a/../b", false},
	{".hidden", false},
	{"a/.hidden", false},
	{"a/.", false},
	{"a.", false},
	{"a/", false},
	{"/a", false},
	{"a//b", false},
	{"a.lock", false},
	{"a.lock/b", false},
	{"a@{1}", false},
	{"@{-1}", false},
	{"-b", false},
	{"--upload-pack=touch x", false},
	{"-c core.sshCommand=x", false},
	{"$(touch x)", false},
	{"a b", false},
	{"a\tb", false},
	{"a\nb", false},
	{"a\x00b", false},
	{"a\x7fb", false},
	{"a~1", false},
	{"a^", false},
	{"a:b", false},
	{"a?", false},
	{"a*", false},
	{"a[b", false},
	{`a\b`, false},
	{strings.Repeat("a", 256), false},
	{"bad\xffutf8", false},
}

func TestValidRef(t *testing.T) {
	for _, tt := range refTests {
		if got := ValidRef(tt.in); got != tt.want {
			t.Errorf("ValidRef(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// gitAcceptsRef asks git check-ref-format about s. It reports ok=false when
// s cannot be asked (git would read it as an option, or argv cannot hold it).
func gitAcceptsRef(t testing.TB, s string) (accepted, ok bool) {
	if s == "" || s[0] == '-' || strings.IndexByte(s, 0) >= 0 {
		return false, false
	}
	err := exec.Command("git", "check-ref-format", "--allow-onelevel", s).Run()
	if err == nil {
		return true, true
	}
	if _, isExit := err.(*exec.ExitError); !isExit {
		t.Fatalf("git check-ref-format: %v", err)
	}
	return false, true
}

// stricterThanGit lists the rules ValidRef adds to git's.
func stricterThanGit(s string) bool {
	return s == "" || s[0] == '-' || len(s) > maxRefLen || !utf8.ValidString(s)
}

func TestValidRefAgreesWithGit(t *testing.T) {
	needGit(t)
	for _, tt := range refTests {
		checkRefAgainstGit(t, tt.in)
	}
}

func checkRefAgainstGit(t testing.TB, s string) {
	t.Helper()
	got := ValidRef(s)
	accepted, ok := gitAcceptsRef(t, s)
	if !ok {
		if got {
			t.Errorf("ValidRef(%q) = true for a value git would read as an option", s)
		}
		return
	}
	if got && !accepted {
		t.Errorf("ValidRef(%q) = true, but git check-ref-format rejects it", s)
	}
	if !got && accepted && !stricterThanGit(s) {
		t.Errorf("ValidRef(%q) = false, but git accepts it and no stricter rule applies", s)
	}
}

func FuzzValidRef(f *testing.F) {
	for _, tt := range refTests {
		f.Add(tt.in)
	}
	for _, s := range []string{"a/b/c", "a.lock.b", "@{", "a@", "{", "a/-b", "x/..y", "..x", "é/\u00a0"} {
		f.Add(s)
	}
	_, err := exec.LookPath("git")
	haveGit := err == nil
	f.Fuzz(func(t *testing.T, s string) {
		if !ValidRef(s) {
			return
		}
		// Invariants that keep a valid ref from ever acting as an option or
		// as revision syntax.
		if s[0] == '-' || strings.Contains(s, "..") || strings.ContainsAny(s, " ~^:?*[\\\x00\n") ||
			strings.Contains(s, "@{") || len(s) > maxRefLen {
			t.Fatalf("ValidRef(%q) = true", s)
		}
		if full := "refs/heads/" + s; len(full) <= maxRefLen && !ValidRef(full) {
			t.Fatalf("ValidRef(%q) but not as refs/heads/%s", s, s)
		}
		if haveGit {
			checkRefAgainstGit(t, s)
		}
	})
}

func TestValidateURL(t *testing.T) {
	tests := []struct {
		in         string
		allowLocal bool
		ok         bool
	}{
		{"https://git.example.com/org/repo.git", false, true},
		{"https://user:token@git.example.com/org/repo.git", false, true},
		{"http://git.example.com:3000/org/repo", false, true},
		{"ssh://git@git.example.com:2222/org/repo.git", false, true},
		{"ssh://[::1]/org/repo.git", false, true},
		{"git://git.example.com/repo.git", false, true},
		{"HTTPS://git.example.com/repo", false, true},
		{"git@git.example.com:example-org/example-repo.git", false, true},
		{"gitea:org/repo.git", false, true},
		{"git@10.0.0.1:/srv/repo.git", false, true},
		{"file:///srv/git/repo.git", true, true},
		{"file://localhost/srv/git/repo.git", true, true},
		{"/srv/git/repo.git", true, true},

		{"", true, false},
		{"ext::sh -c touch% /tmp/pwn", true, false},
		{"ext::sh", true, false},
		{"fd::3", true, false},
		{"git+https::x", true, false},
		{"--upload-pack=x", true, false},
		{"-oProxyCommand=x", true, false},
		{"-", true, false},
		{"file:///etc", false, false},
		{"/srv/git/repo.git", false, false},
		{"file://host/etc", true, false},
		{"relative/path", true, false},
		{"./repo", true, false},
		{"repo", true, false},
		{"https://git.example.com/repo\n", false, false},
		{"https://git.example.com/re po", false, false},
		{"https://git.example.com/re\tpo", false, false},
		{"https://git.example.com/re\x00po", false, false},
		{"https://git.example.com/\u00a0", false, false},
		{"https:///repo", false, false},
		{"https://", false, false},
		{"ftp://git.example.com/repo", false, false},
		{"ssh://-oProxyCommand=x/repo", false, false},
		{"ssh://%2doProxyCommand=x/repo", false, false},
		{"ssh://-user@host/repo", false, false},
		{"ssh://host/-repo", false, false},
		{"ssh://host:port/repo", false, false},
		{"-oProxyCommand=x@host:repo", false, false},
		{"git@-host:repo", false, false},
		{"git@host:-repo", false, false},
		{"git@host:", false, false},
		{"@host:repo", false, false},
		{"git@ho st:repo", false, false},
		{"git@[::1]:repo", false, false},
		{"https://host/" + strings.Repeat("a", maxURLLen), false, false},
	}
	for _, tt := range tests {
		err := ValidateRepositoryURL(tt.in, tt.allowLocal)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateRepositoryURL(%q, %v) = %v, want ok=%v", tt.in, tt.allowLocal, err, tt.ok)
			continue
		}
		if err != nil {
			if code := ErrorCode(err); code != EUNPROCESSABLE {
				t.Errorf("ValidateRepositoryURL(%q): code %q, want %q", tt.in, code, EUNPROCESSABLE)
			}
			if !strings.HasPrefix(err.Error(), "invalid repository URL: ") {
				t.Errorf("ValidateRepositoryURL(%q): message %q", tt.in, err)
			}
		}
	}
}

func TestValidateURLHidesPassword(t *testing.T) {
	err := ValidateRepositoryURL("https://user:s3cret@host:bad/repo", false)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v", err)
	}
}

func needGit(t testing.TB) {
	t.Helper()
	_, err := exec.LookPath("git")
	testenv.Need(t, "git", err == nil, "git is not in PATH")
}
