package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"mixmaster"
	"mixmaster/api"
	"mixmaster/jobs"
)

func newRecipeCmd() *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "recipe [--config FILE] PAYLOAD.json",
		Short: "Print what a webhook payload would run, and run nothing",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(config)
			if err != nil {
				return err
			}
			body, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			r, skip, err := api.DecodePayload(body)
			if err != nil {
				return fmt.Errorf("%s: %s", args[0], mixmaster.ErrorMessage(err))
			}
			out := cmd.OutOrStdout()
			if skip != "" {
				fmt.Fprintf(out, "nothing to build: %s\n", skip)
				return nil
			}
			svc := &jobs.Service{Projects: func(name string) (*mixmaster.Project, bool) {
				p, ok := cfg.Projects[name]
				return p, ok
			}}
			// The payload is the operator's own file: show what a signed
			// delivery of it would run.
			r.Signed = true
			job, err := svc.Plan(r)
			if err != nil {
				return fmt.Errorf("%s: %s", args[0], mixmaster.ErrorMessage(err))
			}
			ref := job.Commit
			if ref == "" {
				ref = job.Target + " (its tip)"
			}
			fmt.Fprintf(out, "project:    %s\n", job.Project)
			fmt.Fprintf(out, "target:     %s\n", job.Target)
			if job.Task != "" {
				fmt.Fprintf(out, "task:       %s\n", job.Task)
			}
			fmt.Fprintf(out, "config key: %s\n", job.ConfigKey)
			fmt.Fprintf(out, "clone URL:  %s\n", mixmaster.RedactURL(job.RepositoryURL))
			fmt.Fprintf(out, "checkout:   %s at %s\n", jobs.CheckoutDir(cfg.BuildRoot, job.Project, job.Target), ref)
			fmt.Fprintf(out, "command:    %s\n", job.Command)
			return nil
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "config file")
	return cmd
}
