package mixmaster

import (
	"net/url"
	"strconv"
	"strings"
)

// FormatSize writes n bytes in binary units, for messages and pages.
func FormatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + "KMGTPE"[exp:exp+1] + "iB"
}

// JobPath is the address of a job's page: /job/<project>/<id>, the URL
// mistry's client prints. Each segment of the project is escaped on its
// own, so that owner/name keeps its slash.
func JobPath(project string, id JobID) string {
	segs := strings.Split(project, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/job/" + strings.Join(segs, "/") + "/" + id.String()
}
