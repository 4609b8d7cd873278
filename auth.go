package mixmaster

import "context"

// SessionCookie names the cookie that carries a dashboard login.
const SessionCookie = "mixmaster_session"

// User is who sent a request, as far as the service could tell.
type User struct {
	Name string // the login or token name; empty for network-trusted clients
	// Via says how the request was trusted: "session", "token",
	// "network" (a trustedNetworks address) or "loopback" (no auth is
	// configured and the client is on this machine).
	Via string
}

type userKey struct{}

// WithUser returns ctx carrying u.
func WithUser(ctx context.Context, u User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFrom returns the user ctx carries, if any.
func UserFrom(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(userKey{}).(User)
	return u, ok
}

// Authenticator checks dashboard logins.
type Authenticator interface {
	// Login checks a name and password against the configured users and
	// returns the value of a new session cookie; EUNAUTHORIZED when they
	// do not match.
	Login(name, password string) (session string, err error)
	// Enabled reports whether any login or token is configured.
	Enabled() bool
}
