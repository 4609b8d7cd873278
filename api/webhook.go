package api

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"unicode"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

// lightweightFields are the keys of the lightweight payload, in the order
// their types are checked. Every one of them is a string when present.
var lightweightFields = []string{
	"scm", "repositoryUrl", "project", "commit", "target", "task", "message", "viewUrl", "notifications",
}

// lightweight handles POST / and PUT /: the original Mixmaster payload.
func (h *Handler) lightweight(c echo.Context) error {
	return h.webhook(c, func(_ http.Header, payload []byte) (mixmaster.Request, string, error) {
		r, err := decodeLightweight(payload)
		return r, "", err
	})
}

// decodeFunc turns a delivery's JSON into a request, or into the reply
// text (skip) of a delivery that queues nothing.
type decodeFunc func(header http.Header, payload []byte) (r mixmaster.Request, skip string, err error)

// webhook serves a delivery on any webhook route. A page in a browser must
// not be able to queue a build through a visitor's loopback address or
// login: cross-site requests are refused, and so are the body types a
// browser sends without asking first (forms, text/plain), unless the
// delivery is signed. The delivery is decoded once, and the secret checked
// is the secret of the project that decoding named, the one that is built.
func (h *Handler) webhook(c echo.Context, decode decodeFunc) error {
	req := c.Request()
	if err := crossSite(req); err != nil {
		return err
	}
	form, err := deliveryType(req.Header)
	if err != nil {
		return err
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	payload := body
	if form {
		if payload, err = formPayload(body); err != nil {
			return err
		}
	}
	r, skip, err := decode(req.Header, payload)
	if err != nil {
		return err
	}
	if skip != "" {
		// 200 rather than an error: the forge did nothing wrong, and its
		// delivery log should not fill with failures for events we ignore.
		// Nothing is queued, so nothing needs authorizing.
		return c.String(http.StatusOK, skip+"\n")
	}
	if r.Signed, err = h.authorizeDelivery(c, r.Project, body, form); err != nil {
		return err
	}
	return h.submit(c, r)
}

// deliveryType checks a delivery's Content-Type: JSON, or a form holding
// the JSON in its payload field (GitHub's default). form reports the
// latter, which only a signed delivery may use.
func deliveryType(header http.Header) (form bool, err error) {
	mt, _, err := mime.ParseMediaType(header.Get(echo.HeaderContentType))
	switch {
	case err != nil:
	case mt == echo.MIMEApplicationJSON:
		return false, nil
	case mt == echo.MIMEApplicationForm:
		return true, nil
	}
	return false, unsupportedType()
}

func unsupportedType() error {
	return mixmaster.Errorf(mixmaster.EUNSUPPORTED, "Send the webhook with Content-Type: application/json; a form-encoded one must be signed with the project's secret.")
}

// formPayload returns the JSON of a form-encoded delivery: its one
// payload field.
func formPayload(body []byte) ([]byte, error) {
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, mixmaster.Errorf(mixmaster.EINVALID, "Malformed form body.")
	}
	if len(v["payload"]) != 1 {
		return nil, mixmaster.Errorf(mixmaster.EINVALID, "A form-encoded webhook must hold its JSON in one payload field.")
	}
	return []byte(v.Get("payload")), nil
}

// decodeLightweight turns a lightweight payload into a request. Keys are
// matched exactly and unknown keys are ignored; a null counts as absent.
// It checks only what the payload itself must get right: the submitter
// validates commits and URLs and routes the request. Every error is coded.
func decodeLightweight(body []byte) (mixmaster.Request, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return mixmaster.Request{}, jsonError(err)
	}
	v := make(map[string]string, len(lightweightFields))
	for _, k := range lightweightFields {
		m, ok := raw[k]
		if !ok || string(m) == "null" {
			continue
		}
		var s string
		if err := json.Unmarshal(m, &s); err != nil {
			return mixmaster.Request{}, mixmaster.Errorf(mixmaster.EINVALID, "%s must be a string.", k)
		}
		v[k] = s
	}

	if v["project"] == "" {
		return mixmaster.Request{}, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "project not specified")
	}
	if v["target"] == "" {
		return mixmaster.Request{}, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "target not specified")
	}
	// The original accepted any scm and then did nothing; refusing is clearer.
	if scm := v["scm"]; scm != "" && !strings.EqualFold(scm, "git") {
		return mixmaster.Request{}, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "Unsupported scm '%s'", printable(scm))
	}

	return mixmaster.Request{
		Trigger:       mixmaster.TriggerWebhook,
		Project:       v["project"],
		Target:        v["target"],
		Task:          v["task"],
		Commit:        v["commit"],
		RepositoryURL: v["repositoryUrl"],
		ViewURL:       v["viewUrl"],
		Message:       v["message"],
		Notify:        !strings.EqualFold(v["notifications"], "none"),
	}, nil
}

// jsonError turns a decoding error into a 400 that says what is wrong
// without repeating the body.
func jsonError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return mixmaster.Errorf(mixmaster.EINVALID, "Malformed JSON at byte %d: %s.", se.Offset, se.Error())
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return mixmaster.Errorf(mixmaster.EINVALID, "The payload must be a JSON object.")
		}
		return mixmaster.Errorf(mixmaster.EINVALID, "%s must be %s.", printable(te.Field), kindName(te.Type))
	}
	return mixmaster.Errorf(mixmaster.EINVALID, "Malformed JSON.")
}

func kindName(t reflect.Type) string {
	if t == nil {
		return "of another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map, reflect.Pointer:
		return "an object"
	}
	return "of another type"
}

// printable makes a value from a request safe to quote in a message: at
// most 100 characters and no control characters, so a reply or a log line
// cannot be split or garbled by it.
func printable(s string) string {
	const max = 100
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == max {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			r = '?'
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// DecodePayload reads a webhook payload as the server would: one holding a
// "repository" object is a forge push (POST /gitea), any other is the
// lightweight form (POST /). skip is set when the push queues nothing.
func DecodePayload(body []byte) (r mixmaster.Request, skip string, err error) {
	var probe struct {
		Repository json.RawMessage `json:"repository"`
	}
	if json.Unmarshal(body, &probe) == nil && len(probe.Repository) > 0 && string(probe.Repository) != "null" {
		return decodeGitea(http.Header{}, body)
	}
	r, err = decodeLightweight(body)
	return r, "", err
}
