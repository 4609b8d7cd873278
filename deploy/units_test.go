package deploy_test

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/unit"

	"mixmaster/deploy"
	"mixmaster/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestUnitsGolden(t *testing.T) {
	for _, tc := range []struct {
		dir string
		o   deploy.UnitOptions
	}{
		{"user", deploy.UnitOptions{
			Binary: "/home/alice/.local/bin/mixmaster",
			Config: "/home/alice/.config/mixmaster.ini",
			Listen: "127.0.0.1:8585",
			Home:   "/home/alice",
		}},
		// Paths outside the home stay absolute; odd characters are quoted
		// and escaped so that systemd reads the same path back.
		{"odd", deploy.UnitOptions{
			Binary: "/opt/mix master/bin/mixmaster",
			Config: `/srv/100%/"it's"/$HOME\mixmaster.ini`,
			Listen: ":9000",
			Home:   "/home/alice",
		}},
		{"ipv6", deploy.UnitOptions{
			Binary: "/usr/local/bin/mixmaster",
			Config: "/home/bob/.config/mixmaster.ini",
			Listen: "[::1]:8585",
		}},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			units, err := deploy.Units(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if len(units) != 2 || units[0].Name != deploy.SocketUnit || units[1].Name != deploy.ServiceUnit {
				t.Fatalf("units = %v", units)
			}
			for _, u := range units {
				golden(t, filepath.Join(tc.dir, u.Name), u.Data)
				// What was written parses back to the same options.
				opts, err := unit.DeserializeOptions(bytes.NewReader(u.Data))
				if err != nil || len(opts) == 0 {
					t.Errorf("%s does not parse: %v", u.Name, err)
				}
			}
		})
	}
}

func TestUnitsOptions(t *testing.T) {
	units, err := deploy.Units(deploy.UnitOptions{
		Binary: "/home/alice/bin/mixmaster", Config: "/home/alice/.config/mixmaster.ini",
		Listen: "127.0.0.1:8585", Home: "/home/alice",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		deploy.SocketUnit: {"Socket/ListenStream=127.0.0.1:8585", "Socket/Accept=no", "Install/WantedBy=sockets.target"},
		deploy.ServiceUnit: {
			"Service/Type=notify",
			"Service/ExecStart=%h/bin/mixmaster serve --config %h/.config/mixmaster.ini",
			"Service/Restart=on-failure",
			"Service/KillMode=mixed",
			"Service/Delegate=yes",
			"Service/TimeoutStopSec=60",
			"Service/NoNewPrivileges=yes",
			"Unit/Requires=mixmaster.socket",
		},
	}
	for _, u := range units {
		opts, err := unit.DeserializeOptions(bytes.NewReader(u.Data))
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, o := range opts {
			have[o.Section+"/"+o.Name+"="+o.Value] = true
		}
		for _, w := range want[u.Name] {
			if !have[w] {
				t.Errorf("%s lacks %s:\n%s", u.Name, w, u.Data)
			}
		}
	}
}

func TestUnitsRefuse(t *testing.T) {
	ok := deploy.UnitOptions{Binary: "/bin/mixmaster", Config: "/etc/mixmaster.ini", Listen: "127.0.0.1:8585"}
	for name, change := range map[string]func(*deploy.UnitOptions){
		"relative binary":   func(o *deploy.UnitOptions) { o.Binary = "mixmaster" },
		"relative config":   func(o *deploy.UnitOptions) { o.Config = "mixmaster.ini" },
		"newline in path":   func(o *deploy.UnitOptions) { o.Config = "/etc/x\nExecStartPre=/bin/rm" },
		"host name":         func(o *deploy.UnitOptions) { o.Listen = "localhost:8585" },
		"no port":           func(o *deploy.UnitOptions) { o.Listen = "127.0.0.1" },
		"port 0":            func(o *deploy.UnitOptions) { o.Listen = ":0" },
		"port out of range": func(o *deploy.UnitOptions) { o.Listen = ":65536" },
	} {
		o := ok
		change(&o)
		if _, err := deploy.Units(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := deploy.Units(ok); err != nil {
		t.Errorf("valid options: %v", err)
	}
}

func TestListenStream(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:8585": "127.0.0.1:8585",
		":8585":          "8585",
		"[::1]:8585":     "[::1]:8585",
		"[::]:80":        "[::]:80",
		"0.0.0.0:8585":   "0.0.0.0:8585",
	} {
		if got, err := deploy.ListenStream(in); err != nil || got != want {
			t.Errorf("ListenStream(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestConfigRendering(t *testing.T) {
	b, err := deploy.Config(deploy.ConfigOptions{
		BuildRoot: "/home/alice/Builds", Listen: "127.0.0.1:8585",
		MailTo: "alice@example.com", SSHKey: "/home/alice/.ssh/deploy", IdleExit: 10 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "mixmaster.ini", b)
	if strings.Contains(string(b), "@") && !strings.Contains(string(b), "alice@example.com") {
		t.Errorf("a value was left unfilled:\n%s", b)
	}
	if _, err := deploy.Config(deploy.ConfigOptions{BuildRoot: "/b", Listen: ":1", MailTo: "a@b\nmode = dryrun"}); err == nil {
		t.Error("a line break in a value was written")
	}
}

// needSystemdAnalyze returns the path of systemd-analyze, skipping the
// test (or failing it where systemd is required) without it.
func needSystemdAnalyze(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("systemd-analyze")
	testenv.Need(t, "systemd", err == nil, "systemd-analyze not on PATH")
	return path
}

// verify runs systemd-analyze verify on the unit files in dir and fails on
// any complaint: unknown keys and bad values are only warnings there.
func verify(t *testing.T, analyze, home string, user bool, dir string, names ...string) {
	t.Helper()
	args := []string{"verify"}
	if user {
		args = append(args, "--user")
	}
	for _, n := range names {
		args = append(args, filepath.Join(dir, n))
	}
	cmd := exec.Command(analyze, args...)
	// A user manager needs a runtime directory of its own; %h is the
	// HOME given here.
	runtime := t.TempDir()
	os.Chmod(runtime, 0o700)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runtime, "HOME="+home, "SYSTEMD_LOG_COLOR=0")
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestUnitsVerify checks the rendered user units with systemd's own
// checker. ExecStart must name an existing executable, so the binary is
// this test's, linked into a temporary home to use %h.
func TestUnitsVerify(t *testing.T) {
	analyze := needSystemdAnalyze(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".local", "bin"), 0o755)
	bin := filepath.Join(home, ".local", "bin", "mixmaster")
	if err := os.Symlink(exe, bin); err != nil {
		t.Fatal(err)
	}
	// A binary outside the home, in a folder whose name needs quoting and
	// escaping: verify finds it only if systemd reads the path back
	// unchanged.
	odd := filepath.Join(t.TempDir(), `odd dir 100% $HOME;x`, "mixmaster")
	os.MkdirAll(filepath.Dir(odd), 0o755)
	if err := os.Symlink(exe, odd); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ bin, listen string }{
		{bin, "127.0.0.1:8585"}, {bin, ":8585"}, {bin, "[::1]:8585"}, {odd, "127.0.0.1:8585"},
	} {
		units, err := deploy.Units(deploy.UnitOptions{
			Binary: tc.bin, Config: filepath.Join(home, ".config", "mixmaster.ini"), Listen: tc.listen, Home: home,
		})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		var names []string
		for _, u := range units {
			os.WriteFile(filepath.Join(dir, u.Name), u.Data, 0o644)
			names = append(names, u.Name)
		}
		verify(t, analyze, home, true, dir, names...)
	}
}

// TestSystemUnitsVerify checks the system-wide example units, with
// ExecStart pointed at an existing binary.
func TestSystemUnitsVerify(t *testing.T) {
	analyze := needSystemdAnalyze(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range []string{deploy.SocketUnit, deploy.ServiceUnit} {
		b, err := os.ReadFile(filepath.Join("system", name))
		if err != nil {
			t.Fatal(err)
		}
		opts, err := unit.DeserializeOptions(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		sawUser := false
		for _, o := range opts {
			if o.Name == "ExecStart" {
				o.Value = strings.Replace(o.Value, "/usr/local/bin/mixmaster", exe, 1)
			}
			sawUser = sawUser || (o.Name == "User" && o.Value == "mixmaster")
		}
		if name == deploy.ServiceUnit && !sawUser {
			t.Errorf("system/%s does not run as User=mixmaster", name)
		}
		var buf bytes.Buffer
		buf.ReadFrom(unit.Serialize(opts))
		os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644)
	}
	verify(t, analyze, t.TempDir(), false, dir, deploy.SocketUnit, deploy.ServiceUnit)
}
