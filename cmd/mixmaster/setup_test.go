package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/unit"

	"mixmaster/deploy"
	"mixmaster/internal/testenv"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/setup")

// setupEnv is a temporary home with a stand-in systemctl on PATH.
type setupEnv struct {
	home    string
	config  string
	unitDir string
	calls   string // the stand-in's log: one line per systemctl call
}

// A systemctl --user that works: it logs its calls and keeps each unit's
// state in files.
const fakeSystemctl = `#!/bin/sh
echo "$*" >> "$FAKE_SYSTEMCTL_DIR/calls"
state="$FAKE_SYSTEMCTL_DIR"
[ "$1" = --user ] || { echo "not --user: $*" >&2; exit 2; }
verb=$2
shift 2
units=
for a in "$@"; do
	case "$a" in -*) ;; *) units="${units:+$units }$a" ;; esac
done
case "$verb" in
show-environment|daemon-reload) exit 0 ;;
enable) for u in $units; do touch "$state/$u.enabled" "$state/$u.active"; done ;;
disable) for u in $units; do rm -f "$state/$u.enabled" "$state/$u.active"; done ;;
is-enabled) [ -e "$state/$units.enabled" ] ;;
is-active) [ -e "$state/$units.active" ] ;;
*) echo "unexpected: $verb $*" >&2; exit 2 ;;
esac
`

// A systemctl where no user manager runs: a container, CI.
const deadSystemctl = `#!/bin/sh
echo "$*" >> "$FAKE_SYSTEMCTL_DIR/calls"
echo "Failed to connect to bus: No medium found" >&2
exit 1
`

// newSetupEnv makes a home for setup to work in, with systemd running or
// not.
func newSetupEnv(t *testing.T, systemd bool) *setupEnv {
	t.Helper()
	home := t.TempDir()
	bin := t.TempDir()
	script := deadSystemctl
	if systemd {
		script = fakeSystemctl
	}
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("MIXMASTER_CONFIG", "")
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKE_SYSTEMCTL_DIR", bin)
	// The ports the goldens name may be in use here (by a service
	// installed on this machine, say); TestSetupPortTaken checks for real.
	probe := checkListen
	checkListen = func(string) error { return nil }
	t.Cleanup(func() { checkListen = probe })
	return &setupEnv{
		home:    home,
		config:  filepath.Join(home, ".config", "mixmaster.ini"),
		unitDir: filepath.Join(home, ".config", "systemd", "user"),
		calls:   filepath.Join(bin, "calls"),
	}
}

// run runs `mixmaster setup args…` with stdin and returns the exit code
// and what it printed, with the home written as $HOME and the test binary
// as $BINARY.
func (e *setupEnv) run(t *testing.T, stdin string, args ...string) (int, string) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"setup"}, args...))
	code := 0
	if err := root.ExecuteContext(context.Background()); err != nil {
		out.WriteString("mixmaster: " + err.Error() + "\n")
		code = 1
		if errors.As(err, new(usageError)) {
			code = 2
		}
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	text := strings.ReplaceAll(out.String(), exe, "$BINARY")
	text = strings.ReplaceAll(text, e.home, "$HOME")
	// Whether the test binary counts as temporary depends on where go
	// test builds it.
	var lines []string
	for _, l := range strings.SplitAfter(text, "\n") {
		if !strings.Contains(l, "is a temporary binary") {
			lines = append(lines, l)
		}
	}
	return code, strings.Join(lines, "")
}

// systemctlCalls returns the calls the stand-in saw, and forgets them.
func (e *setupEnv) systemctlCalls(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(e.calls)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(e.calls)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// golden compares got with testdata/setup/name, or rewrites it with
// -update.
func setupGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "setup", name)
	if *updateGolden {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run Setup -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func wantCode(t *testing.T, what string, code, want int, out string) {
	t.Helper()
	if code != want {
		t.Fatalf("%s: exit code %d, want %d\n%s", what, code, want, out)
	}
}

// unitOption returns the value of one option of a unit file.
func unitOption(t *testing.T, path, section, name string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := unit.DeserializeOptions(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		if o.Section == section && o.Name == name {
			return o.Value
		}
	}
	t.Fatalf("%s has no %s/%s", path, section, name)
	return ""
}

// TestSetupWithoutSystemd installs where no user manager runs: the files
// are written, nothing is enabled, and it says so with exit code 0. A
// second run finds everything in place and asks nothing.
func TestSetupWithoutSystemd(t *testing.T) {
	e := newSetupEnv(t, false)
	code, out := e.run(t, "")
	wantCode(t, "setup without an answer", code, 1, out)
	setupGolden(t, "declined.txt", out)
	if _, err := os.Stat(filepath.Join(e.home, "Builds")); err == nil {
		t.Error("setup created the build root without asking")
	}
	e.systemctlCalls(t)

	code, out = e.run(t, "", "--yes", "--email", "alice@example.com", "--port", "9001")
	wantCode(t, "setup --yes", code, 0, out)
	setupGolden(t, "first.txt", out)

	root := filepath.Join(e.home, "Builds")
	for _, p := range []string{root, filepath.Join(root, "mixmaster.db"), e.config} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "projects", "greeting", "build")); err != nil || fi.Mode()&0o100 == 0 {
		t.Errorf("example project: %v, %v", fi, err)
	}
	if fi, _ := os.Stat(e.config); fi != nil && fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode = %v, want 0600", fi.Mode())
	}
	cfg, err := LoadConfig(e.config)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BuildRoot != root || cfg.Listen != "127.0.0.1:9001" || cfg.MailTo != "alice@example.com" ||
		cfg.SSHKey != "" || cfg.IdleExit != 10*time.Minute {
		t.Errorf("config = %+v", cfg)
	}
	socket := filepath.Join(e.unitDir, deploy.SocketUnit)
	service := filepath.Join(e.unitDir, deploy.ServiceUnit)
	if v := unitOption(t, socket, "Socket", "ListenStream"); v != "127.0.0.1:9001" {
		t.Errorf("ListenStream = %q", v)
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	if v := unitOption(t, service, "Service", "ExecStart"); !strings.HasPrefix(v, exe+" serve --config %h/.config/mixmaster.ini") {
		t.Errorf("ExecStart = %q, want the running binary (%s) and the config", v, exe)
	}
	if calls := e.systemctlCalls(t); len(calls) != 1 || calls[0] != "--user show-environment" {
		t.Errorf("systemctl calls = %q, want only the probe", calls)
	}

	// Again: everything exists, nothing to ask.
	code, out = e.run(t, "")
	wantCode(t, "second setup", code, 0, out)
	setupGolden(t, "second.txt", out)

	// --require-systemd changes nothing and fails.
	code, out = e.run(t, "", "--yes", "--require-systemd", "--port", "9001")
	wantCode(t, "setup --require-systemd", code, 1, out)
	if !strings.Contains(out, "systemd is not running for this user (--require-systemd)") {
		t.Errorf("output:\n%s", out)
	}
}

// TestSetupRequireSystemdChangesNothing: without a user manager,
// --require-systemd fails before anything is written.
func TestSetupRequireSystemdChangesNothing(t *testing.T) {
	e := newSetupEnv(t, false)
	code, out := e.run(t, "", "--yes", "--require-systemd")
	wantCode(t, "setup --require-systemd", code, 1, out)
	for _, p := range []string{filepath.Join(e.home, "Builds"), e.config, e.unitDir} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was created", p)
		}
	}
}

// TestSetupForce checks that files that exist are kept, and say so,
// unless --force is given.
func TestSetupForce(t *testing.T) {
	e := newSetupEnv(t, false)
	code, out := e.run(t, "", "--yes")
	wantCode(t, "setup", code, 0, out)

	// The user edits the config; a unit names a binary that moved.
	edited := "; mine\n[_]\nbuildRoot = ~/Builds\nlisten = 127.0.0.1:8585\n"
	os.WriteFile(e.config, []byte(edited), 0o600)
	service := filepath.Join(e.unitDir, deploy.ServiceUnit)
	old, _ := os.ReadFile(service)
	moved := bytes.Replace(old, []byte("ExecStart="), []byte("ExecStart=/old/bin/mixmaster #"), 1)
	os.WriteFile(service, moved, 0o644)

	code, out = e.run(t, "")
	wantCode(t, "setup without --force", code, 0, out)
	setupGolden(t, "kept.txt", out)
	if b, _ := os.ReadFile(e.config); string(b) != edited {
		t.Error("the config was overwritten without --force")
	}
	if b, _ := os.ReadFile(service); !bytes.Equal(b, moved) {
		t.Error("the service unit was overwritten without --force")
	}

	// A flag that the kept config contradicts is an error, not ignored.
	code, out = e.run(t, "", "--yes", "--port", "9002")
	wantCode(t, "setup --port with a kept config", code, 1, out)
	setupGolden(t, "conflict.txt", out)

	code, out = e.run(t, "y\n", "--force", "--port", "9002")
	wantCode(t, "setup --force", code, 0, out)
	setupGolden(t, "force.txt", out)
	cfg, err := LoadConfig(e.config)
	if err != nil || cfg.Listen != "127.0.0.1:9002" {
		t.Errorf("config after --force: %+v, %v", cfg, err)
	}
	if v := unitOption(t, filepath.Join(e.unitDir, deploy.SocketUnit), "Socket", "ListenStream"); v != "127.0.0.1:9002" {
		t.Errorf("ListenStream after --force = %q", v)
	}
	if b, _ := os.ReadFile(service); !bytes.Equal(b, old) {
		t.Errorf("service unit after --force:\n%s", b)
	}
	// The build root and what is in it are never replaced.
	if _, err := os.Stat(filepath.Join(e.home, "Builds", "mixmaster.db")); err != nil {
		t.Error(err)
	}
}

// TestSetupKeepsOriginalConfig keeps a config written for the original
// Mixmaster, which has no listen key: serve keeps it to loopback without
// tokens, and so does the socket.
func TestSetupKeepsOriginalConfig(t *testing.T) {
	e := newSetupEnv(t, false)
	original := "[_]\nbuildRoot = ~/Builds\nmailto =\nsshKey =\n"
	os.MkdirAll(filepath.Dir(e.config), 0o755)
	os.WriteFile(e.config, []byte(original), 0o600)
	code, out := e.run(t, "", "--yes", "--port", "8585")
	wantCode(t, "setup", code, 0, out)
	if b, _ := os.ReadFile(e.config); string(b) != original {
		t.Errorf("the config was rewritten:\n%s", b)
	}
	if v := unitOption(t, filepath.Join(e.unitDir, deploy.SocketUnit), "Socket", "ListenStream"); v != "127.0.0.1:8585" {
		t.Errorf("ListenStream = %q, want loopback", v)
	}
}

// TestSetupWithSystemd: where the user manager runs, setup reloads it and
// enables and starts the socket; a second run sees it enabled.
func TestSetupWithSystemd(t *testing.T) {
	e := newSetupEnv(t, true)
	code, out := e.run(t, "y\n")
	wantCode(t, "setup", code, 0, out)
	setupGolden(t, "systemd-first.txt", out)
	calls := e.systemctlCalls(t)
	want := []string{"--user show-environment", "--user daemon-reload", "--user enable --now mixmaster.socket",
		"--user is-active --quiet mixmaster.service"}
	if strings.Join(calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("systemctl calls:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}

	code, out = e.run(t, "")
	wantCode(t, "second setup", code, 0, out)
	setupGolden(t, "systemd-second.txt", out)
	for _, c := range e.systemctlCalls(t) {
		if strings.Contains(c, "enable") && !strings.Contains(c, "is-enabled") {
			t.Errorf("second run changed something: systemctl %s", c)
		}
	}

	// New units while the service runs: it says to restart it.
	os.WriteFile(filepath.Join(filepath.Dir(e.calls), "mixmaster.service.active"), nil, 0o644)
	code, out = e.run(t, "", "--force", "--yes", "--port", "9003")
	wantCode(t, "setup --force", code, 0, out)
	if !strings.Contains(out, "❗ The service runs with the old units: systemctl --user restart mixmaster.service\n") {
		t.Errorf("no restart hint:\n%s", out)
	}
	e.systemctlCalls(t)

	// Teardown stops and disables both units by their real names.
	code, out = e.run(t, "", "--teardown", "--yes")
	wantCode(t, "teardown", code, 0, out)
	setupGolden(t, "systemd-teardown.txt", out)
	calls = e.systemctlCalls(t)
	want = []string{"--user show-environment", "--user disable --now mixmaster.socket mixmaster.service", "--user daemon-reload"}
	if strings.Join(calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("systemctl calls:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}

	code, out = e.run(t, "", "--teardown")
	wantCode(t, "second teardown", code, 0, out)
	if calls := e.systemctlCalls(t); len(calls) != 1 {
		t.Errorf("second teardown called systemctl: %q", calls)
	}
}

// TestTeardownWithoutSystemd removes the units and the config, keeps the
// build root, and says so; twice.
func TestTeardownWithoutSystemd(t *testing.T) {
	e := newSetupEnv(t, false)
	code, out := e.run(t, "", "--yes")
	wantCode(t, "setup", code, 0, out)

	code, out = e.run(t, "n\n", "--teardown")
	wantCode(t, "teardown answered no", code, 1, out)
	if _, err := os.Stat(e.config); err != nil {
		t.Error("teardown removed the config after being told no")
	}

	code, out = e.run(t, "", "--teardown", "--yes")
	wantCode(t, "teardown", code, 0, out)
	setupGolden(t, "teardown.txt", out)
	for _, p := range []string{e.config, filepath.Join(e.unitDir, deploy.SocketUnit), filepath.Join(e.unitDir, deploy.ServiceUnit)} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is still there", p)
		}
	}
	for _, p := range []string{"Builds/mixmaster.db", "Builds/projects/greeting/build"} {
		if _, err := os.Stat(filepath.Join(e.home, p)); err != nil {
			t.Errorf("teardown did not keep %s: %v", p, err)
		}
	}

	code, out = e.run(t, "", "--teardown")
	wantCode(t, "second teardown", code, 0, out)
	setupGolden(t, "teardown-again.txt", out)
}

// TestTeardownKeepsConfiguredBuildRoot names the build root the config
// names, not the default.
func TestTeardownKeepsConfiguredBuildRoot(t *testing.T) {
	e := newSetupEnv(t, false)
	root := filepath.Join(e.home, "elsewhere")
	code, out := e.run(t, "", "--yes", "--build-root", root)
	wantCode(t, "setup", code, 0, out)
	code, out = e.run(t, "", "--teardown", "--yes")
	wantCode(t, "teardown", code, 0, out)
	if !strings.Contains(out, "❗ Kept $HOME/elsewhere.\n") {
		t.Errorf("teardown output:\n%s", out)
	}
}

// TestSetupDump prints the config: what setup would write before it
// exists, the file afterwards.
func TestSetupDump(t *testing.T) {
	e := newSetupEnv(t, false)
	code, out := e.run(t, "", "--dump", "--email", "bob@example.com")
	wantCode(t, "dump before setup", code, 0, out)
	setupGolden(t, "dump-planned.txt", out)
	if _, err := os.Stat(e.config); err == nil {
		t.Error("--dump wrote the config")
	}

	e.run(t, "", "--yes")
	os.WriteFile(e.config, []byte("[_]\nmode = dryrun\n"), 0o600)
	code, out = e.run(t, "", "--dump")
	wantCode(t, "dump", code, 0, out)
	want := "Dumping $HOME/.config/mixmaster.ini\n" + strings.Repeat("-", 72) + "\n[_]\nmode = dryrun\n"
	if out != want {
		t.Errorf("dump:\n%s\nwant:\n%s", out, want)
	}
}

// TestSetupXDGConfigHome writes the config and the units where
// $XDG_CONFIG_HOME says, as serve and systemd read them.
func TestSetupXDGConfigHome(t *testing.T) {
	e := newSetupEnv(t, false)
	xdg := filepath.Join(e.home, "xdg")
	t.Setenv("XDG_CONFIG_HOME", xdg)
	code, out := e.run(t, "", "--yes")
	wantCode(t, "setup", code, 0, out)
	for _, p := range []string{"mixmaster.ini", "systemd/user/mixmaster.socket", "systemd/user/mixmaster.service"} {
		if _, err := os.Stat(filepath.Join(xdg, p)); err != nil {
			t.Error(err)
		}
	}
	if got := configPath(""); got != filepath.Join(xdg, "mixmaster.ini") {
		t.Errorf("serve reads %s", got)
	}
	if v := unitOption(t, filepath.Join(xdg, "systemd/user/mixmaster.service"), "Service", "ExecStart"); !strings.HasSuffix(v, " serve --config %h/xdg/mixmaster.ini") {
		t.Errorf("ExecStart = %q", v)
	}
}

// TestSetupOptions covers --listen, --key and the flags' checks.
func TestSetupOptions(t *testing.T) {
	e := newSetupEnv(t, false)
	key := filepath.Join(e.home, ".ssh", "deploy")
	os.MkdirAll(filepath.Dir(key), 0o700)
	os.WriteFile(key, []byte("key"), 0o600)

	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"--port", "0"}, 2, "expected a port"},
		{[]string{"--port", "9000", "--listen", ":9000"}, 2, "exclude each other"},
		{[]string{"--dump", "--teardown"}, 2, "exclude each other"},
		{[]string{"--listen", "localhost:9000", "--yes"}, 2, "needs an IP address"},
		{[]string{"--email", "not an address", "--yes"}, 1, "mailto"},
		{[]string{"--email", "a@b.c\nmode = dryrun", "--yes"}, 1, "control character"},
		{[]string{"--key", "~/.ssh/missing", "--yes"}, 1, "--key"},
		{[]string{"extra"}, 2, "accepts 0 arg"},
	} {
		code, out := e.run(t, "", tc.args...)
		if code != tc.code || !strings.Contains(out, tc.says) {
			t.Errorf("setup %q: exit %d, want %d saying %q:\n%s", tc.args, code, tc.code, tc.says, out)
		}
		if _, err := os.Stat(e.config); err == nil {
			t.Fatalf("setup %q wrote the config", tc.args)
		}
	}

	code, out := e.run(t, "", "--yes", "--listen", ":9000", "--key", "~/.ssh/deploy")
	wantCode(t, "setup --listen --key", code, 0, out)
	if strings.Contains(out, "Loopback only") {
		t.Errorf("says loopback only for :9000:\n%s", out)
	}
	cfg, err := LoadConfig(e.config)
	if err != nil || cfg.Listen != ":9000" || cfg.SSHKey != key {
		t.Errorf("config = %+v, %v", cfg, err)
	}
	if v := unitOption(t, filepath.Join(e.unitDir, deploy.SocketUnit), "Socket", "ListenStream"); v != "9000" {
		t.Errorf("ListenStream = %q, want every address", v)
	}
	// Repeating what the config says is no conflict.
	code, out = e.run(t, "", "--listen", ":9000", "--key", key)
	wantCode(t, "setup again with the same flags", code, 0, out)
}

// TestSetupUnitsVerify checks the units setup wrote with systemd's own
// checker; ExecStart is this test binary, which exists.
func TestSetupUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	testenv.Need(t, "systemd", err == nil, "systemd-analyze not on PATH")
	e := newSetupEnv(t, false)
	code, out := e.run(t, "", "--yes")
	wantCode(t, "setup", code, 0, out)
	runtime := t.TempDir()
	os.Chmod(runtime, 0o700)
	cmd := exec.Command(analyze, "verify", "--user",
		filepath.Join(e.unitDir, deploy.SocketUnit), filepath.Join(e.unitDir, deploy.ServiceUnit))
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runtime, "SYSTEMD_LOG_COLOR=0")
	if b, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(b)) > 0 {
		t.Errorf("systemd-analyze verify --user: %v\n%s", err, b)
	}
}

// TestSetupThenServe runs the service from what setup wrote, through its
// socket: the example project builds.
func TestSetupThenServe(t *testing.T) {
	binary(t) // before HOME moves, which would move Go's build cache too
	e := newSetupEnv(t, false)
	code, out := e.run(t, "", "--yes")
	wantCode(t, "setup", code, 0, out)
	sock, url := listenFile(t)
	c := startActivated(t, sock, noDockerEnv, "serve", "--config", e.config)
	resp, err := freshClient.Post(url+"/jobs", "application/json", strings.NewReader(`{"project": "greeting", "params": {"name": "setup"}}`))
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || !strings.Contains(body.String(), `"ExitCode":0`) {
		t.Fatalf("POST /jobs: %d %s", resp.StatusCode, body.String())
	}
	got, _ := filepath.Glob(filepath.Join(e.home, "Builds", "greeting", "ready", "*", "data", "artifacts", "greeting.txt"))
	if len(got) != 1 {
		t.Fatalf("artifacts: %v", got)
	}
	if b, _ := os.ReadFile(got[0]); string(b) != "hello, setup\n" {
		t.Errorf("greeting.txt = %q", b)
	}
	c.cmd.Process.Kill()
}

// TestSetupPortTaken: setup notices that its port is in use, says so and
// suggests --port, changing nothing; a free port then works.
func TestSetupPortTaken(t *testing.T) {
	e := newSetupEnv(t, false)
	checkListen = listenFree
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	code, out := e.run(t, "", "--yes", "--port", port)
	if code != 1 || !strings.Contains(out, "127.0.0.1:"+port+" is already in use") || !strings.Contains(out, "--port N") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if _, err := os.Stat(e.config); err == nil {
		t.Error("setup wrote the config although its port is taken")
	}
	ln.Close()
	if code, out := e.run(t, "", "--yes", "--port", port); code != 0 {
		t.Fatalf("with the port free: exit %d:\n%s", code, out)
	}
}
