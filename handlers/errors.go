// Package handlers is the HTTP face of omnimemory-metrics: gorilla/mux
// routes, request decoding and validation with the contract's error shapes,
// JSON answers, CORS, body limits and per-route instrumentation.
package handlers

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// FieldError is one item of a 422 answer, shaped as FastAPI gives it.
type FieldError struct {
	Loc  []any  `json:"loc"`
	Msg  string `json:"msg"`
	Type string `json:"type"`
}

// validationError is a 422 with one or more FieldErrors.
type validationError struct{ errs []FieldError }

func (e *validationError) Error() string { return "validation failed: " + e.errs[0].Msg }

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

// writeJSON answers v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// retryAfterStore is how long a client should wait after a store fault or a
// full queue before trying again.
const retryAfterStore = 1 * time.Second

// writeError is the one place that maps errors to HTTP answers: contract
// errors carry their status; store and ingest faults become 503 (retry
// later) or 500, with a detail that names the fault and no stack trace.
func writeError(w http.ResponseWriter, logger *slog.Logger, err error) {
	var ve *validationError
	var he *httpError
	switch {
	case errors.As(err, &ve):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": ve.errs})
	case errors.As(err, &he):
		if he.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(he.retryAfter.Seconds())))
		}
		writeJSON(w, he.status, map[string]string{"detail": he.detail})
	case errors.Is(err, tsdb.ErrNotFound):
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "Not Found"})
	case errors.Is(err, exporter.ErrOverloaded), errors.Is(err, tsdb.ErrBacklogFull):
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfterStore.Seconds())))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"detail": "Service overloaded: " + err.Error() + "; retry later"})
	case errors.Is(err, exporter.ErrClosed):
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfterStore.Seconds())))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"detail": "Service is shutting down; retry later"})
	case errors.Is(err, tsdb.ErrUnavailable):
		logger.Error("store unavailable", "err", err)
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfterStore.Seconds())))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"detail": "Store unavailable: " + err.Error()})
	default:
		logger.Error("store error", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"detail": "Store error: " + err.Error()})
	}
}
