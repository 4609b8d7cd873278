package main

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

// stdin is where passwd reads the password; tests replace it.
var stdin io.Reader = os.Stdin

// userName is what a login name may be: safe in the config list, in a
// cookie and in logs.
var userName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func newPasswdCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "passwd NAME",
		Short: "Print a dashboard login entry for the config",
		Long: `Read a password and print NAME:<bcrypt hash>, an entry for the
[_] users setting. From a terminal the password is asked for twice
without echo; otherwise it is the first line of standard input.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if !userName.MatchString(name) {
				return usageError{fmt.Errorf("user name %q: use 1 to 64 letters, digits, '.', '_' or '-'", name)}
			}
			password, err := readPassword(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			hash, err := bcrypt.GenerateFromPassword(password, bcrypt.DefaultCost)
			if errors.Is(err, bcrypt.ErrPasswordTooLong) {
				return errors.New("password too long: bcrypt uses at most 72 bytes")
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s:%s\n", name, hash)
			fmt.Fprintln(cmd.ErrOrStderr(), "Add it to [_] users = … in your config, after a comma if there are other users.")
			return nil
		},
	}
	cmd.SetIn(stdin)
	return cmd
}

// readPassword asks twice on a terminal, without echo, and otherwise
// reads one line, so scripts can pipe a password in.
func readPassword(in io.Reader, prompt io.Writer) ([]byte, error) {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fd := int(f.Fd())
		fmt.Fprint(prompt, "Password: ")
		first, err := term.ReadPassword(fd)
		fmt.Fprintln(prompt)
		if err != nil {
			return nil, fmt.Errorf("read password: %w", err)
		}
		if len(first) == 0 {
			return nil, errors.New("empty password")
		}
		fmt.Fprint(prompt, "Again: ")
		second, err := term.ReadPassword(fd)
		fmt.Fprintln(prompt)
		if err != nil {
			return nil, fmt.Errorf("read password: %w", err)
		}
		if string(first) != string(second) {
			return nil, errors.New("the passwords differ")
		}
		return first, nil
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read password: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return nil, errors.New("empty password")
	}
	return []byte(line), nil
}

// loadSessionKey returns the key that signs dashboard logins, kept in the
// build root so that logins survive a restart. It is made on first use.
func loadSessionKey(root string) ([]byte, error) {
	path := filepath.Join(root, "session.key")
	key, err := os.ReadFile(path)
	switch {
	case err == nil && len(key) >= 32:
		return key, nil
	case err == nil:
		return nil, fmt.Errorf("session key %s is too short; delete it to make a new one (everyone must sign in again)", path)
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("session key: %w", err)
	}
	key = make([]byte, 32)
	rand.Read(key)
	// Written aside and renamed, so a crash never leaves a short key.
	tmp := path + ".tmp"
	os.Remove(tmp) // a crash's leftover; O_EXCL then guarantees mode 0600
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	_, werr := f.Write(key)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("session key: %w", werr)
	}
	return key, nil
}
