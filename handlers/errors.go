package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// validationError is a 422 with one or more field errors.
type validationError struct{ errs []api.FieldError }

func (e *validationError) Error() string { return "validation failed: " + e.errs[0].Msg }

// fieldError answers a 422 of one field error at loc.
func fieldError(msg, typ string, loc ...any) error {
	return &validationError{errs: []api.FieldError{{Loc: loc, Msg: msg, Type: typ}}}
}

// httpError is an answer with a status and a plain detail.
type httpError struct {
	status     int
	detail     string
	retryAfter time.Duration
}

func (e *httpError) Error() string { return e.detail }

func badRequest(detail string) error {
	return &httpError{status: http.StatusBadRequest, detail: detail}
}

// sessionNotFound turns tsdb.ErrNotFound into the contract's 404 for the
// session id.
func sessionNotFound(err error, id fmt.Stringer) error {
	if errors.Is(err, tsdb.ErrNotFound) {
		return &httpError{status: http.StatusNotFound, detail: fmt.Sprintf("Session %s not found", id)}
	}
	return err
}

// How long a client should wait before trying again: after a store fault
// or a full queue, and after an export refused because others run (an
// export runs for as long as its client reads).
const (
	retryAfterStore  = 1 * time.Second
	retryAfterExport = 5 * time.Second
)

// endpoint is one route: it answers the value to send as 200 JSON, or the
// error to send through writeError. A nil value with a nil error means the
// endpoint wrote its answer itself (the export's stream).
type endpoint func(w http.ResponseWriter, r *http.Request) (any, error)

// serve turns e into a handler; logger takes the faults writeError logs.
func serve(logger *slog.Logger, e endpoint) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := e(w, r)
		switch {
		case err != nil:
			writeError(w, logger, err)
		case v != nil:
			writeJSON(w, http.StatusOK, v)
		}
	}
}

// writeJSON answers v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// writeDetail answers status with a plain detail, and a Retry-After when
// retryAfter is positive.
func writeDetail(w http.ResponseWriter, status int, detail string, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter.Seconds())))
	}
	writeJSON(w, status, api.Detail{Detail: detail})
}

// writeError is the one place that maps errors to HTTP answers (see
// answerOf), written as the service's JSON.
func writeError(w http.ResponseWriter, logger *slog.Logger, err error) {
	a := answerOf(logger, err)
	if a.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(a.retryAfter.Seconds())))
	}
	writeJSON(w, a.status, a.body)
}

// errorAnswer is the answer to an error: its status, its JSON body (an
// api.Detail or an api.ValidationError) and how long to wait before a
// retry (0: no Retry-After).
type errorAnswer struct {
	status     int
	body       any
	retryAfter time.Duration
}

// detail answers the text of the answer's body.
func (a errorAnswer) detail() string {
	switch b := a.body.(type) {
	case api.Detail:
		return b.Detail
	case api.ValidationError:
		msgs := make([]string, len(b.Detail))
		for i, e := range b.Detail {
			msgs[i] = e.Msg
		}
		return strings.Join(msgs, "; ")
	}
	return http.StatusText(a.status)
}

// answerOf maps an error to its answer: contract errors carry their
// status; ingest and store faults become 503 (retry later, with
// Retry-After) or 500, with a detail that names the fault and no stack
// trace. It logs the store's faults.
func answerOf(logger *slog.Logger, err error) errorAnswer {
	var ve *validationError
	var he *httpError
	detail := func(status int, d string, retryAfter time.Duration) errorAnswer {
		return errorAnswer{status: status, body: api.Detail{Detail: d}, retryAfter: retryAfter}
	}
	switch {
	case errors.As(err, &ve):
		return errorAnswer{status: http.StatusUnprocessableEntity, body: api.ValidationError{Detail: ve.errs}}
	case errors.As(err, &he):
		return detail(he.status, he.detail, he.retryAfter)
	case errors.Is(err, exporter.ErrUnboundedRange):
		return detail(http.StatusBadRequest, "compare=previous needs a bounded time_range: one of "+
			exporter.RangeNames(exporter.BoundedSavingsRanges), 0)
	case errors.Is(err, tsdb.ErrNotFound):
		return detail(http.StatusNotFound, "Not Found", 0)
	case errors.Is(err, exporter.ErrOverloaded), errors.Is(err, tsdb.ErrBacklogFull):
		return detail(http.StatusServiceUnavailable, "Service overloaded: "+err.Error()+"; retry later", retryAfterStore)
	case errors.Is(err, exporter.ErrClosed):
		return detail(http.StatusServiceUnavailable, "Service is shutting down; retry later", retryAfterStore)
	case errors.Is(err, exporter.ErrExportsBusy):
		return detail(http.StatusServiceUnavailable, fmt.Sprintf("Too many exports in progress (at most %d); retry later",
			exporter.MaxConcurrentExports), retryAfterExport)
	case errors.Is(err, exporter.ErrStreamFull):
		return detail(http.StatusServiceUnavailable, "Too many stream subscribers: "+err.Error()+"; retry later", retryAfterStream)
	case errors.Is(err, exporter.ErrStreamClosed):
		return detail(http.StatusServiceUnavailable, "Service is shutting down; retry later", retryAfterStore)
	case errors.Is(err, tsdb.ErrUnavailable):
		logger.Error("store unavailable", "err", err)
		return detail(http.StatusServiceUnavailable, "Store unavailable: "+err.Error(), retryAfterStore)
	default:
		logger.Error("store error", "err", err)
		return detail(http.StatusInternalServerError, "Store error: "+err.Error(), 0)
	}
}
