package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/bcrypt"

	"mixmaster"
)

func TestAuthLoginConcurrency(t *testing.T) {
	a := &Auth{Users: map[string]string{"alice": hash(t, "pw")}, LoginConcurrency: 1, slotWait: 20 * time.Millisecond}
	release, err := a.checkSlot()
	if err != nil {
		t.Fatal(err)
	}
	// Every check is busy: a login is told to come back, whoever it names.
	for _, name := range []string{"alice", "bob"} {
		if _, err := a.Login(name, "pw"); mixmaster.ErrorCode(err) != mixmaster.EUNAVAILABLE {
			t.Errorf("%s while busy: %v", name, err)
		}
	}
	release()
	if _, err := a.Login("alice", "pw"); err != nil {
		t.Errorf("after the check is free: %v", err)
	}
	// A failed login frees its check too.
	if _, err := a.Login("alice", "nope"); mixmaster.ErrorCode(err) != mixmaster.EUNAUTHORIZED {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := a.Login("alice", "pw"); err != nil {
		t.Errorf("after a failure: %v", err)
	}

	def := &Auth{}
	release, err = def.checkSlot()
	if err != nil {
		t.Fatal(err)
	}
	release()
	if got, want := cap(def.slots), max(1, runtime.GOMAXPROCS(0)/2); got != want {
		t.Errorf("default concurrency %d, want %d", got, want)
	}
}

func TestAuthLoginUnknownNameCost(t *testing.T) {
	dear, err := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost+2)
	if err != nil {
		t.Fatal(err)
	}
	a := &Auth{Users: map[string]string{"cheap": hash(t, "pw"), "dear": string(dear), "broken": "$2a$99$nonsense"}}
	// An unknown name is checked against the dearest hash: it costs what
	// the dearest real check does.
	if got := a.dummyHash(); !bytes.Equal(got, dear) {
		t.Errorf("dummy hash %q, want the dearest %q", got, dear)
	}
	if _, err := a.Login("nobody", "x"); mixmaster.ErrorCode(err) != mixmaster.EUNAUTHORIZED {
		t.Errorf("unknown name, a user's password: %v", err)
	}
	// No valid hash: every check fails at once, and so does the unknown name's.
	none := &Auth{Users: map[string]string{"broken": "nonsense"}}
	if _, err := none.Login("nobody", "x"); mixmaster.ErrorCode(err) != mixmaster.EUNAUTHORIZED {
		t.Errorf("no valid hash: %v", err)
	}
}

func TestAuthIsHTTPS(t *testing.T) {
	newServer := func(a *Auth, tls bool) *httptest.Server {
		e := echo.New()
		e.GET("/login", func(c echo.Context) error {
			c.SetCookie(a.SessionCookie("v", a.IsHTTPS(c.Request())))
			return c.NoContent(http.StatusNoContent)
		})
		var srv *httptest.Server
		if tls {
			srv = httptest.NewTLSServer(e)
		} else {
			srv = httptest.NewServer(e)
		}
		t.Cleanup(srv.Close)
		return srv
	}
	secure := func(srv *httptest.Server, headers ...string) bool {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/login", nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Add(headers[i], headers[i+1])
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, ck := range resp.Cookies() {
			if ck.Name == mixmaster.SessionCookie {
				return ck.Secure
			}
		}
		t.Fatalf("no session cookie in %v", resp.Header)
		return false
	}

	if !secure(newServer(&Auth{}, true)) {
		t.Error("TLS: cookie not Secure")
	}
	plain := newServer(&Auth{}, false)
	if secure(plain) || secure(plain, "X-Forwarded-Proto", "https") {
		t.Error("plain HTTP, no trusted proxy: cookie Secure")
	}
	// The test client connects from loopback: that is the proxy.
	proxied := newServer(&Auth{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}, false)
	if !secure(proxied, "X-Forwarded-Proto", "https") || !secure(proxied, "X-Forwarded-Proto", "HTTPS, http") {
		t.Error("trusted proxy over HTTPS: cookie not Secure")
	}
	if secure(proxied) || secure(proxied, "X-Forwarded-Proto", "http") {
		t.Error("trusted proxy over HTTP: cookie Secure")
	}
	other := newServer(&Auth{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}, false)
	if secure(other, "X-Forwarded-Proto", "https") {
		t.Error("untrusted peer's X-Forwarded-Proto believed")
	}
}
