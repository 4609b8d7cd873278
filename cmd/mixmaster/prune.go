package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"mixmaster"
	"mixmaster/artifacts"
	"mixmaster/jobs"
	"mixmaster/sandbox/workspace"
	"mixmaster/store"
)

// pruneInterval is how often the service prunes; pruneDelay is how long
// after start it prunes first, so that start-up is not slowed by it.
const (
	pruneInterval = time.Hour
	pruneDelay    = time.Minute
)

// errServiceRunning is what prune says when the service holds the store.
var errServiceRunning = errors.New("the service is running: it prunes by itself every hour; stop it to prune by hand (--dry-run works while it runs)")

type pruneOptions struct {
	serviceClient
	config string
	dryRun bool
}

func newPruneCmd() *cobra.Command {
	o := pruneOptions{serviceClient: newServiceClient()}
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove old finished jobs as keep and keepLast in the config say",
		Long: `Remove finished jobs that keep (age) and keepLast (count per project)
no longer keep: their directories, logs, artifacts and records. Queued and
running jobs, the last successful build of each target, each group's last
good build and the newest successful build of each artifact key always
stay. With --dry-run, list what would go and remove nothing.

The running service prunes by itself every hour and holds the database,
so prune only while it is stopped. --dry-run works while it runs: it plans
on a copy of the database from the service at --server (default
$MIXMASTER_URL, else http://127.0.0.1:8585; $MIXMASTER_TOKEN is sent as a
bearer token).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPrune(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "config file (default $MIXMASTER_CONFIG, else ~/.config/mixmaster.ini)")
	f.BoolVar(&o.dryRun, "dry-run", false, "list what would be removed and remove nothing")
	f.StringVar(&o.server, "server", o.server, "the running service, asked for a copy of the database for --dry-run")
	return cmd
}

func runPrune(ctx context.Context, o pruneOptions, stdout io.Writer) error {
	cfg, err := loadConfig(o.config)
	if err != nil {
		return err
	}
	if !cfg.PruneEnabled() {
		fmt.Fprintln(stdout, "keep and keepLast are not set: every job is kept")
		return nil
	}
	path := filepath.Join(cfg.BuildRoot, "mixmaster.db")
	// store.Open would create a missing file in a mistyped build root.
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("no database: %w", err)
	}
	db, err := store.Open(path, store.Options{Timeout: backupLockTimeout})
	if errors.Is(err, store.ErrLocked) && o.dryRun {
		// A plan changes nothing, so a copy from the service does.
		var done func()
		if db, done, err = o.snapshot(ctx); err == nil {
			defer done()
		}
	} else if errors.Is(err, store.ErrLocked) {
		return errServiceRunning
	}
	if err != nil {
		return err
	}
	defer db.Close()
	p := newPruner(cfg, db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if o.dryRun {
		plan, err := p.Plan(ctx)
		if err != nil {
			return err
		}
		printPlan(stdout, plan, time.Now())
		return nil
	}
	n, err := p.Prune(ctx)
	fmt.Fprintf(stdout, "removed %d jobs\n", n)
	return err
}

// snapshot opens a copy of the running service's database in a temporary
// folder; done removes it after the copy is closed.
func (o serviceClient) snapshot(ctx context.Context) (db *store.DB, done func(), err error) {
	dir, err := os.MkdirTemp("", "mixmaster-snapshot-")
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	path := filepath.Join(dir, "mixmaster.db")
	if _, err = writeBackup(path, false, func(w io.Writer) (int64, error) { return o.backup(ctx, w) }); err != nil {
		return nil, nil, err
	}
	if db, err = store.Open(path); err != nil {
		return nil, nil, err
	}
	return db, func() { os.RemoveAll(dir) }, nil
}

// newPruner wires a Pruner to the config's build root and retention.
func newPruner(cfg *Config, db *store.DB, logger *slog.Logger) *jobs.Pruner {
	files := &artifacts.Files{Root: cfg.BuildRoot}
	ws, _ := workspace.Detect(cfg.BuildRoot)
	return &jobs.Pruner{
		Store:      db,
		Workspaces: ws,
		Root:       cfg.BuildRoot,
		ArtifactsDir: func(j *mixmaster.Job) string {
			if j.Kind == mixmaster.KindWebhook {
				return files.ArtifactsDir(j.ID)
			}
			return "" // inside the build directory, removed with it
		},
		Policy: cfg.RetentionPolicy,
		Logger: logger,
	}
}

// printPlan lists the jobs a prune would remove, one per line.
func printPlan(w io.Writer, plan []*mixmaster.Job, now time.Time) {
	if len(plan) == 0 {
		fmt.Fprintln(w, "nothing to prune")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROJECT\tTARGET/GROUP\tSTATUS\tAGE")
	for _, j := range plan {
		what := j.Target
		if j.Kind == mixmaster.KindArtifact {
			what = j.Group
		}
		if what == "" {
			what = "-"
		}
		at := j.FinishedAt
		if at.IsZero() {
			at = j.QueuedAt
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", j.ID, j.Project, what, j.Status, age(now.Sub(at)))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d jobs would be removed\n", len(plan))
}

// age shows a duration in its largest whole unit, as a person would say it.
func age(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d >= time.Hour:
		return fmt.Sprintf("%dh", d/time.Hour)
	default:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
}

// startPruner prunes shortly after start and then every hour until ctx
// ends, when retention is configured at all. done is closed when it has
// stopped.
func startPruner(ctx context.Context, p *jobs.Pruner, logger *slog.Logger) (done <-chan struct{}) {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		t := time.NewTimer(pruneDelay)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			n, err := p.Prune(ctx)
			if n > 0 {
				logger.Info("pruned old jobs", "count", n)
			}
			if err != nil && ctx.Err() == nil {
				logger.Error("prune", "err", err)
			}
			t.Reset(pruneInterval)
		}
	}()
	return ch
}
