package mixmaster

import (
	"regexp"
	"time"
)

// Project is a webhook project: one section of the INI config, named after
// the repository (owner/name), mapping targets to commands.
type Project struct {
	Name       string
	Repository string        // .repository: the clone URL; when set, payload URLs are ignored
	Secret     string        // .secret: the webhook secret
	Executor   string        // .executor: "shell" (default) or "docker"
	Image      string        // .image: the image for the docker executor
	Timeout    time.Duration // .timeout: zero means the service default
	Network    string        // .network: "none" (default) or "bridge", for the docker executor
	// Targets maps config keys ("production", "master/docs") to commands.
	Targets map[string]string
}

// Request is a webhook build request after decoding, before routing. Every
// field comes from the network and is untrusted.
type Request struct {
	Trigger       Trigger
	Project       string
	Target        string
	Task          string
	Commit        string
	RepositoryURL string
	ViewURL       string
	Message       string
	Notify        bool
	DeliveryID    string
	// Signed says the delivery carried a valid signature made with the
	// project's secret: only then may its RepositoryURL be cloned with the
	// service's deploy key.
	Signed bool
}

// ArtifactRequest is a cached-artifact build request (mistry's POST /jobs).
type ArtifactRequest struct {
	Trigger Trigger
	Project string
	Params  map[string]string
	Group   string
	Rebuild bool
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidName reports whether s is safe to use as one path segment: a
// project folder, a group or a param key. It rejects "", ".", "..", names
// with a slash or NUL and names starting with "-" or ".".
func ValidName(s string) bool {
	return nameRE.MatchString(s)
}
