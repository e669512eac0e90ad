package handlers

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

const (
	// exportFlushRows: the answer is flushed to the client every so many
	// operations (and whenever its buffer fills).
	exportFlushRows = 4096
	// exportBufferBytes is the buffer between the encoder and the
	// connection.
	exportBufferBytes = 32 << 10
	// exportWriteWindow is how long the client has to take each flushed
	// part of the answer: every flush moves the connection's write deadline
	// (the server's WriteTimeout) this far ahead, so a long export is not
	// cut by it while a stalled client still is.
	exportWriteWindow = time.Minute
)

// exportColumns are the CSV header: the fields of the NDJSON lines (those
// of the query endpoint's operation objects, then cache_hit), in their
// order.
var exportColumns = []string{
	"id", "session_id", "tool_name", "operation_mode", "parameters", "file_path",
	"tokens_original", "tokens_actual", "tokens_prevented", "response_time_ms", "tool_id", "created_at", "cache_hit",
}

// exportFormats maps the format parameter to the answer's content type.
var exportFormats = map[string]string{
	api.FormatCSV:    "text/csv; charset=utf-8",
	api.FormatNDJSON: "application/x-ndjson",
}

// export serves GET /metrics/tool-operations/export: every operation
// matching the query endpoint's filters, oldest first, streamed as CSV or
// NDJSON in constant memory. It checks the parameters (format first, then
// the query endpoint's filters, with its messages; limit and offset are
// ignored), then streams. Nothing is sent before the store hands the first
// operation (or ends without one), so a store that fails at once (or a
// service already running as many exports as it allows) gets the usual
// error answer. A store that fails later aborts the answer (the client sees
// a broken transfer, never a file that looks whole) and is logged.
func (h operationRoutes) export(w http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	format := q.Get("format")
	if format == "" {
		format = api.FormatCSV
	}
	contentType, ok := exportFormats[format]
	if !ok {
		return nil, badRequest("Invalid format: must be one of " + api.FormatCSV + ", " + api.FormatNDJSON)
	}
	q.Del("limit")
	q.Del("offset")
	f, err := parseOperationFilter(q)
	if err != nil {
		return nil, err
	}
	out := newExportWriter(w, format, contentType)
	err = h.svc.ExportOperations(r.Context(), f, out.write)
	if err == nil {
		err = out.finish()
	}
	if err == nil {
		return nil, nil
	}
	var we *exportWriteError
	gone := errors.As(err, &we) || r.Context().Err() != nil
	switch {
	case !out.started && !gone:
		return nil, err
	case gone:
		h.logger.Debug("export ended by the client", "format", format, "operations", out.rows, "err", err)
	default:
		h.logger.Error("export failed after the answer started; aborting it", "format", format, "operations", out.rows, "err", err)
	}
	// The status and part of the body went out (or the client left, and
	// an implicit empty 200 must not follow): only a broken transfer tells
	// the client that the file is incomplete.
	panic(http.ErrAbortHandler)
}

// exportWriteError is a failure to write to the client.
type exportWriteError struct{ err error }

func (e *exportWriteError) Error() string { return "write export: " + e.err.Error() }
func (e *exportWriteError) Unwrap() error { return e.err }

// exportWriter encodes operations onto the answer as they come.
type exportWriter struct {
	w           http.ResponseWriter
	rc          *http.ResponseController
	buf         *bufio.Writer
	format      string
	contentType string
	csv         *csv.Writer
	json        *json.Encoder
	record      []string
	num         []byte
	started     bool
	rows        int
}

func newExportWriter(w http.ResponseWriter, format, contentType string) *exportWriter {
	return &exportWriter{w: w, rc: http.NewResponseController(w), format: format, contentType: contentType}
}

// start sends the status and headers, and the CSV header row.
func (e *exportWriter) start() error {
	e.started = true
	h := e.w.Header()
	h.Set("Content-Type", e.contentType)
	h.Set("Content-Disposition", `attachment; filename="tool-operations.`+e.format+`"`)
	h.Set("X-Content-Type-Options", "nosniff")
	if h.Get("Access-Control-Allow-Origin") != "" {
		// A page of another origin may read the file name too.
		h.Set("Access-Control-Expose-Headers", "Retry-After, Content-Disposition")
	}
	_ = e.rc.SetWriteDeadline(time.Now().Add(exportWriteWindow)) // unsupported: the server's own timeout holds
	e.w.WriteHeader(http.StatusOK)
	e.buf = bufio.NewWriterSize(e.w, exportBufferBytes)
	if e.format == api.FormatNDJSON {
		e.json = json.NewEncoder(e.buf)
		e.json.SetEscapeHTML(false) // as writeJSON: the objects are byte-identical
		return nil
	}
	e.csv = csv.NewWriter(e.buf) // shares buf: it is a bufio.Writer large enough
	e.record = make([]string, len(exportColumns))
	return e.wrap(e.csv.Write(exportColumns))
}

// write encodes one operation; every exportFlushRows it flushes.
func (e *exportWriter) write(op *tsdb.Operation) error {
	if !e.started {
		if err := e.start(); err != nil {
			return err
		}
	}
	var err error
	if e.json != nil {
		err = e.json.Encode(exporter.APIExportedOperation(op))
	} else {
		err = e.csv.Write(e.csvRecord(op))
	}
	if err != nil {
		return e.wrap(err)
	}
	e.rows++
	if e.rows%exportFlushRows == 0 {
		return e.flush()
	}
	return nil
}

// csvRecord fills the reused record with op's fields, formatted as the
// NDJSON lines give them: parameters as its JSON text, a null file_path or
// cache_hit as an empty field.
func (e *exportWriter) csvRecord(op *tsdb.Operation) []string {
	params := string(op.Parameters)
	if params == "" {
		params = "{}"
	}
	file := ""
	if op.FilePath != nil {
		file = *op.FilePath
	}
	e.num = appendJSONFloat(e.num[:0], op.ResponseTimeMs)
	rec := e.record
	rec[0] = op.ID.String()
	rec[1] = op.SessionID.String()
	rec[2] = op.ToolName
	rec[3] = op.OperationMode
	rec[4] = params
	rec[5] = file
	rec[6] = strconv.FormatInt(op.TokensOriginal, 10)
	rec[7] = strconv.FormatInt(op.TokensActual, 10)
	rec[8] = strconv.FormatInt(op.TokensPrevented, 10)
	rec[9] = string(e.num)
	rec[10] = op.ToolID
	rec[11] = api.FormatTime(op.CreatedAt)
	rec[12] = ""
	if op.CacheHit != nil {
		rec[12] = strconv.FormatBool(*op.CacheHit)
	}
	return rec
}

// flush sends what is buffered and gives the client another
// exportWriteWindow.
func (e *exportWriter) flush() error {
	if e.csv != nil {
		e.csv.Flush()
		if err := e.csv.Error(); err != nil {
			return e.wrap(err)
		}
	}
	if err := e.buf.Flush(); err != nil {
		return e.wrap(err)
	}
	_ = e.rc.SetWriteDeadline(time.Now().Add(exportWriteWindow))
	if err := e.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return e.wrap(err)
	}
	return nil
}

// finish sends the rest (and the headers, when no operation matched).
func (e *exportWriter) finish() error {
	if !e.started {
		if err := e.start(); err != nil {
			return err
		}
	}
	return e.flush()
}

func (e *exportWriter) wrap(err error) error {
	if err == nil {
		return nil
	}
	return &exportWriteError{err: err}
}

// appendJSONFloat formats f as encoding/json does (the shortest form that
// reads back, with an exponent only below 1e-6 or from 1e21 on), so that a
// CSV field reads as the JSON value.
func appendJSONFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
