package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"gopkg.in/ini.v1"

	"mixmaster"
)

// The config file is the original Mixmaster's INI dialect with the
// deviations listed here, each chosen on purpose:
//
//   - Values keep ";" and "#": build commands such as sh -c 'a; b' and
//     secrets such as pa#ss are read whole. Only whole lines starting with
//     ";" or "#" are comments, indented or not.
//   - A missing final newline and an indented comment are fine (the
//     original silently read such a file as empty).
//   - Keys before the first section and an explicit [_] section are merged,
//     and [_] wins per key (the original let the top-level keys replace [_]
//     whole, which quietly dropped settings).
//   - A blank value in [_] means the default, as mmsetup writes "mailto = "
//     and "sshKey = ". A blank sshKey loads no key.
//   - "~" expands in buildRoot, projectsPath and sshKey.
//   - Values are taken as written: surrounding quotes stay, a trailing "\"
//     does not join lines, and "%(x)s" is not interpolated. A value that
//     starts with "`" or `"""` is an error, because ini.v1 would read it as
//     a quoted or multi-line value.
//   - The section name DEFAULT is reserved: ini.v1 files keys before the
//     first section under it.
//   - Every error names the file and the line.
//
// smtpPort defaults to 25 whether or not smtpUser is set; set 587 (or 465)
// explicitly for submission.

// Config is the service configuration: the [_] section of the INI file and
// one Project per other section.
type Config struct {
	Path            string // file it was read from ("" for built-in defaults)
	BuildRoot       string // buildRoot, default ~/Builds
	MailTo          string
	SSHKey          string
	Mode            string // "normal" (default) or "dryrun"
	Listen          string // default ":8585"
	ListenSet       bool   // listen was given explicitly in the file
	ProjectsPath    string // default <BuildRoot>/projects
	JobConcurrency  int    // 0 → runtime.NumCPU()
	JobBacklog      int    // 0 → 2×JobConcurrency (resolved after JobConcurrency)
	WebhookBacklog  int    // queued jobs a webhook may wait behind; default 10000, 0: no limit
	JobTimeout      time.Duration
	LogLimit        int64  // bytes; the file accepts KiB/MiB/GiB suffixes
	ArtifactLimit   int64  // artifactLimit: bytes a job may keep, default 10 GiB
	MinFreeDisk     int64  // minFreeDisk: free space below which new builds get 503, default 100 MiB
	MailCommand     string // default "/usr/sbin/sendmail -t" when MailTo is set and no smtpHost
	MailFrom        string
	SMTPHost        string
	SMTPPort        int // default 25, also with smtpUser
	SMTPUser        string
	SMTPPassword    string
	Tokens          []string
	TrustedNetworks []netip.Prefix // a bare IP in the file means /32 or /128
	TrustedProxies  []netip.Prefix
	WebhookSecret   string
	Users           map[string]string // name → bcrypt hash
	PublicDashboard bool              // default true
	IdleExit        time.Duration     // 0: never exit when idle
	Keep            time.Duration     // finished jobs older than this may be pruned; 0: forever
	KeepLast        int               // the newest this many jobs per project are kept; 0: no limit
	// Retention holds the .keep and .keepLast of the projects that set
	// them; mixmaster.Project is shared with packages that have no use
	// for them.
	Retention map[string]Retention
	Projects  map[string]*mixmaster.Project
}

// Retention is a project's own .keep and .keepLast; nil means the global
// value applies.
type Retention struct {
	Keep     *time.Duration
	KeepLast *int
}

// RetentionPolicy returns how long and how many finished jobs of project
// are kept: the project's own values where set, else the global ones.
// Artifact projects have no section, so they get the global values.
func (c *Config) RetentionPolicy(project string) (keep time.Duration, keepLast int) {
	keep, keepLast = c.Keep, c.KeepLast
	if r, ok := c.Retention[project]; ok {
		if r.Keep != nil {
			keep = *r.Keep
		}
		if r.KeepLast != nil {
			keepLast = *r.KeepLast
		}
	}
	return keep, keepLast
}

// setRetention changes project's own retention, making the map on first
// use so that configs without any stay equal to the defaults.
func (c *Config) setRetention(project string, set func(*Retention)) {
	if c.Retention == nil {
		c.Retention = map[string]Retention{}
	}
	r := c.Retention[project]
	set(&r)
	c.Retention[project] = r
}

// PruneEnabled reports whether keep or keepLast is set anywhere, that is
// whether anything may ever be pruned.
func (c *Config) PruneEnabled() bool {
	if c.Keep > 0 || c.KeepLast > 0 {
		return true
	}
	for _, r := range c.Retention {
		if r.Keep != nil && *r.Keep > 0 || r.KeepLast != nil && *r.KeepLast > 0 {
			return true
		}
	}
	return false
}

// Defaults and limits. The upper limits only catch typos (an extra zero
// times a million), not real needs.
const (
	defaultBuildRoot   = "~/Builds"
	defaultListen      = ":8585"
	defaultJobTimeout  = time.Hour
	defaultLogLimit    = 32 << 20
	defaultSMTPPort    = 25
	defaultMailCommand = "/usr/sbin/sendmail -t"
	maxJobConcurrency  = 1 << 16
	maxJobBacklog      = 1 << 20
	maxKeepLast        = 1 << 30

	// Webhook builds are durable work a forge does not send again: they
	// queue far deeper than the back-pressure of POST /jobs.
	defaultWebhookBacklog = 10000

	modeNormal = "normal"
	modeDryRun = "dryrun"

	executorShell  = "shell"
	executorDocker = "docker"

	// appSection holds the service settings; every other section is a
	// project.
	appSection = "_"
)

// DefaultConfig returns the configuration used when no file sets a key,
// with the derived defaults (JobConcurrency, JobBacklog, ProjectsPath)
// resolved. BuildRoot stays "~/Builds" when $HOME is unknown.
func DefaultConfig() *Config {
	c := baseConfig()
	if root, err := ExpandHome(c.BuildRoot); err == nil {
		c.BuildRoot = root
	}
	c.resolve()
	return c
}

// baseConfig holds the static defaults, before anything is derived.
func baseConfig() *Config {
	return &Config{
		BuildRoot:       defaultBuildRoot,
		Mode:            modeNormal,
		Listen:          defaultListen,
		JobTimeout:      defaultJobTimeout,
		LogLimit:        defaultLogLimit,
		ArtifactLimit:   10 << 30,
		MinFreeDisk:     100 << 20,
		WebhookBacklog:  defaultWebhookBacklog,
		SMTPPort:        defaultSMTPPort,
		Users:           map[string]string{},
		PublicDashboard: true,
		Projects:        map[string]*mixmaster.Project{},
	}
}

// resolve fills in the defaults that depend on other settings.
func (c *Config) resolve() {
	if c.ProjectsPath == "" {
		c.ProjectsPath = filepath.Join(c.BuildRoot, "projects")
	}
	if c.JobConcurrency == 0 {
		c.JobConcurrency = runtime.NumCPU()
	}
	if c.JobBacklog == 0 {
		c.JobBacklog = 2 * c.JobConcurrency
	}
	if c.MailCommand == "" && c.MailTo != "" && c.SMTPHost == "" {
		c.MailCommand = defaultMailCommand
	}
}

// ProjectNames returns the names of the configured projects, sorted.
func (c *Config) ProjectNames() []string {
	names := make([]string, 0, len(c.Projects))
	for name := range c.Projects {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// ExpandHome replaces a leading "~" or "~/" with $HOME. Other paths,
// including "~user/…", are returned unchanged.
func ExpandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, p[1:]), nil
}

// LoadConfig reads and parses the config file at path ("~" expands). A
// missing file is an error that matches fs.ErrNotExist.
func LoadConfig(path string) (*Config, error) {
	if path == "" {
		return nil, errors.New("config: no file given")
	}
	p, err := ExpandHome(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseConfig(p, data)
}

// ParseConfig parses the INI text data; name is used in error messages and
// as Config.Path. It reads no files. All problems found are reported
// together, one "name:line: message" per line.
func ParseConfig(name string, data []byte) (*Config, error) {
	p := &cfgParser{file: name}
	doc := p.scan(data)
	if len(p.errs) > 0 {
		return nil, p.err()
	}
	f, err := ini.LoadSources(ini.LoadOptions{
		Insensitive:         false,
		IgnoreInlineComment: true,
		// A shell command may end in "\" or be wrapped in quotes; the
		// value is what the user wrote.
		IgnoreContinuation:      true,
		PreserveSurroundedQuote: true,
		// The original splits only at "=": "a:b = c" is key "a:b".
		KeyValueDelimiters: "=",
	}, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p.crossCheck(doc, f)
	if len(p.errs) > 0 {
		return nil, p.err()
	}

	c := baseConfig()
	c.Path = name
	p.applyApp(c, doc)
	for _, s := range doc.sections {
		if s.name != appSection {
			p.applyProject(c, s)
		}
	}
	if len(p.errs) > 0 {
		return nil, p.err()
	}
	return c, nil
}

// configError is one problem in a config file. Line is 0 when the problem
// belongs to no single line.
type configError struct {
	File string
	Line int
	Msg  string
}

func (e *configError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// cfgParser collects errors so that one run reports every problem.
type cfgParser struct {
	file string
	errs []*configError
}

func (p *cfgParser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, &configError{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (p *cfgParser) err() error {
	slices.SortStableFunc(p.errs, func(a, b *configError) int { return a.Line - b.Line })
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// iniEntry is one key of a section: its last value and the line it came
// from (a repeated key wins, as in the original).
type iniEntry struct {
	key   string
	value string
	line  int
}

// iniSection is a section as written, with keys in the order they first
// appear. A repeated section header continues the earlier section.
type iniSection struct {
	name    string
	line    int // line of the first header; 0 for the top level
	entries []*iniEntry
	byKey   map[string]*iniEntry
}

func (s *iniSection) set(key, value string, line int) {
	if e, ok := s.byKey[key]; ok {
		e.value, e.line = value, line
		return
	}
	e := &iniEntry{key: key, value: value, line: line}
	s.entries = append(s.entries, e)
	s.byKey[key] = e
}

// iniDoc is the file as the scanner saw it.
type iniDoc struct {
	top      *iniSection   // keys before the first header
	sections []*iniSection // in order of first appearance
	byName   map[string]*iniSection
}

var utf8BOM = []byte("\xef\xbb\xbf")

// scan checks the syntax line by line and records where every key is.
// ini.v1 keeps no line numbers and accepts some lines the original did not
// (and reads some values differently), so this pass is what lets every
// error name a line.
func (p *cfgParser) scan(data []byte) *iniDoc {
	newSection := func(name string, line int) *iniSection {
		return &iniSection{name: name, line: line, byKey: map[string]*iniEntry{}}
	}
	doc := &iniDoc{top: newSection("", 0), byName: map[string]*iniSection{}}
	cur := doc.top
	data = bytes.TrimPrefix(data, utf8BOM)
	for i, raw := range strings.Split(string(data), "\n") {
		n := i + 1
		// ini.v1 splits at "\n" and trims unicode.IsSpace; doing the same
		// keeps both readings of the file identical.
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == ';' || line[0] == '#' {
			continue
		}
		if !utf8.ValidString(line) {
			p.errorf(n, "not valid UTF-8")
			continue
		}
		if r, ok := controlChar(line); ok {
			p.errorf(n, "control character %U", r)
			continue
		}
		if line[0] == '[' {
			name, ok := strings.CutSuffix(line[1:], "]")
			switch {
			case !ok:
				p.errorf(n, "malformed section header %q: expected [name] alone on the line", line)
			case name == "":
				p.errorf(n, "empty section name")
			case strings.ContainsAny(name, "[]"):
				p.errorf(n, "section name %q must not contain [ or ]", name)
			case name == ini.DefaultSection:
				p.errorf(n, "section name %q is reserved", name)
			default:
				s := doc.byName[name]
				if s == nil {
					s = newSection(name, n)
					doc.byName[name] = s
					doc.sections = append(doc.sections, s)
				}
				cur = s
				continue
			}
			// Keys after a bad header would land in the previous section
			// and give misleading errors.
			cur = newSection(name, n)
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			p.errorf(n, "expected \"key = value\", a [section] header or a comment, got %q", line)
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch {
		case key == "":
			p.errorf(n, "missing key before \"=\"")
		case key[0] == '"' || key[0] == '`':
			p.errorf(n, "key %s must not start with a quote", key)
		case key == "-":
			p.errorf(n, "key \"-\" is not allowed")
		case strings.HasPrefix(value, "`") || strings.HasPrefix(value, `"""`):
			p.errorf(n, "%s: a value must not start with ` or \"\"\"", key)
		default:
			cur.set(key, value, n)
		}
	}
	return doc
}

// crossCheck checks that ini.v1 read the same sections, keys and values as
// the scanner, whose record (which knows the lines) is what the rest uses.
// They can only differ on input the scanner should have rejected, so a
// difference is reported rather than trusted.
func (p *cfgParser) crossCheck(doc *iniDoc, f *ini.File) {
	check := func(s *iniSection, name string) {
		sec, err := f.GetSection(name)
		if err != nil {
			p.errorf(s.line, "parsers disagree: section %q not found", name)
			return
		}
		for _, e := range s.entries {
			k, err := sec.GetKey(e.key)
			if err != nil {
				p.errorf(e.line, "parsers disagree: key %q not found", e.key)
				continue
			}
			// Value, not String: String expands %(name)s references.
			if v := k.Value(); v != e.value {
				p.errorf(e.line, "parsers disagree: %s is %q, not %q", e.key, v, e.value)
				continue
			}
		}
		if len(sec.Keys()) != len(s.entries) {
			p.errorf(s.line, "parsers disagree: section %q has %d keys, not %d", name, len(sec.Keys()), len(s.entries))
		}
	}
	check(doc.top, ini.DefaultSection)
	for _, s := range doc.sections {
		check(s, s.name)
	}
}

// appKeys parses the [_] keys. Each returns a message saying what was
// expected; the caller adds the file, line and key.
var appKeys = map[string]func(c *Config, v string) error{
	"buildRoot":    func(c *Config, v string) (err error) { c.BuildRoot, err = absPath(v); return err },
	"projectsPath": func(c *Config, v string) (err error) { c.ProjectsPath, err = absPath(v); return err },
	"sshKey":       func(c *Config, v string) (err error) { c.SSHKey, err = absPath(v); return err },
	"spool":        func(*Config, string) error { return nil }, // the original's job folder; jobs now live in the store
	"mailto": func(c *Config, v string) error {
		if !strings.Contains(v, "@") || strings.IndexFunc(v, unicode.IsSpace) >= 0 {
			return fmt.Errorf("expected an email address, got %q", v)
		}
		c.MailTo = v
		return nil
	},
	"mode": func(c *Config, v string) error {
		if v != modeNormal && v != modeDryRun {
			return fmt.Errorf("expected %s or %s, got %q", modeNormal, modeDryRun, v)
		}
		c.Mode = v
		return nil
	},
	"listen": func(c *Config, v string) error {
		if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
			return fmt.Errorf("expected host:port such as :8585 or 127.0.0.1:8585, got %q", v)
		}
		c.Listen, c.ListenSet = v, true
		return nil
	},
	"jobConcurrency": func(c *Config, v string) (err error) {
		c.JobConcurrency, err = parseCount(v, maxJobConcurrency)
		return err
	},
	"jobBacklog": func(c *Config, v string) (err error) {
		c.JobBacklog, err = parseCount(v, maxJobBacklog)
		return err
	},
	"webhookBacklog": func(c *Config, v string) (err error) {
		c.WebhookBacklog, err = parseCount(v, maxJobBacklog)
		return err
	},
	"jobTimeout": func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("expected a duration > 0 such as 30m or 2h, got %q", v)
		}
		c.JobTimeout = d
		return nil
	},
	"idleExit": func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("expected a duration ≥ 0 such as 10m (0: never), got %q", v)
		}
		c.IdleExit = d
		return nil
	},
	"keep": func(c *Config, v string) (err error) { c.Keep, err = parseKeep(v); return err },
	"keepLast": func(c *Config, v string) (err error) {
		c.KeepLast, err = parseCount(v, maxKeepLast)
		return err
	},
	"logLimit":      func(c *Config, v string) (err error) { c.LogLimit, err = parseSize(v); return err },
	"artifactLimit": func(c *Config, v string) (err error) { c.ArtifactLimit, err = parseSize(v); return err },
	"minFreeDisk":   func(c *Config, v string) (err error) { c.MinFreeDisk, err = parseSize(v); return err },
	"mailCommand": func(c *Config, v string) error {
		c.MailCommand = v
		return nil
	},
	"mailFrom": func(c *Config, v string) error {
		if _, err := mail.ParseAddress(v); err != nil {
			return fmt.Errorf("expected an email address such as ci@example.com or \"CI <ci@example.com>\", got %q", v)
		}
		c.MailFrom = v
		return nil
	},
	"smtpHost": func(c *Config, v string) error {
		if strings.IndexFunc(v, unicode.IsSpace) >= 0 {
			return fmt.Errorf("expected a host name, got %q", v)
		}
		c.SMTPHost = v
		return nil
	},
	"smtpPort": func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("expected a port from 1 to 65535, got %q", v)
		}
		c.SMTPPort = n
		return nil
	},
	"smtpUser":      func(c *Config, v string) error { c.SMTPUser = v; return nil },
	"smtpPassword":  func(c *Config, v string) error { c.SMTPPassword = v; return nil },
	"webhookSecret": func(c *Config, v string) error { c.WebhookSecret = v; return nil },
	"tokens": func(c *Config, v string) error {
		for _, t := range splitList(v) {
			if strings.IndexFunc(t, unicode.IsSpace) >= 0 {
				return fmt.Errorf("expected comma-separated tokens without spaces, got %q", t)
			}
			c.Tokens = append(c.Tokens, t)
		}
		return nil
	},
	"trustedNetworks": func(c *Config, v string) (err error) { c.TrustedNetworks, err = parsePrefixes(v); return err },
	"trustedProxies":  func(c *Config, v string) (err error) { c.TrustedProxies, err = parsePrefixes(v); return err },
	"users":           parseUsers,
	"publicDashboard": func(c *Config, v string) (err error) { c.PublicDashboard, err = parseBool(v); return err },
}

// applyApp reads the top-level keys and [_], with [_] winning per key.
func (p *cfgParser) applyApp(c *Config, doc *iniDoc) {
	merged := map[string]*iniEntry{}
	for _, e := range doc.top.entries {
		merged[e.key] = e
	}
	if s := doc.byName[appSection]; s != nil {
		for _, e := range s.entries {
			merged[e.key] = e
		}
	}
	entries := make([]*iniEntry, 0, len(merged))
	for _, e := range merged {
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b *iniEntry) int { return a.line - b.line })

	for _, e := range entries {
		set, ok := appKeys[e.key]
		if !ok {
			p.errorf(e.line, "unknown key %q in [%s]", e.key, appSection)
			continue
		}
		if e.value == "" {
			continue
		}
		if err := set(c, e.value); err != nil {
			p.errorf(e.line, "%s: %v", e.key, err)
		}
	}

	line := func(key string) int {
		if e := merged[key]; e != nil {
			return e.line
		}
		return 0
	}
	if strings.HasPrefix(c.BuildRoot, "~") {
		root, err := ExpandHome(c.BuildRoot)
		if err != nil {
			p.errorf(line("buildRoot"), "buildRoot: the default %s needs $HOME: %v", c.BuildRoot, err)
		}
		c.BuildRoot = root
	}
	if c.MailCommand != "" && c.SMTPHost != "" {
		p.errorf(line("smtpHost"), "smtpHost: mailCommand is set too; use one of them")
	}
	if c.SMTPUser != "" && c.SMTPHost == "" {
		p.errorf(line("smtpUser"), "smtpUser: smtpHost is not set")
	}
	if c.SMTPPassword != "" && c.SMTPUser == "" {
		p.errorf(line("smtpPassword"), "smtpPassword: smtpUser is not set")
	}
	c.resolve()
}

// applyProject turns one section into a project.
func (p *cfgParser) applyProject(c *Config, s *iniSection) {
	if msg := checkProjectName(s.name); msg != "" {
		p.errorf(s.line, "project [%s]: %s", s.name, msg)
		return
	}
	proj := &mixmaster.Project{Name: s.name, Executor: executorShell, Targets: map[string]string{}}
	imageLine, executorSet := 0, false
	for _, e := range s.entries {
		if strings.HasPrefix(e.key, ".") {
			if e.value == "" {
				p.errorf(e.line, "option %s in [%s] has no value", e.key, s.name)
				continue
			}
			switch e.key {
			case ".repository":
				if strings.IndexFunc(e.value, unicode.IsSpace) >= 0 {
					p.errorf(e.line, "option .repository in [%s]: expected a clone URL without spaces, got %q", s.name, e.value)
				}
				proj.Repository = e.value
			case ".secret":
				proj.Secret = e.value
			case ".executor":
				if e.value != executorShell && e.value != executorDocker {
					p.errorf(e.line, "option .executor in [%s]: expected %s or %s, got %q", s.name, executorShell, executorDocker, e.value)
				}
				proj.Executor, executorSet = e.value, true
			case ".image":
				if strings.IndexFunc(e.value, unicode.IsSpace) >= 0 {
					p.errorf(e.line, "option .image in [%s]: expected an image name without spaces, got %q", s.name, e.value)
				}
				proj.Image, imageLine = e.value, e.line
			case ".network":
				if e.value != "none" && e.value != "bridge" {
					p.errorf(e.line, "option .network in [%s]: expected none or bridge, got %q", s.name, e.value)
				}
				proj.Network = e.value
			case ".timeout":
				d, err := time.ParseDuration(e.value)
				if err != nil || d <= 0 {
					p.errorf(e.line, "option .timeout in [%s]: expected a duration > 0 such as 30m or 2h, got %q", s.name, e.value)
				}
				proj.Timeout = d
			case ".keep":
				d, err := parseKeep(e.value)
				if err != nil {
					p.errorf(e.line, "option .keep in [%s]: %v", s.name, err)
				}
				c.setRetention(s.name, func(r *Retention) { r.Keep = &d })
			case ".keepLast":
				n, err := parseCount(e.value, maxKeepLast)
				if err != nil {
					p.errorf(e.line, "option .keepLast in [%s]: %v", s.name, err)
				}
				c.setRetention(s.name, func(r *Retention) { r.KeepLast = &n })
			default:
				p.errorf(e.line, "unknown option %q in [%s] (expected .repository, .secret, .executor, .image, .network, .timeout, .keep or .keepLast)", e.key, s.name)
			}
			continue
		}
		if msg := checkTarget(e.key); msg != "" {
			p.errorf(e.line, "target %q in [%s]: %s", e.key, s.name, msg)
			continue
		}
		if e.value == "" {
			p.errorf(e.line, "target %q in [%s] has no command", e.key, s.name)
			continue
		}
		proj.Targets[e.key] = e.value
	}
	switch {
	case proj.Executor == executorDocker && proj.Image == "":
		p.errorf(s.byKey[".executor"].line, "option .image in [%s] is required with .executor = docker", s.name)
	case proj.Executor != executorDocker && proj.Image != "":
		if executorSet {
			imageLine = s.byKey[".executor"].line
		}
		p.errorf(imageLine, "option .image in [%s] needs .executor = docker", s.name)
	}
	c.Projects[s.name] = proj
}

// checkProjectName returns why a section name cannot name a project, or
// "". Names become folder names and URL path parts, so anything that could
// climb out of a folder or read as a flag is refused.
func checkProjectName(name string) string {
	first, _ := utf8.DecodeRuneInString(name)
	last, _ := utf8.DecodeLastRuneInString(name)
	switch {
	case name == "":
		return "the name is empty"
	case unicode.IsSpace(first) || unicode.IsSpace(last):
		return "the name has leading or trailing space"
	case name[0] == '/' || name[0] == '-':
		return "the name must not start with / or -"
	}
	if r, ok := controlChar(name); ok {
		return fmt.Sprintf("the name has control character %U", r)
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "the name must not have an empty, . or .. path segment"
		}
	}
	return ""
}

// checkTarget returns why key cannot be a branch prefix or "prefix/task",
// or "". Targets are matched against git branch names, which follow the
// same rules.
func checkTarget(key string) string {
	switch {
	case strings.IndexFunc(key, unicode.IsSpace) >= 0:
		return "a target must not contain spaces"
	case strings.Contains(key, ".."):
		return "a target must not contain .."
	case key[0] == '-' || key[0] == '/':
		return "a target must not start with - or /"
	}
	if r, ok := controlChar(key); ok {
		return fmt.Sprintf("a target must not contain control character %U", r)
	}
	return ""
}

// controlChar returns the first control character in s other than tab.
func controlChar(s string) (rune, bool) {
	for _, r := range s {
		if r != '\t' && unicode.IsControl(r) {
			return r, true
		}
	}
	return 0, false
}

// absPath expands "~" and insists on an absolute result, because the
// service's working directory is not something a user should have to know.
func absPath(v string) (string, error) {
	p, err := ExpandHome(v)
	if err != nil {
		return "", fmt.Errorf("expand ~: %w", err)
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("expected an absolute path or one starting with ~/, got %q", v)
	}
	return filepath.Clean(p), nil
}

// parseKeep reads a retention age. Only Go durations are taken, so 30
// days is 720h; "30d" is refused rather than guessed.
func parseKeep(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("expected a duration ≥ 0 such as 720h for 30 days (0: forever), got %q", v)
	}
	return d, nil
}

func parseCount(v string, limit int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("expected a whole number ≥ 0, got %q", v)
	}
	if n > limit {
		return 0, fmt.Errorf("expected at most %d, got %q", limit, v)
	}
	return n, nil
}

// parseSize reads a byte count such as 1048576, 512KiB or 32 MiB.
func parseSize(v string) (int64, error) {
	bad := fmt.Errorf("expected a size > 0 in bytes or with KiB, MiB or GiB such as 32MiB, got %q", v)
	i := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(v)
	}
	n, err := strconv.ParseInt(v[:i], 10, 64)
	if err != nil || n <= 0 {
		return 0, bad
	}
	var shift uint
	switch strings.ToLower(strings.TrimSpace(v[i:])) {
	case "", "b":
	case "kib":
		shift = 10
	case "mib":
		shift = 20
	case "gib":
		shift = 30
	default:
		return 0, bad
	}
	if n > (1<<63-1)>>shift {
		return 0, fmt.Errorf("size %q is too large", v)
	}
	return n << shift, nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, fmt.Errorf("expected true or false, got %q", v)
}

// splitList splits a comma-separated value, dropping blank items so that a
// trailing comma is harmless.
func splitList(v string) []string {
	var items []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

// parsePrefixes reads comma-separated CIDRs; a bare address is a network
// of one. IPv4-mapped IPv6 forms become IPv4 so that they match IPv4
// clients.
func parsePrefixes(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range splitList(v) {
		var pfx netip.Prefix
		if strings.Contains(item, "/") {
			p, err := netip.ParsePrefix(item)
			if err != nil {
				return nil, fmt.Errorf("expected comma-separated CIDRs such as 10.0.0.0/8 or ::1, got %q", item)
			}
			if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
			}
			pfx = p.Masked()
		} else {
			a, err := netip.ParseAddr(item)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("expected comma-separated CIDRs such as 10.0.0.0/8 or ::1, got %q", item)
			}
			a = a.Unmap()
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, pfx)
	}
	return out, nil
}

// parseUsers reads "name:<bcrypt hash>, …" as written by `mixmaster passwd`.
func parseUsers(c *Config, v string) error {
	users := map[string]string{}
	for _, item := range splitList(v) {
		name, hash, ok := strings.Cut(item, ":")
		name, hash = strings.TrimSpace(name), strings.TrimSpace(hash)
		switch {
		case !ok || name == "":
			return fmt.Errorf("expected name:<bcrypt hash>, got %q", item)
		case strings.IndexFunc(name, unicode.IsSpace) >= 0:
			return fmt.Errorf("user name %q must not contain spaces", name)
		case !strings.HasPrefix(hash, "$2") || len(hash) != 60:
			return fmt.Errorf("user %q: expected a bcrypt hash ($2…, 60 characters)", name)
		}
		if _, dup := users[name]; dup {
			return fmt.Errorf("duplicate user %q", name)
		}
		users[name] = hash
	}
	c.Users = users
	return nil
}
