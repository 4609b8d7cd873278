// Package workspace makes the data directories of artifact builds. Btrfs
// makes each one a subvolume, so that a build starts from a copy-on-write
// snapshot of the previous build of its group in milliseconds whatever its
// size; Plain uses ordinary directories and cp, for every other file
// system. Detect picks one for a build root.
package workspace
