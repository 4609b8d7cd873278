//go:build unix

package scm

import (
	"os/exec"
	"syscall"
)

// setProcessGroup starts git in a session of its own, so that it has no
// terminal to prompt on and so that cancelling stops ssh and other helpers
// too. SIGTERM lets git remove its lock files before it exits.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
}
