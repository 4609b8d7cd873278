package sshagent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"mixmaster/internal/testenv"
	"mixmaster/sandbox/sshagent"
)

// writeEd25519 writes a new OpenSSH-format key and returns its path and
// SHA256 fingerprint.
func writeEd25519(t *testing.T, passphrase string) (path, fingerprint string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "test key")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "test key", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return path, ssh.FingerprintSHA256(sshPub)
}

// sshAddList runs OpenSSH's ssh-add -l against sock.
func sshAddList(t *testing.T, sock string) (string, int) {
	t.Helper()
	bin, err := exec.LookPath("ssh-add")
	testenv.Need(t, "openssh", err == nil, "ssh-add not found")
	cmd := exec.CommandContext(t.Context(), bin, "-l")
	cmd.Env = []string{"SSH_AUTH_SOCK=" + sock, "PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("ssh-add: %v", err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

func start(t *testing.T, a *sshagent.Agent) (string, func()) {
	t.Helper()
	sock, stop, err := a.Start(t.Context(), 42)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return sock, stop
}

func TestServesKey(t *testing.T) {
	t.Parallel()
	key, fp := writeEd25519(t, "")
	dir := t.TempDir()
	sock, stop := start(t, &sshagent.Agent{KeyFile: key, Dir: dir})

	if got := filepath.Base(filepath.Dir(sock)); !strings.HasPrefix(got, sshagent.DirPrefix+"42-") {
		t.Errorf("agent directory %q lacks the job id", got)
	}
	fi, err := os.Stat(filepath.Dir(sock))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("agent directory mode %v, want 0700", perm)
	}

	out, code := sshAddList(t, sock)
	if code != 0 || !strings.Contains(out, fp) {
		t.Fatalf("ssh-add -l exited %d with %q; want the fingerprint %s", code, out, fp)
	}

	stop()
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after stop: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(sock)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory still there after stop: %v", err)
	}
	stop() // a second stop is harmless
}

func TestNoKey(t *testing.T) {
	t.Parallel()
	sock, _ := start(t, &sshagent.Agent{Dir: t.TempDir()})
	out, code := sshAddList(t, sock)
	// 1 means "no identities"; 2 would mean it could not connect.
	if code != 1 || !strings.Contains(out, "no identities") {
		t.Fatalf("ssh-add -l exited %d with %q; want 1 and no identities", code, out)
	}
}

// A PEM (SEC 1) key works as well as an OpenSSH one, and signing through
// the agent produces signatures that verify.
func TestPEMKeySigns(t *testing.T) {
	t.Parallel()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_ecdsa")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	sock, _ := start(t, &sshagent.Agent{KeyFile: path, Dir: t.TempDir()})

	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	signers, err := agent.NewClient(conn).Signers()
	if err != nil || len(signers) != 1 {
		t.Fatalf("got %d signers, %v; want 1", len(signers), err)
	}
	data := []byte("challenge")
	sig, err := signers[0].Sign(rand.Reader, data)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ssh.NewPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := want.Verify(data, sig); err != nil {
		t.Fatalf("signature does not verify with the key's public half: %v", err)
	}
}

func TestBadKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	encrypted, _ := writeEd25519(t, "secret")

	for _, tc := range []struct {
		name, file, want string
	}{
		{"missing", filepath.Join(dir, "nope"), "no such file"},
		{"garbage", garbage, "ssh key"},
		{"passphrase", encrypted, "passphrase"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agentDir := t.TempDir()
			sock, stop, err := (&sshagent.Agent{KeyFile: tc.file, Dir: agentDir}).Start(t.Context(), 1)
			if err == nil {
				stop()
				t.Fatalf("Start gave %s, want an error", sock)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if entries, _ := os.ReadDir(agentDir); len(entries) != 0 {
				t.Errorf("a failed Start left %d entries behind", len(entries))
			}
		})
	}
	if _, err := sshagent.LoadKey(encrypted); !errors.As(err, new(*ssh.PassphraseMissingError)) {
		t.Errorf("LoadKey error %v does not wrap *ssh.PassphraseMissingError", err)
	}
}

func TestLifetime(t *testing.T) {
	t.Parallel()
	key, fp := writeEd25519(t, "")
	sock, _ := start(t, &sshagent.Agent{KeyFile: key, Dir: t.TempDir(), Lifetime: time.Second})
	if out, code := sshAddList(t, sock); code != 0 || !strings.Contains(out, fp) {
		t.Fatalf("ssh-add -l exited %d with %q before the lifetime passed", code, out)
	}
	// The agent drops the key once its lifetime has passed; poll for that
	// rather than guess how long the machine takes.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, code := sshAddList(t, sock)
		if code == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh-add -l exited %d with %q long after the lifetime; want no identities", code, out)
		}
	}
}

// A client that keeps its connection open must not keep stop waiting.
func TestStopWithOpenConnection(t *testing.T) {
	t.Parallel()
	sock, stop := start(t, &sshagent.Agent{Dir: t.TempDir()})
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := agent.NewClient(conn).List(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stop hangs while a client is connected")
	}
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Error("the connection is still open after stop")
	}
}

func TestConcurrentAgents(t *testing.T) {
	t.Parallel()
	key, _ := writeEd25519(t, "")
	a := &sshagent.Agent{KeyFile: key, Dir: t.TempDir()}
	socks := make(map[string]bool)
	for range 5 {
		sock, _ := start(t, a)
		if socks[sock] {
			t.Fatalf("socket %s handed out twice", sock)
		}
		socks[sock] = true
	}
	for sock := range socks {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := agent.NewClient(conn).List()
		conn.Close()
		if err != nil || len(keys) != 1 {
			t.Fatalf("%s: %d keys, %v", sock, len(keys), err)
		}
	}
}

func TestSocketPathTooLong(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, stop, err := (&sshagent.Agent{Dir: dir}).Start(t.Context(), 1); err == nil {
		stop()
		t.Fatal("no error for a socket path over the limit")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a failed Start left %d entries behind", len(entries))
	}
}

func TestCanceledStart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := (&sshagent.Agent{Dir: t.TempDir()}).Start(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestSweep(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Leftovers of a crashed process: a directory with a dead socket
	// file and an empty one.
	stale := filepath.Join(dir, sshagent.DirPrefix+"7-123")
	if err := os.Mkdir(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(stale, sshagent.SocketName), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	empty := filepath.Join(dir, sshagent.DirPrefix+"8-456")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	// Not ours to touch.
	other := filepath.Join(dir, "other")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, sshagent.DirPrefix+"link")
	if err := os.Symlink(other, link); err != nil {
		t.Fatal(err)
	}
	liveSock, _ := start(t, &sshagent.Agent{Dir: dir})

	removed, err := sshagent.Sweep(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 {
		t.Errorf("removed %q, want the two stale directories", removed)
	}
	for _, p := range []string{stale, empty} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived the sweep", p)
		}
	}
	for _, p := range []string{other, link, liveSock} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s was swept: %v", p, err)
		}
	}
}
