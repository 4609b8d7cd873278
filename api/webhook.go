package api

import (
	"encoding/json"
	"errors"
	"net/http"
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
	body, err := readBody(c)
	if err != nil {
		return err
	}
	if err := h.checkSignature(c, body); err != nil {
		return err
	}
	r, err := decodeLightweight(body)
	if err != nil {
		return err
	}
	return h.submit(c, r)
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
