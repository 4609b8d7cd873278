package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"

	"mixmaster/deploy"
)

// setUpDemo prepares a build root holding a demo config and a git
// repository to build, so that a first build needs no set-up at all. It
// keeps what already exists.
func setUpDemo(ctx context.Context, root string) (*Config, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	repo := filepath.Join(root, "repos", "hello")
	if _, err := os.Stat(filepath.Join(repo, ".git")); errors.Is(err, fs.ErrNotExist) {
		if err := createDemoRepo(ctx, repo); err != nil {
			return nil, fmt.Errorf("demo repository: %w", err)
		}
	}
	projects := filepath.Join(root, "projects")
	if _, err := os.Stat(projects); errors.Is(err, fs.ErrNotExist) {
		if err := copyExecutable(projects, deploy.DemoProjects()); err != nil {
			return nil, fmt.Errorf("demo projects: %w", err)
		}
	}
	path := filepath.Join(root, "mixmaster.ini")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(path, []byte(deploy.DemoConfig(root)), 0o600); err != nil {
			return nil, err
		}
	}
	return LoadConfig(path)
}

// createDemoRepo commits the embedded demo files to a new repository with
// the branches master and production.
func createDemoRepo(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.CopyFS(dir, deploy.DemoRepository()); err != nil {
		return err
	}
	git := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(),
			"GIT_AUTHOR_NAME=mixmaster", "GIT_AUTHOR_EMAIL=demo@mixmaster.invalid",
			"GIT_COMMITTER_NAME=mixmaster", "GIT_COMMITTER_EMAIL=demo@mixmaster.invalid")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %v: %w: %s", args, err, out)
		}
		return nil
	}
	for _, args := range [][]string{
		{"init", "--quiet", "--initial-branch=master"},
		{"add", "."},
		{"commit", "--quiet", "-m", "Demo project"},
		{"branch", "production"},
	} {
		if err := git(args...); err != nil {
			return err
		}
	}
	return nil
}

// copyExecutable copies a file tree, making files named build executable:
// embedded files carry no modes.
func copyExecutable(dir string, src fs.FS) error {
	if err := os.CopyFS(dir, src); err != nil {
		return err
	}
	return fs.WalkDir(src, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "build" {
			return err
		}
		return os.Chmod(filepath.Join(dir, path), 0o755)
	})
}
