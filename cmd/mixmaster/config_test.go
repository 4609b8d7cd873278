package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"mixmaster"
)

// A bcrypt hash of "secret" at cost 10: the parser only checks the shape.
const testHash = "$2a$10$abcdefghijklmnopqrstuuJ7.GqYV0oWj7Jq/1WW9x5f9Fh2bJW2C"

// setHome points $HOME at a fresh directory and returns it.
func setHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	return home
}

func mustParse(t *testing.T, text string) *Config {
	t.Helper()
	c, err := ParseConfig("test.ini", []byte(text))
	if err != nil {
		t.Fatalf("ParseConfig:\n%s\nerror: %v", text, err)
	}
	return c
}

func TestConfigOriginal(t *testing.T) {
	setHome(t)
	c, err := LoadConfig("testdata/config/original.ini")
	if err != nil {
		t.Fatal(err)
	}
	if c.Path != "testdata/config/original.ini" {
		t.Errorf("Path = %q", c.Path)
	}
	if c.BuildRoot != "/home/u/Builds" || c.ProjectsPath != "/home/u/Builds/projects" {
		t.Errorf("BuildRoot = %q, ProjectsPath = %q", c.BuildRoot, c.ProjectsPath)
	}
	if c.SSHKey != "" || c.MailTo != "" || c.MailCommand != "" || c.Mode != "normal" {
		t.Errorf("SSHKey = %q, MailTo = %q, MailCommand = %q, Mode = %q", c.SSHKey, c.MailTo, c.MailCommand, c.Mode)
	}
	if c.Listen != ":8585" || c.ListenSet {
		t.Errorf("Listen = %q, ListenSet = %v", c.Listen, c.ListenSet)
	}
	want := map[string]*mixmaster.Project{
		"example-org/example-repo": {
			Name:     "example-org/example-repo",
			Executor: "shell",
			Targets: map[string]string{
				"production":     "make deploy",
				"staging":        "make deploy-to-staging",
				"master/my-task": "make my-task",
			},
		},
	}
	if !reflect.DeepEqual(c.Projects, want) {
		t.Errorf("Projects = %+v", c.Projects["example-org/example-repo"])
	}
}

func TestConfigFull(t *testing.T) {
	home := setHome(t)
	c, err := LoadConfig("testdata/config/full.ini")
	if err != nil {
		t.Fatal(err)
	}
	builds := filepath.Join(home, "Builds")
	if c.BuildRoot != builds || c.ProjectsPath != filepath.Join(builds, "projects") {
		t.Errorf("BuildRoot = %q, ProjectsPath = %q", c.BuildRoot, c.ProjectsPath)
	}
	if !c.ListenSet || c.Listen != ":8585" {
		t.Errorf("Listen = %q, ListenSet = %v", c.Listen, c.ListenSet)
	}
	if c.JobConcurrency != runtime.NumCPU() || c.JobBacklog != 2*runtime.NumCPU() {
		t.Errorf("JobConcurrency = %d, JobBacklog = %d", c.JobConcurrency, c.JobBacklog)
	}
	if c.MailCommand != "/usr/sbin/sendmail -t" || c.MailFrom != "mixmaster@example.com" {
		t.Errorf("MailCommand = %q, MailFrom = %q", c.MailCommand, c.MailFrom)
	}
	if len(c.Tokens) != 0 || len(c.TrustedNetworks) != 0 || len(c.TrustedProxies) != 0 || len(c.Users) != 0 {
		t.Errorf("lists not empty: %+v", c)
	}
	if !c.PublicDashboard {
		t.Error("PublicDashboard = false")
	}
	p := c.Projects["example-org/example-repo"]
	if p == nil || p.Repository != "git@git.example.com:example-org/example-repo.git" || len(p.Targets) != 3 ||
		p.Targets["master/update-libraries"] != "make update" {
		t.Errorf("project = %+v", p)
	}
}

// every.ini sets every key, has CRLF line endings, an indented comment, keys
// both before [_] and in it, and no final newline.
func TestConfigEveryKey(t *testing.T) {
	home := setHome(t)
	c, err := LoadConfig("testdata/config/every.ini")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path:            "testdata/config/every.ini",
		BuildRoot:       "/srv/ci",
		MailTo:          "ops@example.com",
		SSHKey:          filepath.Join(home, ".ssh/deploy"),
		Mode:            "dryrun",
		Listen:          "127.0.0.1:9000",
		ListenSet:       true,
		ProjectsPath:    "/srv/ci/artifact-projects",
		JobConcurrency:  3,
		JobBacklog:      10,
		WebhookBacklog:  500,
		JobTimeout:      90 * time.Minute,
		LogLimit:        8 << 20,
		ArtifactLimit:   10 << 30,
		MinFreeDisk:     100 << 20,
		MailFrom:        "CI <ci@example.com>",
		SMTPHost:        "mail.example.com",
		SMTPPort:        587,
		SMTPUser:        "ci",
		SMTPPassword:    "pa#ss;word",
		Tokens:          []string{"t1", "t2"},
		TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"), netip.MustParsePrefix("::1/128")},
		TrustedProxies:  []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		WebhookSecret:   "s3cr#t",
		Users:           map[string]string{"alice": testHash},
		PublicDashboard: false,
		IdleExit:        15 * time.Minute,
		Projects: map[string]*mixmaster.Project{
			"a/b": {
				Name:     "a/b",
				Secret:   "x;y#z",
				Executor: "docker",
				Image:    "golang:1.26",
				Timeout:  5 * time.Minute,
				Targets: map[string]string{
					"production": "sh -c 'make; make install' # not a comment",
					"main/docs":  "make docs",
				},
			},
		},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
		t.Errorf("project got %+v\nwant %+v", c.Projects["a/b"], want.Projects["a/b"])
	}
}

func TestConfigDefaults(t *testing.T) {
	home := setHome(t)
	d := DefaultConfig()
	builds := filepath.Join(home, "Builds")
	want := &Config{
		BuildRoot:       builds,
		Mode:            "normal",
		Listen:          ":8585",
		ProjectsPath:    filepath.Join(builds, "projects"),
		JobConcurrency:  runtime.NumCPU(),
		JobBacklog:      2 * runtime.NumCPU(),
		JobTimeout:      time.Hour,
		LogLimit:        32 << 20,
		ArtifactLimit:   10 << 30,
		MinFreeDisk:     100 << 20,
		WebhookBacklog:  10000,
		SMTPPort:        25,
		Users:           map[string]string{},
		PublicDashboard: true,
		Projects:        map[string]*mixmaster.Project{},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("DefaultConfig() = %+v\nwant %+v", d, want)
	}

	// An empty file, or one with only blank values, means the defaults.
	for _, text := range []string{"", "\n; nothing\n", "[_]\nbuildRoot =\nmode =\nlisten =\njobConcurrency =\n"} {
		c := mustParse(t, text)
		c.Path = ""
		if !reflect.DeepEqual(c, want) {
			t.Errorf("ParseConfig(%q) = %+v\nwant %+v", text, c, want)
		}
	}
}

func TestConfigDerivedDefaults(t *testing.T) {
	setHome(t)
	tests := []struct {
		text                      string
		concurrency, backlog      int
		projectsPath, mailCommand string
	}{
		{"jobConcurrency = 3", 3, 6, "", ""},
		{"jobBacklog = 5", runtime.NumCPU(), 5, "", ""},
		{"jobConcurrency = 2\njobBacklog = 1", 2, 1, "", ""},
		{"buildRoot = /b", 0, 0, "/b/projects", ""},
		{"buildRoot = /b\nprojectsPath = /p", 0, 0, "/p", ""},
		{"mailto = a@b.example", 0, 0, "", "/usr/sbin/sendmail -t"},
		{"mailto = a@b.example\nmailCommand = /bin/mail-it", 0, 0, "", "/bin/mail-it"},
		{"mailto = a@b.example\nsmtpHost = localhost", 0, 0, "", ""},
		{"mailCommand = /bin/mail-it", 0, 0, "", "/bin/mail-it"},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			c := mustParse(t, tt.text)
			if tt.concurrency != 0 && (c.JobConcurrency != tt.concurrency || c.JobBacklog != tt.backlog) {
				t.Errorf("JobConcurrency, JobBacklog = %d, %d; want %d, %d", c.JobConcurrency, c.JobBacklog, tt.concurrency, tt.backlog)
			}
			if tt.projectsPath != "" && c.ProjectsPath != tt.projectsPath {
				t.Errorf("ProjectsPath = %q, want %q", c.ProjectsPath, tt.projectsPath)
			}
			if c.MailCommand != tt.mailCommand {
				t.Errorf("MailCommand = %q, want %q", c.MailCommand, tt.mailCommand)
			}
		})
	}
}

// TestConfigKeys checks each [_] key with valid values.
func TestConfigKeys(t *testing.T) {
	home := setHome(t)
	tests := []struct {
		line string
		want func(c *Config) any
		val  any
	}{
		{"buildRoot = /srv//ci/", func(c *Config) any { return c.BuildRoot }, "/srv/ci"},
		{"buildRoot = ~", func(c *Config) any { return c.BuildRoot }, home},
		{"projectsPath = ~/p", func(c *Config) any { return c.ProjectsPath }, filepath.Join(home, "p")},
		{"sshKey = ~/.ssh/id_ed25519", func(c *Config) any { return c.SSHKey }, filepath.Join(home, ".ssh/id_ed25519")},
		{"sshKey = /k", func(c *Config) any { return c.SSHKey }, "/k"},
		{"sshKey =", func(c *Config) any { return c.SSHKey }, ""},
		{"spool = /var/spool/mixmaster/u", func(c *Config) any { return c.BuildRoot }, filepath.Join(home, "Builds")},
		{"mailto = me@example.com", func(c *Config) any { return c.MailTo }, "me@example.com"},
		{"mode = dryrun", func(c *Config) any { return c.Mode }, "dryrun"},
		{"mode = normal", func(c *Config) any { return c.Mode }, "normal"},
		{"listen = [::1]:80", func(c *Config) any { return c.Listen }, "[::1]:80"},
		{"listen = :8585", func(c *Config) any { return c.ListenSet }, true},
		{"listen =", func(c *Config) any { return c.ListenSet }, false},
		{"jobConcurrency = 7", func(c *Config) any { return c.JobConcurrency }, 7},
		{"jobConcurrency = 0", func(c *Config) any { return c.JobConcurrency }, runtime.NumCPU()},
		{"jobBacklog = 100", func(c *Config) any { return c.JobBacklog }, 100},
		{"webhookBacklog = 100", func(c *Config) any { return c.WebhookBacklog }, 100},
		{"webhookBacklog = 0", func(c *Config) any { return c.WebhookBacklog }, 0},
		{"webhookBacklog =", func(c *Config) any { return c.WebhookBacklog }, 10000},
		{"jobTimeout = 2h30m", func(c *Config) any { return c.JobTimeout }, 150 * time.Minute},
		{"idleExit = 10m", func(c *Config) any { return c.IdleExit }, 10 * time.Minute},
		{"idleExit = 0", func(c *Config) any { return c.IdleExit }, time.Duration(0)},
		{"logLimit = 1000", func(c *Config) any { return c.LogLimit }, int64(1000)},
		{"logLimit = 1000B", func(c *Config) any { return c.LogLimit }, int64(1000)},
		{"logLimit = 4KiB", func(c *Config) any { return c.LogLimit }, int64(4096)},
		{"logLimit = 64 mib", func(c *Config) any { return c.LogLimit }, int64(64 << 20)},
		{"logLimit = 2GiB", func(c *Config) any { return c.LogLimit }, int64(2 << 30)},
		{"mailCommand = /usr/bin/msmtp -t", func(c *Config) any { return c.MailCommand }, "/usr/bin/msmtp -t"},
		{"mailFrom = ci@example.com", func(c *Config) any { return c.MailFrom }, "ci@example.com"},
		{"smtpHost = smtp.example.com", func(c *Config) any { return c.SMTPHost }, "smtp.example.com"},
		{"smtpHost = h\nsmtpPort = 465", func(c *Config) any { return c.SMTPPort }, 465},
		{"smtpHost = h\nsmtpUser = u", func(c *Config) any { return c.SMTPPort }, 25},
		{"smtpHost = h\nsmtpUser = u\nsmtpPassword = p;w#d", func(c *Config) any { return c.SMTPPassword }, "p;w#d"},
		{"tokens = a, b ,c,", func(c *Config) any { return c.Tokens }, []string{"a", "b", "c"}},
		{"trustedNetworks = 10.1.2.3/8", func(c *Config) any { return c.TrustedNetworks }, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		{"trustedNetworks = ::ffff:10.0.0.0/104, ::ffff:1.2.3.4", func(c *Config) any { return c.TrustedNetworks },
			[]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("1.2.3.4/32")}},
		{"trustedNetworks = 2001:db8::/32,fd00::1", func(c *Config) any { return c.TrustedNetworks },
			[]netip.Prefix{netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("fd00::1/128")}},
		{"trustedProxies = 127.0.0.1, ::1", func(c *Config) any { return c.TrustedProxies },
			[]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}},
		{"webhookSecret = a;b#c", func(c *Config) any { return c.WebhookSecret }, "a;b#c"},
		{"users = alice:" + testHash + ", bob:" + strings.Replace(testHash, "$2a", "$2b", 1), func(c *Config) any { return c.Users },
			map[string]string{"alice": testHash, "bob": strings.Replace(testHash, "$2a", "$2b", 1)}},
		{"publicDashboard = false", func(c *Config) any { return c.PublicDashboard }, false},
		{"publicDashboard = Off", func(c *Config) any { return c.PublicDashboard }, false},
		{"publicDashboard = yes", func(c *Config) any { return c.PublicDashboard }, true},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			for _, text := range []string{tt.line, "[_]\n" + tt.line} {
				got := tt.want(mustParse(t, text))
				if !reflect.DeepEqual(got, tt.val) {
					t.Errorf("%q: got %#v, want %#v", text, got, tt.val)
				}
			}
		})
	}
}

// TestConfigErrors checks that every error names the file, the line and
// the key or section, and says what is expected.
func TestConfigErrors(t *testing.T) {
	setHome(t)
	tests := []struct {
		text string
		line int
		want []string
	}{
		// Syntax.
		{"; c\njust a line\n", 2, []string{`expected "key = value"`, `"just a line"`}},
		{"= value", 1, []string{`missing key`}},
		{"[unclosed\na = b", 1, []string{`malformed section header "[unclosed"`}},
		{"[a] trailing\nx = y", 1, []string{`malformed section header`}},
		{"[a] ; comment\nx = y", 1, []string{`malformed section header`}},
		{"[]", 1, []string{"empty section name"}},
		{"[a]b]", 1, []string{`"a]b"`, "must not contain"}},
		{"\n[DEFAULT]\nx = y", 2, []string{`"DEFAULT" is reserved`}},
		{"[p]\n\"q\" = x", 2, []string{`key "q"`, "quote"}},
		{"[p]\n- = x", 2, []string{`key "-"`}},
		{"[p]\na = `cmd`", 2, []string{"a:", "must not start with `"}},
		{"[p]\na = \"\"\"x\n\"\"\"", 2, []string{"a:", `must not start with`}},
		{"[p]\na = b\x01c", 2, []string{"control character U+0001"}},
		{"[p]\na = b\rc", 2, []string{"control character U+000D"}},
		{"[p]\na = \xff", 2, []string{"not valid UTF-8"}},

		// [_] keys.
		{"; one\n; two\nbildRoot = /x", 3, []string{`unknown key "bildRoot" in [_]`}},
		{"[_]\nMode = normal", 2, []string{`unknown key "Mode" in [_]`}},
		{"[_]\nbuildRoot = Builds", 2, []string{"buildRoot:", "absolute path", `"Builds"`}},
		{"buildRoot = ~other/Builds", 1, []string{"buildRoot:", "absolute path"}},
		{"projectsPath = projects", 1, []string{"projectsPath:", "absolute path"}},
		{"sshKey = id_rsa", 1, []string{"sshKey:", "absolute path"}},
		{"mailto = nobody", 1, []string{"mailto:", "email address", `"nobody"`}},
		{"mailto = a b@example.com", 1, []string{"mailto:", "email address"}},
		{"mode = fast", 1, []string{"mode:", "expected normal or dryrun", `"fast"`}},
		{"listen = 8585", 1, []string{"listen:", "host:port", `"8585"`}},
		{"listen = localhost:", 1, []string{"listen:", "host:port"}},
		{"jobConcurrency = many", 1, []string{`jobConcurrency: expected a whole number ≥ 0, got "many"`}},
		{"jobConcurrency = -1", 1, []string{"jobConcurrency:", "≥ 0"}},
		{"jobConcurrency = 1000000", 1, []string{"jobConcurrency:", "at most 65536"}},
		{"jobBacklog = 1.5", 1, []string{"jobBacklog:", "whole number"}},
		{"webhookBacklog = -1", 1, []string{"webhookBacklog:", "≥ 0"}},
		{"webhookBacklog = lots", 1, []string{`webhookBacklog: expected a whole number ≥ 0, got "lots"`}},
		{"webhookBacklog = 2000000", 1, []string{"webhookBacklog:", "at most 1048576"}},
		{"jobTimeout = 1 hour", 1, []string{"jobTimeout:", "duration > 0", `"1 hour"`}},
		{"jobTimeout = 0", 1, []string{"jobTimeout:", "duration > 0"}},
		{"jobTimeout = 60", 1, []string{"jobTimeout:", "duration"}},
		{"idleExit = -1m", 1, []string{"idleExit:", "duration ≥ 0"}},
		{"logLimit = 32MB", 1, []string{"logLimit:", "KiB, MiB or GiB", `"32MB"`}},
		{"logLimit = 0", 1, []string{"logLimit:", "size > 0"}},
		{"logLimit = -5", 1, []string{"logLimit:", "size > 0"}},
		{"logLimit = MiB", 1, []string{"logLimit:", "size > 0"}},
		{"logLimit = 99999999999GiB", 1, []string{"logLimit:", "too large"}},
		{"mailFrom = not an address", 1, []string{"mailFrom:", "email address"}},
		{"smtpHost = mail example", 1, []string{"smtpHost:", "host name"}},
		{"smtpHost = h\nsmtpPort = 0", 2, []string{"smtpPort:", "1 to 65535"}},
		{"smtpHost = h\nsmtpPort = smtp", 2, []string{"smtpPort:", "1 to 65535", `"smtp"`}},
		{"smtpUser = u", 1, []string{"smtpUser:", "smtpHost is not set"}},
		{"smtpHost = h\nsmtpPassword = p", 2, []string{"smtpPassword:", "smtpUser is not set"}},
		{"mailCommand = /x\nsmtpHost = h", 2, []string{"smtpHost:", "mailCommand is set too"}},
		{"tokens = a b, c", 1, []string{"tokens:", `"a b"`}},
		{"trustedNetworks = 10.0.0.0/33", 1, []string{"trustedNetworks:", "CIDR", `"10.0.0.0/33"`}},
		{"trustedNetworks = example.com", 1, []string{"trustedNetworks:", "CIDR"}},
		{"trustedNetworks = fe80::1%eth0", 1, []string{"trustedNetworks:", "CIDR"}},
		{"trustedProxies = 10.0.0.0/8, nope", 1, []string{"trustedProxies:", `"nope"`}},
		{"users = alice", 1, []string{"users:", "name:<bcrypt hash>", `"alice"`}},
		{"users = :" + testHash, 1, []string{"users:", "name:<bcrypt hash>"}},
		{"users = alice:plaintext", 1, []string{"users:", `user "alice"`, "bcrypt"}},
		{"users = alice:" + testHash + ",alice:" + testHash, 1, []string{"users:", `duplicate user "alice"`}},
		{"publicDashboard = maybe", 1, []string{"publicDashboard:", "true or false", `"maybe"`}},

		// Projects.
		{"[ a/b ]\nx = y", 1, []string{"[ a/b ]", "leading or trailing space"}},
		{"[/etc]\nx = y", 1, []string{"[/etc]", "must not start with /"}},
		{"[-rf]\nx = y", 1, []string{"[-rf]", "must not start with"}},
		{"[a/../b]\nx = y", 1, []string{"[a/../b]", ".. path segment"}},
		{"[..]\nx = y", 1, []string{"[..]", ".. path segment"}},
		{"[a//b]\nx = y", 1, []string{"[a//b]", "empty"}},
		{"[a/b/]\nx = y", 1, []string{"[a/b/]", "empty"}},
		{"[a/b]\n.executor = podman", 2, []string{".executor", "[a/b]", "expected shell or docker", `"podman"`}},
		{"[a/b]\n.network = host", 2, []string{".network", "[a/b]", "expected none or bridge", `"host"`}},
		{"artifactLimit = lots", 1, []string{"artifactLimit:", "size"}},
		{"minFreeDisk = -1", 1, []string{"minFreeDisk:", "size"}},
		{"[a/b]\n\n.executor = docker", 3, []string{".image", "[a/b]", "required"}},
		{"[a/b]\n.image = alpine", 2, []string{".image", "[a/b]", "needs .executor = docker"}},
		{"[a/b]\n.image = alpine\n.executor = shell", 3, []string{".image", "[a/b]", "needs .executor = docker"}},
		{"[a/b]\n.executor = docker\n.image = my image", 3, []string{".image", "[a/b]", "without spaces"}},
		{"[a/b]\n.timeout = 0s", 2, []string{".timeout", "[a/b]", "duration > 0"}},
		{"[a/b]\n.timeout = soon", 2, []string{".timeout", "[a/b]", `"soon"`}},
		{"[a/b]\n.repository = git@x: y", 2, []string{".repository", "[a/b]", "without spaces"}},
		{"[a/b]\n.repository =", 2, []string{".repository", "[a/b]", "has no value"}},
		{"[a/b]\n.secret =", 2, []string{".secret", "[a/b]", "has no value"}},
		{"[a/b]\n.bogus = 1", 2, []string{`unknown option ".bogus" in [a/b]`}},
		{"[a/b]\nx = y\nproduction =", 3, []string{`target "production" in [a/b] has no command`}},
		{"[a/b]\nmy target = make", 2, []string{`target "my target" in [a/b]`, "spaces"}},
		{"[a/b]\na..b = make", 2, []string{`target "a..b"`, ".."}},
		{"[a/b]\n-x = make", 2, []string{`target "-x"`, "must not start"}},
		{"[a/b]\n/x = make", 2, []string{`target "/x"`, "must not start"}},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			_, err := ParseConfig("my.ini", []byte(tt.text))
			if err == nil {
				t.Fatalf("no error for:\n%s", tt.text)
			}
			msg := err.Error()
			if prefix := fmt.Sprintf("my.ini:%d: ", tt.line); !strings.HasPrefix(msg, prefix) {
				t.Errorf("error %q does not start with %q", msg, prefix)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

// The example from the brief, verbatim.
func TestConfigErrorFormat(t *testing.T) {
	_, err := ParseConfig("mixmaster.ini", []byte("[_]\n;\n;\n;\n;\n;\njobConcurrency = many\n"))
	want := `mixmaster.ini:7: jobConcurrency: expected a whole number ≥ 0, got "many"`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	_, err = ParseConfig("config.ini", []byte("[_]\nbuildRoot = /b\nbildRoot = /b\n"))
	want = `config.ini:3: unknown key "bildRoot" in [_]`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestConfigReportsEveryError(t *testing.T) {
	text := "[p/q]\n.timeout = x\n[_]\nmode = fast\njobBacklog = -2\n"
	_, err := ParseConfig("c.ini", []byte(text))
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "c.ini:2: ") ||
		!strings.HasPrefix(lines[1], "c.ini:4: mode:") || !strings.HasPrefix(lines[2], "c.ini:5: jobBacklog:") {
		t.Errorf("errors not one per line in file order:\n%s", err)
	}
}

func TestConfigMergeTopLevelAndApp(t *testing.T) {
	text := "mode = dryrun\nlisten = :1\nmailto = top@example.com\n" +
		"[_]\nlisten = :2\nmailto =\n" +
		"[p/q]\nx = y\n"
	c := mustParse(t, text)
	// mode only at the top, listen in both ([_] wins), mailto blank in [_]
	// (the default wins over the top-level value, since [_] wins per key).
	if c.Mode != "dryrun" || c.Listen != ":2" || c.MailTo != "" {
		t.Errorf("Mode = %q, Listen = %q, MailTo = %q", c.Mode, c.Listen, c.MailTo)
	}
	// An unknown key is reported wherever it is.
	if _, err := ParseConfig("t.ini", []byte("oops = 1\n[_]\nmode = normal\n")); err == nil || !strings.HasPrefix(err.Error(), "t.ini:1: unknown key") {
		t.Errorf("top-level unknown key: %v", err)
	}
	// A repeated key and a repeated section: the last value wins.
	c = mustParse(t, "[_]\nmode = dryrun\n[p/q]\nx = 1\n[_]\nmode = normal\n[p/q]\nx = 2\ny = 3\n")
	if c.Mode != "normal" || !reflect.DeepEqual(c.Projects["p/q"].Targets, map[string]string{"x": "2", "y": "3"}) {
		t.Errorf("Mode = %q, targets = %v", c.Mode, c.Projects["p/q"].Targets)
	}
}

// Values are read as written: ";" and "#" are not comments, quotes stay,
// "\" does not continue a line, and %(x)s is not expanded.
func TestConfigValuesKept(t *testing.T) {
	text := "[p/q]\n" +
		"production = sh -c 'a; b'\n" +
		"staging = make # deploy ; now\n" +
		"quoted = \"make deploy\"\n" +
		"single = 'make'\n" +
		"cont = make \\\n" +
		"next = %(cont)s and FOO=1 make\n" +
		"colon:key = scp a:b c\n" +
		"Case = upper\n" +
		"case = lower\n"
	c := mustParse(t, text)
	want := map[string]string{
		"production": "sh -c 'a; b'",
		"staging":    "make # deploy ; now",
		"quoted":     `"make deploy"`,
		"single":     "'make'",
		"cont":       `make \`,
		"next":       "%(cont)s and FOO=1 make",
		"colon:key":  "scp a:b c",
		"Case":       "upper",
		"case":       "lower",
	}
	if got := c.Projects["p/q"].Targets; !reflect.DeepEqual(got, want) {
		t.Errorf("targets = %#v\nwant %#v", got, want)
	}
}

func TestConfigLayout(t *testing.T) {
	tests := map[string]string{
		"indented comments":   "  ; one\n\t# two\n[p/q]\n   ; three\n  x = y\n",
		"no final newline":    "[p/q]\nx = y",
		"CRLF":                "[p/q]\r\nx = y\r\n",
		"BOM":                 "\xef\xbb\xbf[p/q]\nx = y\n",
		"spaces around =":     "[p/q]\n  x   =   y   \n",
		"comment after value": "[p/q]\n; c\nx = y\n# c\n",
	}
	for name, text := range tests {
		t.Run(name, func(t *testing.T) {
			c := mustParse(t, text)
			if p := c.Projects["p/q"]; p == nil || !reflect.DeepEqual(p.Targets, map[string]string{"x": "y"}) {
				t.Errorf("projects = %v", c.Projects)
			}
		})
	}
}

func TestConfigProjects(t *testing.T) {
	text := "[b/two]\n" +
		".repository = https://git.example.com/b/two.git\n" +
		".secret = s;#\n" +
		".executor = docker\n" +
		".image = registry.example.com/build:1\n" +
		".timeout = 45m\n" +
		"production = make deploy\n" +
		"master/docs = make docs\n" +
		"[a/one]\n" +
		"main = make\n" +
		"[_]\n" +
		"[c]\n" +
		".executor = shell\n"
	c := mustParse(t, text)
	if got := c.ProjectNames(); !slices.Equal(got, []string{"a/one", "b/two", "c"}) {
		t.Errorf("ProjectNames() = %v", got)
	}
	want := &mixmaster.Project{
		Name:       "b/two",
		Repository: "https://git.example.com/b/two.git",
		Secret:     "s;#",
		Executor:   "docker",
		Image:      "registry.example.com/build:1",
		Timeout:    45 * time.Minute,
		Targets:    map[string]string{"production": "make deploy", "master/docs": "make docs"},
	}
	if got := c.Projects["b/two"]; !reflect.DeepEqual(got, want) {
		t.Errorf("b/two = %+v\nwant %+v", got, want)
	}
	if p := c.Projects["a/one"]; p.Executor != "shell" || p.Timeout != 0 || p.Repository != "" {
		t.Errorf("a/one = %+v", p)
	}
	if _, ok := c.Projects["_"]; ok {
		t.Error("[_] became a project")
	}
}

func TestExpandHome(t *testing.T) {
	home := setHome(t)
	tests := map[string]string{
		"~":          home,
		"~/":         home,
		"~/x":        filepath.Join(home, "x"),
		"~/a/b/":     filepath.Join(home, "a/b"),
		"/abs/~/x":   "/abs/~/x",
		"rel":        "rel",
		"~user/x":    "~user/x",
		"":           "",
		"x/~":        "x/~",
		"~~/x":       "~~/x",
		"~/../other": filepath.Join(home, "../other"),
	}
	for in, want := range tests {
		got, err := ExpandHome(in)
		if err != nil || got != want {
			t.Errorf("ExpandHome(%q) = %q, %v; want %q", in, got, err, want)
		}
	}

	t.Setenv("HOME", "")
	if _, err := ExpandHome("~/x"); err == nil {
		t.Error("ExpandHome without $HOME: no error")
	}
	if got, err := ExpandHome("/x"); err != nil || got != "/x" {
		t.Errorf("ExpandHome(/x) without $HOME = %q, %v", got, err)
	}
	if _, err := ParseConfig("h.ini", []byte("\nsshKey = ~/k\n")); err == nil || !strings.Contains(err.Error(), "h.ini:2: sshKey: expand ~: $HOME") {
		t.Errorf("sshKey without $HOME: %v", err)
	}
	if _, err := ParseConfig("h.ini", []byte("")); err == nil || !strings.Contains(err.Error(), "h.ini: buildRoot: the default ~/Builds needs $HOME") {
		t.Errorf("default buildRoot without $HOME: %v", err)
	}
	if c := mustParse(t, "buildRoot = /b"); c.BuildRoot != "/b" {
		t.Errorf("BuildRoot = %q", c.BuildRoot)
	}
	if d := DefaultConfig(); d.BuildRoot != "~/Builds" {
		t.Errorf("DefaultConfig without $HOME: BuildRoot = %q", d.BuildRoot)
	}
}

func TestLoadConfigFiles(t *testing.T) {
	home := setHome(t)
	_, err := LoadConfig(filepath.Join(t.TempDir(), "missing.ini"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := LoadConfig(""); err == nil {
		t.Error("empty path: no error")
	}
	if err := os.WriteFile(filepath.Join(home, "m.ini"), []byte("[_]\nmode = x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadConfig("~/m.ini")
	if want := filepath.Join(home, "m.ini") + ":2: mode:"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want prefix %q", err, want)
	}
}

func FuzzParseConfig(f *testing.F) {
	files, _ := filepath.Glob("testdata/config/*")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"", "[", "[]", "=", "a=", "[_]\nusers = a:b", "x = `y`", "x = \"\"\"\n", "- = 1",
		"[p]\n.executor = docker", "\xfe\xffa = b", "a = b\\\nc = d", "[a] ]", "\"k\" = v",
		"[p]\nx = %(y)s\ny = 1", "trustedNetworks = ::ffff:0.0.0.0/96", "logLimit = 9223372036854775807",
	} {
		f.Add([]byte(s))
	}
	f.Setenv("HOME", "/home/fuzz")
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("fuzz.ini", data)
		if err != nil {
			if strings.Contains(err.Error(), "parsers disagree") {
				t.Fatalf("%q: %v", data, err)
			}
			return
		}
		if c.JobConcurrency < 1 || c.JobBacklog < 1 || c.LogLimit < 1 || c.JobTimeout <= 0 {
			t.Fatalf("%q: bad numbers %+v", data, c)
		}
		for name, p := range c.Projects {
			if checkProjectName(name) != "" || p.Name != name {
				t.Fatalf("%q: bad project %q", data, name)
			}
			for k, cmd := range p.Targets {
				if cmd == "" || checkTarget(k) != "" {
					t.Fatalf("%q: bad target %q = %q", data, k, cmd)
				}
			}
		}
	})
}

func TestConfigRetention(t *testing.T) {
	c := mustParse(t, "[_]\nkeep = 720h\nkeepLast = 20\n[a/b]\nmain = make\n.keep = 0\n[c/d]\nmain = make\n.keepLast = 3\n")
	if c.Keep != 720*time.Hour || c.KeepLast != 20 {
		t.Errorf("keep, keepLast = %v, %d; want 720h, 20", c.Keep, c.KeepLast)
	}
	for _, tt := range []struct {
		project  string
		keep     time.Duration
		keepLast int
	}{
		{"a/b", 0, 20},                  // .keep = 0 means forever for this project
		{"c/d", 720 * time.Hour, 3},     // only .keepLast overridden
		{"folder", 720 * time.Hour, 20}, // an artifact project: the global values
	} {
		keep, keepLast := c.RetentionPolicy(tt.project)
		if keep != tt.keep || keepLast != tt.keepLast {
			t.Errorf("RetentionPolicy(%s) = %v, %d; want %v, %d", tt.project, keep, keepLast, tt.keep, tt.keepLast)
		}
	}
	if !c.PruneEnabled() {
		t.Error("PruneEnabled() = false")
	}

	// Forever is the default, so nothing is pruned unless asked.
	if d := mustParse(t, "[a/b]\nmain = make\n"); d.PruneEnabled() {
		t.Error("PruneEnabled() = true without keep or keepLast")
	}
	if d := mustParse(t, "[a/b]\nmain = make\n.keepLast = 5\n"); !d.PruneEnabled() {
		t.Error("PruneEnabled() = false with a project's .keepLast")
	}
}

func TestConfigRetentionErrors(t *testing.T) {
	tests := []struct {
		text string
		line int
		want []string
	}{
		{"[_]\nkeep = 30d", 2, []string{"keep:", "720h", `"30d"`}},
		{"[_]\nkeep = -1h", 2, []string{"keep:", "≥ 0", `"-1h"`}},
		{"[_]\n\nkeepLast = some", 3, []string{"keepLast:", "whole number", `"some"`}},
		{"[_]\nkeepLast = -3", 2, []string{"keepLast:", `"-3"`}},
		{"[a/b]\nmain = make\n.keep = a month", 3, []string{".keep in [a/b]", `"a month"`}},
		{"[a/b]\n.keepLast = 1.5", 2, []string{".keepLast in [a/b]", `"1.5"`}},
		{"[a/b]\n.keepLast =", 2, []string{".keepLast", "has no value"}},
	}
	for _, tt := range tests {
		_, err := ParseConfig("my.ini", []byte(tt.text))
		if err == nil {
			t.Errorf("no error for %q", tt.text)
			continue
		}
		msg := err.Error()
		if prefix := fmt.Sprintf("my.ini:%d: ", tt.line); !strings.HasPrefix(msg, prefix) {
			t.Errorf("error %q does not start with %q", msg, prefix)
		}
		for _, w := range tt.want {
			if !strings.Contains(msg, w) {
				t.Errorf("error %q does not contain %q", msg, w)
			}
		}
	}
}

func TestNetworkAndLimits(t *testing.T) {
	cfg, err := ParseConfig("x.ini", []byte("[_]\nartifactLimit = 2GiB\nminFreeDisk = 1GiB\n\n[a/b]\n.executor = docker\n.image = alpine\n.network = bridge\nmaster = make\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ArtifactLimit != 2<<30 || cfg.MinFreeDisk != 1<<30 || cfg.Projects["a/b"].Network != "bridge" {
		t.Errorf("config = %+v, project %+v", cfg, cfg.Projects["a/b"])
	}
	if d := DefaultConfig(); d.ArtifactLimit != 10<<30 || d.MinFreeDisk != 100<<20 {
		t.Errorf("defaults: artifactLimit %d, minFreeDisk %d", d.ArtifactLimit, d.MinFreeDisk)
	}
}
