package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// runPasswd runs `mixmaster passwd args…` with input on stdin.
func runPasswd(t *testing.T, input string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	old := stdin
	stdin = strings.NewReader(input)
	t.Cleanup(func() { stdin = old })
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"mixmaster", "passwd"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestPasswd(t *testing.T) {
	for _, input := range []string{"s3cret pass\n", "s3cret pass", "s3cret pass\r\nignored\n"} {
		code, out, errs := runPasswd(t, input, "alice.b-c_1")
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", input, code, errs)
		}
		line := strings.TrimSuffix(out, "\n")
		name, hash, ok := strings.Cut(line, ":")
		if !ok || name != "alice.b-c_1" || strings.Contains(line, "\n") {
			t.Fatalf("%q: output %q", input, out)
		}
		if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("s3cret pass")); err != nil {
			t.Errorf("%q: hash does not verify: %v", input, err)
		}
		if cost, _ := bcrypt.Cost([]byte(hash)); cost != bcrypt.DefaultCost {
			t.Errorf("cost %d", cost)
		}
		if !strings.Contains(errs, "[_] users") {
			t.Errorf("no hint on stderr: %q", errs)
		}
		// The config reads what passwd prints.
		var c Config
		if err := parseUsers(&c, line); err != nil || c.Users["alice.b-c_1"] != hash {
			t.Errorf("config does not take %q: %v", line, err)
		}
	}
}

func TestPasswdRefuses(t *testing.T) {
	tests := []struct {
		name  string
		input string
		args  []string
		code  int
		msg   string
	}{
		{"empty password", "\n", []string{"alice"}, 1, "empty password"},
		{"no input", "", []string{"alice"}, 1, "empty password"},
		{"too long", strings.Repeat("x", 73) + "\n", []string{"alice"}, 1, "72 bytes"},
		{"bad name", "pw\n", []string{"al ice"}, 2, "user name"},
		{"colon in name", "pw\n", []string{"a:b"}, 2, "user name"},
		{"name too long", "pw\n", []string{strings.Repeat("a", 65)}, 2, "user name"},
		{"no name", "pw\n", nil, 2, "arg"},
		{"two names", "pw\n", []string{"a", "b"}, 2, "arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runPasswd(t, tt.input, tt.args...)
			if code != tt.code || out != "" || !strings.Contains(errs, tt.msg) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, errs, tt.code, tt.msg)
			}
		})
	}
}

func TestSessionKey(t *testing.T) {
	root := t.TempDir()
	key, err := loadSessionKey(root)
	if err != nil || len(key) != 32 {
		t.Fatalf("key %x, %v", key, err)
	}
	fi, err := os.Stat(filepath.Join(root, "session.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	again, err := loadSessionKey(root)
	if err != nil || !bytes.Equal(again, key) {
		t.Errorf("second load: %x, %v; want the same key", again, err)
	}
	if other, _ := loadSessionKey(t.TempDir()); bytes.Equal(other, key) {
		t.Error("two build roots share a key")
	}
	os.WriteFile(filepath.Join(root, "session.key"), []byte("short"), 0o600)
	if _, err := loadSessionKey(root); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("short key: %v", err)
	}
	if _, err := loadSessionKey(filepath.Join(root, "missing", "dir")); err == nil {
		t.Error("no error for an unwritable root")
	}
}

func TestAuthLoopbackAddr(t *testing.T) {
	for in, want := range map[string]string{
		":8585":        "127.0.0.1:8585",
		"0.0.0.0:9000": "127.0.0.1:9000",
		"[::]:80":      "127.0.0.1:80",
		"nonsense":     "127.0.0.1:8585",
	} {
		if got := loopbackAddr(in); got != want {
			t.Errorf("loopbackAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAuthServe checks the wiring in a real service: tokens guard the
// job actions, reading stays public by default, and logins survive a
// restart because the key is kept in the build root.
func TestAuthServe(t *testing.T) {
	s := startServer(t, "[_]\nbuildRoot = @ROOT@\ntokens = tok1\nusers = alice:"+mustHash(t, "pw")+"\n")
	if s.Auth == nil || !s.Auth.Enabled() {
		t.Fatal("Main.Auth not set")
	}
	do := func(method, path string, header ...string) int {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := do("GET", "/api/v1/jobs"); code != http.StatusOK {
		t.Errorf("public read: %d", code)
	}
	for _, path := range []string{"/api/v1/jobs/1/cancel", "/api/v1/jobs/1/rerun"} {
		// Loopback is nobody special once tokens are configured.
		if code := do("POST", path); code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d", path, code)
		}
		if code := do("POST", path, "Authorization", "Bearer tok1"); code != http.StatusNotFound {
			t.Errorf("%s with a token: %d, want 404 for the missing job", path, code)
		}
		if code := do("POST", path, "Authorization", "Bearer nope"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d", path, code)
		}
	}
	session, err := s.Auth.Login("alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	cookie := s.Auth.SessionCookie(session, false).String()
	if code := do("POST", "/api/v1/jobs/1/cancel", "Cookie", cookie); code != http.StatusNotFound {
		t.Errorf("cancel with a session: %d", code)
	}
	key, err := loadSessionKey(s.Config.BuildRoot)
	if err != nil || !bytes.Equal(key, s.Auth.Key) {
		t.Errorf("the service does not use the stored key: %v", err)
	}
}

func mustHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}
