package mixmaster

import (
	"net"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxRefLen caps ref names. Git allows longer ones, but nothing legitimate
// needs more, and the name ends up in logs, paths and mails.
const maxRefLen = 255

// maxURLLen caps repository URLs for the same reason.
const maxURLLen = 2048

// ValidCommit reports whether s is a full commit ID: 40 (SHA-1) or 64
// (SHA-256) hexadecimal digits, in either case.
func ValidCommit(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// ValidRef reports whether s is a ref name that is safe to hand to git: it
// follows git check-ref-format (with one-level names allowed, as for branch
// names) and, stricter than git, it does not start with "-" (so it can never
// be read as an option), is at most 255 bytes and is valid UTF-8.
func ValidRef(s string) bool {
	if s == "" || s == "@" || len(s) > maxRefLen || !utf8.ValidString(s) {
		return false
	}
	switch {
	case s[0] == '-', s[0] == '/', s[len(s)-1] == '/', s[len(s)-1] == '.':
		return false
	case strings.Contains(s, ".."), strings.Contains(s, "@{"), strings.Contains(s, "//"):
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || strings.IndexByte(" ~^:?*[\\", c) >= 0 {
			return false
		}
	}
	for comp := range strings.SplitSeq(s, "/") {
		if comp[0] == '.' || strings.HasSuffix(comp, ".lock") {
			return false
		}
	}
	return true
}

var (
	// helperRE matches git's "<transport>::<address>" syntax, which runs a
	// remote helper (ext:: runs an arbitrary command).
	helperRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*::`)
	// hostRE is a host name or an ssh config alias; never an option.
	hostRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)
	// userRE is an ssh user name; never an option.
	userRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)
)

// ValidateRepositoryURL checks that u is a repository URL git may fetch without any
// chance of running a command or reading an option: an https://, http://,
// ssh:// or git:// URL with a host, or scp-like [user@]host:path. With
// allowLocal, meant for URLs from the trusted config, file:// URLs and
// absolute paths are accepted too. It returns an EUNPROCESSABLE error that
// says what is wrong.
func ValidateRepositoryURL(u string, allowLocal bool) error {
	bad := func(format string, args ...any) error {
		return Errorf(EUNPROCESSABLE, "invalid repository URL: "+format, args...)
	}
	switch {
	case u == "":
		return bad("empty")
	case len(u) > maxURLLen:
		return bad("longer than %d bytes", maxURLLen)
	case !utf8.ValidString(u):
		return bad("not valid UTF-8")
	case strings.IndexFunc(u, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return bad("contains whitespace or control characters")
	case u[0] == '-':
		return bad("must not start with '-'")
	case helperRE.MatchString(u):
		return bad("the <transport>::<address> form is not allowed")
	}

	if scheme, _, ok := strings.Cut(u, "://"); ok {
		scheme = strings.ToLower(scheme)
		p, err := url.Parse(u)
		if err != nil {
			return bad("%v", urlErrorText(err))
		}
		switch scheme {
		case "https", "http", "ssh", "git":
		case "file":
			if !allowLocal {
				return bad("file:// URLs are only allowed in the configuration")
			}
			if p.Host != "" && p.Host != "localhost" {
				return bad("a file:// URL must not name a host")
			}
			if !strings.HasPrefix(p.Path, "/") {
				return bad("a file:// URL needs an absolute path")
			}
			return nil
		default:
			return bad("scheme %q is not allowed (use https, http, ssh or git)", scheme)
		}
		host := p.Hostname()
		if host == "" {
			return bad("no host")
		}
		if !hostRE.MatchString(host) && net.ParseIP(host) == nil {
			return bad("host %q is not a valid host name", host)
		}
		if p.User != nil && scheme != "http" && scheme != "https" && !userRE.MatchString(p.User.Username()) {
			return bad("user %q is not a valid user name", p.User.Username())
		}
		if strings.HasPrefix(p.Path, "/-") {
			return bad("path must not start with '-'")
		}
		return nil
	}

	if strings.HasPrefix(u, "/") {
		if !allowLocal {
			return bad("local paths are only allowed in the configuration")
		}
		return nil
	}

	// Git reads "host:path" as scp-like ssh when the colon comes before
	// any slash; anything else is a relative local path.
	colon := strings.IndexByte(u, ':')
	if colon < 0 || (strings.IndexByte(u, '/') >= 0 && strings.IndexByte(u, '/') < colon) {
		return bad("use an https://, http://, ssh:// or git:// URL, or user@host:path")
	}
	userHost, path := u[:colon], u[colon+1:]
	host := userHost
	if at := strings.LastIndexByte(userHost, '@'); at >= 0 {
		user := userHost[:at]
		host = userHost[at+1:]
		if !userRE.MatchString(user) {
			return bad("user %q is not a valid user name", user)
		}
	}
	if !hostRE.MatchString(host) {
		return bad("host %q is not a valid host name", host)
	}
	if path == "" {
		return bad("no path after the colon")
	}
	if path[0] == '-' {
		return bad("path must not start with '-'")
	}
	return nil
}

// urlErrorText drops the URL that url.Parse repeats in its errors, which
// could carry a password.
func urlErrorText(err error) string {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err.Error()
	}
	return "malformed"
}
