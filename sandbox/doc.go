// Package sandbox groups the ways a job's build command is run in
// isolation. Its subpackages implement the executor and key-agent
// interfaces of package mixmaster: shell runs commands on the host in their
// own process group with a minimal environment, and sshagent serves a
// per-job ssh-agent; Docker containers and throwaway workspaces come later.
package sandbox
