// Package scm checks out commits with the git command-line tool.
//
// Each repository URL has one bare mirror under Git.MirrorRoot, updated
// incrementally. A workspace is a small repository that borrows the
// mirror's objects through .git/objects/info/alternates, so a checkout
// copies no history. The workspace persists between builds of a target and
// is forced back to a clean state every time; when it is broken beyond that
// it is emptied and recreated.
//
// Every value that comes from a request is validated before git sees it and
// placed after --end-of-options or -- (or given as a verified full commit
// ID), and git never goes through a shell.
package scm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"mixmaster"
)

// Git implements mixmaster.SCM with the git CLI. The zero value is not
// usable: MirrorRoot must be set. A Git is safe for concurrent use.
type Git struct {
	// MirrorRoot holds one bare mirror per repository URL, named after a
	// hash of the URL.
	MirrorRoot string
	// Logger gets a debug record for every git command; nil discards them.
	Logger *slog.Logger
	// GitPath is the git binary; empty means "git" found in PATH.
	GitPath string
}

var _ mixmaster.SCM = (*Git)(nil)

// Mirrors and workspaces are locked by absolute path, process-wide, so that
// two Git values sharing a MirrorRoot still take turns.
var mirrorLocks, workspaceLocks keyedLocks

// mirror is the bare repository that caches one remote.
type mirror struct {
	dir string // absolute
	url string
}

// Checkout makes spec.Dir a clean checkout of spec.Ref and returns the full
// commit ID. spec.Ref is a full commit ID, or a branch or tag name (a name
// starting with "refs/" is taken as a full ref name). With spec.Branch set,
// the commit must be that branch's tip or an ancestor of it, as the remote
// has the branch now. A bad ref or URL, a commit or branch the repository
// does not have, and a commit that is not on spec.Branch give an
// EUNPROCESSABLE error. Git's command lines go to log as commands, their
// output as status lines, with credentials in URLs hidden.
func (g *Git) Checkout(ctx context.Context, spec mixmaster.CheckoutSpec, log mixmaster.CheckoutLog) (string, error) {
	if log == nil {
		log = discardLog{}
	}
	if !mixmaster.ValidCommit(spec.Ref) && !mixmaster.ValidRef(spec.Ref) {
		return "", mixmaster.Errorf(mixmaster.EUNPROCESSABLE,
			"invalid ref %s: want a full commit ID or a valid branch name", clip(spec.Ref))
	}
	if spec.Branch != "" && !mixmaster.ValidRef(spec.Branch) {
		return "", mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "invalid branch %s", clip(spec.Branch))
	}
	// The request path validates too; this guards every other caller.
	if err := mixmaster.ValidateRepositoryURL(spec.URL, true); err != nil {
		return "", err
	}
	if spec.Dir == "" {
		return "", errors.New("scm: checkout: no workspace directory")
	}
	if g.MirrorRoot == "" {
		return "", errors.New("scm: checkout: MirrorRoot is not set")
	}
	root, err := filepath.Abs(g.MirrorRoot)
	if err != nil {
		return "", fmt.Errorf("scm: %w", err)
	}
	dir, err := filepath.Abs(spec.Dir)
	if err != nil {
		return "", fmt.Errorf("scm: %w", err)
	}

	unlock, err := workspaceLocks.lock(ctx, dir)
	if err != nil {
		return "", err
	}
	defer unlock()

	if err := os.MkdirAll(root, 0o750); err != nil {
		return "", fmt.Errorf("scm: create mirror root: %w", err)
	}
	r := &runner{path: g.gitPath(), dir: root, env: gitEnv(spec.Env), log: log, logger: g.logger()}
	m := &mirror{dir: filepath.Join(root, MirrorName(spec.URL)), url: spec.URL}

	sha, err := g.updateMirror(ctx, r, m, spec.Ref, spec.Branch)
	if err != nil {
		return "", err
	}
	if err := g.updateWorkspace(ctx, r, dir, m, sha); err != nil {
		return "", fmt.Errorf("scm: workspace %s: %w", dir, err)
	}
	return sha, nil
}

// MirrorName is the directory name of the mirror of repoURL under
// MirrorRoot: the first 16 hex digits of the SHA-256 of the URL, plus
// ".git". It does not reveal the URL, which may carry credentials.
func MirrorName(repoURL string) string {
	sum := sha256.Sum256([]byte(repoURL))
	return hex.EncodeToString(sum[:8]) + ".git"
}

// discardLog is the log of a caller that wants none.
type discardLog struct{}

func (discardLog) Status(string, ...any) {}
func (discardLog) Command(string)        {}

func (g *Git) gitPath() string {
	if g.GitPath == "" {
		return "git"
	}
	return g.GitPath
}

func (g *Git) logger() *slog.Logger {
	if g.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return g.Logger
}

// updateMirror makes sure the mirror has the wanted commit and returns its
// full ID. Branch names always cause a fetch, so a stale mirror never
// decides what gets built; so does a branch the commit must be on. A
// commit ID the mirror already has needs none otherwise.
func (g *Git) updateMirror(ctx context.Context, r *runner, m *mirror, ref, branch string) (string, error) {
	unlock, err := mirrorLocks.lock(ctx, m.dir)
	if err != nil {
		return "", err
	}
	defer unlock()

	if err := g.ensureMirror(ctx, r, m); err != nil {
		return "", err
	}
	if branch != "" && ref == branch {
		// The tip of the branch is on it; a tag of the same name is not.
		if err := fetchMirror(ctx, r, m); err != nil {
			return "", err
		}
		return branchTip(ctx, r, m, branch)
	}
	sha, err := resolve(ctx, r, m, ref, branch != "")
	if err != nil || branch == "" {
		return sha, err
	}
	return sha, onBranch(ctx, r, m, sha, branch)
}

// resolve returns the full ID of the commit ref names in the mirror,
// fetching first unless ref is a commit the mirror has and fetch is unset.
// The mirror holds branches and tags only, so a commit that is on neither
// (a pull request head) is not found.
func resolve(ctx context.Context, r *runner, m *mirror, ref string, fetch bool) (string, error) {
	if mixmaster.ValidCommit(ref) {
		sha := strings.ToLower(ref)
		if !fetch {
			if full, err := r.commit(ctx, m.dir, sha); full != "" || err != nil {
				return full, err
			}
		}
		if err := fetchMirror(ctx, r, m); err != nil {
			return "", err
		}
		if full, err := r.commit(ctx, m.dir, sha); full != "" || err != nil {
			return full, err
		}
		return "", mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "commit %s not found in %s", sha, mixmaster.RedactURL(m.url))
	}

	if err := fetchMirror(ctx, r, m); err != nil {
		return "", err
	}
	names := []string{"refs/heads/" + ref, "refs/tags/" + ref}
	if strings.HasPrefix(ref, "refs/") {
		names = []string{ref}
	}
	for _, name := range names {
		if full, err := r.commit(ctx, m.dir, name); full != "" || err != nil {
			return full, err
		}
	}
	return "", mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "branch or tag %s not found in %s", ref, mixmaster.RedactURL(m.url))
}

// onBranch checks that sha is the tip of branch in the mirror, which was
// just fetched, or an ancestor of it.
func onBranch(ctx context.Context, r *runner, m *mirror, sha, branch string) error {
	tip, err := branchTip(ctx, r, m, branch)
	if err != nil {
		return err
	}
	if tip == sha {
		return nil
	}
	// Both are verified commit IDs; exit status 1 means "not an ancestor".
	err = r.run(ctx, nil, "--git-dir="+m.dir, "merge-base", "--is-ancestor", "--end-of-options", sha, tip)
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return err
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		return mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "commit %s is not on branch %s", shortID(sha), branch)
	}
	return fmt.Errorf("scm: %w", err)
}

// branchTip returns the commit ID of the tip of branch in the mirror.
func branchTip(ctx context.Context, r *runner, m *mirror, branch string) (string, error) {
	tip, err := r.commit(ctx, m.dir, "refs/heads/"+branch)
	if tip == "" && err == nil {
		err = mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "branch %s not found in %s", branch, mixmaster.RedactURL(m.url))
	}
	return tip, err
}

// shortID is the first eight digits of a commit ID, for messages.
func shortID(sha string) string {
	return sha[:min(len(sha), 8)]
}

// commit returns the full ID of the commit rev names in the repository at
// gitDir, or "" when there is no such commit. Its error is only ever the
// context's.
func (r *runner) commit(ctx context.Context, gitDir, rev string) (string, error) {
	out, err := r.output(ctx, "--git-dir="+gitDir, "rev-parse", "--verify", "--quiet",
		"--end-of-options", rev+"^{commit}")
	if ctxErr := ctx.Err(); ctxErr != nil {
		return "", ctxErr
	}
	if err != nil || !mixmaster.ValidCommit(out) {
		return "", nil
	}
	return out, nil
}

// ensureMirror creates the mirror when it is missing. The clone goes to a
// temporary directory that is renamed into place once complete, so an
// interrupted clone never leaves a half-made mirror behind.
func (g *Git) ensureMirror(ctx context.Context, r *runner, m *mirror) error {
	if isRepo(m.dir, true) {
		return limitRefs(ctx, r, m.dir)
	}
	if _, err := os.Lstat(m.dir); err == nil {
		r.note("mirror %s is broken; recreating it", m.dir)
		if err := removeAll(m.dir); err != nil {
			return fmt.Errorf("scm: remove broken mirror: %w", err)
		}
	}
	parent, base := filepath.Split(m.dir)
	stale, _ := filepath.Glob(filepath.Join(parent, "."+base+".tmp-*"))
	for _, s := range stale {
		// What is left of an interrupted clone only takes space; the new
		// clone goes elsewhere.
		if err := removeAll(s); err != nil {
			r.note("cannot remove the interrupted clone %s: %v", s, err)
			g.logger().WarnContext(ctx, "remove interrupted clone", "dir", s, "err", err)
		}
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("scm: %w", err)
	}
	if err := cloneMirror(ctx, r, m, tmp); err != nil {
		if rerr := removeAll(tmp); rerr != nil {
			err = errors.Join(err, fmt.Errorf("scm: remove the partial clone: %w", rerr))
		}
		return err
	}
	g.logger().InfoContext(ctx, "created mirror", "url", mixmaster.RedactURL(m.url), "dir", m.dir)
	return nil
}

// cloneMirror clones m into tmp and renames it into place.
func cloneMirror(ctx context.Context, r *runner, m *mirror, tmp string) error {
	// A bare clone, not --mirror: --mirror would also copy refs such as
	// pull request heads, which are on no branch and can be many times
	// the size of the branches. clone learns the object format (SHA-1 or
	// SHA-256) from the remote.
	if err := r.run(ctx, nil, "clone", "--bare", "--", m.url, tmp); err != nil {
		return fmt.Errorf("scm: clone %s: %w", mixmaster.RedactURL(m.url), err)
	}
	if err := limitRefs(ctx, r, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, m.dir); err != nil {
		return fmt.Errorf("scm: %w", err)
	}
	return nil
}

// mirrorRefspecs are what a mirror fetches: branches and tags, and not the
// pull request heads (refs/pull/*, refs/merge-requests/*, refs/changes/*)
// a forge keeps beside them, which are on no branch.
var mirrorRefspecs = []string{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}

// refsMarker is the file in a mirror that says limitRefs has run there.
const refsMarker = "mixmaster-branches-and-tags"

// limitRefs makes a mirror hold branches and tags only: one made by git
// clone --mirror, or by an earlier version, may hold every ref of the
// remote and fetch them all. It sets the fetch refspecs and deletes every
// other ref, once per mirror.
func limitRefs(ctx context.Context, r *runner, dir string) error {
	marker := filepath.Join(dir, refsMarker)
	if _, err := os.Lstat(marker); err == nil {
		return nil
	}
	gd := "--git-dir=" + dir
	for _, args := range [][]string{
		{gd, "config", "remote.origin.mirror", "false"},
		{gd, "config", "--replace-all", "remote.origin.fetch", mirrorRefspecs[0]},
		{gd, "config", "--add", "remote.origin.fetch", mirrorRefspecs[1]},
	} {
		if err := r.run(ctx, nil, args...); err != nil {
			return fmt.Errorf("scm: limit the mirror to branches and tags: %w", err)
		}
	}
	refs, err := r.output(ctx, gd, "for-each-ref", "--format=%(refname)")
	if err != nil {
		return fmt.Errorf("scm: list the mirror's refs: %w", err)
	}
	var del strings.Builder
	n := 0
	for ref := range strings.FieldsSeq(refs) {
		if !strings.HasPrefix(ref, "refs/heads/") && !strings.HasPrefix(ref, "refs/tags/") {
			del.WriteString("delete " + ref + "\n")
			n++
		}
	}
	if n > 0 {
		r.note("deleting %d refs of the mirror that are neither branches nor tags", n)
		if err := r.runInput(ctx, strings.NewReader(del.String()), nil, gd, "update-ref", "--stdin"); err != nil {
			return fmt.Errorf("scm: delete the mirror's other refs: %w", err)
		}
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		return fmt.Errorf("scm: %w", err)
	}
	return nil
}

// fetchMirror brings the mirror's branches and tags up to date with the
// remote, deleting the ones that are gone.
func fetchMirror(ctx context.Context, r *runner, m *mirror) error {
	args := append([]string{"--git-dir=" + m.dir, "fetch", "--prune", "--no-tags", "--no-write-fetch-head",
		"--end-of-options", m.url}, mirrorRefspecs...)
	err := r.run(ctx, nil, args...)
	if err != nil && ctx.Err() == nil {
		// A git killed hard leaves lock files behind, and every later
		// fetch would fail on them. We hold the mirror's lock, so any lock
		// file in it is stale.
		if n := removeLockFiles(m.dir); n > 0 {
			r.note("removed %d stale lock file(s) from the mirror; fetching again", n)
			err = r.run(ctx, nil, args...)
		}
	}
	if err != nil {
		return fmt.Errorf("scm: fetch %s: %w", mixmaster.RedactURL(m.url), err)
	}
	return nil
}

// removeLockFiles deletes git's *.lock files in a bare repository and
// returns how many there were.
func removeLockFiles(gitDir string) int {
	n := 0
	for _, name := range []string{"HEAD.lock", "config.lock", "packed-refs.lock", "shallow.lock"} {
		if os.Remove(filepath.Join(gitDir, name)) == nil {
			n++
		}
	}
	_ = filepath.WalkDir(filepath.Join(gitDir, "refs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && strings.HasSuffix(p, ".lock") && os.Remove(p) == nil {
			n++
		}
		return nil
	})
	return n
}

// updateWorkspace makes dir a clean checkout of sha. A workspace that fails
// to update (a lock file left by a killed build, a corrupt index, objects
// the mirror has since dropped) is recreated once.
func (g *Git) updateWorkspace(ctx context.Context, r *runner, dir string, m *mirror, sha string) error {
	reused, err := openWorkspace(ctx, r, dir, m, sha)
	if err != nil {
		return err
	}
	err = syncWorkspace(ctx, r, dir, m, sha)
	if err == nil || !reused || ctx.Err() != nil {
		return err
	}
	r.note("cannot update the workspace (%v); recreating it", err)
	g.logger().WarnContext(ctx, "recreating workspace", "dir", dir, "err", err)
	if err := createWorkspace(ctx, r, dir, m, sha); err != nil {
		return err
	}
	return syncWorkspace(ctx, r, dir, m, sha)
}

// openWorkspace reuses dir when it is a workspace of this mirror and
// otherwise recreates it. A build may have written anything into .git, so
// the files that decide what git runs and where it looks are rewritten
// either way.
func openWorkspace(ctx context.Context, r *runner, dir string, m *mirror, sha string) (reused bool, err error) {
	if isWorkspaceOf(dir, m) {
		if err := writeWorkspaceFiles(dir, m, sha); err == nil {
			return true, nil
		}
	}
	if _, err := os.Lstat(dir); err == nil {
		r.note("%s is not a workspace of this repository; recreating it", dir)
	}
	return false, createWorkspace(ctx, r, dir, m, sha)
}

// createWorkspace empties dir and makes it a repository that borrows the
// mirror's objects. dir itself is kept: it may be a mount point or a btrfs
// subvolume.
func createWorkspace(ctx context.Context, r *runner, dir string, m *mirror, sha string) error {
	if err := emptyDir(dir); err != nil {
		return err
	}
	args := []string{"init", "--quiet", "--template=", "--initial-branch=main"}
	if len(sha) == 64 {
		args = append(args, "--object-format=sha256")
	}
	if err := r.run(ctx, nil, append(args, "--", dir)...); err != nil {
		return err
	}
	return writeWorkspaceFiles(dir, m, sha)
}

// syncWorkspace copies the mirror's refs into the workspace (so builds can
// run git describe or see origin/<branch>), then forces the work tree to
// sha and deletes everything untracked, ignored files included.
func syncWorkspace(ctx context.Context, r *runner, dir string, m *mirror, sha string) error {
	gd := []string{"--git-dir=" + filepath.Join(dir, ".git"), "--work-tree=" + dir}
	steps := [][]string{
		{"fetch", "--quiet", "--prune", "--no-tags", "--no-write-fetch-head", "--end-of-options",
			m.dir, "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"},
		// checkout has no --end-of-options in git 2.39; the trailing --
		// makes sure sha, a verified commit ID, is read as a revision.
		{"checkout", "--force", "--detach", sha, "--"},
		// -ff also removes nested repositories a build may have cloned.
		{"clean", "-ffdx"},
	}
	for _, s := range steps {
		if err := r.run(ctx, nil, append(gd[:len(gd):len(gd)], s...)...); err != nil {
			return err
		}
	}
	return nil
}

// isRepo reports whether dir looks like a git directory: a real directory
// holding HEAD, objects and refs. Symbolic links are not followed.
func isRepo(dir string, bare bool) bool {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return false
	}
	want := map[string]bool{"HEAD": false, "objects": true, "refs": true}
	for name, isDir := range want {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() != isDir || fi.Mode()&fs.ModeSymlink != 0 {
			return false
		}
	}
	if !bare {
		return true
	}
	b, err := os.ReadFile(filepath.Join(dir, "config"))
	return err == nil && strings.Contains(string(b), "bare = true")
}

// isWorkspaceOf reports whether dir holds a workspace that borrows from m.
// A workspace of another mirror (the target's URL changed) does not count.
func isWorkspaceOf(dir string, m *mirror) bool {
	gitDir := filepath.Join(dir, ".git")
	if !isRepo(gitDir, false) {
		return false
	}
	root, err := os.OpenRoot(gitDir)
	if err != nil {
		return false
	}
	defer root.Close()
	b, err := root.ReadFile("objects/info/alternates")
	return err == nil && string(b) == alternates(m)
}

func alternates(m *mirror) string {
	return filepath.Join(m.dir, "objects") + "\n"
}

// writeWorkspaceFiles writes the workspace's config and alternates from
// scratch. Writes go through os.Root and replace files by rename, so a
// symbolic link planted in .git can neither redirect nor escape them.
func writeWorkspaceFiles(dir string, m *mirror, sha string) error {
	root, err := os.OpenRoot(filepath.Join(dir, ".git"))
	if err != nil {
		return err
	}
	defer root.Close()
	// commondir would point git at another repository's config and refs.
	if err := root.Remove("commondir"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := root.MkdirAll("objects/info", 0o755); err != nil {
		return err
	}
	if err := replaceFile(root, "config", workspaceConfig(m.url, len(sha) == 64)); err != nil {
		return err
	}
	return replaceFile(root, "objects/info/alternates", alternates(m))
}

// workspaceConfig is the whole .git/config of a workspace. origin is the
// real remote, without its credentials, so that builds see a normal clone.
func workspaceConfig(remote string, sha256 bool) string {
	var b strings.Builder
	version := "0"
	if sha256 {
		version = "1"
	}
	b.WriteString("[core]\n\trepositoryformatversion = " + version + "\n")
	b.WriteString("\tfilemode = true\n\tbare = false\n\tlogallrefupdates = false\n")
	// The objects live in the mirror; gc here would find nothing to do.
	b.WriteString("[gc]\n\tauto = 0\n[maintenance]\n\tauto = false\n")
	b.WriteString("[remote \"origin\"]\n\turl = " + configQuote(stripCredentials(remote)) + "\n")
	b.WriteString("\tfetch = +refs/heads/*:refs/remotes/origin/*\n")
	if sha256 {
		b.WriteString("[extensions]\n\tobjectformat = sha256\n")
	}
	return b.String()
}

// configQuote quotes a git config value, which keeps ';' and '#' literal.
func configQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// replaceFile writes data to name inside root through a new temporary file
// and a rename.
func replaceFile(root *os.Root, name, data string) error {
	tmp := name + ".mixmaster-tmp"
	if err := root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = root.Remove(tmp)
		return err
	}
	return root.Rename(tmp, name)
}

// emptyDir removes everything inside dir, creating dir when it is missing.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := removeAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// removeAll is os.RemoveAll that also copes with read-only directories,
// which builds leave behind (Go's module cache is one).
func removeAll(path string) error {
	if err := os.RemoveAll(path); err == nil {
		return nil
	}
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(path)
}

// clip shortens a rejected value for an error message.
func clip(s string) string {
	const limit = 80
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return fmt.Sprintf("%q", s)
}
