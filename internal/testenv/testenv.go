// Package testenv decides whether a test that needs a real engine (Docker,
// btrfs, Chromium, sshd…) runs, skips or fails.
package testenv

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// Required reports whether MIXMASTER_TEST_REQUIRE names engine (or "all").
func Required(engine string) bool {
	names := strings.Split(os.Getenv("MIXMASTER_TEST_REQUIRE"), ",")
	for i := range names {
		names[i] = strings.TrimSpace(names[i])
	}
	return slices.Contains(names, engine) || slices.Contains(names, "all")
}

// Need skips the test when ok is false, or fails it when the engine is
// required by MIXMASTER_TEST_REQUIRE, so that CI never silently skips.
func Need(t testing.TB, engine string, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if Required(engine) {
		t.Fatalf("%s is required (MIXMASTER_TEST_REQUIRE) but unavailable: %s", engine, why)
	}
	t.Skipf("%s unavailable: %s", engine, why)
}
