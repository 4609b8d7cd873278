package scm

import (
	"net/url"
	"strings"
)

// redactURL hides the password of a URL, for logs and messages.
func redactURL(s string) string {
	if p, ok := passwordURL(s); ok {
		return p.Redacted()
	}
	return s
}

// stripPassword removes the password from a URL so it does not sit in a
// file every build can read.
func stripPassword(s string) string {
	if p, ok := passwordURL(s); ok {
		p.User = url.User(p.User.Username())
		return p.String()
	}
	return s
}

// passwordURL parses s when it is a URL that holds a password.
func passwordURL(s string) (*url.URL, bool) {
	if !strings.Contains(s, "://") {
		return nil, false
	}
	p, err := url.Parse(s)
	if err != nil || p.User == nil {
		return nil, false
	}
	_, ok := p.User.Password()
	return p, ok
}
