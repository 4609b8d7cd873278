package deploy

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/coreos/go-systemd/v22/unit"
)

//go:embed user
var user embed.FS

// Names of the user units, as systemctl knows them.
const (
	SocketUnit  = "mixmaster.socket"
	ServiceUnit = "mixmaster.service"
)

// UnitOptions are the values that go into the user units.
type UnitOptions struct {
	// Binary is the absolute path of the mixmaster binary.
	Binary string
	// Config is the absolute path of the config file the service reads.
	Config string
	// Listen is the address the socket listens on: "127.0.0.1:8585",
	// "[::1]:8585", or ":8585" (every address).
	Listen string
	// Home is the user's home directory. Paths below it are written with
	// systemd's %h, so the units stay right if the home moves. Empty
	// writes every path as it is.
	Home string
}

// Unit is one rendered unit file.
type Unit struct {
	Name string // file name, such as mixmaster.service
	Data []byte
}

// header heads every rendered unit: the templates' comments explain each
// option, but a parsed unit keeps no comments.
const header = `# Written by ` + "`mixmaster setup`" + `; ` + "`mixmaster setup --teardown`" + ` removes it.
# Each option is explained in deploy/user/%s of the mixmaster source.

`

// Units renders the user units, the socket first, from the templates in
// deploy/user: each is parsed as a unit file, its @…@ values are filled
// in, and it is written out again with go-systemd's serializer.
func Units(o UnitOptions) ([]Unit, error) {
	if !path.IsAbs(o.Binary) || !path.IsAbs(o.Config) {
		return nil, fmt.Errorf("units: binary %q and config %q must be absolute paths", o.Binary, o.Config)
	}
	stream, err := ListenStream(o.Listen)
	if err != nil {
		return nil, err
	}
	binary, err := execWord(o.specifierPath(o.Binary), true)
	if err != nil {
		return nil, fmt.Errorf("units: binary: %w", err)
	}
	config, err := execWord(o.specifierPath(o.Config), false)
	if err != nil {
		return nil, fmt.Errorf("units: config: %w", err)
	}
	values := strings.NewReplacer("@BINARY@", binary, "@CONFIG@", config, "@LISTEN@", stream)
	var units []Unit
	for _, name := range []string{SocketUnit, ServiceUnit} {
		tmpl, err := user.ReadFile("user/" + name)
		if err != nil {
			return nil, err
		}
		opts, err := unit.DeserializeOptions(bytes.NewReader(tmpl))
		if err != nil {
			return nil, fmt.Errorf("units: template %s: %w", name, err)
		}
		for _, opt := range opts {
			opt.Value = values.Replace(opt.Value)
		}
		var buf bytes.Buffer
		fmt.Fprintf(&buf, header, name)
		if _, err := io.Copy(&buf, unit.Serialize(opts)); err != nil {
			return nil, err
		}
		units = append(units, Unit{Name: name, Data: buf.Bytes()})
	}
	return units, nil
}

// ListenStream turns a listen address into a ListenStream= value: an IP
// address and port, or a bare port for every address. systemd takes no
// host names there.
func ListenStream(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("listen %q: expected host:port such as 127.0.0.1:8585 or :8585", listen)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("listen %q: expected a port from 1 to 65535", listen)
	}
	if host == "" {
		return port, nil
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || addr.Zone() != "" {
		return "", fmt.Errorf("listen %q: the socket unit needs an IP address, not %q", listen, host)
	}
	return net.JoinHostPort(addr.String(), port), nil
}

// specifierPath writes p with %h for the home directory and escapes
// every other "%", which systemd would read as a specifier.
func (o UnitOptions) specifierPath(p string) string {
	p = path.Clean(p)
	if o.Home != "" {
		home := path.Clean(o.Home)
		if rest, ok := strings.CutPrefix(p, home+"/"); ok && home != "/" {
			return "%h/" + strings.ReplaceAll(rest, "%", "%%")
		}
	}
	return strings.ReplaceAll(p, "%", "%%")
}

// execWord quotes one word of an ExecStart= command line, put in double
// quotes when it has spaces. In an argument "\" and `"` are escaped and
// "$" is doubled so that systemd does not expand it. The executable's
// path is neither expanded nor unescaped, and systemd refuses one with
// quotes or "\" in it. Control characters cannot be written at all.
func execWord(s string, executable bool) (string, error) {
	switch {
	case s == "":
		return "", errors.New("empty word")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "", fmt.Errorf("%q has a control character", s)
	case executable && strings.ContainsAny(s, `"'\`):
		return "", fmt.Errorf("systemd cannot run a program whose path has quotes or \\ in it: %q", s)
	}
	quote := strings.ContainsAny(s, " \t\"'\\;")
	if !executable {
		s = strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `$$`).Replace(s)
	}
	if quote {
		s = `"` + s + `"`
	}
	return s, nil
}

// ConfigOptions are the values that go into a new config file.
type ConfigOptions struct {
	BuildRoot string        // absolute path
	Listen    string        // host:port
	MailTo    string        // blank: no mail
	SSHKey    string        // blank: no key
	IdleExit  time.Duration // 0: never stop when idle
}

// Config renders the config file that setup writes. Values are written as
// they are, so a line break in one (which would add a line of its own) is
// refused.
func Config(o ConfigOptions) ([]byte, error) {
	for _, v := range []string{o.BuildRoot, o.Listen, o.MailTo, o.SSHKey} {
		if strings.IndexFunc(v, unicode.IsControl) >= 0 {
			return nil, fmt.Errorf("config: %q has a control character", v)
		}
	}
	tmpl, err := user.ReadFile("user/mixmaster.ini")
	if err != nil {
		return nil, err
	}
	text := strings.NewReplacer(
		"@BUILD_ROOT@", o.BuildRoot,
		"@LISTEN@", o.Listen,
		"@MAILTO@", o.MailTo,
		"@SSH_KEY@", o.SSHKey,
		"@IDLE_EXIT@", FormatDuration(o.IdleExit),
	).Replace(string(tmpl))
	// A blank value leaves "key = " behind.
	return []byte(strings.ReplaceAll(text, " \n", "\n")), nil
}

// FormatDuration writes d as a config value, without the zero units that
// time.Duration.String adds: 10m, not 10m0s.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
