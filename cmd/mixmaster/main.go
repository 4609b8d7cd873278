// Command mixmaster is a whole self-hosted build service in one binary:
// webhook builds, cached-artifact builds, a dashboard and a client.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError marks errors in how the command was called: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// run executes the command line and returns the process exit code: 0 on
// success, 1 on failure, 2 on a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetOut(stdout)
	root.SetErr(stderr)
	// A link named mistryd is the server, one named mistry the client.
	rest := args[1:]
	switch filepath.Base(args[0]) {
	case "mistryd":
		rest = append([]string{"serve"}, rest...)
	}
	root.SetArgs(rest)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "mixmaster:", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "mixmaster",
		Short:         "A self-hosted build service: webhook builds, cached artifacts, live logs",
		SilenceUsage:  true,
		SilenceErrors: true,
		// Without a subcommand there is nothing to do; say how to use it.
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q", args[0])}
			}
			cmd.SetOut(cmd.ErrOrStderr())
			cmd.Usage()
			return usageError{errors.New("a command is required")}
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newServeCmd(),
		newBuildCmd(),
		newRecipeCmd(),
		newSetupCmd(),
		newVersionCmd(),
		newPasswdCmd(),
		newBackupCmd(),
		newPruneCmd(),
		newReapCmd(),
	)
	return root
}

// exactArgs is cobra.ExactArgs with the error marked as a usage error.
// The command's usage goes to stderr first: a command called without its
// argument should say what it takes.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			fmt.Fprint(cmd.ErrOrStderr(), cmd.UsageString())
			return usageError{err}
		}
		return nil
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "mixmaster", version)
			return nil
		},
	}
}
