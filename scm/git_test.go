package scm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"mixmaster"
	"mixmaster/internal/testenv"
)

// TestMain gives git a private HOME and an identity, so neither the
// developer's config nor the system's leaks into the tests.
func TestMain(m *testing.M) {
	home, err := os.MkdirTemp("", "scm-home-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for k, v := range map[string]string{
		"HOME":                home,
		"XDG_CONFIG_HOME":     filepath.Join(home, ".config"),
		"GIT_CONFIG_NOSYSTEM": "1",
		"GIT_AUTHOR_NAME":     "Test",
		"GIT_AUTHOR_EMAIL":    "test@example.com",
		"GIT_COMMITTER_NAME":  "Test",
		"GIT_COMMITTER_EMAIL": "test@example.com",
	} {
		os.Setenv(k, v)
	}
	code := m.Run()
	os.RemoveAll(home)
	os.Exit(code)
}

func needGit(t testing.TB) {
	t.Helper()
	_, err := exec.LookPath("git")
	testenv.Need(t, "git", err == nil, "git is not in PATH")
}

// runGit runs git in dir and returns its trimmed stdout.
func runGit(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// origin is a real repository served over file://.
type origin struct {
	t   testing.TB
	dir string
	url string
	n   int
}

// newOrigin creates a repository with branches master, production and
// staging/x, each with a commit of its own, and a tag v1 on master.
func newOrigin(t testing.TB, initArgs ...string) *origin {
	t.Helper()
	needGit(t)
	dir := filepath.Join(t.TempDir(), "origin")
	runGit(t, "", append(append([]string{"init", "--quiet", "--initial-branch=master"}, initArgs...), dir)...)
	o := &origin{t: t, dir: dir, url: "file://" + dir}
	o.commit("master", "README", "master\n")
	o.git("tag", "v1")
	o.git("branch", "production")
	o.git("branch", "staging/x")
	o.commit("production", "README", "production\n")
	o.commit("staging/x", "README", "staging\n")
	return o
}

func (o *origin) git(args ...string) string {
	o.t.Helper()
	return runGit(o.t, o.dir, args...)
}

// commit writes file on branch and commits it, returning the commit ID.
func (o *origin) commit(branch, file, content string) string {
	o.t.Helper()
	if o.git("symbolic-ref", "--short", "HEAD") != branch {
		o.git("checkout", "--quiet", branch)
	}
	if err := os.WriteFile(filepath.Join(o.dir, file), []byte(content), 0o644); err != nil {
		o.t.Fatal(err)
	}
	o.n++
	o.git("add", "--", file)
	o.git("commit", "--quiet", "-m", fmt.Sprintf("commit %d on %s", o.n, branch))
	return o.git("rev-parse", "HEAD")
}

func (o *origin) sha(rev string) string {
	o.t.Helper()
	return o.git("rev-parse", rev)
}

func newGit(t testing.TB) *Git {
	return &Git{MirrorRoot: filepath.Join(t.TempDir(), "mirrors")}
}

// textLog is a CheckoutLog that keeps the lines as text, marked as a job
// log marks them: "$ " for a command, "# " for a status line.
type textLog struct{ b strings.Builder }

func (l *textLog) Status(format string, args ...any) {
	fmt.Fprintf(&l.b, "# "+format+"\n", args...)
}

func (l *textLog) Command(cmd string) { l.b.WriteString("$ " + cmd + "\n") }

func (l *textLog) String() string { return l.b.String() }

func checkout(t testing.TB, g *Git, url, ref, dir string) (string, string, error) {
	t.Helper()
	return checkoutSpec(t, g, mixmaster.CheckoutSpec{URL: url, Ref: ref, Dir: dir})
}

func checkoutSpec(t testing.TB, g *Git, spec mixmaster.CheckoutSpec) (string, string, error) {
	t.Helper()
	var log textLog
	sha, err := g.Checkout(context.Background(), spec, &log)
	return sha, log.String(), err
}

func mustCheckout(t testing.TB, g *Git, url, ref, dir string) string {
	t.Helper()
	sha, log, err := checkout(t, g, url, ref, dir)
	if err != nil {
		t.Fatalf("Checkout(%s): %v\nlog:\n%s", ref, err, log)
	}
	return sha
}

// assertClean checks that dir is exactly sha: HEAD, tracked content, and
// nothing untracked or ignored.
func assertClean(t testing.TB, dir, sha string) {
	t.Helper()
	if head := runGit(t, dir, "rev-parse", "HEAD"); head != sha {
		t.Errorf("HEAD = %s, want %s", head, sha)
	}
	if st := runGit(t, dir, "status", "--porcelain", "--ignored", "--untracked-files=all"); st != "" {
		t.Errorf("workspace not clean:\n%s", st)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mirrors(t testing.TB, g *Git) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(g.MirrorRoot, "*"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestCheckoutBranchesTagsAndCommits(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	g := newGit(t)
	for _, tt := range []struct {
		ref, want, content string
	}{
		{"production", o.sha("production"), "production\n"},
		{"staging/x", o.sha("staging/x"), "staging\n"},
		{"master", o.sha("master"), "master\n"},
		{"refs/heads/production", o.sha("production"), "production\n"},
		{"v1", o.sha("v1"), "master\n"},
		{o.sha("staging/x"), o.sha("staging/x"), "staging\n"},
		{strings.ToUpper(o.sha("production")), o.sha("production"), "production\n"},
	} {
		t.Run(strings.ReplaceAll(tt.ref, "/", "_"), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ws")
			sha := mustCheckout(t, g, o.url, tt.ref, dir)
			if sha != tt.want {
				t.Errorf("sha = %s, want %s", sha, tt.want)
			}
			if got := readFile(t, filepath.Join(dir, "README")); got != tt.content {
				t.Errorf("README = %q, want %q", got, tt.content)
			}
			assertClean(t, dir, tt.want)
		})
	}
	if m := mirrors(t, g); len(m) != 1 || filepath.Base(m[0]) != MirrorName(o.url) {
		t.Errorf("mirrors = %v, want one named %s", m, MirrorName(o.url))
	}
}

func TestCheckoutReusesWorkspace(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	o.commit("production", ".gitignore", "*.o\n")
	g := newGit(t)
	dir := filepath.Join(t.TempDir(), "ws")
	first := mustCheckout(t, g, o.url, "production", dir)

	// What a build leaves behind: output (some of it ignored, some in
	// nested repositories), an edited tracked file, a file where the next
	// commit puts a directory, and a marker that shows .git is reused.
	for name, content := range map[string]string{
		"build/out.o":        "obj",
		"main.o":             "obj",
		"untracked.txt":      "x",
		"README":             "edited by the build\n",
		"gen":                "file in the way",
		".git/reuse-marker":  "",
		"vendor/dep/x.go":    "package x",
		"vendor/dep/.gitkep": "",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runGit(t, filepath.Join(dir, "vendor/dep"), "init", "--quiet")

	if err := os.MkdirAll(filepath.Join(o.dir, "gen"), 0o755); err != nil {
		t.Fatal(err)
	}
	second := o.commit("production", "gen/file", "generated\n")
	if second == first {
		t.Fatal("no new commit")
	}
	sha, log, err := checkout(t, g, o.url, "production", dir)
	if err != nil {
		t.Fatalf("second checkout: %v\n%s", err, log)
	}
	if sha != second {
		t.Errorf("sha = %s, want %s", sha, second)
	}
	assertClean(t, dir, second)
	if got := readFile(t, filepath.Join(dir, "README")); got != "production\n" {
		t.Errorf("README = %q", got)
	}
	if got := readFile(t, filepath.Join(dir, "gen/file")); got != "generated\n" {
		t.Errorf("gen/file = %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, ".git/reuse-marker")); err != nil {
		t.Errorf("workspace was recreated instead of reused: %v", err)
	}
	if strings.Contains(log, "recreating") || strings.Contains(log, " clone ") {
		t.Errorf("second checkout recreated something:\n%s", log)
	}
	// The workspace borrows its objects; it must not hold a copy.
	if packs, _ := filepath.Glob(filepath.Join(dir, ".git/objects/pack/*.pack")); len(packs) > 0 {
		t.Errorf("workspace has its own packs: %v", packs)
	}
	// Builds see the branches and tags as in a normal clone.
	if got := runGit(t, dir, "rev-parse", "origin/staging/x"); got != o.sha("staging/x") {
		t.Errorf("origin/staging/x = %s", got)
	}
	if got := runGit(t, dir, "describe", "--tags", "--abbrev=0", "origin/master"); got != "v1" {
		t.Errorf("describe = %s", got)
	}
	if got := runGit(t, dir, "config", "remote.origin.url"); got != o.url {
		t.Errorf("remote.origin.url = %s", got)
	}
}

func TestCheckoutAfterForcePush(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	g := newGit(t)
	dir := filepath.Join(t.TempDir(), "ws")
	before := o.commit("production", "feature", "old\n")
	mustCheckout(t, g, o.url, "production", dir)

	o.git("reset", "--quiet", "--hard", "HEAD~2")
	after := o.commit("production", "rewritten", "new\n")
	sha := mustCheckout(t, g, o.url, "production", dir)
	if sha != after {
		t.Fatalf("sha = %s, want %s", sha, after)
	}
	assertClean(t, dir, after)
	if _, err := os.Stat(filepath.Join(dir, "feature")); !os.IsNotExist(err) {
		t.Errorf("file from the rewritten history is still there: %v", err)
	}
	// The old commit stays reachable by ID while the mirror keeps it.
	if got := mustCheckout(t, g, o.url, before, dir); got != before {
		t.Errorf("checkout of the old commit = %s", got)
	}
}

func TestCheckoutDeletedBranch(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	g := newGit(t)
	dir := filepath.Join(t.TempDir(), "ws")
	mustCheckout(t, g, o.url, "staging/x", dir)
	o.git("checkout", "--quiet", "master")
	o.git("branch", "-D", "staging/x")
	_, _, err := checkout(t, g, o.url, "staging/x", dir)
	if mixmaster.ErrorCode(err) != mixmaster.EUNPROCESSABLE || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("err = %v; a deleted branch must not build from the stale mirror", err)
	}
}

func TestCheckoutRepairsWorkspace(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	want := o.sha("production")
	otherOrigin := newOrigin(t)
	otherOrigin.commit("master", "other", "other\n")

	tests := map[string]func(t *testing.T, g *Git, dir string){
		"partial, without .git": func(t *testing.T, g *Git, dir string) {
			writeTree(t, dir, "README", "half", "sub/dir/file", "x")
		},
		".git is a file": func(t *testing.T, g *Git, dir string) {
			writeTree(t, dir, ".git", "gitdir: /nonexistent", "junk", "x")
		},
		"empty .git": func(t *testing.T, g *Git, dir string) {
			writeTree(t, dir, ".git/.keep", "", "junk", "x")
		},
		".git is a symlink": func(t *testing.T, g *Git, dir string) {
			target := filepath.Join(t.TempDir(), "elsewhere")
			mustCheckout(t, g, o.url, "master", target)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(target, ".git"), filepath.Join(dir, ".git")); err != nil {
				t.Fatal(err)
			}
		},
		"workspace of another repository": func(t *testing.T, g *Git, dir string) {
			mustCheckout(t, g, otherOrigin.url, "master", dir)
		},
		"stale index.lock": func(t *testing.T, g *Git, dir string) {
			mustCheckout(t, g, o.url, "master", dir)
			writeTree(t, dir, ".git/index.lock", "")
		},
		"read-only build output": func(t *testing.T, g *Git, dir string) {
			mustCheckout(t, g, o.url, "master", dir)
			writeTree(t, dir, "pkg/mod/x/file", "x", ".git/index.lock", "")
			if err := os.Chmod(filepath.Join(dir, "pkg/mod/x"), 0o500); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, setup := range tests {
		t.Run(name, func(t *testing.T) {
			g := newGit(t)
			dir := filepath.Join(t.TempDir(), "ws")
			setup(t, g, dir)
			sha, log, err := checkout(t, g, o.url, "production", dir)
			if err != nil {
				t.Fatalf("Checkout: %v\n%s", err, log)
			}
			if sha != want {
				t.Errorf("sha = %s, want %s", sha, want)
			}
			assertClean(t, dir, want)
			if fi, err := os.Lstat(filepath.Join(dir, ".git")); err != nil || !fi.IsDir() {
				t.Errorf(".git is not a directory: %v", err)
			}
		})
	}
}

// writeTree writes name/content pairs under dir.
func writeTree(t testing.TB, dir string, pairs ...string) {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		p := filepath.Join(dir, pairs[i])
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(pairs[i+1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCheckoutIgnoresPlantedGitConfig covers a build (possibly in a
// container that sees only the workspace) that writes hooks, config or
// symbolic links into .git to get a command run on the host by the next
// checkout.
func TestCheckoutIgnoresPlantedGitConfig(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	o.commit("production", ".gitattributes", "* filter=evil\n")
	g := newGit(t)
	dir := filepath.Join(t.TempDir(), "ws")
	mustCheckout(t, g, o.url, "production", dir)

	pwned := filepath.Join(t.TempDir(), "pwned")
	script := "#!/bin/sh\ntouch " + pwned + "\n"
	hostFile := filepath.Join(t.TempDir(), "host-file")
	writeTree(t, filepath.Dir(hostFile), "host-file", "untouched")
	writeTree(t, dir,
		".git/hooks/post-checkout", script,
		".git/hooks/reference-transaction", script,
		".git/evil.sh", script,
	)
	for _, p := range []string{".git/hooks/post-checkout", ".git/hooks/reference-transaction", ".git/evil.sh"} {
		if err := os.Chmod(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, ".git/config"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "[core]\n\thooksPath = %[1]s/.git/hooks\n\tfsmonitor = %[1]s/.git/evil.sh\n"+
		"[filter \"evil\"]\n\tsmudge = %[1]s/.git/evil.sh\n\tclean = %[1]s/.git/evil.sh\n"+
		"[include]\n\tpath = %[1]s/.git/evil.config\n", dir)
	f.Close()
	if err := os.Symlink(hostFile, filepath.Join(dir, ".git/config.mixmaster-tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".git/commondir"), []byte(t.TempDir()), 0o644); err != nil {
		t.Fatal(err)
	}

	next := o.commit("production", "next", "next\n")
	if sha := mustCheckout(t, g, o.url, "production", dir); sha != next {
		t.Errorf("sha = %s, want %s", sha, next)
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Fatal("a command planted in .git ran during checkout")
	}
	if got := readFile(t, hostFile); got != "untouched" {
		t.Errorf("a symbolic link in .git redirected a write: %q", got)
	}
	if cfg := readFile(t, filepath.Join(dir, ".git/config")); strings.Contains(cfg, "evil") {
		t.Errorf("planted config survived:\n%s", cfg)
	}
}

func TestCheckoutCommitOutsideBranches(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	g := newGit(t)
	dir := filepath.Join(t.TempDir(), "ws")
	mustCheckout(t, g, o.url, "master", dir) // warm mirror

	// A pull request head: reachable only from a ref the mirror does not
	// copy, and so never fetched, not even by its ID.
	pr := o.commit("master", "pr", "pull request\n")
	o.git("update-ref", "refs/pull/1/head", pr)
	o.git("reset", "--quiet", "--hard", "HEAD~1")

	for _, ref := range []string{pr, "refs/pull/1/head"} {
		_, log, err := checkout(t, g, o.url, ref, dir)
		if mixmaster.ErrorCode(err) != mixmaster.EUNPROCESSABLE || !strings.Contains(err.Error(), "not found") {
			t.Errorf("Checkout(%s) = %v, want EUNPROCESSABLE not found\n%s", ref, err, log)
		}
		if strings.Contains(log, " "+pr) {
			t.Errorf("Checkout(%s) fetched the commit by its ID:\n%s", ref, log)
		}
	}
	assertClean(t, dir, o.sha("master"))
}

func TestCheckoutUnknownRefs(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	g := newGit(t)
	dir := filepath.Join(t.TempDir(), "ws")
	mustCheckout(t, g, o.url, "master", dir)

	unknown := strings.Repeat("0123456789", 4)
	for ref, want := range map[string]string{
		unknown:                             "commit " + unknown + " not found in " + o.url,
		strings.Repeat("0", 40):             "commit " + strings.Repeat("0", 40) + " not found in " + o.url,
		"no-such-branch":                    "branch or tag no-such-branch not found in " + o.url,
		"refs/heads/nope":                   "branch or tag refs/heads/nope not found in " + o.url,
		o.git("rev-parse", "master^{tree}"): "not found", // a tree, not a commit
	} {
		_, log, err := checkout(t, g, o.url, ref, dir)
		if mixmaster.ErrorCode(err) != mixmaster.EUNPROCESSABLE || !strings.Contains(mixmaster.ErrorMessage(err), want) {
			t.Errorf("Checkout(%s) = %v, want EUNPROCESSABLE %q\n%s", ref, err, want, log)
		}
	}
	// The failed attempts left the workspace as it was.
	assertClean(t, dir, o.sha("master"))
}

func TestCheckoutUnreachableRepository(t *testing.T) {
	t.Parallel()
	needGit(t)
	g := newGit(t)
	url := "file://" + filepath.Join(t.TempDir(), "missing")
	_, log, err := checkout(t, g, url, "master", filepath.Join(t.TempDir(), "ws"))
	if err == nil || mixmaster.ErrorCode(err) != mixmaster.EINTERNAL {
		t.Fatalf("err = %v, want an internal error", err)
	}
	if !strings.Contains(err.Error(), "clone") || !strings.Contains(log, "git clone --bare --") {
		t.Errorf("err = %v\nlog:\n%s", err, log)
	}
	if m := mirrors(t, g); len(m) != 0 {
		t.Errorf("a failed clone left %v", m)
	}
	if tmps, _ := filepath.Glob(filepath.Join(g.MirrorRoot, ".*")); len(tmps) != 0 {
		t.Errorf("a failed clone left %v", tmps)
	}
}

func TestCheckoutWorksOfflineForKnownCommits(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	g := newGit(t)
	dir := filepath.Join(t.TempDir(), "ws")
	sha := mustCheckout(t, g, o.url, "staging/x", dir)
	if err := os.Rename(o.dir, o.dir+".gone"); err != nil {
		t.Fatal(err)
	}
	if got := mustCheckout(t, g, o.url, sha, dir); got != sha {
		t.Errorf("sha = %s", got)
	}
	if _, _, err := checkout(t, g, o.url, "staging/x", dir); err == nil {
		t.Error("a branch checkout succeeded without reaching the remote")
	}
}

func TestCheckoutStaleMirrorLock(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	g := newGit(t)
	dir := filepath.Join(t.TempDir(), "ws")
	mustCheckout(t, g, o.url, "production", dir)
	mirror := filepath.Join(g.MirrorRoot, MirrorName(o.url))
	writeTree(t, mirror, "refs/heads/production.lock", "", "packed-refs.lock", "")
	next := o.commit("production", "next", "next\n")
	if got := mustCheckout(t, g, o.url, "production", dir); got != next {
		t.Errorf("sha = %s, want %s", got, next)
	}
}

func TestCheckoutSHA256(t *testing.T) {
	t.Parallel()
	needGit(t)
	probe := filepath.Join(t.TempDir(), "probe")
	if err := exec.Command("git", "init", "--quiet", "--object-format=sha256", probe).Run(); err != nil {
		testenv.Need(t, "git", false, "this git cannot create SHA-256 repositories")
	}
	o := newOrigin(t, "--object-format=sha256")
	g := newGit(t)
	dir := filepath.Join(t.TempDir(), "ws")
	want := o.sha("production")
	if len(want) != 64 {
		t.Fatalf("origin commit %s is not SHA-256", want)
	}
	if got := mustCheckout(t, g, o.url, "production", dir); got != want {
		t.Errorf("by branch: %s, want %s", got, want)
	}
	staging := o.sha("staging/x")
	if got := mustCheckout(t, g, o.url, staging, dir); got != staging {
		t.Errorf("by ID: %s, want %s", got, staging)
	}
	assertClean(t, dir, staging)
}

// TestCheckoutRejectsInjection runs hostile refs and URLs through Checkout
// from a scratch working directory and checks that nothing ran and nothing
// was created.
func TestCheckoutRejectsInjection(t *testing.T) {
	o := newOrigin(t)
	cwd := t.TempDir()
	t.Chdir(cwd)
	g := newGit(t)
	dir := filepath.Join(t.TempDir(), "ws")
	pwn := filepath.Join(t.TempDir(), "pwn")

	refs := []string{
		"$(touch x)", "`touch x`", "--upload-pack=touch x", "--upload-pack=touch", "-c core.sshCommand=x",
		"-h", "..", "a..b", "a;touch x", "x\ntouch x", "", "@{-1}", "HEAD~1", "master:README",
	}
	for _, ref := range refs {
		_, _, err := checkout(t, g, o.url, ref, dir)
		if mixmaster.ErrorCode(err) != mixmaster.EUNPROCESSABLE || !strings.Contains(err.Error(), "invalid ref") {
			t.Errorf("ref %q: err = %v, want an EUNPROCESSABLE invalid ref", ref, err)
		}
	}
	urls := []string{
		"ext::sh -c touch% " + pwn,
		"ext::sh -c touch% /tmp/pwn",
		"--upload-pack=touch " + pwn,
		"-oProxyCommand=touch " + pwn,
		"ssh://-oProxyCommand=touch%20" + pwn + "/repo",
		"fd::17",
		"relative/repo",
	}
	for _, u := range urls {
		_, _, err := checkout(t, g, u, "master", dir)
		if mixmaster.ErrorCode(err) != mixmaster.EUNPROCESSABLE || !strings.Contains(err.Error(), "invalid repository URL") {
			t.Errorf("url %q: err = %v, want an EUNPROCESSABLE invalid URL", u, err)
		}
	}

	for _, p := range []string{filepath.Join(cwd, "x"), filepath.Join(o.dir, "x"), pwn, dir, g.MirrorRoot} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists after rejected checkouts", p)
		}
	}
	if entries, _ := os.ReadDir(cwd); len(entries) != 0 {
		t.Errorf("working directory not empty: %v", entries)
	}
}

// TestGitEnvBlocksExtTransport checks the second line of defence: even if
// an ext:: URL reached git, the environment refuses the transport.
func TestGitEnvBlocksExtTransport(t *testing.T) {
	t.Parallel()
	needGit(t)
	pwn := filepath.Join(t.TempDir(), "pwn")
	r := &runner{path: "git", dir: t.TempDir(), env: gitEnv([]string{"GIT_ALLOW_PROTOCOL=ext"}), log: discardLog{},
		logger: (&Git{}).logger()}
	err := r.run(context.Background(), nil, "ls-remote", "--", "ext::sh -c touch% "+pwn)
	if err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Errorf("err = %v", err)
	}
	if _, err := os.Stat(pwn); err == nil {
		t.Error("ext:: transport ran a command")
	}
}

func TestCheckoutConcurrentTargetsShareMirror(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	g := newGit(t)
	base := t.TempDir()
	targets := []string{"production", "staging/x", "master"}
	want := map[string]string{}
	for _, ref := range targets {
		want[ref] = o.sha(ref)
	}

	var wg sync.WaitGroup
	for i := range 6 {
		ref := targets[i%len(targets)]
		// Two goroutines per target: one per workspace, and a pair that
		// share a workspace to exercise the workspace lock.
		dir := filepath.Join(base, fmt.Sprintf("ws-%d", i%4))
		wg.Go(func() {
			for range 3 {
				sha, log, err := checkout(t, g, o.url, ref, dir)
				if err != nil {
					t.Errorf("Checkout(%s, %s): %v\n%s", ref, dir, err, log)
					return
				}
				if sha != want[ref] {
					t.Errorf("Checkout(%s) = %s, want %s", ref, sha, want[ref])
				}
			}
		})
	}
	wg.Wait()
	if m := mirrors(t, g); len(m) != 1 {
		t.Errorf("mirrors = %v, want exactly one", m)
	}
	// A second Git on the same root shares the mirror and its lock.
	g2 := &Git{MirrorRoot: g.MirrorRoot}
	mustCheckout(t, g2, o.url, "production", filepath.Join(base, "other"))
	if m := mirrors(t, g); len(m) != 1 {
		t.Errorf("mirrors = %v, want exactly one", m)
	}
}

func TestCheckoutCanceled(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	g := newGit(t)
	dir := filepath.Join(t.TempDir(), "ws")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := g.Checkout(ctx, mixmaster.CheckoutSpec{URL: o.url, Ref: "master", Dir: dir}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	sha := mustCheckout(t, g, o.url, "master", dir)
	assertClean(t, dir, sha)
}

func TestCheckoutLog(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	g := newGit(t)
	dir := filepath.Join(t.TempDir(), "ws")
	_, log, err := checkout(t, g, o.url, "production", dir)
	if err != nil {
		t.Fatal(err)
	}
	// Every line is the service's: a command ("$") or what git printed
	// ("#").
	for _, want := range []string{
		"$ git clone --bare -- " + o.url + " ",
		"$ git --git-dir=",
		"fetch --prune --no-tags --no-write-fetch-head --end-of-options " + o.url + " '+refs/heads/*:refs/heads/*'",
		"rev-parse --verify --quiet --end-of-options 'refs/heads/production^{commit}'",
		"checkout --force --detach " + o.sha("production") + " --",
		"\n# HEAD is now at",
		"clean -ffdx",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "protocol.version") {
		t.Errorf("log repeats the global options:\n%s", log)
	}
}

func TestCheckoutEnv(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	g := newGit(t)
	dir := filepath.Join(t.TempDir(), "ws")
	// The caller's variables reach git (GIT_TRACE writes the trace file);
	// TestGitEnvBlocksExtTransport shows they cannot lift the allowlist.
	marker := filepath.Join(t.TempDir(), "trace")
	spec := mixmaster.CheckoutSpec{URL: o.url, Ref: "master", Dir: dir,
		Env: []string{"GIT_ALLOW_PROTOCOL=ext", "GIT_TRACE=" + marker}}
	if _, err := g.Checkout(context.Background(), spec, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("spec.Env did not reach git: %v", err)
	}
}

func TestCheckoutArguments(t *testing.T) {
	t.Parallel()
	g := &Git{}
	if _, err := g.Checkout(context.Background(), mixmaster.CheckoutSpec{URL: "https://h/r", Ref: "master", Dir: "/tmp/x"}, nil); err == nil {
		t.Error("no error without MirrorRoot")
	}
	g = newGit(t)
	if _, err := g.Checkout(context.Background(), mixmaster.CheckoutSpec{URL: "https://h/r", Ref: "master"}, nil); err == nil {
		t.Error("no error without Dir")
	}
}

func BenchmarkCheckoutWarm(b *testing.B) {
	o := newOrigin(b)
	g := newGit(b)
	dir := filepath.Join(b.TempDir(), "ws")
	for i := range 200 {
		writeTree(b, o.dir, fmt.Sprintf("src/%03d/file.go", i), fmt.Sprintf("package p%d\n", i))
	}
	o.git("checkout", "--quiet", "production")
	o.git("add", ".")
	o.git("commit", "--quiet", "-m", "tree of 200 files")
	mustCheckout(b, g, o.url, "production", dir)

	b.Run("new-commit", func(b *testing.B) {
		i := 0
		for b.Loop() {
			b.StopTimer()
			i++
			want := o.commit("production", "src/000/file.go", fmt.Sprintf("package p // %d\n", i))
			writeTree(b, dir, "build/output.bin", "leftover")
			b.StartTimer()
			if sha := mustCheckout(b, g, o.url, "production", dir); sha != want {
				b.Fatalf("sha = %s, want %s", sha, want)
			}
		}
	})
	b.Run("known-commit", func(b *testing.B) {
		sha := o.sha("production")
		for b.Loop() {
			mustCheckout(b, g, o.url, sha, dir)
		}
	})
}
