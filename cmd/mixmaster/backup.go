package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"mixmaster/store"
)

// backupLockTimeout is how long backup waits for the database lock before
// concluding that the service holds it and asking the service instead.
const backupLockTimeout = 500 * time.Millisecond

// maxBackupErrorBody bounds how much of an error reply is read for its
// message.
const maxBackupErrorBody = 64 << 10

// serviceClient reaches the running service for what only it can read
// while it holds the database.
type serviceClient struct {
	server string
	token  string
}

// newServiceClient is the service at $MIXMASTER_URL (default
// http://127.0.0.1:8585) with $MIXMASTER_TOKEN as its bearer token.
func newServiceClient() serviceClient {
	c := serviceClient{server: os.Getenv("MIXMASTER_URL"), token: os.Getenv("MIXMASTER_TOKEN")}
	if c.server == "" {
		c.server = "http://127.0.0.1:8585"
	}
	return c
}

type backupOptions struct {
	serviceClient
	config string
	force  bool
}

func newBackupCmd() *cobra.Command {
	o := backupOptions{serviceClient: newServiceClient()}
	cmd := &cobra.Command{
		Use:   "backup FILE",
		Short: "Copy the job database to FILE, consistently, even while the service runs",
		Long: `Copy the job database (<buildRoot>/mixmaster.db) to FILE.

When the service is not running, the database is read directly. When the
service holds it, or there is no config to find it by, the copy is asked
from the service at --server (default $MIXMASTER_URL, else
http://127.0.0.1:8585) with GET /api/v1/backup, sending $MIXMASTER_TOKEN as
a bearer token. Either way the copy is one consistent snapshot; FILE
appears complete or not at all, with mode 0600, and its folder is created
when missing.

To restore: stop the service, copy FILE over <buildRoot>/mixmaster.db, and
start it again.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBackup(cmd.Context(), o, args[0], cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "config file, to find the build root (default $MIXMASTER_CONFIG, else ~/.config/mixmaster.ini)")
	f.StringVar(&o.server, "server", o.server, "the running service, asked for the copy when it holds the database")
	f.BoolVar(&o.force, "force", false, "replace FILE if it exists")
	return cmd
}

func runBackup(ctx context.Context, o backupOptions, file string, stdout io.Writer) error {
	// Checked before any work so a mistyped name fails at once; the final
	// link checks again, as the file may appear meanwhile.
	if !o.force {
		if _, err := os.Lstat(file); err == nil {
			return fmt.Errorf("%s exists; use --force to replace it", file)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	fromServer := func(w io.Writer) (int64, error) { return o.backup(ctx, w) }
	source, fill := o.server, fromServer
	path := configPath(o.config)
	cfg, err := LoadConfig(path)
	switch {
	case err == nil:
		dbPath := filepath.Join(cfg.BuildRoot, "mixmaster.db")
		source, fill = dbPath, func(w io.Writer) (int64, error) { return backupFile(dbPath, w) }
	case errors.Is(err, fs.ErrNotExist) && o.config == "" && os.Getenv("MIXMASTER_CONFIG") == "":
		// Nothing says where the database is, but a service may run,
		// such as make run's demo: ask it.
		fill = func(w io.Writer) (int64, error) {
			n, err := fromServer(w)
			if err != nil {
				err = fmt.Errorf("no config at %s, so the service was asked: %w", path, err)
			}
			return n, err
		}
	default:
		return err
	}
	n, err := writeBackup(file, o.force, fill)
	if errors.Is(err, store.ErrLocked) {
		source = o.server
		n, err = writeBackup(file, o.force, fromServer)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up %s to %s (%d bytes)\n", source, file, n)
	return nil
}

// backupFile copies the database at path while no service holds it. It
// returns an error wrapping store.ErrLocked when one does.
func backupFile(path string, w io.Writer) (int64, error) {
	// store.Open would create a missing file: an empty backup of the wrong
	// build root must be an error instead.
	if _, err := os.Stat(path); err != nil {
		return 0, fmt.Errorf("no database: %w", err)
	}
	db, err := store.Open(path, store.Options{Timeout: backupLockTimeout})
	if err != nil {
		return 0, err
	}
	n, err := db.Backup(w)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// backup asks the running service for a copy of the database: bbolt's
// lock keeps every other process out of the file while the service runs.
func (o serviceClient) backup(ctx context.Context, w io.Writer) (int64, error) {
	u, err := url.Parse(o.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return 0, fmt.Errorf("the database is in use and --server %q is not an http or https URL", o.server)
	}
	u = u.JoinPath("api/v1/backup")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, err
	}
	if o.token != "" {
		req.Header.Set("Authorization", "Bearer "+o.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("the database is in use, and asking the service failed: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBackupErrorBody))
		msg := errorText(body)
		switch resp.StatusCode {
		case http.StatusNotFound, http.StatusMethodNotAllowed:
			msg = "this service cannot take backups; stop it and run mixmaster backup again"
		case http.StatusUnauthorized, http.StatusForbidden:
			msg += " (set MIXMASTER_TOKEN to a token from the config)"
		}
		return 0, fmt.Errorf("GET %s: %s: %s", u.Redacted(), resp.Status, msg)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("GET %s: %w", u.Redacted(), err)
	}
	return n, nil
}

// writeBackup writes file through fill so that it appears whole or not at
// all: fill writes a temp file in the same directory, which is synced,
// checked and then linked (or, with force, renamed) into place.
func writeBackup(file string, force bool, fill func(io.Writer) (int64, error)) (n int64, err error) {
	dir := filepath.Dir(file)
	// The copy, and so its folder, is not for everyone to read: the
	// database holds every job's commands and params. CreateTemp makes
	// the file 0600.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(file)+".*.tmp")
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if n, err = fill(tmp); err != nil {
		return n, err
	}
	if err = tmp.Sync(); err != nil {
		return n, err
	}
	if err = tmp.Close(); err != nil {
		return n, err
	}
	if err = checkBackup(tmp.Name()); err != nil {
		return n, err
	}
	if force {
		err = os.Rename(tmp.Name(), file)
	} else {
		// A link fails if file exists, where a rename would replace it.
		if err = os.Link(tmp.Name(), file); err == nil {
			os.Remove(tmp.Name())
		}
	}
	if err != nil {
		return n, err
	}
	// The new name must survive a crash too.
	if d, derr := os.Open(dir); derr == nil {
		derr = d.Sync()
		d.Close()
		if derr != nil {
			return n, derr
		}
	}
	return n, nil
}

// checkBackup checks the copy as the store checks its file at start, so
// a truncated download or an error page is never taken for a backup.
func checkBackup(path string) error {
	if err := store.Verify(path); err != nil {
		return fmt.Errorf("the copy is not a valid database: %w", err)
	}
	return nil
}
