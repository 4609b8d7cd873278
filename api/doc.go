// Package api serves the HTTP surface that machines talk to: the webhook
// endpoints (POST / and POST /gitea), GET /version and the JSON API under
// /api/v1. It also holds the one echo error handler that turns mixmaster
// error codes into HTTP statuses.
package api
