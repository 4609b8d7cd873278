package jobs

import (
	"fmt"
	"path/filepath"
	"strings"
)

// CheckoutDir is the workspace of a project's target. It persists between
// builds of that target, like the original's, so incremental tools work.
func CheckoutDir(root, project, target string) string {
	return filepath.Join(root, "checkouts", pathSegment(project), pathSegment(target))
}

// pathSegment turns an untrusted name into one safe directory name. Unlike
// the original's folding of every non-word character to "-", distinct names
// stay distinct ("feature/x" and "feature-x" get different checkouts):
// letters, digits, "-" and "_" stay, a "." stays unless it leads, and every
// other byte becomes %XX.
func pathSegment(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		case c == '.' && i > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	if b.Len() == 0 {
		return "%"
	}
	return b.String()
}
