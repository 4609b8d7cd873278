package scm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"mixmaster"
)

// globalArgs go before every git subcommand. They are not written to the
// job log, where they would only repeat on every line.
var globalArgs = []string{
	"-c", "protocol.version=2", // lets us fetch a commit by ID
	"-c", "advice.detachedHead=false",
	// A build may write hooks or an fsmonitor command into the workspace's
	// .git (in a container, that is its only way to reach the host); never
	// run them.
	"-c", "core.hooksPath=/dev/null",
	"-c", "core.fsmonitor=false",
	// Automatic gc must finish while we hold the mirror lock instead of
	// running on in the background.
	"-c", "gc.autoDetach=false",
}

// waitDelay bounds how long git may take to exit after being signalled, and
// how long a grandchild (ssh) may keep its output pipe open.
const waitDelay = 5 * time.Second

// runner runs git for one checkout.
type runner struct {
	path   string
	dir    string // working directory; every path we pass is absolute anyway
	env    []string
	log    mixmaster.CheckoutLog
	logger *slog.Logger
}

// note writes one of the checkout's own remarks to the log.
func (r *runner) note(format string, args ...any) {
	r.log.Status("%s", redactText(fmt.Sprintf(format, args...)))
}

// gitEnv builds the environment of git: a minimal base, the caller's
// variables, then the settings that must win over both.
func gitEnv(extra []string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	env := []string{"PATH=" + path}
	if home, ok := os.LookupEnv("HOME"); ok {
		env = append(env, "HOME="+home)
	}
	env = append(env, extra...)
	return append(env,
		"GIT_TERMINAL_PROMPT=0",                      // fail instead of waiting for a password
		"GIT_ALLOW_PROTOCOL=file:git:http:https:ssh", // no ext:: or fd::
		"GIT_CONFIG_NOSYSTEM=1",
		"LC_ALL=C", // stable messages
	)
}

// run runs git with args. Its stdout goes to out, or to the log when out is
// nil; its stderr goes to the log. The error carries git's last line of
// output, which is usually the reason.
func (r *runner) run(ctx context.Context, out io.Writer, args ...string) error {
	return r.runInput(ctx, nil, out, args...)
}

// runInput is run with in as git's standard input.
func (r *runner) runInput(ctx context.Context, in io.Reader, out io.Writer, args ...string) error {
	line := commandLine(args)
	r.log.Command(line)
	lines := &lineLog{log: r.log}
	cmd := exec.CommandContext(ctx, r.path, slices.Concat(globalArgs, args)...)
	cmd.Dir = r.dir
	cmd.Env = r.env
	cmd.Stdin = in
	// Passing the same writer twice lets exec share one pipe, so the log
	// is never written from two goroutines.
	cmd.Stdout, cmd.Stderr = lines, lines
	if out != nil {
		cmd.Stdout = out
	}
	cmd.WaitDelay = waitDelay
	setProcessGroup(cmd)

	start := time.Now()
	err := cmd.Run()
	lines.flush()
	r.logger.DebugContext(ctx, "git", "cmd", line, "duration", time.Since(start), "err", err)
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("git %s: %w", subcommand(args), ctxErr)
	}
	if lines.last != "" {
		return fmt.Errorf("git %s: %w: %s", subcommand(args), err, lines.last)
	}
	return fmt.Errorf("git %s: %w", subcommand(args), err)
}

// output runs git and returns its trimmed stdout.
func (r *runner) output(ctx context.Context, args ...string) (string, error) {
	var buf bytes.Buffer
	err := r.run(ctx, &buf, args...)
	return strings.TrimSpace(buf.String()), err
}

// subcommand is the first argument that is not an option, for messages.
func subcommand(args []string) string {
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "-c":
			i++
		case !strings.HasPrefix(args[i], "-"):
			return args[i]
		}
	}
	return "command"
}

// commandLine renders args as a shell-quoted git command line for the job
// log, with passwords in URLs hidden.
func commandLine(args []string) string {
	var b strings.Builder
	b.WriteString("git")
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(shellQuote(mixmaster.RedactURL(a)))
	}
	return b.String()
}

// shellQuote quotes s for a POSIX shell when it has anything but plainly
// safe characters, so that logged command lines can be pasted.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("@%_+=:,./-", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// lineLog writes git's output to the log as status lines, one per line,
// with any credentials in URLs hidden (git quotes the URL it failed to
// reach), and keeps the last non-empty one for the error message.
type lineLog struct {
	log     mixmaster.CheckoutLog
	partial []byte
	last    string
}

// maxGitLine bounds a line kept back waiting for its end.
const maxGitLine = 4096

func (l *lineLog) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		// Progress meters end their lines with \r.
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			l.partial = append(l.partial, p...)
			if len(l.partial) >= maxGitLine {
				l.flush()
			}
			break
		}
		l.partial = append(l.partial, p[:i]...)
		l.flush()
		p = p[i+1:]
	}
	return n, nil
}

// flush logs the line gathered so far, if it holds anything.
func (l *lineLog) flush() {
	line := strings.TrimSpace(redactText(string(l.partial)))
	l.partial = l.partial[:0]
	if line == "" {
		return
	}
	l.last = line
	l.log.Status("%s", line)
}

// redactText hides the credentials of every URL in s.
func redactText(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "://")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		start := i
		for start > 0 && isSchemeByte(s[start-1]) {
			start--
		}
		end := i + 3
		for end < len(s) && !strings.ContainsRune(" \t'\"<>`", rune(s[end])) {
			end++
		}
		b.WriteString(s[:start])
		b.WriteString(mixmaster.RedactURL(s[start:end]))
		s = s[end:]
	}
}

func isSchemeByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'
}

// keyedLocks is a set of mutexes by name whose Lock gives up when the
// context ends. Entries are never removed: there is one per repository or
// workspace, and those are few.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

// lock takes the lock named key and returns the function that releases it.
func (k *keyedLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[string]chan struct{})
	}
	ch, ok := k.m[key]
	if !ok {
		ch = make(chan struct{}, 1)
		k.m[key] = ch
	}
	k.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
