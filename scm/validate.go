package scm

import (
	"net/url"
	"strings"
)

// redactURL hides the password of a URL, for logs and messages.
func redactURL(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	p, err := url.Parse(s)
	if err != nil || p.User == nil {
		return s
	}
	if _, ok := p.User.Password(); !ok {
		return s
	}
	return p.Redacted()
}
