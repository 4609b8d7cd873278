//go:build !unix

package scm

import "os/exec"

// setProcessGroup does nothing where there are no process groups; the
// context still kills git itself.
func setProcessGroup(cmd *exec.Cmd) {}
