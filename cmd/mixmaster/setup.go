package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"mixmaster/deploy"
	"mixmaster/store"
)

// What setup's lines call the files it writes.
const (
	configItem = "Configuration file"
	unitItem   = "Systemd unit"
)

// setupIdleExit is the idleExit setup writes: an idle service costs
// nothing, and the socket starts it again on the next request.
const setupIdleExit = 10 * time.Minute

type setupOptions struct {
	buildRoot      string
	email          string
	port           int
	listen         string
	key            string
	force          bool
	yes            bool
	dump           bool
	teardown       bool
	requireSystemd bool

	// changed records which flags were given, so that a kept config is
	// checked only against what the user asked for.
	changed func(name string) bool
}

func newSetupCmd() *cobra.Command {
	var o setupOptions
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Install the service for this user: build root, config and systemd units",
		Long: `Install the service for this user: the build root (with the database and
an example cached-artifact project), the config ~/.config/mixmaster.ini, and
the systemd user units mixmaster.socket and mixmaster.service, then enable
and start the socket. The service starts on the first request and stops
again when idle.

Setup says what exists and what it will create, and asks before changing
anything (--yes does not ask). Existing files are kept unless --force is
given. Where systemd is not running for the user, the files are written but
nothing is enabled; --require-systemd makes that an error.

--teardown stops and disables the units and removes them and the config;
the build root stays. --dump prints the config.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			flags := cmd.Flags()
			if flags.Changed("port") && flags.Changed("listen") {
				return usageError{errors.New("--port and --listen exclude each other")}
			}
			if o.dump && o.teardown {
				return usageError{errors.New("--dump and --teardown exclude each other")}
			}
			if o.port < 1 || o.port > 65535 {
				return usageError{fmt.Errorf("--port %d: expected a port from 1 to 65535", o.port)}
			}
			o.changed = flags.Changed
			return runSetup(cmd.Context(), o, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.buildRoot, "build-root", defaultBuildRoot, "where builds, logs, artifacts and the database are kept")
	f.StringVar(&o.email, "email", "", "address for build mail (default: no mail)")
	f.IntVar(&o.port, "port", 8585, "port to listen on, on 127.0.0.1")
	f.StringVar(&o.listen, "listen", "", "address to listen on instead of 127.0.0.1:<port>, such as :8585 (set tokens first)")
	f.StringVar(&o.key, "key", "", "SSH key to load into each build's agent (default: none)")
	f.BoolVar(&o.force, "force", false, "overwrite the config and the units if they exist")
	f.BoolVarP(&o.yes, "yes", "y", false, "do not ask before changing anything")
	f.BoolVar(&o.dump, "dump", false, "print the config and change nothing")
	f.BoolVar(&o.teardown, "teardown", false, "stop and remove the units and the config; keep the build root")
	f.BoolVar(&o.requireSystemd, "require-systemd", false, "fail, changing nothing, when systemd is not running for this user")
	return cmd
}

// setupPaths are the files and folders setup manages.
type setupPaths struct {
	home     string
	config   string // ~/.config/mixmaster.ini
	unitDir  string // ~/.config/systemd/user
	units    []string
	binary   string // the running binary, symlinks resolved
	root     string // build root
	projects string
	database string
}

func findSetupPaths() (*setupPaths, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, err
	}
	// $XDG_CONFIG_HOME, else ~/.config: where serve and systemd look.
	configDir, err := os.UserConfigDir()
	if err != nil {
		return nil, err
	}
	p := &setupPaths{
		home:    home,
		config:  filepath.Join(configDir, "mixmaster.ini"),
		unitDir: filepath.Join(configDir, "systemd", "user"),
	}
	for _, name := range []string{deploy.SocketUnit, deploy.ServiceUnit} {
		p.units = append(p.units, filepath.Join(p.unitDir, name))
	}
	return p, nil
}

// setBuildRoot sets the build root and what lives in it.
func (p *setupPaths) setBuildRoot(root, projects string) {
	p.root, p.projects = root, projects
	if p.projects == "" {
		p.projects = filepath.Join(root, "projects")
	}
	p.database = filepath.Join(root, "mixmaster.db")
}

// step is one item of the plan: the line that says what exists or what
// will change, and the change (nil when there is nothing to do).
type step struct {
	line string
	do   func() error
}

func runSetup(ctx context.Context, o setupOptions, in io.Reader, out io.Writer) error {
	p, err := findSetupPaths()
	if err != nil {
		return err
	}
	if o.teardown {
		return runTeardown(ctx, o, p, in, out)
	}
	if o.dump {
		if data, err := os.ReadFile(p.config); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return dumpConfig(out, p.config, data, err, false)
		}
	}

	// A config that stays decides the build root and the address; the
	// flags may only repeat what it says.
	var kept *Config
	if _, err := os.Stat(p.config); err == nil && !o.force {
		if kept, err = LoadConfig(p.config); err != nil {
			return fmt.Errorf("%w\nFix the config, or replace it with mixmaster setup --force", err)
		}
	}
	settings, err := setupSettings(o, kept)
	if err != nil {
		return err
	}
	p.setBuildRoot(settings.BuildRoot, settings.projectsPath)
	configData, err := deploy.Config(settings.ConfigOptions)
	if err != nil {
		return err
	}
	// The config parser has the last word on what setup writes.
	if _, err := ParseConfig(p.config, configData); err != nil {
		return err
	}
	if o.dump {
		return dumpConfig(out, p.config, configData, nil, true)
	}

	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return fmt.Errorf("find the running binary: %w", err)
	}
	p.binary = exe
	units, err := deploy.Units(deploy.UnitOptions{Binary: p.binary, Config: p.config, Listen: settings.Listen, Home: p.home})
	if err != nil {
		return err
	}

	sd := probeSystemd(ctx)
	if o.requireSystemd && sd.err != nil {
		return fmt.Errorf("systemd is not running for this user (--require-systemd): %w", sd.err)
	}

	// Taken by our own socket is fine: that is a setup run again.
	if err := checkListen(settings.Listen); err != nil && !(sd.err == nil && sd.active(ctx, deploy.SocketUnit)) {
		return fmt.Errorf("%s is already in use (%v): stop what listens there, such as make run's demo, or choose another port with --port N", settings.Listen, err)
	}

	var plan []step
	if strings.Contains(p.binary, string(filepath.Separator)+"go-build") {
		plan = append(plan, step{line: fmt.Sprintf("❗ %s is a temporary binary (go run): the unit will break when it is gone. Install mixmaster (make install) and run its setup.", p.binary)})
	}
	plan = append(plan,
		dirStep(p.root, "✓ Build root %s exists.", "NEW: Builds will be stored in %s.", func() error {
			return os.MkdirAll(p.root, 0o750)
		}),
		dirStep(p.projects, "✓ Projects folder %s exists.", "NEW: Projects folder %s, with the example cached-artifact project greeting.", func() error {
			if err := os.MkdirAll(filepath.Dir(p.projects), 0o750); err != nil {
				return err
			}
			return copyExecutable(p.projects, deploy.DemoProjects())
		}),
		dirStep(p.database, "✓ Database %s exists.", "NEW: Database %s.", func() error {
			db, err := store.Open(p.database)
			if err != nil {
				return err
			}
			return db.Close()
		}),
		fileStep(p.config, configData, 0o600, o.force, configItem, ""),
	)
	unitsChanged := false
	for i, u := range units {
		about := ""
		if u.Name == deploy.SocketUnit {
			about = ": it listens on " + settings.Listen
		}
		s := fileStep(p.units[i], u.Data, 0o644, o.force, unitItem, about)
		unitsChanged = unitsChanged || s.do != nil
		plan = append(plan, s)
	}
	if sd.err == nil {
		if !unitsChanged && sd.active(ctx, deploy.SocketUnit) {
			plan = append(plan, step{line: fmt.Sprintf("✓ %s is enabled and listening.", deploy.SocketUnit)})
		} else {
			plan = append(plan, step{
				line: fmt.Sprintf("NEW: %s will be enabled and started.", deploy.SocketUnit),
				do: func() error {
					if _, err := sd.run(ctx, "daemon-reload"); err != nil {
						return err
					}
					if _, err := sd.run(ctx, "enable", "--now", deploy.SocketUnit); err != nil {
						return err
					}
					fmt.Fprintf(out, "✓ Enabled and started %s: it listens on %s.\n", deploy.SocketUnit, settings.Listen)
					return nil
				},
			})
		}
	} else {
		plan = append(plan, step{line: fmt.Sprintf("❗ systemd is not running for this user (%v): the units cannot be enabled.", sd.err)})
	}

	if err := carryOut(plan, o.yes, in, out); err != nil {
		return err
	}

	url := "http://" + urlHost(settings.Listen)
	if sd.err == nil {
		if unitsChanged && sd.isActive(ctx, deploy.ServiceUnit) {
			fmt.Fprintf(out, "❗ The service runs with the old units: systemctl --user restart %s\n", deploy.ServiceUnit)
		}
		if settings.IdleExit > 0 {
			fmt.Fprintf(out, "The service starts on the first request to %s/ and stops after %s without requests or jobs.\n", url, deploy.FormatDuration(settings.IdleExit))
		} else {
			fmt.Fprintf(out, "The service starts on the first request to %s/.\n", url)
		}
		fmt.Fprintln(out, "To keep it running after you log out: loginctl enable-linger $USER")
	} else {
		fmt.Fprintln(out, "Nothing was enabled. Where systemd runs for this user:")
		fmt.Fprintf(out, "  systemctl --user daemon-reload && systemctl --user enable --now %s\n", deploy.SocketUnit)
		fmt.Fprintln(out, "  loginctl enable-linger $USER   # to keep it running after you log out")
		fmt.Fprintf(out, "Without systemd: %s serve --config %s\n", p.binary, p.config)
	}
	if isLoopback(settings.Listen) {
		fmt.Fprintf(out, "❗ Loopback only (%s): without tokens, anyone on this machine may queue builds. Set tokens in %s before listening on other addresses, or put nginx in front (deploy/nginx.conf.example).\n", settings.Listen, p.config)
	}
	fmt.Fprintf(out, "Try it: curl --json '{\"project\": \"greeting\", \"params\": {\"name\": \"world\"}}' %s/jobs\n", url)
	return nil
}

// checkListen is how setup checks its address. The setup tests replace
// it: their outcome must not depend on what else runs on the machine.
var checkListen = listenFree

// listenFree fails when addr cannot be listened on now, as when another
// service holds the port.
func listenFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// setupValues are what setup writes into a new config, or what a kept
// one says.
type setupValues struct {
	deploy.ConfigOptions
	projectsPath string
}

// setupSettings takes the values from the flags, or from a config that is
// kept; a flag that contradicts the kept config is an error, because it
// would silently do nothing.
func setupSettings(o setupOptions, kept *Config) (setupValues, error) {
	var s setupValues
	root, err := absFlagPath(o.buildRoot)
	if err != nil {
		return s, fmt.Errorf("--build-root: %w", err)
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(o.port))
	if o.listen != "" {
		listen = o.listen
	}
	key := o.key
	if key != "" {
		if key, err = absFlagPath(key); err != nil {
			return s, fmt.Errorf("--key: %w", err)
		}
		// A typo here would fail every build.
		if _, err := os.Stat(key); err != nil {
			return s, fmt.Errorf("--key: %w", err)
		}
	}
	s = setupValues{ConfigOptions: deploy.ConfigOptions{
		BuildRoot: root, Listen: listen, MailTo: o.email, SSHKey: key, IdleExit: setupIdleExit,
	}}
	if kept == nil {
		if _, err := deploy.ListenStream(listen); err != nil {
			return s, usageError{err}
		}
		return s, nil
	}

	keptListen := kept.Listen
	if !kept.ListenSet && len(kept.Tokens) == 0 && len(kept.Users) == 0 && len(kept.TrustedNetworks) == 0 {
		// serve keeps such a config to this machine; so does the socket.
		keptListen = loopbackAddr(kept.Listen)
	}
	var conflicts []string
	conflict := func(flag, key, asked, has string) {
		if o.changed(flag) && asked != has {
			conflicts = append(conflicts, fmt.Sprintf("--%s asks for %s = %s, but it has %q", flag, key, asked, has))
		}
	}
	conflict("build-root", "buildRoot", root, kept.BuildRoot)
	conflict("port", "listen", listen, keptListen)
	conflict("listen", "listen", listen, keptListen)
	conflict("email", "mailto", o.email, kept.MailTo)
	conflict("key", "sshKey", key, kept.SSHKey)
	if len(conflicts) > 0 {
		return s, fmt.Errorf("the config %s is kept: %s.\nEdit it, or replace it with --force", kept.Path, strings.Join(conflicts, "; "))
	}
	s.BuildRoot, s.Listen, s.MailTo, s.SSHKey, s.IdleExit = kept.BuildRoot, keptListen, kept.MailTo, kept.SSHKey, kept.IdleExit
	s.projectsPath = kept.ProjectsPath
	if _, err := deploy.ListenStream(s.Listen); err != nil {
		return s, fmt.Errorf("the config %s: %w", kept.Path, err)
	}
	return s, nil
}

// absFlagPath expands "~" in a path given on the command line and makes
// it absolute, relative to where setup runs rather than to where the
// service will.
func absFlagPath(p string) (string, error) {
	p, err := ExpandHome(p)
	if err != nil {
		return "", err
	}
	return filepath.Abs(p)
}

// dirStep plans a folder (or the database file) that is created once and
// never replaced.
func dirStep(path, exists, create string, do func() error) step {
	if _, err := os.Stat(path); err == nil {
		return step{line: fmt.Sprintf(exists, path)}
	}
	return step{line: fmt.Sprintf(create, path), do: do}
}

// fileStep plans a file that is written when missing, or replaced with
// force.
// A unit that differs is noted: it may name an old binary or port. A
// config that differs is the user's own.
func fileStep(path string, data []byte, perm fs.FileMode, force bool, what, about string) step {
	write := func() error { return writeFileAtomic(path, data, perm) }
	old, err := os.ReadFile(path)
	switch {
	case err != nil:
		return step{line: fmt.Sprintf("NEW: %s %s will be written%s.", what, path, about), do: write}
	case bytes.Equal(old, data):
		return step{line: fmt.Sprintf("✓ %s %s exists.", what, path)}
	case force:
		return step{line: fmt.Sprintf("NEW: %s %s will be replaced (--force)%s.", what, path, about), do: write}
	case what == unitItem:
		return step{line: fmt.Sprintf("✓ %s %s exists (it differs from what setup writes now; --force replaces it).", what, path)}
	default:
		return step{line: fmt.Sprintf("✓ %s %s exists.", what, path)}
	}
}

// carryOut prints the plan, asks unless yes, and makes the changes in
// order. With nothing to change it asks nothing.
func carryOut(plan []step, yes bool, in io.Reader, out io.Writer) error {
	work := false
	for _, s := range plan {
		fmt.Fprintln(out, s.line)
		work = work || s.do != nil
	}
	if !work {
		return nil
	}
	if !yes {
		fmt.Fprint(out, "Proceed? [y/N] ")
		answer, err := bufio.NewReader(in).ReadString('\n')
		if f, ok := in.(*os.File); err != nil || !ok || !term.IsTerminal(int(f.Fd())) {
			// No terminal echoed the answer: end the prompt's line.
			fmt.Fprintln(out, strings.TrimSpace(answer))
		}
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return errors.New("nothing was changed")
		}
	}
	for _, s := range plan {
		if s.do == nil {
			continue
		}
		if err := s.do(); err != nil {
			return err
		}
	}
	return nil
}

// dumpConfig prints the config file, or what setup would write there.
func dumpConfig(out io.Writer, path string, data []byte, err error, planned bool) error {
	if err != nil {
		return err
	}
	if planned {
		fmt.Fprintf(out, "Dumping %s (not written yet: this is what setup would write)\n", path)
	} else {
		fmt.Fprintf(out, "Dumping %s\n", path)
	}
	fmt.Fprintln(out, strings.Repeat("-", 72))
	_, err = out.Write(data)
	return err
}

// runTeardown stops and disables the units, removes them and the config,
// and keeps the build root.
func runTeardown(ctx context.Context, o setupOptions, p *setupPaths, in io.Reader, out io.Writer) error {
	root, err := absFlagPath(o.buildRoot)
	if err != nil {
		return err
	}
	if cfg, err := LoadConfig(p.config); err == nil {
		root = cfg.BuildRoot
	}
	sd := probeSystemd(ctx)
	if o.requireSystemd && sd.err != nil {
		return fmt.Errorf("systemd is not running for this user (--require-systemd): %w", sd.err)
	}

	var plan []step
	anyUnit := false
	for _, u := range p.units {
		_, err := os.Stat(u)
		anyUnit = anyUnit || err == nil
	}
	names := deploy.SocketUnit + " and " + deploy.ServiceUnit
	switch {
	case !anyUnit:
	case sd.err == nil:
		plan = append(plan, step{
			line: fmt.Sprintf("STOP: %s will be stopped and disabled.", names),
			do: func() error {
				if _, err := sd.run(ctx, "disable", "--now", deploy.SocketUnit, deploy.ServiceUnit); err != nil {
					return err
				}
				fmt.Fprintf(out, "✓ Stopped and disabled %s.\n", names)
				return nil
			},
		})
	default:
		plan = append(plan, step{line: fmt.Sprintf("❗ systemd is not running for this user (%v): nothing to stop.", sd.err)})
	}
	remove := func(what, path string) step {
		if _, err := os.Lstat(path); err != nil {
			return step{line: fmt.Sprintf("✓ %s %s does not exist.", what, path)}
		}
		return step{line: fmt.Sprintf("DELETE: %s %s.", what, path), do: func() error {
			if err := os.Remove(path); err != nil {
				return err
			}
			fmt.Fprintf(out, "✓ Deleted %s.\n", path)
			return nil
		}}
	}
	for _, u := range p.units {
		plan = append(plan, remove(unitItem, u))
	}
	plan = append(plan, remove(configItem, p.config))
	if err := carryOut(plan, o.yes, in, out); err != nil {
		return err
	}
	if anyUnit && sd.err == nil {
		// systemd forgets the removed units.
		if _, err := sd.run(ctx, "daemon-reload"); err != nil {
			return err
		}
	}
	if _, err := os.Stat(root); err == nil {
		fmt.Fprintf(out, "❗ Kept %s.\n", root)
	}
	return nil
}

// systemd talks to the user's service manager through systemctl --user.
// err says why it cannot: no systemctl, or no manager running (a
// container, CI, a session without lingering).
type systemd struct{ err error }

func probeSystemd(ctx context.Context) systemd {
	if _, err := exec.LookPath("systemctl"); err != nil {
		return systemd{err: errors.New("no systemctl")}
	}
	s := systemd{}
	if _, err := s.run(ctx, "show-environment"); err != nil {
		return systemd{err: err}
	}
	return s
}

// run runs systemctl --user with args; an error carries its first line of
// output.
func (systemd) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "systemctl", append([]string{"--user"}, args...)...).CombinedOutput()
	if err != nil {
		msg, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		if msg == "" {
			msg = err.Error()
		}
		return string(out), fmt.Errorf("systemctl --user %s: %s", strings.Join(args, " "), msg)
	}
	return string(out), nil
}

// active reports whether the unit is enabled and running.
func (s systemd) active(ctx context.Context, unit string) bool {
	_, err := s.run(ctx, "is-enabled", "--quiet", unit)
	return err == nil && s.isActive(ctx, unit)
}

func (s systemd) isActive(ctx context.Context, unit string) bool {
	_, err := s.run(ctx, "is-active", "--quiet", unit)
	return err == nil
}

// writeFileAtomic writes data to a temporary file next to path and
// renames it into place, so a crash leaves the old file or the new one.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// urlHost is the host:port to reach a listen address at from this
// machine.
func urlHost(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if a, err := netip.ParseAddr(host); host == "" || (err == nil && a.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// isLoopback reports whether listen takes connections from this machine
// only.
func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
