package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

const invalidSessionID = "Invalid session_id format: must be a valid UUID"

// idempotencyKey reads the Idempotency-Key header: "" when absent, a 422
// when it is not 1 to 255 visible ASCII characters.
func idempotencyKey(r *http.Request) (string, error) {
	key := r.Header.Get(api.HeaderIdempotencyKey)
	if key == "" {
		return "", nil
	}
	ok := len(key) <= api.MaxIdempotencyKeyLength
	for i := 0; ok && i < len(key); i++ {
		ok = key[i] > ' ' && key[i] < 0x7f
	}
	if !ok {
		return "", fieldError(fmt.Sprintf("Idempotency-Key should be 1 to %d visible ASCII characters", api.MaxIdempotencyKeyLength),
			"string_pattern_mismatch", "header", "idempotency-key")
	}
	return key, nil
}

// decodeOperation validates one operation object. It answers a
// validationError listing every bad field, or, when the fields are fine but
// session_id is not a UUID, the contract's 400. The operation's id is the
// client's operation_id when given; else, with an idempotency key, derived
// from the key and the session; else new.
func decodeOperation(o *object, now time.Time, key string) (tsdb.Operation, error) {
	sessionID, _, badSession := o.uuidField(fSessionID, true)
	clientID, keyed, badClientID := o.uuidField(fOperationID, false)
	if badClientID {
		o.fail(fOperationID, "Input should be a valid UUID in the 8-4-4-4-12 form", "uuid_parsing")
	}
	toolName := o.enum(fToolName, true, api.ToolNames)
	mode := o.enum(fOperationMode, true, api.OperationModes)
	params := o.jsonObject(fParameters)
	filePath := o.str(fFilePath, 0)
	original, hasOriginal := o.integer(fTokensOriginal, true, 0)
	actual, hasActual := o.integer(fTokensActual, true, 0)
	prevented, hasPrevented := o.integer(fTokensPrevented, false, math64Min)
	responseTime, _ := o.number(fResponseTimeMs, true, 0)
	toolID, _ := o.text(fToolID, true, true, api.MaxToolIDLength)
	createdAt := o.timestamp(fCreatedAt, now)
	cacheHit := o.boolean(fCacheHit)

	var tokensPrevented int64
	if hasOriginal && hasActual {
		diff := original - actual // both >= 0: cannot overflow
		tokensPrevented = tsdb.DefaultTokensPrevented(original, actual)
		if hasPrevented {
			if !tsdb.ValidTokensPrevented(original, actual, prevented) {
				o.fail(fTokensPrevented, fmt.Sprintf(
					"Value error, tokens_prevented must equal tokens_original - tokens_actual (%d) or max(0, tokens_original - tokens_actual)", diff),
					"value_error")
			}
			tokensPrevented = prevented
		}
	}
	if err := o.err(); err != nil {
		return tsdb.Operation{}, err
	}
	if badSession {
		return tsdb.Operation{}, badRequest(invalidSessionID)
	}
	if params == nil {
		params = json.RawMessage("{}")
	}
	id := clientID
	if !keyed {
		id, keyed = exporter.OperationID(sessionID, key)
	}
	return tsdb.Operation{
		ID:              id,
		Keyed:           keyed,
		SessionID:       sessionID,
		ToolName:        *toolName,
		OperationMode:   *mode,
		Parameters:      params,
		FilePath:        filePath,
		TokensOriginal:  original,
		TokensActual:    actual,
		TokensPrevented: tokensPrevented,
		ResponseTimeMs:  responseTime,
		ToolID:          toolID,
		CreatedAt:       createdAt,
		CacheHit:        cacheHit,
	}, nil
}

const math64Min = -1 << 63

// timestamp decodes an optional RFC 3339 time with an offset; absent or
// null is now, up to api.MaxClockSkew ahead is now, further ahead is an error.
func (o *object) timestamp(name field, now time.Time) time.Time {
	s, ok := o.text(name, false, false, 0)
	if !ok {
		return now
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		o.fail(name, "Input should be a valid RFC 3339 datetime with a time zone offset", "datetime_parsing")
		return now
	}
	t, err = tsdb.CheckCreatedAt(t, now)
	switch {
	case errors.Is(err, tsdb.ErrCreatedAtTooOld):
		o.fail(name, "Input should be a datetime in or after 1970", "datetime_too_old")
	case errors.Is(err, tsdb.ErrCreatedAtFuture):
		o.fail(name, fmt.Sprintf("Input should not be more than %s ahead of the server's clock", api.MaxClockSkew), "datetime_future")
	}
	return t
}

// ingestRoutes serve the POSTs of operations.
type ingestRoutes struct {
	svc   Ingester
	clock Clock
}

// now answers the clock at the stores' precision.
func (h ingestRoutes) now() time.Time { return h.clock.Now().UTC().Truncate(time.Microsecond) }

// trackOperation serves POST /track/tool-operation.
func (h ingestRoutes) trackOperation(w http.ResponseWriter, r *http.Request) (any, error) {
	data, err := readBody(r)
	if err != nil {
		return nil, err
	}
	o, err := decodeObject(data)
	if err != nil {
		return nil, err
	}
	key, keyErr := idempotencyKey(r)
	op, err := decodeOperation(o, h.now(), key)
	if err == nil {
		err = keyErr
	}
	if err != nil {
		return nil, err
	}
	ops := []tsdb.Operation{op}
	if err := h.svc.Track(r.Context(), ops...); err != nil {
		return nil, err
	}
	if ops[0].Duplicate {
		w.Header().Set(api.HeaderIdempotentReplayed, "true")
	}
	return api.TrackResponse{Status: api.StatusSuccess, OperationID: op.ID}, nil
}

// trackOperations serves POST /track/tool-operations: up to
// api.MaxBatchOperations operations in {"operations":[...]}, validated as a
// whole. If any item is invalid nothing is stored and the 422 names every bad
// item by index and field; otherwise all are stored in one commit and the
// ids are answered in order.
func (h ingestRoutes) trackOperations(w http.ResponseWriter, r *http.Request) (any, error) {
	data, err := readBody(r)
	if err != nil {
		return nil, err
	}
	key, keyErr := idempotencyKey(r)
	ops, err := decodeBatch(data, h.now(), key)
	if err == nil {
		err = keyErr
	}
	if err != nil {
		return nil, err
	}
	if err := h.svc.Track(r.Context(), ops...); err != nil {
		return nil, err
	}
	ids := make([]uuid.UUID, len(ops))
	replayed := true
	for i, op := range ops {
		ids[i] = op.ID
		replayed = replayed && op.Duplicate
	}
	if replayed {
		w.Header().Set(api.HeaderIdempotentReplayed, "true")
	}
	return api.BatchResponse{Status: api.StatusSuccess, Count: len(ids), OperationIDs: ids}, nil
}

// operationRoutes serve the reads of operations.
type operationRoutes struct {
	svc    OperationReader
	logger *slog.Logger
}

// query serves GET /metrics/tool-operations.
func (h operationRoutes) query(_ http.ResponseWriter, r *http.Request) (any, error) {
	f, err := parseOperationFilter(r.URL.Query())
	if err != nil {
		return nil, err
	}
	page, err := h.svc.QueryOperations(r.Context(), f)
	if err != nil {
		return nil, err
	}
	ops := make([]api.Operation, len(page.Operations))
	for i := range page.Operations {
		ops[i] = exporter.APIOperation(&page.Operations[i])
	}
	return api.OperationPage{Operations: ops, Total: page.Total, Limit: f.Limit, Offset: f.Offset}, nil
}

// parseOperationFilter reads the query endpoint's parameters. Paging errors
// (422) are reported before filter errors (400), as the original service
// validated its query parameters before its own checks. An empty value is
// the same as an absent one.
func parseOperationFilter(q url.Values) (tsdb.OperationFilter, error) {
	f := tsdb.OperationFilter{Limit: api.DefaultLimit}
	var errs []api.FieldError
	intParam := func(name string, min, max int, into *int) {
		s := q.Get(name)
		if s == "" {
			return
		}
		n, err := strconv.Atoi(s)
		switch {
		case err != nil:
			errs = append(errs, api.FieldError{Loc: []any{"query", name}, Msg: "Input should be a valid integer, unable to parse string as an integer", Type: "int_parsing"})
		case n < min:
			errs = append(errs, api.FieldError{Loc: []any{"query", name}, Msg: fmt.Sprintf("Input should be greater than or equal to %d", min), Type: "greater_than_equal"})
		case n > max:
			errs = append(errs, api.FieldError{Loc: []any{"query", name}, Msg: fmt.Sprintf("Input should be less than or equal to %d", max), Type: "less_than_equal"})
		default:
			*into = n
		}
	}
	intParam("limit", 1, api.MaxLimit, &f.Limit)
	intParam("offset", 0, 1<<31-1, &f.Offset)
	if len(errs) > 0 {
		return f, &validationError{errs: errs}
	}
	if s := q.Get("session_id"); s != "" {
		id, ok := api.ParseUUID(s)
		if !ok {
			return f, badRequest(invalidSessionID)
		}
		f.SessionID = &id
	}
	if s := q.Get("tool_name"); s != "" {
		if !api.ValidToolName(s) {
			return f, badRequest("Invalid tool_name: must be one of " + strings.Join(api.ToolNames, ", "))
		}
		f.ToolName = s
	}
	if s := q.Get("operation_mode"); s != "" {
		if !api.ValidOperationMode(s) {
			return f, badRequest("Invalid operation_mode: must be one of " + strings.Join(api.OperationModes, ", "))
		}
		f.OperationMode = s
	}
	f.ToolID = q.Get("tool_id")
	for _, d := range []struct {
		name string
		into **time.Time
	}{{"start_date", &f.Start}, {"end_date", &f.End}} {
		s := q.Get(d.name)
		if s == "" {
			continue
		}
		t, ok := ParseISOTime(s)
		if !ok {
			return f, badRequest(fmt.Sprintf("Invalid %s format: must be an ISO 8601 date or datetime (e.g. 2025-01-14 or 2025-01-14T10:30:00Z)", d.name))
		}
		*d.into = &t
	}
	return f, nil
}

// isoLayouts are the ISO 8601 forms a date filter takes; those without an
// offset are UTC.
var isoLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04:05Z0700",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04",
	"2006-01-02",
}

// ParseISOTime parses an ISO 8601 date or date-time: with Z, an offset, or
// none (UTC); a date alone is its 00:00 UTC; a space may stand for the T. A
// '+' of an offset that arrived unencoded in a query string (and so became a
// space) is restored.
func ParseISOTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if len(s) > 10 && s[10] == ' ' {
		s = s[:10] + "T" + s[11:]
	}
	if i := strings.LastIndexByte(s, ' '); i > 10 {
		s = s[:i] + "+" + s[i+1:]
	}
	for _, layout := range isoLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}
