package scm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mixmaster/internal/testenv"

	"mixmaster"
)

// offBranch commits file on top of master on no branch at all, for a ref
// to point at, and returns the commit ID.
func (o *origin) offBranch(file string) string {
	o.t.Helper()
	o.git("branch", "--quiet", "tmp-"+file, "master")
	sha := o.commit("tmp-"+file, file, file+"\n")
	o.git("checkout", "--quiet", "master")
	o.git("branch", "--quiet", "-D", "tmp-"+file)
	return sha
}

// TestCheckoutOnBranch checks that a commit is built for a branch only when
// it is that branch's tip or an ancestor of it.
func TestCheckoutOnBranch(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	first := o.sha("master") // production and staging/x grew from it
	// A commit only a tag reaches, and one only a pull request head does.
	tagged := o.offBranch("tagged")
	o.git("tag", "release", tagged)
	pr := o.offBranch("pr")
	o.git("update-ref", "refs/pull/1/head", pr)
	g := newGit(t)

	for _, tt := range []struct {
		name, ref, want string
	}{
		{"tip", o.sha("production"), ""},
		{"ancestor", first, ""},
		{"branch name", "production", ""},
		{"tag on the branch", "v1", ""},
		{"other branch", o.sha("staging/x"), "commit " + shortID(o.sha("staging/x")) + " is not on branch production"},
		{"tag only", tagged, "commit " + shortID(tagged) + " is not on branch production"},
		{"tag name only", "release", "commit " + shortID(tagged) + " is not on branch production"},
		{"pull request head", pr, "commit " + pr + " not found"},
		{"pull request ref", "refs/pull/1/head", "branch or tag refs/pull/1/head not found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ws")
			sha, log, err := checkoutSpec(t, g, mixmaster.CheckoutSpec{URL: o.url, Ref: tt.ref, Branch: "production", Dir: dir})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Checkout: %v\n%s", err, log)
				}
				assertClean(t, dir, sha)
				return
			}
			if mixmaster.ErrorCode(err) != mixmaster.EUNPROCESSABLE || !strings.Contains(mixmaster.ErrorMessage(err), tt.want) {
				t.Fatalf("Checkout = %q, %v; want EUNPROCESSABLE %q\n%s", sha, err, tt.want, log)
			}
			if _, err := os.Stat(filepath.Join(dir, "README")); err == nil {
				t.Error("a refused commit was checked out")
			}
		})
	}
	// A target that is only a tag is no branch to build.
	_, log, err := checkoutSpec(t, g, mixmaster.CheckoutSpec{URL: o.url, Ref: "v1", Branch: "v1", Dir: filepath.Join(t.TempDir(), "ws")})
	if mixmaster.ErrorCode(err) != mixmaster.EUNPROCESSABLE || !strings.Contains(err.Error(), "branch v1 not found") {
		t.Errorf("Checkout(v1 on v1) = %v, want EUNPROCESSABLE branch not found\n%s", err, log)
	}
	if got := runGit(t, filepath.Join(g.MirrorRoot, MirrorName(o.url)), "for-each-ref", "refs/pull/"); got != "" {
		t.Errorf("the mirror fetched pull request refs:\n%s", got)
	}
}

// TestCheckoutBranchIsFetched checks that a stale mirror does not decide
// whether a commit is on its branch: a commit the mirror has from another
// branch is built once the branch has been merged into at the remote.
func TestCheckoutBranchIsFetched(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	g := newGit(t)
	staging := o.sha("staging/x")
	spec := mixmaster.CheckoutSpec{URL: o.url, Ref: staging, Branch: "production", Dir: filepath.Join(t.TempDir(), "ws")}
	if _, _, err := checkoutSpec(t, g, spec); mixmaster.ErrorCode(err) != mixmaster.EUNPROCESSABLE {
		t.Fatalf("before the merge: %v, want EUNPROCESSABLE", err)
	}
	o.git("checkout", "--quiet", "production")
	o.git("merge", "--quiet", "--no-edit", "-s", "ours", "staging/x")
	if sha, log, err := checkoutSpec(t, g, spec); err != nil || sha != staging {
		t.Fatalf("after the merge: %s, %v\n%s", sha, err, log)
	}
}

// TestCheckoutConvertsMirror checks that a mirror made by git clone
// --mirror, which holds and fetches every ref, is cut down to branches and
// tags once, and that its pull request heads are not built.
func TestCheckoutConvertsMirror(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	pr := o.offBranch("pr")
	o.git("update-ref", "refs/pull/1/head", pr)
	o.git("update-ref", "refs/merge-requests/2/head", pr)
	g := newGit(t)
	mirror := filepath.Join(g.MirrorRoot, MirrorName(o.url))
	runGit(t, "", "clone", "--quiet", "--mirror", o.url, mirror)

	dir := filepath.Join(t.TempDir(), "ws")
	_, log, err := checkoutSpec(t, g, mixmaster.CheckoutSpec{URL: o.url, Ref: pr, Branch: "master", Dir: dir})
	if mixmaster.ErrorCode(err) != mixmaster.EUNPROCESSABLE {
		t.Fatalf("a pull request head was built from a converted mirror: %v\n%s", err, log)
	}
	if got := runGit(t, mirror, "for-each-ref", "--format=%(refname)"); strings.Contains(got, "refs/pull/") || strings.Contains(got, "refs/merge-requests/") || !strings.Contains(got, "refs/heads/production") {
		t.Errorf("refs after the conversion:\n%s", got)
	}
	if got := runGit(t, mirror, "config", "--get-all", "remote.origin.fetch"); got != strings.Join(mirrorRefspecs, "\n") {
		t.Errorf("remote.origin.fetch = %q", got)
	}
	if got := runGit(t, mirror, "config", "remote.origin.mirror"); got != "false" {
		t.Errorf("remote.origin.mirror = %q", got)
	}
	// Converted once: the next checkout neither lists nor deletes refs.
	_, log, err = checkoutSpec(t, g, mixmaster.CheckoutSpec{URL: o.url, Ref: "master", Branch: "master", Dir: dir})
	if err != nil {
		t.Fatalf("Checkout: %v\n%s", err, log)
	}
	if strings.Contains(log, "for-each-ref") || strings.Contains(log, "update-ref") {
		t.Errorf("the mirror was converted again:\n%s", log)
	}
}

// TestCheckoutHidesCredentials clones over http with a password in the URL
// and checks that the password shows nowhere: not in the log (commands and
// git's messages), not in errors, not in the workspace's config.
func TestCheckoutHidesCredentials(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	srv := testenv.GitHTTPServer(t, filepath.Dir(o.dir), "ci", "s3cret")
	host := strings.TrimPrefix(srv.URL, "http://")
	g := newGit(t)
	dir := filepath.Join(t.TempDir(), "ws")

	good := "http://ci:s3cret@" + host + "/origin"
	sha, log, err := checkout(t, g, good, "production", dir)
	if err != nil || sha != o.sha("production") {
		t.Fatalf("Checkout = %s, %v\n%s", sha, err, log)
	}
	if !strings.Contains(log, "http://xxxxx@"+host+"/origin") {
		t.Errorf("the log does not name the redacted URL:\n%s", log)
	}
	if got := runGit(t, dir, "config", "remote.origin.url"); got != "http://"+host+"/origin" {
		t.Errorf("remote.origin.url = %q", got)
	}
	texts := []string{log, readFile(t, filepath.Join(dir, ".git", "config"))}

	// Git quotes the URL it could not fetch in its messages.
	for _, bad := range []string{
		"http://ci:s3cret@" + host + "/missing",
		"http://s3cret@" + host + "/origin",
		"http://ci:wrong-s3cret@" + host + "/origin",
	} {
		_, log, err := checkout(t, g, bad, "master", filepath.Join(t.TempDir(), "ws"))
		if err == nil {
			t.Fatalf("Checkout(%s) worked", bad)
		}
		if !strings.Contains(log, "\n# fatal: ") {
			t.Errorf("git's message is not in the log:\n%s", log)
		}
		texts = append(texts, log, err.Error())
	}
	for _, text := range texts {
		if strings.Contains(text, "s3cret") {
			t.Errorf("a credential shows:\n%s", text)
		}
	}
}
