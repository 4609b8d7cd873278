// Package mixmaster holds the domain of the build service: jobs, their
// statuses, projects, requests, error codes and the interfaces that the
// other packages implement. It imports only the standard library.
//
// Data flows one way:
//
//	request (api) → validate, route (jobs) → durable enqueue (store) → 202
//	runner (jobs): claim → checkout (scm) → run (sandbox) → log (artifacts)
//	             → finish (store) → notify (jobs/notify)
//	dashboard and API read the store and the logs (webui, api)
//
// Only the runner changes a job after it is queued.
package mixmaster
