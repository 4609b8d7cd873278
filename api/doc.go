// Package api serves the HTTP surface that machines talk to: the webhook
// endpoints (POST and PUT /, POST /gitea), GET /version, the JSON API under
// /api/v1 and mistry's API. It also holds the one echo error handler that
// turns mixmaster error codes into HTTP statuses.
//
// A webhook delivery is decoded once, and the project it builds is the one
// whose secret it must be signed with. Unsigned deliveries must be JSON and
// no webhook route takes a request a browser marks as cross-site, so that a
// web page cannot queue builds through a visitor's browser. Every reply
// about a job hides the credentials of its clone URL, and plain-text logs
// are stripped of terminal control sequences.
package api
