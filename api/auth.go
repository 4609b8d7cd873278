package api

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
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
	// Hosts are the names the service answers to ("build.example.com",
	// "host:port" too; the port is ignored), besides localhost and IP
	// literals, which it always answers to. A loopback client naming any
	// other host gets no trust from its address: that is a page on a name
	// its owner pointed at 127.0.0.1 (DNS rebinding).
	Hosts []string
	// TrustedProxies are the reverse proxies whose X-Forwarded-Proto is
	// believed, so that a login through an HTTPS proxy gets a Secure
	// cookie. They are the proxies given to TrustedProxyExtractor.
	TrustedProxies []netip.Prefix
	// LoginConcurrency caps the password checks running at once, so that
	// guessing cannot take every CPU; zero means half the CPUs, at least
	// one.
	LoginConcurrency int
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

	slotsOnce sync.Once
	slots     chan struct{}
	// slotWait is how long a login waits for a free check; zero means
	// DefaultLoginWait. Tests shorten it.
	slotWait time.Duration
}

// DefaultLoginWait is how long a login waits for a password check to
// free up before it is told to come back.
const DefaultLoginWait = 2 * time.Second

var _ mixmaster.Authenticator = (*Auth)(nil)

// Enabled reports whether any token or user is configured.
func (a *Auth) Enabled() bool {
	return len(a.Tokens) > 0 || len(a.Users) > 0
}

// Login checks name and password against Users and returns the value of a
// new session cookie: name|expiry|mac, where mac is an HMAC of the rest and
// of the user's current hash, so that changing the password ends the
// user's sessions.
//
// At most LoginConcurrency checks run at once; a login that finds none
// free within DefaultLoginWait gets EUNAVAILABLE.
func (a *Auth) Login(name, password string) (string, error) {
	release, err := a.checkSlot()
	if err != nil {
		return "", err
	}
	defer release()
	hash, ok := a.Users[name]
	if !ok {
		// Spend as long as a real check would, so that the answer's timing
		// does not tell which names exist.
		if d := a.dummyHash(); d != nil {
			_ = bcrypt.CompareHashAndPassword(d, []byte(password))
		}
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

// dummyHash is what a login of an unknown name is checked against: the
// dearest configured hash, so that the check costs what a real one would.
// The outcome is ignored, so it does not matter that a password matches
// it. Nil when no hash is valid: then every real check fails at once too.
func (a *Auth) dummyHash() []byte {
	a.dummyOnce.Do(func() {
		dearest := -1
		for _, h := range a.Users {
			if c, err := bcrypt.Cost([]byte(h)); err == nil && c > dearest {
				dearest, a.dummy = c, []byte(h)
			}
		}
	})
	return a.dummy
}

// checkSlot waits, briefly, for one of the LoginConcurrency password
// checks and returns the function that frees it again.
func (a *Auth) checkSlot() (release func(), err error) {
	a.slotsOnce.Do(func() {
		n := a.LoginConcurrency
		if n <= 0 {
			n = max(1, runtime.GOMAXPROCS(0)/2)
		}
		a.slots = make(chan struct{}, n)
	})
	wait := a.slotWait
	if wait <= 0 {
		wait = DefaultLoginWait
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case a.slots <- struct{}{}:
		return func() { <-a.slots }, nil
	case <-t.C:
		return nil, mixmaster.Errorf(mixmaster.EUNAVAILABLE, "Too many sign-ins at once; try again in a moment.")
	}
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

// IsHTTPS reports whether r came over HTTPS: over TLS to this service, or
// to a reverse proxy in TrustedProxies that says so in X-Forwarded-Proto.
// Anyone else's X-Forwarded-Proto is ignored.
func (a *Auth) IsHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	peer, err := netip.ParseAddr(echo.ExtractIPDirect()(r))
	if err != nil || !inAny(a.TrustedProxies, peer.Unmap().WithZone("")) {
		return false
	}
	for _, v := range r.Header.Values(echo.HeaderXForwardedProto) {
		for p := range strings.SplitSeq(v, ",") {
			// Any https makes the cookie Secure: wrongly so only costs the
			// login over plain HTTP, never exposes it.
			if strings.EqualFold(strings.TrimSpace(p), "https") {
				return true
			}
		}
	}
	return false
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
// configured, the loopback address. A loopback client gets no trust from
// its address unless it names one of this service's hosts (see Hosts). A
// bearer token that matches none is refused at once, so a misconfigured
// client learns of it rather than being treated as anonymous.
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
	via, ok := a.addressTrust(ip)
	if !ok || a.rebound(r, ip) {
		return mixmaster.User{}, false, nil
	}
	return mixmaster.User{Via: via}, true, nil
}

// addressTrust is the trust ip earns by itself: a trusted network, or
// loopback while no token or user is configured.
func (a *Auth) addressTrust(ip netip.Addr) (via string, ok bool) {
	switch {
	case !ip.IsValid():
		return "", false
	case inAny(a.TrustedNetworks, ip):
		return ViaNetwork, true
	case !a.Enabled() && ip.IsLoopback():
		return ViaLoopback, true
	}
	return "", false
}

// rebound reports whether a loopback client named a host that is not this
// service's. A browser page on any name resolving to 127.0.0.1 is
// same-origin to itself, so origin checks cannot tell it from a page of
// ours; only its Host header gives it away.
func (a *Auth) rebound(r *http.Request, ip netip.Addr) bool {
	return ip.IsLoopback() && !a.ownHost(r.Host)
}

// ownHost reports whether a Host header names this service: localhost,
// any IP literal (a page reached by address is the page of that address,
// which no one can rebind), or one of Hosts, with any port. A request
// without a Host is not a browser's.
func (a *Auth) ownHost(hostport string) bool {
	host := bareHost(hostport)
	if host == "" || host == "localhost" {
		return true
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	for _, h := range a.Hosts {
		if bareHost(h) == host {
			return true
		}
	}
	return false
}

// bareHost is the lower-case host of a host[:port], without brackets or a
// final dot.
func bareHost(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		hostport = h
	}
	hostport = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
	return strings.ToLower(strings.TrimSuffix(hostport, "."))
}

// foreignHost refuses an anonymous request that its address would have
// let in, but for the host it named: telling it so is clearer than a
// request to sign in.
func (a *Auth) foreignHost(c echo.Context) error {
	r := c.Request()
	ip := clientIP(c)
	if _, ok := a.addressTrust(ip); ok && a.rebound(r, ip) {
		return mixmaster.Errorf(mixmaster.EFORBIDDEN, "Host %q is not a name this service answers to.", printable(r.Host))
	}
	return nil
}

// inAny reports whether one of prefixes contains ip.
func inAny(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
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
			if err := a.foreignHost(c); err != nil {
				return err
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
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if _, ok := mixmaster.UserFrom(c.Request().Context()); !ok {
				if err := a.foreignHost(c); err != nil {
					return err
				}
				return signIn(c)
			}
			if err := crossSite(c.Request()); err != nil {
				return err
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
	trusted := func(ip netip.Addr) bool { return inAny(proxies, ip) }
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
