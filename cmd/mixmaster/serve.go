package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"mixmaster"
	"mixmaster/api"
	"mixmaster/artifacts"
	"mixmaster/jobs"
	"mixmaster/jobs/notify"
	"mixmaster/sandbox/docker"
	"mixmaster/sandbox/shell"
	"mixmaster/sandbox/sshagent"
	"mixmaster/sandbox/workspace"
	"mixmaster/scm"
	"mixmaster/store"
)

type serveOptions struct {
	config      string
	listen      string
	demo        bool
	logLevel    string
	buildRoot   string
	idleExit    time.Duration
	idleExitSet bool
	grace       time.Duration
}

func newServeCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the build service",
		Long: `Run the build service: webhooks, the jobs API, the dashboard and the runner.

The config is --config, else $MIXMASTER_CONFIG, else ~/.config/mixmaster.ini.
With --demo no config is needed: a demo build root with example projects is
created (in --build-root, default ./.demo) and served on 127.0.0.1:8585.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.idleExitSet = cmd.Flags().Changed("idle-exit")
			return runServe(cmd.Context(), o, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().DurationVar(&o.idleExit, "idle-exit", 0, "exit when idle this long, e.g. 10m; 0: never (overrides idleExit in the config)")
	cmd.Flags().DurationVar(&o.grace, "shutdown-grace", defaultShutdownGrace, "on SIGTERM, how long running jobs may finish before they are stopped and queued again")
	cmd.Flags().StringVar(&o.config, "config", "", "config file")
	cmd.Flags().StringVar(&o.listen, "listen", "", "address to listen on (overrides the config)")
	cmd.Flags().BoolVar(&o.demo, "demo", false, "serve a built-in demo configuration with example projects")
	cmd.Flags().StringVar(&o.buildRoot, "build-root", "", "build root (overrides the config)")
	cmd.Flags().StringVar(&o.logLevel, "log-level", "", "debug (also logs each request), info, warn or error; default $MIXMASTER_LOG_LEVEL, else info")
	return cmd
}

func runServe(ctx context.Context, o serveOptions, stderr io.Writer) error {
	level, err := parseLogLevel(o.logLevel)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	var cfg *Config
	if o.demo {
		root := o.buildRoot
		if root == "" {
			root = ".demo"
		}
		if cfg, err = setUpDemo(ctx, root); err != nil {
			return err
		}
	} else {
		if cfg, err = loadConfig(o.config); err != nil {
			return err
		}
		if o.buildRoot != "" {
			cfg.BuildRoot = o.buildRoot
		}
	}
	if o.listen != "" {
		cfg.Listen, cfg.ListenSet = o.listen, true
	}
	if o.idleExitSet {
		cfg.IdleExit = o.idleExit
	}
	m := &Main{Config: cfg, Logger: logger, Grace: o.grace}
	if err := m.Open(); err != nil {
		return err
	}
	fmt.Fprintln(stderr, servingMessage(m.Addr(), o.demo))
	return m.serveUntilDone(ctx, cfg.IdleExit)
}

// servingMessage is the line that tells a person where to look once the
// service listens; the demo adds its first build.
func servingMessage(addr string, demo bool) string {
	host, port, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err == nil && ip != nil && ip.IsUnspecified() {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	msg := fmt.Sprintf("mixmaster: serving on http://%s — open it in a browser", addr)
	if demo {
		msg += fmt.Sprintf(`; first build: curl --json '{"project": "demo/hello", "target": "master"}' http://%s/`, addr)
	}
	return msg
}

// configPath picks the config file: the flag, $MIXMASTER_CONFIG, or the
// original's ~/.config/mixmaster.ini.
func configPath(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv("MIXMASTER_CONFIG"); env != "" {
		return env
	}
	if dir, err := os.UserConfigDir(); err == nil {
		return filepath.Join(dir, "mixmaster.ini")
	}
	return filepath.Join(os.Getenv("HOME"), ".config", "mixmaster.ini")
}

// demoConfig is where `make run` (serve --demo --build-root .demo) keeps
// the demo's config, relative to the checkout.
const demoConfig = ".demo/mixmaster.ini"

// loadConfig reads the config that configPath picks. A missing file says
// where it was looked for and how to name one, pointing at the demo's
// when there is one here.
func loadConfig(flag string) (*Config, error) {
	path := configPath(flag)
	cfg, err := LoadConfig(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return cfg, err
	}
	if _, derr := os.Stat(demoConfig); derr == nil {
		return nil, fmt.Errorf("no config at %s; for the demo use --config %s", path, demoConfig)
	}
	return nil, fmt.Errorf("no config at %s; write one with mixmaster setup, or name one with --config FILE or $MIXMASTER_CONFIG", path)
}

// logLevels are the values of --log-level.
var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
}

// parseLogLevel reads --log-level; empty means $MIXMASTER_LOG_LEVEL, else
// info.
func parseLogLevel(flag string) (slog.Level, error) {
	name := flag
	if name == "" {
		name = os.Getenv("MIXMASTER_LOG_LEVEL")
	}
	if name == "" {
		return slog.LevelInfo, nil
	}
	l, ok := logLevels[strings.ToLower(name)]
	if !ok {
		return 0, usageError{fmt.Errorf("log level %q: expected debug, info, warn or error", name)}
	}
	return l, nil
}

// Main is the running service, wired from a Config. Tests start it on a
// loopback port in a temporary build root.
type Main struct {
	Config *Config
	Logger *slog.Logger
	// Listener, when set, is used instead of listening on Config.Listen.
	Listener net.Listener
	// Grace is how long Close lets running jobs finish before it stops
	// them; zero means 30 s.
	Grace time.Duration

	DB      *store.DB
	Runner  *jobs.Runner
	Mailer  *notify.Mailer
	Metrics *api.Metrics
	// Auth identifies requests; the dashboard uses it for logins.
	Auth   *api.Auth
	docker *docker.Executor
	Echo   *echo.Echo
	server *http.Server
	served chan error
	life   lifecycle
	// stopPruner ends the periodic pruner and waits for it; nil when
	// no retention is configured.
	stopPruner func()
}

// Addr is the address the service listens on.
func (m *Main) Addr() string { return m.Listener.Addr().String() }

// Open opens the store, recovers interrupted jobs, starts the runner and
// starts serving HTTP.
func (m *Main) Open() error {
	cfg := m.Config
	if m.Logger == nil {
		m.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.BuildRoot, 0o750); err != nil {
		return fmt.Errorf("build root: %w", err)
	}
	db, err := store.Open(filepath.Join(cfg.BuildRoot, "mixmaster.db"))
	if err != nil {
		return err
	}
	m.DB = db

	broker := jobs.NewBroker()
	files := &artifacts.Files{Root: cfg.BuildRoot, LogLimit: cfg.LogLimit, Events: broker}
	projects := func(name string) (*mixmaster.Project, bool) {
		p, ok := cfg.Projects[name]
		return p, ok
	}
	var notifier mixmaster.Notifier
	if cfg.MailTo != "" {
		m.Mailer = &notify.Mailer{
			To: cfg.MailTo, From: cfg.MailFrom, Command: cfg.MailCommand,
			SMTPHost: cfg.SMTPHost, SMTPPort: cfg.SMTPPort, SMTPUser: cfg.SMTPUser, SMTPPassword: cfg.SMTPPassword,
			Logger: m.Logger,
		}
		notifier = m.Mailer
	}
	folders := &jobs.Folders{Dir: cfg.ProjectsPath, Logger: m.Logger}
	// Said at start, not only at the first request for a project.
	if _, err := folders.List(); err != nil {
		m.Logger.Error("artifact projects unavailable", "projects_path", cfg.ProjectsPath, "err", err)
	}
	workspaces, how := workspace.Detect(cfg.BuildRoot)
	m.Logger.Info("workspaces", "kind", how)
	cgroup, how := shell.DetectCgroup()
	m.Logger.Info("job cleanup", "cgroup", how)
	executors := map[string]mixmaster.Executor{"shell": &shell.Executor{DryRun: cfg.Mode == "dryrun", Reaper: reaperArgv(), Cgroup: cgroup}}
	var images mixmaster.ImageBuilder
	if m.docker = m.openDocker(); m.docker != nil {
		executors["docker"], images = m.docker, m.docker
	}
	m.Metrics = api.NewMetrics(prometheus.NewRegistry(), db.QueueLen, func() map[string]float64 { return hostedBuilds(cfg.BuildRoot, folders) })
	m.Runner = &jobs.Runner{
		Store:         db,
		Logs:          files,
		Events:        broker,
		SCM:           &scm.Git{MirrorRoot: filepath.Join(cfg.BuildRoot, "mirrors"), Logger: m.Logger},
		Executors:     executors,
		Agent:         &sshagent.Agent{KeyFile: cfg.SSHKey},
		Notifier:      notifier,
		Metrics:       m.Metrics,
		Projects:      projects,
		Folders:       folders,
		Workspaces:    workspaces,
		Images:        images,
		Root:          cfg.BuildRoot,
		ArtifactsDir:  files.ArtifactsDir,
		Concurrency:   cfg.JobConcurrency,
		Timeout:       cfg.JobTimeout,
		ArtifactLimit: cfg.ArtifactLimit,
		Logger:        m.Logger,
	}
	// A crash leaves the agent directories of its running jobs behind.
	if removed, err := sshagent.Sweep(""); err != nil || len(removed) > 0 {
		m.Logger.Info("removed leftover ssh agent directories", "count", len(removed), "err", err)
	}
	if err := m.Runner.Open(); err != nil {
		m.Runner = nil // nothing of it runs
		return errors.Join(err, m.Close())
	}
	svc := &jobs.Service{
		Store: db, Projects: projects, Backlog: cfg.JobBacklog, WebhookBacklog: cfg.WebhookBacklog, MinFree: cfg.MinFreeDisk,
		Folders: folders, Events: broker, Root: cfg.BuildRoot, Metrics: m.Metrics,
		WebhookArtifactsDir: files.ArtifactsDir,
	}

	key, err := loadSessionKey(cfg.BuildRoot)
	if err != nil {
		return errors.Join(err, m.Close())
	}
	m.Auth = &api.Auth{
		Tokens: cfg.Tokens, Users: cfg.Users, PublicDashboard: cfg.PublicDashboard,
		TrustedNetworks: cfg.TrustedNetworks, TrustedProxies: cfg.TrustedProxies, Key: key,
		Hosts: listenHosts(cfg.Listen),
	}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.IPExtractor = api.TrustedProxyExtractor(cfg.TrustedProxies)
	e.HTTPErrorHandler = api.NewErrorHandler(m.Logger)
	e.Use(m.trackActivity())
	e.Use(middleware.Recover())
	e.Use(requestLogger(m.Logger))
	e.Use(m.Auth.Identify())
	h := &api.Handler{
		Jobs:      db,
		Submitter: svc,
		Artifacts: svc,
		Secrets: func(project string) string {
			if p, ok := cfg.Projects[project]; ok && p.Secret != "" {
				return p.Secret
			}
			return cfg.WebhookSecret
		},
		WriteTar: artifacts.WriteTar,
		Backup:   db.Backup,
		Metrics:  m.Metrics,
		Canceler: m.Runner,
		Rerunner: svc,
		Auth:     m.Auth,
		Logs:     files,
		Events:   broker,
		Version:  version,
		Logger:   m.Logger,
	}
	h.Register(e)
	m.registerUI(e, h, svc)
	m.Echo = e

	if m.Listener == nil {
		addr := cfg.Listen
		// Nobody could be told apart from anybody else: keep the service
		// to this machine unless the config asks otherwise.
		if !m.Auth.Enabled() && len(cfg.TrustedNetworks) == 0 && !cfg.ListenSet {
			addr = loopbackAddr(addr)
			m.Logger.Warn("no tokens, users or trusted networks are configured: listening on loopback only; set listen to serve other hosts", "addr", addr)
		}
		ln, err := listen(addr)
		if err != nil {
			return errors.Join(err, m.Close())
		}
		m.Listener = ln
	}
	m.server = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	if cfg.PruneEnabled() {
		ctx, cancel := context.WithCancel(context.Background())
		pruner := newPruner(cfg, db, m.Logger)
		if m.docker != nil {
			pruner.Images, pruner.Folders = m.docker.PruneImages, folders
		}
		done := startPruner(ctx, pruner, m.Logger)
		m.stopPruner = func() { cancel(); <-done }
	}
	m.served = make(chan error, 1)
	go func() { m.served <- m.server.Serve(m.Listener) }()
	m.Logger.Info("serving", "addr", "http://"+m.Addr(), "build_root", cfg.BuildRoot, "projects", len(cfg.Projects))
	return nil
}

// openDocker connects to the Docker engine, when there is one, and removes
// containers a crash left behind. Without Docker the service still runs:
// projects with a Dockerfile then fail with a clear error.
func (m *Main) openDocker() *docker.Executor {
	if os.Getenv("MIXMASTER_DOCKER") == "off" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := docker.New(ctx, m.Logger)
	if err != nil {
		m.Logger.Info("docker unavailable: projects with a Dockerfile cannot build", "err", err)
		return nil
	}
	// Containers carry this instance's label, so the sweep removes only
	// what this build root left behind, never another service's jobs.
	sum := sha256.Sum256([]byte(m.Config.BuildRoot))
	d.Labels = map[string]string{docker.LabelInstance: hex.EncodeToString(sum[:8])}
	if n, err := d.Sweep(ctx); err != nil {
		m.Logger.Error("remove leftover containers", "err", err)
	} else if n > 0 {
		m.Logger.Info("removed leftover containers", "count", n)
	}
	return d
}

// hostedBuilds counts the finished builds kept per artifact project.
func hostedBuilds(root string, folders *jobs.Folders) map[string]float64 {
	hosted := map[string]float64{}
	for _, name := range folders.Names() {
		entries, _ := os.ReadDir(filepath.Join(root, name, "ready"))
		hosted[name] = float64(len(entries))
	}
	return hosted
}

// loopbackAddr is addr with its host replaced by 127.0.0.1.
func loopbackAddr(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		port = "8585"
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// listen uses the socket systemd passes, if any, else binds addr.
func listen(addr string) (net.Listener, error) {
	lns, err := activation.Listeners()
	if err == nil && len(lns) > 0 && lns[0] != nil {
		return lns[0], nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

// Close stops accepting connections, lets running jobs finish for the
// grace period while requests under way go on, then stops the jobs (they
// stay recorded, to run again on the next start; queued jobs stay queued),
// cuts the requests still open and closes the store.
func (m *Main) Close() error {
	var errs []error
	m.beginHTTPStop()
	if m.Runner != nil {
		errs = append(errs, m.Runner.Close(m.grace()))
	}
	errs = append(errs, m.endHTTPStop(httpDrain))
	if m.Mailer != nil {
		m.Mailer.Close()
	}
	// The pruner uses the store and the Docker client: it stops first.
	if m.stopPruner != nil {
		m.stopPruner()
	}
	if m.docker != nil {
		m.docker.Close()
	}
	if m.DB != nil {
		errs = append(errs, m.DB.Close())
	}
	return errors.Join(errs...)
}

// requestLogger logs each request once, with the status the error handler
// chose, at debug level: a failed request is logged by the error handler
// already, and a line per request drowns everything else.
func requestLogger(logger *slog.Logger) echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogMethod: true, LogURI: true, LogStatus: true, LogLatency: true, LogRemoteIP: true,
		HandleError: true,
		Skipper: func(echo.Context) bool {
			return !logger.Enabled(context.Background(), slog.LevelDebug)
		},
		LogValuesFunc: func(_ echo.Context, v middleware.RequestLoggerValues) error {
			logger.Log(context.Background(), slog.LevelDebug, "request",
				"method", v.Method, "uri", v.URI, "status", v.Status,
				"latency", v.Latency, "remote", v.RemoteIP)
			return nil
		},
	})
}

// listenHosts are the names the service answers to beside localhost and
// IP literals: the host its listen address names, and this machine's own
// name, which some systems resolve to a loopback address.
func listenHosts(listen string) []string {
	var hosts []string
	if host, _, err := net.SplitHostPort(listen); err == nil && host != "" {
		hosts = append(hosts, host)
	}
	if name, err := os.Hostname(); err == nil && name != "" {
		hosts = append(hosts, name)
	}
	return hosts
}
