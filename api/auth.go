package api

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/bcrypt"

	"mixmaster"
)

// DefaultSessionTTL is how long a dashboard login lasts when
// Auth.SessionTTL is zero.
const DefaultSessionTTL = 7 * 24 * time.Hour

// Ways a request can be trusted, as mixmaster.User.Via says.
const (
	ViaToken    = "token"
	ViaSession  = "session"
	ViaNetwork  = "network"
	ViaLoopback = "loopback"
)

// Auth decides who sent a request and what they may do: API tokens, dashboard
// logins, trusted networks, and, when none of tokens or users is configured,
// the local machine. Its fields are set before first use and not changed
// afterwards.
type Auth struct {
	// Tokens are accepted as "Authorization: Bearer <token>".
	Tokens []string
	// Users maps a login name to its bcrypt hash.
	Users map[string]string
	// PublicDashboard lets anyone read; writing still needs a user.
	PublicDashboard bool
	// TrustedNetworks are client addresses treated as signed in, for
	// clients that cannot send a token (the unchanged mistry client).
	TrustedNetworks []netip.Prefix
	// Key signs session cookies. When nil a random key is made, so that
	// sessions end with the process; the command keeps a stable one in the
	// build root.
	Key []byte
	// SessionTTL is how long a login lasts; zero means DefaultSessionTTL.
	SessionTTL time.Duration
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time

	keyOnce sync.Once
	key     []byte

	dummyOnce sync.Once
	dummy     []byte
}

var _ mixmaster.Authenticator = (*Auth)(nil)

// Enabled reports whether any token or user is configured.
func (a *Auth) Enabled() bool {
	return len(a.Tokens) > 0 || len(a.Users) > 0
}

// Login checks name and password against Users and returns the value of a
// new session cookie: name|expiry|mac, where mac is an HMAC of the rest and
// of the user's current hash, so that changing the password ends the
// user's sessions.
func (a *Auth) Login(name, password string) (string, error) {
	hash, ok := a.Users[name]
	if !ok {
		// Spend as long as a real check would, so that the answer's timing
		// does not tell which names exist.
		_ = bcrypt.CompareHashAndPassword(a.dummyHash(), []byte(password))
		return "", wrongLogin()
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		return "", wrongLogin()
	}
	expiry := a.now().Add(a.ttl()).Unix()
	payload := url.PathEscape(name) + "|" + strconv.FormatInt(expiry, 10)
	return payload + "|" + a.sign(payload, hash), nil
}

func wrongLogin() error {
	return mixmaster.Errorf(mixmaster.EUNAUTHORIZED, "Wrong name or password.")
}

// dummyHash is a hash no password matches, as costly to check as the
// dearest configured one.
func (a *Auth) dummyHash() []byte {
	a.dummyOnce.Do(func() {
		cost := bcrypt.DefaultCost
		first := true
		for _, h := range a.Users {
			if c, err := bcrypt.Cost([]byte(h)); err == nil && (first || c > cost) {
				cost, first = c, false
			}
		}
		secret := make([]byte, 32)
		rand.Read(secret)
		a.dummy, _ = bcrypt.GenerateFromPassword([]byte(hex.EncodeToString(secret)), cost)
	})
	return a.dummy
}

// sign returns the hex HMAC of payload and the user's hash.
func (a *Auth) sign(payload, hash string) string {
	m := hmac.New(sha256.New, a.signingKey())
	m.Write([]byte(payload))
	m.Write([]byte{0})
	m.Write([]byte(hash))
	return hex.EncodeToString(m.Sum(nil))
}

func (a *Auth) signingKey() []byte {
	a.keyOnce.Do(func() {
		a.key = a.Key
		if len(a.key) == 0 {
			a.key = make([]byte, 32)
			rand.Read(a.key)
		}
	})
	return a.key
}

// session returns the user a session cookie value stands for: it must be
// signed with the key, unexpired, and its user must still exist with the
// same password.
func (a *Auth) session(value string) (string, bool) {
	rest, mac, ok := cutLast(value, "|")
	if !ok {
		return "", false
	}
	escaped, exp, ok := cutLast(rest, "|")
	if !ok {
		return "", false
	}
	name, err := url.PathUnescape(escaped)
	if err != nil {
		return "", false
	}
	hash, ok := a.Users[name]
	if !ok {
		return "", false
	}
	if !hmac.Equal([]byte(mac), []byte(a.sign(rest, hash))) {
		return "", false
	}
	expiry, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || !a.now().Before(time.Unix(expiry, 0)) {
		return "", false
	}
	return name, true
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

func (a *Auth) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Auth) ttl() time.Duration {
	if a.SessionTTL > 0 {
		return a.SessionTTL
	}
	return DefaultSessionTTL
}

// SessionCookie returns the cookie that carries a login. secure marks it
// for HTTPS only; pass whether the login request came over TLS.
func (a *Auth) SessionCookie(value string, secure bool) *http.Cookie {
	return &http.Cookie{
		Name:     mixmaster.SessionCookie,
		Value:    value,
		Path:     "/",
		MaxAge:   int(a.ttl() / time.Second),
		HttpOnly: true,
		Secure:   secure,
		// Strict: no cross-site request ever carries the login, which
		// keeps forms on other sites from acting as the user.
		SameSite: http.SameSiteStrictMode,
	}
}

// ClearCookie returns a cookie that removes the login from the browser.
func (a *Auth) ClearCookie() *http.Cookie {
	c := a.SessionCookie("", false)
	c.MaxAge = -1
	return c
}

// Identify returns middleware that works out who sent each request and
// stores it with mixmaster.WithUser: a bearer token, then a session
// cookie, then a trusted network, then, only while no token or user is
// configured, the loopback address. A bearer token that matches none is
// refused at once, so a misconfigured client learns of it rather than
// being treated as anonymous.
func (a *Auth) Identify() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			u, ok, err := a.identify(c)
			if err != nil {
				return err
			}
			if ok {
				r := c.Request()
				c.SetRequest(r.WithContext(mixmaster.WithUser(r.Context(), u)))
			}
			return next(c)
		}
	}
}

func (a *Auth) identify(c echo.Context) (mixmaster.User, bool, error) {
	r := c.Request()
	if token, ok := bearer(r); ok {
		name, ok := a.token(token)
		if !ok {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer error="invalid_token"`)
			return mixmaster.User{}, false, mixmaster.Errorf(mixmaster.EUNAUTHORIZED, "Invalid token.")
		}
		return mixmaster.User{Name: name, Via: ViaToken}, true, nil
	}
	if ck, err := r.Cookie(mixmaster.SessionCookie); err == nil {
		if name, ok := a.session(ck.Value); ok {
			return mixmaster.User{Name: name, Via: ViaSession}, true, nil
		}
	}
	ip := clientIP(c)
	if !ip.IsValid() {
		return mixmaster.User{}, false, nil
	}
	for _, p := range a.TrustedNetworks {
		if p.Contains(ip) {
			return mixmaster.User{Via: ViaNetwork}, true, nil
		}
	}
	if !a.Enabled() && ip.IsLoopback() {
		return mixmaster.User{Via: ViaLoopback}, true, nil
	}
	return mixmaster.User{}, false, nil
}

// bearer returns the token of an "Authorization: Bearer" header. Other
// schemes are not ours and are ignored.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get(echo.HeaderAuthorization)
	scheme, token, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// token returns the name of the configured token that matches t: "token"
// when there is one, "token#N" (from 1) when there are several. Every
// token is compared, in constant time, so timing reveals nothing.
func (a *Auth) token(t string) (string, bool) {
	match := -1
	for i, want := range a.Tokens {
		if subtle.ConstantTimeCompare([]byte(t), []byte(want)) == 1 && match < 0 {
			match = i
		}
	}
	switch {
	case match < 0 || t == "":
		return "", false
	case len(a.Tokens) == 1:
		return "token", true
	default:
		return "token#" + strconv.Itoa(match+1), true
	}
}

// clientIP is the client's address as the server's IPExtractor sees it;
// without one only the socket peer counts, because echo's fallback would
// believe X-Forwarded-For from anyone.
func clientIP(c echo.Context) netip.Addr {
	var s string
	if c.Echo().IPExtractor != nil {
		s = c.RealIP()
	} else {
		s = echo.ExtractIPDirect()(c.Request())
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap().WithZone("")
}

// RequireRead returns middleware that lets a request through when the
// dashboard is public or the sender is identified.
func (a *Auth) RequireRead() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if a.PublicDashboard {
				return next(c)
			}
			if _, ok := mixmaster.UserFrom(c.Request().Context()); ok {
				return next(c)
			}
			return signIn(c)
		}
	}
}

// RequireWrite returns middleware that lets a request through only when
// the sender is identified, and refuses cross-origin browser requests:
// a page elsewhere must not act through a visitor's login, trusted
// network or loopback address.
func (a *Auth) RequireWrite() echo.MiddlewareFunc {
	cop := http.NewCrossOriginProtection()
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if _, ok := mixmaster.UserFrom(c.Request().Context()); !ok {
				return signIn(c)
			}
			if err := cop.Check(c.Request()); err != nil {
				return mixmaster.Errorf(mixmaster.EFORBIDDEN, "Cross-origin request refused.")
			}
			return next(c)
		}
	}
}

// signIn answers an anonymous request: browsers go to the login page and
// come back afterwards, other clients get 401.
func signIn(c echo.Context) error {
	r := c.Request()
	if strings.Contains(r.Header.Get(echo.HeaderAccept), echo.MIMETextHTML) {
		return c.Redirect(http.StatusSeeOther, LoginURL(r.URL.RequestURI()))
	}
	c.Response().Header().Set(echo.HeaderWWWAuthenticate, "Bearer")
	return mixmaster.Errorf(mixmaster.EUNAUTHORIZED, "Sign in or send a token.")
}

// LoginURL is the login page, returning to next afterwards when next is a
// path on this site.
func LoginURL(next string) string {
	if !LocalPath(next) {
		return "/login"
	}
	return "/login?" + url.Values{"next": {next}}.Encode()
}

// LocalPath reports whether p is safe to redirect to after a login: a path
// on this site, not "//host" or "/\host", which browsers read as another
// site.
func LocalPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, `/\`) {
		return false
	}
	return !strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// TrustedProxyExtractor returns an echo.IPExtractor that takes the socket
// peer as the client, unless the peer is one of proxies: then it takes the
// right-most X-Forwarded-For address that is not a proxy. Forwarded
// addresses from anyone else are ignored, since any client can send them.
func TrustedProxyExtractor(proxies []netip.Prefix) echo.IPExtractor {
	trusted := func(ip netip.Addr) bool {
		for _, p := range proxies {
			if p.Contains(ip) {
				return true
			}
		}
		return false
	}
	direct := echo.ExtractIPDirect()
	return func(r *http.Request) string {
		peerStr := direct(r)
		peer, err := netip.ParseAddr(peerStr)
		if err != nil {
			return peerStr
		}
		peer = peer.Unmap().WithZone("")
		if !trusted(peer) {
			return peer.String()
		}
		var hops []string
		for _, v := range r.Header.Values(echo.HeaderXForwardedFor) {
			hops = append(hops, strings.Split(v, ",")...)
		}
		client := peer
		for i := len(hops) - 1; i >= 0; i-- {
			s := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(hops[i]), "["), "]")
			ip, err := netip.ParseAddr(s)
			if err != nil {
				// A garbled hop: nothing left of it can be believed.
				break
			}
			client = ip.Unmap().WithZone("")
			if !trusted(client) {
				break
			}
		}
		return client.String()
	}
}
