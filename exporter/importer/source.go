package importer

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/internal/pgurl"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// The original service's tables, as its SQLAlchemy models create them.
// Columns marked required must exist; a missing optional column reads as
// NULL.
const (
	operationsTable = "tool_operations"
	sessionsTable   = "tool_sessions"
)

var (
	operationColumns = []column{
		{name: "id", required: true},
		{name: "session_id", required: true},
		{name: "tool_name", required: true},
		{name: "operation_mode", required: true},
		{name: "parameters"},
		{name: "file_path"},
		{name: "tokens_original", required: true},
		{name: "tokens_actual", required: true},
		{name: "tokens_prevented"},
		{name: "response_time_ms", required: true},
		{name: "tool_id", required: true},
		{name: "created_at", required: true, time: true},
		// Not in the original service: a fork that kept it brings it along.
		{name: "cache_hit"},
	}
	sessionColumns = []column{
		{name: "session_id", required: true},
		{name: "tool_id", required: true},
		{name: "tool_version"},
		{name: "process_id"},
		{name: "instance_id"},
		{name: "project_id"},
		{name: "workspace_path"},
		{name: "started_at", required: true, time: true},
		{name: "ended_at", time: true},
		{name: "last_activity", time: true},
	}
)

type column struct {
	name     string
	required bool
	time     bool
}

// source is the original service's database, opened read-only and read
// table by table in the order of a stable key, so that an import can stop
// after any row and continue there: SQLite's rowid; on PostgreSQL, which
// has none, tool_sessions' integer id and tool_operations' (created_at,
// id), which also finds the rows the service wrote since.
//
// Every source hands the rowConverter the same kinds of values: nil,
// int64, float64, string or []byte, times as text (with an offset when the
// source knows the zone), JSON as its text.
type source interface {
	// Name names the source in messages and checkpoints: the file's
	// absolute path, or the URL without its password.
	Name() string
	// HasSessions reports whether the source has a tool_sessions table.
	HasSessions() bool
	// Read answers up to limit rows of table after pos, in key order.
	Read(ctx context.Context, table string, after position, limit int) ([]rawRow, error)
	// Count answers how many rows of table lie after pos.
	Count(ctx context.Context, table string, after position) (int64, error)
	// HasEarlier reports whether a tool_operations row before pos holds
	// id, in any of the forms parseStoredUUID reads. It tells an operation
	// that the source itself repeats from one stored by an interrupted run.
	HasEarlier(ctx context.Context, before position, id uuid.UUID) (bool, error)
	Close() error
}

// openSource opens from: a postgresql:// or postgres:// URL, else a SQLite
// file.
func openSource(ctx context.Context, from string) (source, error) {
	if pgurl.Is(from) {
		return openPostgres(ctx, from)
	}
	return openSQLite(ctx, from)
}

// SourceName answers how an import names from (see Options.Source) in its
// checkpoint and messages: a file's absolute path, a URL without its
// password. A URL that cannot be used is an error.
func SourceName(from string) (string, error) {
	if pgurl.Is(from) {
		if _, err := parsePostgresURL(from); err != nil {
			return "", err
		}
		return pgurl.Redact(from), nil
	}
	return absPath(from)
}

// position is a place in a table's key order: the key of a row, or the
// start of the table (the zero position).
type position struct {
	// Rowid is SQLite's rowid, or tool_sessions' id on PostgreSQL.
	Rowid int64 `json:"rowid,omitempty"`
	// ID and Time are the key of tool_operations on PostgreSQL: the id as
	// text and created_at (timeKeyLayout, or infinity / -infinity), nil
	// for the rows without one, which come first.
	ID   *string `json:"id,omitempty"`
	Time *string `json:"time,omitempty"`
}

// timeKeyLayout writes created_at in a position: fixed width, so that the
// text orders as the times do.
const timeKeyLayout = "2006-01-02T15:04:05.000000Z"

func (p position) isStart() bool { return p.Rowid == 0 && p.ID == nil }

// before reports whether p comes before q in key order.
func (p position) before(q position) bool {
	if p.ID == nil && q.ID == nil {
		return p.Rowid < q.Rowid
	}
	if p.ID == nil || q.ID == nil { // the start comes first
		return p.ID == nil
	}
	if (p.Time == nil) != (q.Time == nil) {
		return p.Time == nil
	}
	if p.Time != nil && *p.Time != *q.Time {
		return timeRank(*p.Time) < timeRank(*q.Time) ||
			(timeRank(*p.Time) == timeRank(*q.Time) && *p.Time < *q.Time)
	}
	return *p.ID < *q.ID
}

// timeRank orders -infinity, the times, infinity.
func timeRank(s string) int {
	switch s {
	case "-infinity":
		return 0
	case "infinity":
		return 2
	}
	return 1
}

func (p position) String() string {
	switch {
	case p.ID == nil:
		return fmt.Sprintf("rowid %d", p.Rowid)
	case p.Time == nil:
		return fmt.Sprintf("id %s (no created_at)", *p.ID)
	}
	return fmt.Sprintf("created_at %s, id %s", *p.Time, *p.ID)
}

// rawRow is one source row: its position and its values.
type rawRow struct {
	pos    position
	values []any
}

// Reasons a source row is skipped. They name the first problem found, in
// the order of the API's own checks; the skipped-rows log gives them all.
const (
	ReasonBadID                = "bad_id"                 // id missing or not a UUID
	ReasonBadSessionID         = "bad_session_id"         // session_id missing or not a UUID
	ReasonUnknownToolName      = "unknown_tool_name"      // tool_name not read or search
	ReasonUnknownOperationMode = "unknown_operation_mode" // operation_mode not one of the contract's
	ReasonBadParameters        = "bad_parameters"         // not a JSON object, or nested too deep
	ReasonBadFilePath          = "bad_file_path"          // not text
	ReasonBadTokens            = "bad_tokens"             // a token count missing or not an integer
	ReasonNegativeTokens       = "negative_tokens"        // tokens_original or tokens_actual below 0
	ReasonInconsistentTokens   = "inconsistent_tokens"    // tokens_prevented neither form of original - actual
	ReasonBadResponseTime      = "bad_response_time"      // missing, not a number, negative or infinite
	ReasonBadToolID            = "bad_tool_id"            // missing, empty or too long
	ReasonBadCacheHit          = "bad_cache_hit"          // neither a boolean nor 0 or 1
	ReasonBadTime              = "bad_time"               // a time missing or unparsable
	ReasonTimeOutOfRange       = "time_out_of_range"      // before 1970 or too far ahead of the clock
	ReasonBadAttributes        = "bad_session_attributes" // a session's optional attribute of the wrong type
	ReasonInconsistentTimes    = "inconsistent_times"     // a session ended before it started
	ReasonDuplicateID          = "duplicate_id"           // an operation with this id is stored already
)

// problems collects what is wrong with one row.
type problems struct {
	reasons []string
	details []string
}

func (p *problems) add(reason, format string, args ...any) {
	p.reasons = append(p.reasons, reason)
	p.details = append(p.details, fmt.Sprintf(format, args...))
}

func (p *problems) ok() bool { return len(p.reasons) == 0 }

// rowConverter turns source rows into store values with the API's rules.
type rowConverter struct {
	loc *time.Location // of times written without an offset
	now time.Time
}

// operation converts one tool_operations row (values in operationColumns
// order). The operation keeps its id and is Keyed, so that a store stores
// it once however often the import runs.
func (c *rowConverter) operation(r rawRow) (tsdb.Operation, *problems) {
	v := r.values
	var p problems
	op := tsdb.Operation{Keyed: true}
	var ok bool
	if op.ID, ok = parseStoredUUID(v[0]); !ok {
		p.add(ReasonBadID, "id %s is not a UUID", show(v[0]))
	}
	if op.SessionID, ok = parseStoredUUID(v[1]); !ok {
		p.add(ReasonBadSessionID, "session_id %s is not a UUID", show(v[1]))
	}
	if s, isStr := v[2].(string); !isStr || !api.ValidToolName(s) {
		p.add(ReasonUnknownToolName, "tool_name %s is not one of %s", show(v[2]), strings.Join(api.ToolNames, ", "))
	} else {
		op.ToolName = s
	}
	if s, isStr := v[3].(string); !isStr || !api.ValidOperationMode(s) {
		p.add(ReasonUnknownOperationMode, "operation_mode %s is not one of %s", show(v[3]), strings.Join(api.OperationModes, ", "))
	} else {
		op.OperationMode = s
	}
	op.Parameters = parameters(v[4], &p)
	switch fp := v[5].(type) {
	case nil:
	case string:
		s := strings.ToValidUTF8(fp, "\uFFFD")
		op.FilePath = &s
	default:
		p.add(ReasonBadFilePath, "file_path %s is not text", show(v[5]))
	}
	original, okOrig := tokens("tokens_original", v[6], &p)
	actual, okActual := tokens("tokens_actual", v[7], &p)
	prevented, okPrev := int64(0), true
	if v[8] != nil {
		prevented, okPrev = integer(v[8])
		if !okPrev {
			p.add(ReasonBadTokens, "tokens_prevented %s is not an integer", show(v[8]))
		}
	}
	if okOrig && okActual {
		op.TokensOriginal, op.TokensActual = original, actual
		op.TokensPrevented = tsdb.DefaultTokensPrevented(original, actual)
		if v[8] != nil && okPrev {
			if !tsdb.ValidTokensPrevented(original, actual, prevented) {
				p.add(ReasonInconsistentTokens, "tokens_prevented %d is neither tokens_original - tokens_actual (%d) nor max(0, that)",
					prevented, original-actual)
			}
			op.TokensPrevented = prevented
		}
	}
	switch rt := v[9].(type) {
	case float64:
		op.ResponseTimeMs = rt
	case int64:
		op.ResponseTimeMs = float64(rt)
	default:
		p.add(ReasonBadResponseTime, "response_time_ms %s is not a number", show(v[9]))
	}
	if math.IsInf(op.ResponseTimeMs, 0) || math.IsNaN(op.ResponseTimeMs) || op.ResponseTimeMs < 0 {
		p.add(ReasonBadResponseTime, "response_time_ms %s is not a finite number >= 0", show(v[9]))
	}
	if s, isStr := v[10].(string); !isStr || !tsdb.ValidToolID(strings.ToValidUTF8(s, "\uFFFD")) {
		p.add(ReasonBadToolID, "tool_id %s is not text of 1 to %d characters", show(v[10]), api.MaxToolIDLength)
	} else {
		op.ToolID = strings.ToValidUTF8(s, "\uFFFD")
	}
	op.CreatedAt = c.time("created_at", v[11], true, &p)
	switch hit := v[12].(type) {
	case nil:
	case bool:
		op.CacheHit = &hit
	case int64:
		if hit == 0 || hit == 1 {
			op.CacheHit = new(hit == 1)
		} else {
			p.add(ReasonBadCacheHit, "cache_hit %s is neither a boolean nor 0 or 1", show(v[12]))
		}
	default:
		p.add(ReasonBadCacheHit, "cache_hit %s is neither a boolean nor 0 or 1", show(v[12]))
	}
	return op, &p
}

// session converts one tool_sessions row (values in sessionColumns order).
func (c *rowConverter) session(r rawRow) (tsdb.Session, *problems) {
	v := r.values
	var p problems
	var s tsdb.Session
	var ok bool
	if s.SessionID, ok = parseStoredUUID(v[0]); !ok {
		p.add(ReasonBadSessionID, "session_id %s is not a UUID", show(v[0]))
	}
	if t, isStr := v[1].(string); !isStr || !tsdb.ValidToolID(strings.ToValidUTF8(t, "\uFFFD")) {
		p.add(ReasonBadToolID, "tool_id %s is not text of 1 to %d characters", show(v[1]), api.MaxToolIDLength)
	} else {
		s.ToolID = strings.ToValidUTF8(t, "\uFFFD")
	}
	text := func(name string, val any) *string {
		switch t := val.(type) {
		case nil:
			return nil
		case string:
			t = strings.ToValidUTF8(t, "\uFFFD")
			return &t
		}
		p.add(ReasonBadAttributes, "%s %s is not text", name, show(val))
		return nil
	}
	s.ToolVersion = text("tool_version", v[2])
	if v[3] != nil {
		if n, isInt := integer(v[3]); isInt {
			s.ProcessID = &n
		} else {
			p.add(ReasonBadAttributes, "process_id %s is not an integer", show(v[3]))
		}
	}
	s.InstanceID = text("instance_id", v[4])
	s.ProjectID = text("project_id", v[5])
	s.WorkspacePath = text("workspace_path", v[6])
	s.StartedAt = c.time("started_at", v[7], true, &p)
	if v[8] != nil {
		ended := c.time("ended_at", v[8], false, &p)
		s.EndedAt = &ended
	}
	s.LastActivity = s.StartedAt
	if v[9] != nil {
		s.LastActivity = c.time("last_activity", v[9], false, &p)
	}
	if p.ok() {
		if s.EndedAt != nil && s.EndedAt.Before(s.StartedAt) {
			p.add(ReasonInconsistentTimes, "ended_at %s is before started_at %s", s.EndedAt.Format(time.RFC3339Nano), s.StartedAt.Format(time.RFC3339Nano))
		}
		if s.LastActivity.Before(s.StartedAt) {
			s.LastActivity = s.StartedAt
		}
	}
	return s, &p
}

// time reads a time column with the API's rules for created_at (see
// tsdb.CheckCreatedAt); a missing one is a problem when required.
func (c *rowConverter) time(name string, v any, required bool, p *problems) time.Time {
	s, isStr := v.(string)
	if v == nil && !required {
		return time.Time{}
	}
	if !isStr {
		p.add(ReasonBadTime, "%s %s is not a time", name, show(v))
		return time.Time{}
	}
	t, ok := ParseSourceTime(s, c.loc)
	if !ok {
		p.add(ReasonBadTime, "%s %s is not a time", name, show(v))
		return time.Time{}
	}
	t, err := tsdb.CheckCreatedAt(t, c.now)
	if err != nil {
		p.add(ReasonTimeOutOfRange, "%s %s: %v", name, show(v), err)
	}
	return t
}

// sourceTimeLayouts are the forms the original service's times take in its
// SQLite file: SQLAlchemy's DateTime writes "2025-01-14 10:30:00.123456"
// (naive, microseconds always present), SQLite's CURRENT_TIMESTAMP (a
// server_default) "2025-01-14 10:30:00", and rows written by other means
// ISO 8601 with a T, with or without an offset (Z, +00:00 or +0000).
// Fractional seconds of any length are accepted after the seconds.
var sourceTimeLayouts = []string{
	"2006-01-02 15:04:05",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02T15:04:05Z07:00",
	"2006-01-02 15:04:05Z0700",
	"2006-01-02T15:04:05Z0700",
}

// ParseSourceTime parses a time as the original service stored it; a time
// without an offset is in loc (the service wrote UTC: datetime.utcnow).
func ParseSourceTime(s string, loc *time.Location) (time.Time, bool) {
	s = strings.TrimSpace(s)
	for _, layout := range sourceTimeLayouts {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// parseStoredUUID reads a UUID as SQLAlchemy stores one on SQLite: text in
// the 36-character hyphenated form (a String column holding str(uuid4())),
// 32 hexadecimal digits (the Uuid type of SQLAlchemy 2, and the GUID
// type recipe of SQLAlchemy 1: CHAR(32)), or 16 raw bytes.
func parseStoredUUID(v any) (uuid.UUID, bool) {
	switch x := v.(type) {
	case string:
		if u, ok := api.ParseUUID(x); ok {
			return u, true
		}
		if len(x) == 32 {
			if _, err := hex.DecodeString(x); err == nil {
				u, err := uuid.Parse(x)
				return u, err == nil
			}
		}
	case []byte:
		if len(x) == 16 {
			u, err := uuid.FromBytes(x)
			return u, err == nil
		}
		return parseStoredUUID(string(x))
	}
	return uuid.UUID{}, false
}

// integer reads an INTEGER column's value. SQLite keeps an integral number
// written into an INTEGER column as an integer, so a REAL or TEXT value
// there is what the API refuses as well ("5000", 12.5).
func integer(v any) (int64, bool) {
	n, ok := v.(int64)
	return n, ok
}

func tokens(name string, v any, p *problems) (int64, bool) {
	n, ok := integer(v)
	if !ok {
		p.add(ReasonBadTokens, "%s %s is not an integer", name, show(v))
		return 0, false
	}
	if n < 0 {
		p.add(ReasonNegativeTokens, "%s %d is negative", name, n)
		return 0, false
	}
	return n, true
}

// parameters reads the JSON column: SQLAlchemy's JSON type writes
// json.dumps of the value (None as the text null). Absent or null is {}.
func parameters(v any, p *problems) json.RawMessage {
	var raw []byte
	switch x := v.(type) {
	case nil:
		return json.RawMessage("{}")
	case string:
		raw = []byte(x)
	case []byte:
		raw = x
	default:
		p.add(ReasonBadParameters, "parameters %s is not a JSON object", show(v))
		return nil
	}
	raw = bytes.TrimSpace(raw)
	if string(raw) == "null" {
		return json.RawMessage("{}")
	}
	if len(raw) == 0 || raw[0] != '{' || !json.Valid(raw) {
		p.add(ReasonBadParameters, "parameters %s is not a JSON object", show(v))
		return nil
	}
	if d := tsdb.JSONDepth(raw); d > tsdb.MaxParameterDepth {
		p.add(ReasonBadParameters, "parameters are nested %d levels deep, more than %d", d, tsdb.MaxParameterDepth)
		return nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		p.add(ReasonBadParameters, "parameters %s is not a JSON object", show(v))
		return nil
	}
	if !utf8.Valid(buf.Bytes()) {
		return json.RawMessage(strings.ToValidUTF8(buf.String(), "\uFFFD"))
	}
	return buf.Bytes()
}

// show renders a source value for a message: text quoted and cut at 80
// characters, blobs in hexadecimal, NULL as NULL.
func show(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		if utf8.RuneCountInString(x) > 80 {
			x = string([]rune(x)[:80]) + "..."
		}
		return fmt.Sprintf("%q", x)
	case []byte:
		if len(x) > 40 {
			return "x'" + hex.EncodeToString(x[:40]) + "...'"
		}
		return "x'" + hex.EncodeToString(x) + "'"
	case float64:
		return fmt.Sprint(x)
	default:
		return fmt.Sprint(x)
	}
}
