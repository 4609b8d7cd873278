package main

import (
	"os"
	"testing"

	"github.com/spf13/cobra"

	"mixmaster/sandbox/shell"
)

// reapCommand is the hidden subcommand each shell build runs under.
const reapCommand = "__reap"

// newReapCmd runs shell.ReaperMain: a child subreaper that starts a build
// command and, when it ends, kills everything it left behind, even what
// left its process group.
func newReapCmd() *cobra.Command {
	return &cobra.Command{
		Use:                reapCommand + " -grace=DURATION -- COMMAND [ARG...]",
		Short:              "Run a build command and kill all it leaves behind (internal)",
		Hidden:             true,
		DisableFlagParsing: true,
		Run: func(_ *cobra.Command, args []string) {
			os.Exit(shell.ReaperMain(args))
		},
	}
}

// reaperArgv is the shell.Executor.Reaper prefix that runs this binary's
// reap command, or nil (process groups only) when there is no such binary.
// /proc/self/exe rather than the path os.Executable gives: it stays this
// very binary when an upgrade replaces the file, and its name is never one
// (mistryd) that main reads as another command.
func reaperArgv() []string {
	// A test binary re-executed runs its tests, not the reap command.
	if testing.Testing() {
		return nil
	}
	if _, err := os.Executable(); err != nil {
		return nil
	}
	return []string{"/proc/self/exe", reapCommand}
}
