package mixmaster

import (
	"net/url"
	"strings"
)

// RedactURL hides the credentials a clone URL may carry, for every place
// a URL is shown: the JSON API, the dashboard, logs, mail, error messages
// and a build's environment. An http(s) URL's user info is often a token
// (https://TOKEN@host/…), so it is hidden whole unless it is a bare user
// name next to no password on another scheme (ssh://git@host/…), which is
// not a secret. Text that is not a URL with user info comes back as it is.
func RedactURL(s string) string {
	scheme, _, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	p, err := url.Parse(s)
	if err != nil {
		// A URL that does not parse may still hold "user:pass@"; cut
		// whatever stands between the scheme and the last '@' of the
		// authority.
		rest := s[len(scheme)+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
			return scheme + "://" + redacted + "@" + rest[at+1:]
		}
		return s
	}
	if p.User == nil {
		return s
	}
	_, hasPassword := p.User.Password()
	switch strings.ToLower(p.Scheme) {
	case "http", "https":
	default:
		if !hasPassword {
			return s
		}
	}
	p.User = url.User(redacted)
	return p.String()
}

// redacted stands in for hidden credentials.
const redacted = "xxxxx"
