// Package deploy holds the files that put mixmaster on a machine: the
// example configuration and the demo projects that `serve --demo` starts
// with.
package deploy
