package jobs

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mixmaster"
	"mixmaster/internal/testenv"
	"mixmaster/sandbox/shell"
	"mixmaster/scm"
)

// gitRepo is a real repository the runner checks out over file://.
type gitRepo struct {
	t   *testing.T
	dir string
	env []string
}

func newGitRepo(t *testing.T) *gitRepo {
	t.Helper()
	_, err := exec.LookPath("git")
	testenv.Need(t, "git", err == nil, "git is not in PATH")
	home := t.TempDir()
	g := &gitRepo{t: t, dir: filepath.Join(t.TempDir(), "origin"), env: append(os.Environ(),
		"HOME="+home, "XDG_CONFIG_HOME="+home, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com")}
	g.git("init", "--quiet", "--initial-branch=master", g.dir)
	return g
}

func (g *gitRepo) git(args ...string) string {
	g.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir, cmd.Env = filepath.Dir(g.dir), g.env
	if _, err := os.Stat(g.dir); err == nil {
		cmd.Dir = g.dir
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		g.t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// commit adds an empty commit to the checked-out branch and returns its ID.
func (g *gitRepo) commit(msg string) string {
	g.t.Helper()
	g.git("commit", "--quiet", "--allow-empty", "-m", msg)
	return g.git("rev-parse", "HEAD")
}

// gitHarness is a runner with a real store, log files, git and shell.
// The target master runs command.
func gitHarness(t *testing.T, repoURL, command string) *harness {
	t.Helper()
	p := &mixmaster.Project{Name: "org/repo", Repository: repoURL, Targets: map[string]string{"master": command}}
	h := newHarness(t, 1, p, nil)
	h.runner.SCM = &scm.Git{MirrorRoot: filepath.Join(h.root, "mirrors")}
	h.runner.Executors = map[string]mixmaster.Executor{"shell": &shell.Executor{}}
	return h
}

func (h *harness) submitCommit(t *testing.T, commit string) mixmaster.JobID {
	t.Helper()
	j, _, err := h.svc.Submit(context.Background(), mixmaster.Request{Project: "org/repo", Target: "master", Commit: commit})
	if err != nil {
		t.Fatal(err)
	}
	return j.ID
}

// logLines reads a job's log as mark and text pairs.
func (h *harness) logLines(t *testing.T, id mixmaster.JobID) (marks []byte, texts []string, raw string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.root, "jobs", id.String(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSuffix(line, "\n")
		if len(line) < 26 {
			t.Fatalf("short log line %q", line)
		}
		marks = append(marks, line[25])
		texts = append(texts, line[27:])
	}
	return marks, texts, string(b)
}

// TestRunnerCheckoutLinesAreTheService's checks that the git commands of a
// checkout are logged as commands and their output as status lines,
// bracketed by the lines a job page folds, and that only the build's own
// output is marked as output.
func TestRunnerCheckoutLinesAreTheService(t *testing.T) {
	repo := newGitRepo(t)
	sha := repo.commit("first")
	h := gitHarness(t, "file://"+repo.dir, "echo built")
	h.start(t)
	id := h.submitCommit(t, "")
	h.wait(t, id, mixmaster.StatusSucceeded)

	marks, texts, raw := h.logLines(t, id)
	begin, end, build := -1, -1, -1
	for i, text := range texts {
		switch {
		case marks[i] == '#' && strings.HasPrefix(text, mixmaster.CheckoutBegin):
			begin = i
		case marks[i] == '#' && mixmaster.ClosesCheckout(text):
			end = i
		case marks[i] == '$' && text == "echo built":
			build = i
		}
	}
	if begin < 0 || end < begin || build < end {
		t.Fatalf("checkout bracket %d..%d, build command at %d:\n%s", begin, end, build, raw)
	}
	if want := mixmaster.CheckoutDone + sha[:8] + " of file://" + repo.dir + " ("; !strings.HasPrefix(texts[end], want) {
		t.Errorf("closing line %q, want it to start %q", texts[end], want)
	}
	gitCommands := 0
	for i := begin + 1; i < end; i++ {
		if marks[i] != '$' && marks[i] != '#' {
			t.Errorf("checkout line %d is marked %q: %s", i, marks[i], texts[i])
		}
		if marks[i] == '$' && strings.HasPrefix(texts[i], "git ") {
			gitCommands++
		}
	}
	if gitCommands == 0 || !strings.Contains(texts[end], " git commands, ") {
		t.Errorf("%d git commands in the bracket, summary %q", gitCommands, texts[end])
	}
	if !strings.Contains(raw, "# HEAD is now at") {
		t.Errorf("git's output is not a status line:\n%s", raw)
	}
	for i, m := range marks {
		if m == 'O' && texts[i] != "built" {
			t.Errorf("line %d is output but not the build's: %s", i, texts[i])
		}
	}
}

// TestRunnerBuildsOnlyCommitsOnTarget submits commits for master that are
// not on master (on another branch only, on a tag only, under a pull
// request ref only) and checks that they are refused before the command
// runs, while the tip and an ancestor of master are built.
func TestRunnerBuildsOnlyCommitsOnTarget(t *testing.T) {
	repo := newGitRepo(t)
	ancestor := repo.commit("first")
	tip := repo.commit("second")
	repo.git("checkout", "--quiet", "-b", "other")
	other := repo.commit("on other only")
	repo.git("checkout", "--quiet", "--detach", "master")
	tagged := repo.commit("on a tag only")
	repo.git("tag", "release")
	repo.git("checkout", "--quiet", "--detach", "master")
	pull := repo.commit("a pull request")
	repo.git("update-ref", "refs/pull/1/head", pull)
	repo.git("checkout", "--quiet", "master")

	marks := t.TempDir()
	h := gitHarness(t, "file://"+repo.dir, `touch "`+marks+`/$MIXMASTER_COMMIT"`)
	h.start(t)
	for _, tt := range []struct {
		name, commit, want string
	}{
		{"other branch", other, "commit " + other[:8] + " is not on branch master"},
		{"tag only", tagged, "commit " + tagged[:8] + " is not on branch master"},
		{"tag name", "release", "commit " + tagged[:8] + " is not on branch master"},
		{"pull request head", pull, "commit " + pull + " not found"},
		{"pull request ref", "refs/pull/1/head", "refs/pull/1/head not found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			j := h.wait(t, h.submitCommit(t, tt.commit), mixmaster.StatusErrored)
			if !strings.HasPrefix(j.Error, "checkout: ") || !strings.Contains(j.Error, tt.want) {
				t.Errorf("error = %q, want %q", j.Error, tt.want)
			}
			if j.ExitCode != nil {
				t.Errorf("exit code %d: the command ran", *j.ExitCode)
			}
			_, texts, raw := h.logLines(t, j.ID)
			if !strings.HasPrefix(texts[len(texts)-2], mixmaster.CheckoutFailed) {
				t.Errorf("the checkout is not closed as failed:\n%s", raw)
			}
		})
	}
	for _, c := range []string{other, tagged, pull} {
		if _, err := os.Stat(filepath.Join(marks, c)); err == nil {
			t.Errorf("the command ran for %s", c)
		}
	}
	for _, c := range []string{tip, ancestor} {
		j := h.wait(t, h.submitCommit(t, c), mixmaster.StatusSucceeded)
		if j.Commit != c {
			t.Errorf("built %s, want %s", j.Commit, c)
		}
		if _, err := os.Stat(filepath.Join(marks, c)); err != nil {
			t.Errorf("the command did not run for %s: %v", c, err)
		}
	}
}

// TestRunnerHidesCredentials builds from a git http server that wants a
// password given in the clone URL, and checks that the password shows
// neither in the log nor in the build's environment; then that a fetch
// that fails keeps it out of the log and the job's error too.
func TestRunnerHidesCredentials(t *testing.T) {
	repo := newGitRepo(t)
	repo.commit("first")
	srv := testenv.GitHTTPServer(t, filepath.Dir(repo.dir), "ci", "s3cret")
	host := strings.TrimPrefix(srv.URL, "http://")

	envFile := filepath.Join(t.TempDir(), "env")
	h := gitHarness(t, "http://ci:s3cret@"+host+"/origin", `env > "`+envFile+`"; echo "$MIXMASTER_REPOSITORY_URL"`)
	h.start(t)
	ok := h.wait(t, h.submitCommit(t, ""), mixmaster.StatusSucceeded)
	env, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(env), "MIXMASTER_REPOSITORY_URL=http://xxxxx@"+host+"/origin\n") {
		t.Errorf("MIXMASTER_REPOSITORY_URL is not the redacted URL:\n%s", env)
	}
	_, _, okLog := h.logLines(t, ok.ID)

	for _, bad := range []string{"http://ci:s3cret@" + host + "/missing", "http://s3cret@" + host + "/origin"} {
		// Jobs take their URL from the config when they are submitted.
		p, _ := h.svc.Projects("org/repo")
		p.Repository = bad
		j := h.wait(t, h.submitCommit(t, ""), mixmaster.StatusErrored)
		_, _, log := h.logLines(t, j.ID)
		if !strings.Contains(log, " # fatal: ") {
			t.Errorf("git's message is not in the log:\n%s", log)
		}
		for what, text := range map[string]string{"log": log, "error": j.Error} {
			if strings.Contains(text, "s3cret") {
				t.Errorf("the %s shows the password:\n%s", what, text)
			}
		}
	}
	for what, text := range map[string]string{"log": okLog, "environment": string(env)} {
		if strings.Contains(text, "s3cret") {
			t.Errorf("the %s shows the password:\n%s", what, text)
		}
	}
}
