package mixmaster

import (
	"net/url"
	"strings"
)

// ValidCommit reports whether s is a full commit SHA: 40 hex digits (SHA-1)
// or 64 (SHA-256).
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

// ValidRef reports whether s is a plain ref name that git accepts
// (git check-ref-format, one-level names allowed) and that can never be read
// as an option: it does not start with "-".
func ValidRef(s string) bool {
	if s == "" || len(s) > 255 || s == "@" || s[0] == '-' || s[0] == '/' {
		return false
	}
	if strings.HasSuffix(s, "/") || strings.HasSuffix(s, ".") || strings.HasSuffix(s, ".lock") {
		return false
	}
	if strings.Contains(s, "..") || strings.Contains(s, "@{") || strings.Contains(s, "//") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || strings.IndexByte(" ~^:?*[\\", c) >= 0 {
			return false
		}
	}
	for _, part := range strings.Split(s, "/") {
		if strings.HasPrefix(part, ".") || strings.HasSuffix(part, ".lock") {
			return false
		}
	}
	return true
}

// ValidateRepositoryURL checks a clone URL. URLs from a request may only use
// the schemes a forge hands out (https, http, ssh, git, or scp-like
// user@host:path); allowLocal additionally admits file:// URLs and absolute
// paths, which only the trusted config may name. Transport helpers such as
// "ext::" and anything git could read as an option are always refused.
func ValidateRepositoryURL(u string, allowLocal bool) error {
	bad := func(why string) error {
		return Errorf(EUNPROCESSABLE, "repository URL %q is not allowed: %s", clip(u, 200), why)
	}
	if u == "" {
		return Errorf(EUNPROCESSABLE, "repository URL is empty")
	}
	if len(u) > 2048 {
		return bad("too long")
	}
	if u[0] == '-' {
		return bad("it starts with '-'")
	}
	for i := 0; i < len(u); i++ {
		if c := u[i]; c <= 0x20 || c == 0x7f {
			return bad("it contains white space or control characters")
		}
	}
	if strings.Contains(u, "::") {
		return bad("transport helpers are not allowed")
	}
	if strings.HasPrefix(u, "/") {
		if allowLocal {
			return nil
		}
		return bad("local paths are only allowed in the config")
	}
	if scheme, rest, ok := strings.Cut(u, "://"); ok {
		switch strings.ToLower(scheme) {
		case "https", "http", "ssh", "git", "git+ssh", "ssh+git":
		case "file":
			if allowLocal {
				return nil
			}
			return bad("file URLs are only allowed in the config")
		default:
			return bad("unsupported scheme " + scheme)
		}
		parsed, err := url.Parse(u)
		if err != nil || parsed.Host == "" || strings.HasPrefix(rest, "-") {
			return bad("it has no valid host")
		}
		return nil
	}
	// scp-like syntax: [user@]host:path, where no slash comes before the
	// colon (git's own rule for telling it from a local path).
	host, path, ok := strings.Cut(u, ":")
	if !ok || host == "" || path == "" || strings.Contains(host, "/") {
		return bad("expected https://, ssh://, git:// or user@host:path")
	}
	if at := strings.LastIndexByte(host, '@'); at >= 0 {
		host = host[at+1:]
	}
	if host == "" || host[0] == '-' {
		return bad("it has no valid host")
	}
	return nil
}

// clip shortens s for use in a message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
