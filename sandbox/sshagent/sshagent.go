// Package sshagent serves an in-process ssh-agent for the length of one
// job, on a unix socket in a private directory. There is no ssh-agent
// process that could outlive a crashed service, and no ssh-add: an empty
// key file gives an agent with no keys instead of a failing build.
package sshagent

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"mixmaster"
)

// DirPrefix starts the name of every per-job agent directory, so that
// Sweep can find the ones a crashed process left behind.
const DirPrefix = "mixmaster-agent-"

// SocketName is the name of the socket inside an agent directory.
const SocketName = "agent.sock"

// maxSocketPath is the longest path a unix socket address holds on Linux
// (sun_path is 108 bytes including the terminating NUL).
const maxSocketPath = 107

// Agent starts per-job ssh-agents holding one private key. It is safe for
// concurrent use as long as its fields are not changed.
type Agent struct {
	// KeyFile is the private key to serve, with "~" already expanded. Empty
	// means an agent without keys. The key is read at every Start, so a
	// replaced key takes effect with the next job.
	KeyFile string
	// Dir is where the per-job directories are made. Empty means
	// os.TempDir().
	Dir string
	// Lifetime, when positive, makes the agent forget the key after that
	// long (rounded up to whole seconds), like ssh-add -t.
	Lifetime time.Duration
}

var _ mixmaster.KeyAgent = (*Agent)(nil)

// LoadKey reads an unencrypted private key in OpenSSH, PKCS#1, PKCS#8 or
// SEC 1 PEM form. A key protected by a passphrase gives an error wrapping
// *ssh.PassphraseMissingError: the service has nobody to ask for it.
func LoadKey(path string) (crypto.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ssh key: %w", err)
	}
	key, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		if _, ok := errors.AsType[*ssh.PassphraseMissingError](err); ok {
			return nil, fmt.Errorf("ssh key %s is protected by a passphrase; use a key without one: %w", path, err)
		}
		return nil, fmt.Errorf("ssh key %s: %w", path, err)
	}
	return key, nil
}

// Start serves a new agent for job id. It returns the socket path for
// SSH_AUTH_SOCK and a function that stops the agent: it closes the socket
// and every open connection, waits for them to finish, forgets the key and
// removes the directory. stop may be called more than once. The agent runs
// until stop is called; ctx only cancels the start itself.
func (a *Agent) Start(ctx context.Context, id mixmaster.JobID) (sock string, stop func(), err error) {
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	keyring := agent.NewKeyring()
	if a.KeyFile != "" {
		key, err := LoadKey(a.KeyFile)
		if err != nil {
			return "", nil, err
		}
		added := agent.AddedKey{PrivateKey: key, Comment: a.KeyFile, LifetimeSecs: lifetimeSecs(a.Lifetime)}
		if err := keyring.Add(added); err != nil {
			return "", nil, fmt.Errorf("ssh key %s: %w", a.KeyFile, err)
		}
	}

	parent := a.Dir
	if parent == "" {
		parent = os.TempDir()
	}
	// MkdirTemp makes the directory 0700, which is what keeps other users
	// off the socket; the random suffix keeps a retried job from colliding.
	dir, err := os.MkdirTemp(parent, DirPrefix+id.String()+"-*")
	if err != nil {
		return "", nil, fmt.Errorf("ssh agent: %w", err)
	}
	sock = filepath.Join(dir, SocketName)
	if len(sock) > maxSocketPath {
		os.Remove(dir)
		return "", nil, fmt.Errorf("ssh agent: socket path %s is longer than %d bytes; use a shorter directory", sock, maxSocketPath)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		os.Remove(dir)
		return "", nil, fmt.Errorf("ssh agent: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		l.Close()
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("ssh agent: %w", err)
	}

	s := &server{keyring: keyring, l: l, dir: dir, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.serve()
	return sock, s.stop, nil
}

// lifetimeSecs converts d to the agent protocol's whole seconds, rounding
// up so that a short positive lifetime does not mean "forever".
func lifetimeSecs(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	secs := (d + time.Second - 1) / time.Second
	return uint32(min(secs, math.MaxUint32))
}

// server is one running agent.
type server struct {
	keyring agent.Agent
	l       *net.UnixListener
	dir     string
	wg      sync.WaitGroup // the accept loop and one per connection

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool

	once sync.Once
}

func (s *server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary trouble such as EMFILE: do not spin.
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !s.track(c) {
			c.Close()
			return
		}
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			agent.ServeAgent(s.keyring, c)
		}()
	}
}

// track registers a connection, or reports false once stop has begun.
func (s *server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

func (s *server) stop() {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]net.Conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()

		// Closing the listener also unlinks the socket. Open connections
		// are closed too: a client left running by the job must not keep
		// the agent, and the job's end, waiting.
		s.l.Close()
		for _, c := range conns {
			c.Close()
		}
		s.wg.Wait()
		s.keyring.RemoveAll()
		os.RemoveAll(s.dir)
	})
}

// Sweep removes agent directories that a crashed process left in dir
// (os.TempDir() when empty) and returns their paths. It skips directories
// of other users and those whose socket still accepts connections, so a
// live agent of another instance sharing dir is left alone. Call it at
// start-up.
func Sweep(dir string) (removed []string, err error) {
	if dir == "" {
		dir = os.TempDir()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ssh agent sweep: %w", err)
	}
	var errs []error
	for _, ent := range entries {
		// ReadDir does not follow symlinks, so a link named like an agent
		// directory is not a directory here and is left alone.
		if !strings.HasPrefix(ent.Name(), DirPrefix) || !ent.IsDir() {
			continue
		}
		path := filepath.Join(dir, ent.Name())
		if info, err := ent.Info(); err != nil {
			continue
		} else if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
			continue
		}
		if live(filepath.Join(path, SocketName)) {
			continue
		}
		if err := os.RemoveAll(path); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, path)
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("ssh agent sweep: %w", errors.Join(errs...))
	}
	return removed, nil
}

// live reports whether something accepts connections on the socket.
func live(sock string) bool {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
