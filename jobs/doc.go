// Package jobs turns requests into queued jobs and runs them: routing a
// request to a configured command, the runner with its slots, timeouts and
// cancellation, recovery at start-up, and the in-memory event broker that
// wakes live log viewers.
package jobs
