package mixmaster

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes. Each maps to exactly one HTTP status (HTTPStatus).
const (
	EINVALID       = "invalid"                // malformed request: 400
	EUNAUTHORIZED  = "unauthorized"           // missing or wrong credentials: 401
	EFORBIDDEN     = "forbidden"              // known caller, not allowed: 403
	ENOTFOUND      = "not_found"              // 404
	ETIMEOUT       = "timeout"                // the request did not arrive in time: 408
	ECONFLICT      = "conflict"               // state does not allow it: 409
	ETOOLARGE      = "too_large"              // body over the limit: 413
	EUNSUPPORTED   = "unsupported_media_type" // a body type not accepted here: 415
	ETOOMANY       = "too_many"               // too many attempts; wait and retry: 429
	EUNPROCESSABLE = "unprocessable"          // well-formed but nothing is set up for it: 422
	EUNAVAILABLE   = "unavailable"            // backlog full, disk full, shutting down: 503
	EINTERNAL      = "internal"               // our fault: 500
)

// Error is an error a user should see: a code and a message meant for them.
// Errors without a code are internal; their text is logged, not shown.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL
// for any other error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the user-facing message of err, or "Internal error."
// when err carries no code.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "Internal error."
}

// statusOf maps error codes to HTTP statuses. It is the only such map: the
// API and the dashboard both answer through HTTPStatus.
var statusOf = map[string]int{
	EINVALID:       http.StatusBadRequest,
	EUNAUTHORIZED:  http.StatusUnauthorized,
	EFORBIDDEN:     http.StatusForbidden,
	ENOTFOUND:      http.StatusNotFound,
	ETIMEOUT:       http.StatusRequestTimeout,
	ECONFLICT:      http.StatusConflict,
	ETOOLARGE:      http.StatusRequestEntityTooLarge,
	EUNSUPPORTED:   http.StatusUnsupportedMediaType,
	ETOOMANY:       http.StatusTooManyRequests,
	EUNPROCESSABLE: http.StatusUnprocessableEntity,
	EUNAVAILABLE:   http.StatusServiceUnavailable,
	EINTERNAL:      http.StatusInternalServerError,
}

// HTTPStatus returns the HTTP status for an error code; unknown codes are
// internal errors.
func HTTPStatus(code string) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}
