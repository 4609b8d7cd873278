// Package sandbox groups the ways a job's build command is run in
// isolation. Its subpackages implement the executor and key-agent
// interfaces of package mixmaster: shell runs commands on the host with a
// minimal environment, in a cgroup of their own where the service may
// make one and under a child subreaper otherwise, so that nothing a build
// starts outlives it; docker runs them in a container of the project's
// image; workspace gives each build a throwaway or snapshotted folder;
// sshagent serves a per-job ssh-agent.
package sandbox
