package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"
)

// ErrTimeout is wrapped by the error of an attempt that got no answer
// within the client's timeout (WithTimeout). Such errors also match
// context.DeadlineExceeded.
var ErrTimeout = errors.New("no answer within the request timeout")

// APIError is an answer of the service outside 2xx. Use errors.As to get it:
//
//	var apiErr *client.APIError
//	if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusNotFound { ... }
type APIError struct {
	// Method and Path name the call, as "POST" and "/track/tool-operation".
	Method, Path string
	StatusCode   int
	// Detail is the service's detail: its text, or for a 422 the field
	// errors joined in one line. For an answer that is not the service's
	// JSON (a proxy's page), the start of the body.
	Detail string
	// Fields are the field errors of a 422, in the service's order.
	Fields []FieldError
	// RetryAfter is the pause the service asked for (429, 503), 0 when none.
	RetryAfter time.Duration
}

// Error answers "POST /track/tool-operation: 422 Unprocessable Entity: body.tool_name: ...".
func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode), e.Detail)
}

// Retryable reports whether the failure is transient: 429, 502, 503 or 504.
func (e *APIError) Retryable() bool {
	switch e.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// IsRetryable reports whether err is a transient failure that a later
// attempt may not meet: a network error, an attempt timeout (ErrTimeout),
// or an *APIError with status 429, 502, 503 or 504. The caller's own context
// ending is not transient, nor is any other status.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if ae := (*APIError)(nil); errors.As(err, &ae) {
		return ae.Retryable()
	}
	if errors.Is(err, ErrTimeout) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ne *netError
	if errors.As(err, &ne) {
		return true
	}
	var ue *url.Error
	var nerr net.Error
	return errors.As(err, &ue) || errors.As(err, &nerr)
}

// IsNotFound reports whether err is a 404 (an unknown session).
func IsNotFound(err error) bool {
	ae := (*APIError)(nil)
	return errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound
}

// netError marks a failure to get an answer: no connection, a connection
// lost, or no answer in time.
type netError struct{ err error }

func (e *netError) Error() string { return e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

// maxDetailBytes bounds the Detail taken from a body that is not the
// service's JSON.
const maxDetailBytes = 512

// newAPIError reads an answer outside 2xx.
func newAPIError(method, path string, resp *http.Response, body []byte) *APIError {
	e := &APIError{Method: method, Path: path, StatusCode: resp.StatusCode,
		RetryAfter: api.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var payload struct {
		Detail json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &payload) == nil && len(payload.Detail) > 0 {
		var s string
		var items []struct {
			Loc  []json.RawMessage `json:"loc"`
			Msg  string            `json:"msg"`
			Type string            `json:"type"`
		}
		switch {
		case json.Unmarshal(payload.Detail, &s) == nil:
			e.Detail = s
			return e
		case json.Unmarshal(payload.Detail, &items) == nil:
			msgs := make([]string, len(items))
			for i, it := range items {
				f := FieldError{Msg: it.Msg, Type: it.Type, Loc: make([]any, len(it.Loc))}
				for j, raw := range it.Loc {
					f.Loc[j] = locPart(raw)
				}
				e.Fields = append(e.Fields, f)
				msgs[i] = f.String()
			}
			e.Detail = strings.Join(msgs, "; ")
			return e
		}
	}
	detail := string(bytes.TrimSpace(body))
	if len(detail) > maxDetailBytes {
		detail = detail[:maxDetailBytes] + "..."
	}
	if detail == "" {
		detail = http.StatusText(resp.StatusCode)
	}
	e.Detail = detail
	return e
}

// locPart decodes one element of a loc: an int for an index, else a string.
func locPart(raw json.RawMessage) any {
	var n int
	if json.Unmarshal(raw, &n) == nil {
		return n
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}
