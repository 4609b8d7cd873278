package deploy

import (
	"embed"
	"io/fs"
	"strings"
)

//go:embed demo demo/projects/greeting/build
var demo embed.FS

// DemoRepository holds the files of the demo git repository.
func DemoRepository() fs.FS {
	sub, _ := fs.Sub(demo, "demo/hello")
	return sub
}

// DemoProjects holds the demo cached-artifact projects, one folder each.
func DemoProjects() fs.FS {
	sub, _ := fs.Sub(demo, "demo/projects")
	return sub
}

// DemoConfig returns the demo configuration for a build root (an absolute
// path).
func DemoConfig(root string) string {
	b, _ := demo.ReadFile("demo/mixmaster.ini")
	return strings.ReplaceAll(string(b), "@ROOT@", root)
}
