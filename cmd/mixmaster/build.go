package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"mixmaster"
	"mixmaster/api"
	"mixmaster/artifacts"
)

// The server mixmaster build talks to when neither the flags nor
// MIXMASTER_URL name one.
const (
	defaultBuildHost = "localhost"
	defaultBuildPort = 8585
)

// Ways to fetch the artifacts of a finished build.
const (
	transportHTTP  = "http"
	transportSCP   = "scp"
	transportRsync = "rsync"
)

// maxReplySize bounds the reply to POST /jobs. It holds the whole build
// log, so it may be big, but not unbounded.
const maxReplySize = 1 << 30

type buildOptions struct {
	host          string
	port          int
	project       string
	group         string
	verbose       bool
	jsonResult    bool
	rebuild       bool
	timeout       string
	noWait        bool
	transport     string
	transportUser string
	target        string
	clearTarget   bool

	// server is MIXMASTER_URL: its scheme and path prefix are kept, its
	// host and port are overridden by --host and --port.
	server    *url.URL
	serverErr error
	token     string
}

// jobRequest is the body of POST /jobs, keyed as mistry's client keys it.
type jobRequest struct {
	Project string
	Params  map[string]string
	Group   string
	Rebuild bool
}

// clientError carries a message worded as mistry's client words it, so
// that scripts matching those messages keep working.
type clientError string

func (e clientError) Error() string { return string(e) }

func clientErrorf(format string, args ...any) error {
	return clientError(fmt.Sprintf(format, args...))
}

func newBuildCmd() *cobra.Command {
	o := buildOptions{token: os.Getenv("MIXMASTER_TOKEN")}
	host, port := defaultBuildHost, defaultBuildPort
	if env := os.Getenv("MIXMASTER_URL"); env != "" {
		o.server, o.serverErr = parseServerURL(env)
		if o.serverErr == nil {
			host = o.server.Hostname()
			port, _ = strconv.Atoi(o.server.Port())
		}
	}
	cmd := &cobra.Command{
		Use:   "build [flags] [-- --key=value --key value --key=@file ...]",
		Short: "Schedule a cached-artifact build and fetch its artifacts",
		Long: `Schedule a build of a project on the server, wait for it and copy its
artifacts into the target folder. This is the mistry client: invoked
through a link named mistry, "mistry build" works as before.

The server is --host and --port, else MIXMASTER_URL (for example
https://ci.example.com/mixmaster), else localhost:8585. MIXMASTER_TOKEN,
when set, is sent as a bearer token.

Job parameters follow the flags, after "--": --key=value, --key value or
key value. A value @FILE sends the content of the local FILE. Parameters
whose name starts with "_" do not change the build's identity.

Artifacts come over HTTP by default (--transport http). --transport scp
needs ssh access to the server as --transport-user; --transport rsync
needs an rsync daemon module named "mistry" rooted at the build root.`,
		Example: `  # Build yarn with a lock file as parameter, artifacts into /tmp/yarn over rsync.
  mixmaster build --host example.org --port 9090 --project yarn \
      --group group_name --transport rsync --target /tmp/yarn \
      -- --lockfile=@yarn.lock --foo=bar --_ignored=true

  # Schedule a build and return at once.
  mixmaster build --project yarn --no-wait`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBuild(cmd.Context(), o, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	// Flags end at the first parameter, as in mistry: "-- --group g" is
	// the parameter group=g, not the flag.
	cmd.Flags().SetInterspersed(false)
	f := cmd.Flags()
	f.StringVar(&o.host, "host", host, "server host, for HTTP and for scp/rsync")
	f.IntVarP(&o.port, "port", "p", port, "server HTTP port")
	f.StringVar(&o.project, "project", "", "project to build (required)")
	f.StringVarP(&o.group, "group", "g", "", "group of the build, for incremental builds")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "tell what happens")
	f.BoolVar(&o.jsonResult, "json-result", false, "print only the server's JSON result on stdout (turns --verbose off)")
	f.BoolVar(&o.rebuild, "rebuild", false, "rebuild the project's image without cache")
	f.StringVar(&o.timeout, "timeout", "60m", `how long to wait for the build, as a Go duration; "" or 0 waits forever`)
	f.BoolVar(&o.noWait, "no-wait", false, "schedule the build and return without waiting or copying")
	f.StringVar(&o.transport, "transport", transportHTTP, "how to fetch the artifacts: http, scp or rsync")
	f.StringVar(&o.transportUser, "transport-user", currentUser(), "user for scp (ssh) or the rsync daemon")
	f.StringVarP(&o.target, "target", "t", ".", "local folder for the artifacts")
	f.BoolVar(&o.clearTarget, "clear-target", false, "empty the target folder before copying")
	return cmd
}

// parseServerURL reads MIXMASTER_URL. A URL without a port gets its
// scheme's.
func parseServerURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("MIXMASTER_URL: %w", err)
	}
	switch u.Scheme {
	case "http", "https":
	default:
		return nil, fmt.Errorf("MIXMASTER_URL %q: the scheme must be http or https", s)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("MIXMASTER_URL %q has no host", s)
	}
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u, nil
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

// baseURL is the server's address with --host and --port applied.
func (o *buildOptions) baseURL() string {
	u := url.URL{Scheme: "http"}
	if o.server != nil {
		u = *o.server
	}
	u.Host = net.JoinHostPort(o.host, strconv.Itoa(o.port))
	return u.String()
}

// check validates the flags; its errors are usage errors.
func (o *buildOptions) check() (time.Duration, error) {
	if o.serverErr != nil {
		return 0, o.serverErr
	}
	switch {
	case o.host == "":
		return 0, errors.New("host cannot be empty")
	case strings.HasPrefix(o.host, "-") || strings.ContainsAny(o.host, "@/ \t\r\n"):
		return 0, fmt.Errorf("invalid host %q", o.host)
	case o.port < 1 || o.port > 65535:
		return 0, fmt.Errorf("invalid port %d", o.port)
	case o.project == "":
		return 0, errors.New("project cannot be empty")
	case o.target == "":
		return 0, errors.New("target cannot be empty")
	}
	switch o.transport {
	case transportHTTP, transportSCP, transportRsync:
	default:
		return 0, fmt.Errorf("invalid transport argument (%s)", o.transport)
	}
	if o.transport != transportHTTP && !o.noWait {
		if o.transportUser == "" || strings.HasPrefix(o.transportUser, "-") || strings.ContainsAny(o.transportUser, "@:/ \t\r\n") {
			return 0, fmt.Errorf("invalid transport user %q", o.transportUser)
		}
	}
	var timeout time.Duration
	if o.timeout != "" {
		d, err := time.ParseDuration(o.timeout)
		if err != nil {
			return 0, err
		}
		if d < 0 {
			return 0, fmt.Errorf("negative timeout %s", o.timeout)
		}
		timeout = d
	}
	return timeout, nil
}

// parseParams reads job parameters as mistry does: leading dashes are
// dropped, "k=v" is split at the first "=", otherwise the next argument is
// the value ("--k v", "k v"). Unlike mistry, "--a=b=c" keeps "b=c" and a
// key without a value is an error rather than silently dropped.
func parseParams(args []string) (map[string]string, error) {
	params := make(map[string]string)
	for i := 0; i < len(args); i++ {
		arg := strings.TrimLeft(args[i], "-")
		key, value, ok := strings.Cut(arg, "=")
		if !ok {
			if i+1 == len(args) {
				return nil, fmt.Errorf("parameter %q has no value; write --%s=VALUE or --%s VALUE", args[i], arg, arg)
			}
			i++
			value = args[i]
		}
		if key == "" {
			return nil, fmt.Errorf("parameter %q has no name", args[i])
		}
		params[key] = value
	}
	return params, nil
}

// readParamFiles replaces each value @FILE by the content of FILE. Keys
// starting with @ stay as they are.
func readParamFiles(params map[string]string) error {
	for k, v := range params {
		name, ok := strings.CutPrefix(v, "@")
		if !ok {
			continue
		}
		data, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("parameter %s: %w", k, err)
		}
		params[k] = string(data)
	}
	return nil
}

func runBuild(ctx context.Context, o buildOptions, args []string, stdout, stderr io.Writer) error {
	timeout, err := o.check()
	if err != nil {
		return usageError{err}
	}
	params, err := parseParams(args)
	if err != nil {
		return usageError{err}
	}
	if err := readParamFiles(params); err != nil {
		return err
	}
	if o.jsonResult {
		o.verbose = false
	}
	// Transport output must not follow the JSON on stdout.
	copyOut := stdout
	if o.jsonResult {
		copyOut = stderr
	}
	target := o.target
	if len(target) > 1 && os.IsPathSeparator(target[len(target)-1]) {
		target = target[:len(target)-1]
	}
	// An asynchronous build copies nothing, so it needs no target.
	if !o.noWait {
		if err := ensureTarget(target, o.verbose, stdout); err != nil {
			return err
		}
	}

	base := o.baseURL()
	req := jobRequest{Project: o.project, Params: params, Group: o.group, Rebuild: o.rebuild}
	if o.verbose {
		fmt.Fprintf(stdout, "Scheduling %+v...\n", req)
	}
	body, err := o.schedule(ctx, base, req, timeout, stdout)
	if err != nil {
		var te interface{ Timeout() bool }
		if errors.As(err, &te) && te.Timeout() {
			return clientErrorf("The build did not finish after %s, %s", timeout, err)
		}
		return err
	}
	if o.noWait {
		if o.verbose {
			fmt.Fprintln(stdout, "Build scheduled successfully")
		}
		return nil
	}

	var bi api.BuildInfo
	if err := json.Unmarshal(body, &bi); err != nil {
		return fmt.Errorf("cannot read the server's reply %q: %w", truncate(body, 200), err)
	}
	if !o.jsonResult {
		fmt.Fprintln(stdout, "Logs can be found at", logsURL(base, bi.URL))
	}
	if o.verbose {
		fmt.Fprintf(stdout, "\nResult:\nStarted at: %s ExitCode: %v Params: %v Cached: %v Coalesced: %v\n\nLogs:\n%s\n",
			bi.StartedAt.Format(time.RFC3339Nano), bi.ExitCode, bi.Params, bi.Cached, bi.Coalesced, buildText(stdout, bi.ContainerStdouterr))
	}
	if o.jsonResult {
		fmt.Fprintf(stdout, "%s\n", bytes.TrimRight(body, "\n"))
	}
	if bi.ExitCode != 0 {
		if bi.ErrBuild != "" {
			fmt.Fprintln(stderr, "Build error:", buildText(stderr, bi.ErrBuild))
		}
		if bi.ContainerStderr != "" {
			fmt.Fprintln(stderr, "Container error logs:\n", buildText(stderr, bi.ContainerStderr))
		} else {
			fmt.Fprintln(stderr, "There are no container error logs.")
		}
		return clientErrorf("Build failed with exit code %d", bi.ExitCode)
	}

	if o.verbose {
		fmt.Fprintln(stdout, "Copying artifacts to", target, "...")
	}
	// rsync --delete clears the target itself, keeping files that did not
	// change; the others start from an empty folder.
	if o.clearTarget && o.transport != transportRsync {
		if err := clearDir(target); err != nil {
			return err
		}
	}
	switch o.transport {
	case transportHTTP:
		err = o.fetchHTTP(ctx, base, bi, target, stderr)
	case transportSCP:
		err = fetchSCP(ctx, o, bi, target, copyOut, stderr)
	case transportRsync:
		err = fetchRsync(ctx, o, bi, target, copyOut, stderr)
	}
	if err != nil {
		return err
	}
	if o.verbose {
		fmt.Fprintln(stdout, "Artifacts copied to", target)
	}
	return nil
}

// logsURL is the job page: mistry's URL field is relative to the server.
func logsURL(base, rel string) string {
	if u, err := url.Parse(rel); err == nil && u.IsAbs() {
		return rel
	}
	return base + "/" + strings.TrimPrefix(rel, "/")
}

// ensureTarget makes sure target is a folder, creating it if missing.
func ensureTarget(target string, verbose bool, stdout io.Writer) error {
	fi, err := os.Stat(target)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if verbose {
			fmt.Fprintf(stdout, "Target path (%s) does not exist. Creating it..\n", target)
		}
		if err := os.MkdirAll(target, 0o755); err != nil {
			return clientErrorf("Error creating target path (%s): %s", target, err)
		}
	case err != nil:
		return clientErrorf("Error checking for target path (%s): %s", target, err)
	case !fi.IsDir():
		return clientErrorf("Target path (%s) is not a directory. Aborting.", target)
	}
	return nil
}

// clearDir removes everything inside dir, but not dir.
func clearDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("clear target: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("clear target: %w", err)
		}
	}
	return nil
}

// schedule posts the job and returns the reply's body. The timeout covers
// the whole exchange, which for a synchronous job is the whole build.
func (o *buildOptions) schedule(ctx context.Context, base string, jr jobRequest, timeout time.Duration, stdout io.Writer) ([]byte, error) {
	payload, err := json.Marshal(jr)
	if err != nil {
		return nil, err
	}
	u := base + "/jobs"
	if o.noWait {
		u += "?async"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	o.authorize(req)
	client := &http.Client{Timeout: timeout}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReplySize))
	if err != nil {
		return nil, err
	}
	if o.verbose {
		fmt.Fprintf(stdout, "Server response: %s\n", resp.Status)
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated, http.StatusAccepted:
	case http.StatusServiceUnavailable:
		return nil, clientErrorf("(error: %d) Server is overloaded; try again later", resp.StatusCode)
	default:
		return nil, clientErrorf("(error: %d) Error scheduling build: %s", resp.StatusCode, errorText(body))
	}
	if !o.noWait && len(bytes.TrimSpace(body)) == 0 {
		return nil, fmt.Errorf("(error: %d) the server sent no build result", resp.StatusCode)
	}
	return body, nil
}

func (o *buildOptions) authorize(req *http.Request) {
	if o.token != "" {
		req.Header.Set("Authorization", "Bearer "+o.token)
	}
}

// errorText is the message of an error reply: plain text, or the "error"
// or "message" field of a JSON object.
func errorText(body []byte) string {
	var obj struct{ Error, Message string }
	if json.Unmarshal(body, &obj) == nil {
		if obj.Error != "" {
			return obj.Error
		}
		if obj.Message != "" {
			return obj.Message
		}
	}
	return strings.TrimRight(truncate(body, 4096), "\n")
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// fetchHTTP downloads the job's artifacts as one tar stream and unpacks it
// into target.
func (o *buildOptions) fetchHTTP(ctx context.Context, base string, bi api.BuildInfo, target string, stderr io.Writer) error {
	id := path.Base(bi.URL)
	if bi.URL == "" || id == "." || id == "/" {
		return fmt.Errorf("cannot find the job id in the server's URL %q", bi.URL)
	}
	u := base + "/api/v1/jobs/" + url.PathEscape(id) + "/artifacts"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/x-tar")
	o.authorize(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetch artifacts: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return clientErrorf("(error: %d) Error fetching artifacts: %s", resp.StatusCode, errorText(body))
	}
	var r io.Reader = resp.Body
	if isTerminal(stderr) {
		bar := newProgressBar(resp.ContentLength, stderr)
		defer bar.Close()
		r = io.TeeReader(resp.Body, bar)
	}
	if err := artifacts.ExtractTar(r, target, artifacts.Limits{}); err != nil {
		return fmt.Errorf("fetch artifacts: %w", err)
	}
	return nil
}

// buildText is text a build wrote, made safe to print on w: control
// sequences go, colours stay when w is a terminal.
func buildText(w io.Writer, s string) string {
	return string(mixmaster.SafeTerminalText([]byte(s), isTerminal(w)))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// newProgressBar is progressbar.DefaultBytes drawn on w instead of
// os.Stderr. A length of -1 (no Content-Length) gives a spinner.
func newProgressBar(size int64, w io.Writer) *progressbar.ProgressBar {
	return progressbar.NewOptions64(size,
		progressbar.OptionSetDescription("downloading"),
		progressbar.OptionSetWriter(w),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetWidth(10),
		progressbar.OptionThrottle(65*time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionOnCompletion(func() { fmt.Fprint(w, "\n") }),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionFullWidth(),
		progressbar.OptionSetRenderBlankState(true),
	)
}

// checkServerPath refuses an artifacts path that is not a plain absolute
// path: it comes from the server and ends up in another program's argv.
func checkServerPath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" || strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("the server sent an unusable artifacts path %q", p)
	}
	return nil
}

// remoteHost is host as scp and rsync want it: IPv6 addresses in brackets.
func remoteHost(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

// localArg keeps a target starting with "-" from being read as an option.
func localArg(target string) string {
	if strings.HasPrefix(target, "-") {
		return "." + string(filepath.Separator) + target
	}
	return target
}

// fetchSCP copies the artifacts folder's content: "<Path>/." also works
// for an empty folder, where mistry's "<Path>/*" made scp fail.
func fetchSCP(ctx context.Context, o buildOptions, bi api.BuildInfo, target string, stdout, stderr io.Writer) error {
	if err := checkServerPath(bi.Path); err != nil {
		return err
	}
	src := fmt.Sprintf("%s@%s:%s/.", o.transportUser, remoteHost(o.host), bi.Path)
	return runTransport(ctx, stdout, stderr, "scp", "-r", src, localArg(target))
}

// fetchRsync copies from the rsync daemon module "mistry", rooted at the
// build root. Trailing slashes on both sides copy the folder's content
// (no glob), so --delete also removes stale top-level files.
func fetchRsync(ctx context.Context, o buildOptions, bi api.BuildInfo, target string, stdout, stderr io.Writer) error {
	if err := checkServerPath(bi.Path); err != nil {
		return err
	}
	rel, err := rsyncPath(bi.Path, o.project)
	if err != nil {
		return err
	}
	argv := []string{"-rtlp"}
	if o.clearTarget {
		argv = append(argv, "--delete")
	}
	src := fmt.Sprintf("%s@%s::mistry/%s/", o.transportUser, remoteHost(o.host), rel)
	dst := strings.TrimSuffix(localArg(target), "/") + "/"
	argv = append(argv, src, dst)
	return runTransport(ctx, stdout, stderr, "rsync", argv...)
}

// rsyncPath is the artifacts path relative to the build root, which is
// what the "mistry" module serves. The build root may itself contain the
// project's name, so the cut is at the last "/<project>/ready/" (mistry
// cut at the first occurrence of the name anywhere).
func rsyncPath(p, project string) (string, error) {
	i := strings.LastIndex(p, "/"+project+"/ready/")
	if i < 0 {
		i = strings.LastIndex(p, "/"+project+"/")
	}
	if i < 0 {
		return "", fmt.Errorf("cannot find project %s in the artifacts path %q", project, p)
	}
	return p[i+1:], nil
}

func runTransport(ctx context.Context, stdout, stderr io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("copying artifacts with %s failed: %w", name, err)
	}
	return nil
}
