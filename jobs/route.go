package jobs

import (
	"strings"

	"mixmaster"
)

// Route is the outcome of matching a request against a project's targets.
type Route struct {
	Key     string // the config key that matched
	Command string
}

// Resolve picks the command for a target (and optional task) of p, as the
// original README documents it: a branch is served by the key it starts
// with, the longest such key winning, so "staging/my-feature" runs
// "staging"'s command. A task request for target T and task K is served by
// the key "P/K" whose prefix P starts T, again the longest. The checkout is
// always of the requested target, never of the key.
//
// Errors are EUNPROCESSABLE with the original's messages.
func Resolve(p *mixmaster.Project, target, task string) (Route, error) {
	if target == "" {
		return Route{}, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "target not specified")
	}
	if task == "" {
		if key, ok := longestPrefix(p, target, ""); ok {
			return Route{Key: key, Command: p.Targets[key]}, nil
		}
		return Route{}, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "Not set up to build %s", target)
	}
	if key, ok := longestPrefix(p, target, "/"+task); ok {
		return Route{Key: key, Command: p.Targets[key]}, nil
	}
	// Say which half is missing: the branch itself, or only the task.
	if !servesTarget(p, target) {
		return Route{}, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "Not set up to build %s", target)
	}
	return Route{}, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "Not set up for %s task.", task)
}

// longestPrefix finds the longest key of the form prefix+suffix whose prefix
// starts target.
func longestPrefix(p *mixmaster.Project, target, suffix string) (string, bool) {
	best, found := "", false
	for key := range p.Targets {
		prefix, ok := strings.CutSuffix(key, suffix)
		if !ok || prefix == "" || !strings.HasPrefix(target, prefix) {
			continue
		}
		// Ties cannot happen between distinct keys of equal length with the
		// same suffix that both prefix target; the comparison on the key
		// keeps the choice stable anyway.
		if !found || len(key) > len(best) || (len(key) == len(best) && key < best) {
			best, found = key, true
		}
	}
	return best, found
}

// servesTarget reports whether any key, or the branch part of any task key,
// starts target.
func servesTarget(p *mixmaster.Project, target string) bool {
	for key := range p.Targets {
		if strings.HasPrefix(target, key) {
			return true
		}
		if i := strings.LastIndexByte(key, '/'); i > 0 && strings.HasPrefix(target, key[:i]) {
			return true
		}
	}
	return false
}
