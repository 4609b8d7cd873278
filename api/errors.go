package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

// NewErrorHandler returns the echo error handler for the whole server. It
// answers coded errors with their status and message, echo's own errors
// (unknown route, wrong method, body too large) with a short message, and
// anything else with 500 "Internal error.", logging the real error, which
// may hold paths or other details a client must not see. Bodies are JSON
// ({"error": "…"}) under /api/ or when the client accepts JSON, and a line
// of plain text otherwise, as the original webhook bridge answered.
func NewErrorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	if logger == nil {
		logger = slog.Default()
	}
	return func(err error, c echo.Context) {
		req := c.Request()
		status, msg := describe(err)

		switch {
		case errors.Is(err, context.Canceled) && req.Context().Err() != nil:
			// The client went away; nobody will read the answer.
			logger.Debug("request canceled", "method", req.Method, "path", req.URL.Path)
		case status == http.StatusInternalServerError:
			logger.Error("request failed", "method", req.Method, "path", req.URL.Path, "status", status, "err", err)
		case status >= 500:
			// Expected trouble such as a full backlog: worth seeing, not alarming.
			logger.Warn("request refused", "method", req.Method, "path", req.URL.Path, "status", status, "err", err)
		}

		if status == http.StatusMethodNotAllowed {
			// echo has set Allow; saying it in words helps people using curl.
			if allow := c.Response().Header().Get(echo.HeaderAllow); allow != "" {
				msg = fmt.Sprintf("Method %s is not allowed here; allowed: %s.", printable(req.Method), allow)
			}
		}
		if c.Response().Committed {
			// A stream already sent its status; all we can do is log.
			return
		}
		c.Response().Header().Set("X-Content-Type-Options", "nosniff")
		var werr error
		switch {
		case req.Method == http.MethodHead:
			werr = c.NoContent(status)
		case wantsJSON(req):
			werr = c.JSON(status, map[string]string{"error": msg})
		default:
			werr = c.String(status, msg+"\n")
		}
		if werr != nil {
			logger.Debug("write error response", "err", werr)
		}
	}
}

// describe returns the status and the message a client may see for err.
func describe(err error) (int, string) {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return describeHTTPError(he)
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body too large (limit %d bytes).", mbe.Limit)
	}
	status := mixmaster.HTTPStatus(mixmaster.ErrorCode(err))
	if status == http.StatusInternalServerError {
		// An uncoded error, or a code nobody mapped, is a bug of ours: its
		// text may hold paths or details a client must not see.
		return status, "Internal error."
	}
	return status, mixmaster.ErrorMessage(err)
}

func describeHTTPError(he *echo.HTTPError) (int, string) {
	if inner, ok := he.Internal.(*echo.HTTPError); ok {
		he = inner
	}
	if he.Code < 400 || he.Code > 599 {
		// Not an error status; writing it would break the reply.
		return http.StatusInternalServerError, "Internal error."
	}
	switch he.Code {
	case http.StatusNotFound:
		return he.Code, "Not found."
	case http.StatusMethodNotAllowed:
		return he.Code, "Method not allowed."
	case http.StatusRequestEntityTooLarge:
		return he.Code, "Request body too large."
	}
	if he.Code >= 500 {
		return he.Code, "Internal error."
	}
	if m, ok := he.Message.(string); ok && m != "" && m != http.StatusText(he.Code) {
		return he.Code, m
	}
	text := http.StatusText(he.Code)
	if text == "" {
		return he.Code, "Error."
	}
	return he.Code, text + "."
}

// wantsJSON reports whether the error body should be JSON: always for the
// JSON API, elsewhere only when the client asks for it.
func wantsJSON(r *http.Request) bool {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		return true
	}
	return strings.Contains(r.Header.Get(echo.HeaderAccept), echo.MIMEApplicationJSON)
}
