// Package docker runs build commands in throwaway Docker containers and
// builds project images with the classic builder, through the Docker Go
// SDK (github.com/moby/moby/client).
//
// Every container runs with all capabilities dropped, no-new-privileges,
// an init process, memory, CPU and PID limits, and no network unless the
// job asks for one; only the job's bind mounts of the host are visible.
// Containers and images carry the label mixmaster.managed=1 (plus the job
// and the executor's own labels), so that Sweep can remove what a crashed
// service left behind without touching anyone else's containers on a
// shared daemon.
package docker
