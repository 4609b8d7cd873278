package scm

import (
	"net/url"
	"strings"

	"mixmaster"
)

// stripCredentials removes what mixmaster.RedactURL would hide from a URL,
// so that it does not sit in a file every build can read: the password,
// and the user name too where that may be a token (http and https). A
// plain user name such as ssh's git@ stays.
func stripCredentials(s string) string {
	if !strings.Contains(s, "://") || mixmaster.RedactURL(s) == s {
		return s
	}
	p, err := url.Parse(s)
	if err != nil {
		return mixmaster.RedactURL(s)
	}
	p.User = url.User(p.User.Username())
	if mixmaster.RedactURL(p.String()) != p.String() {
		p.User = nil
	}
	return p.String()
}
