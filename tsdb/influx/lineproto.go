package influx

import (
	"encoding/base64"
	"encoding/binary"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// The schema (see DESIGN.md).
const (
	measOperation = "tool_operation"
	measSession   = "tool_session"

	// dupTag is set only on operations that found all 1000 nanosecond slots
	// of their series and microsecond taken (see slots): it moves them to a
	// series of their own. Queries never filter on it.
	dupTag = "dup"
)

// encodedPrefix marks a tag value stored base64url-encoded (see tagValue).
const encodedPrefix = "~b64~"

// tagValue answers v as stored in a tag. Line protocol cannot carry every
// string in a tag: not a line break, not a trailing backslash (it would
// escape the separator after it), and InfluxDB 1.x rejects invalid UTF-8.
// Such values, and any value that starts with encodedPrefix, are stored as
// encodedPrefix + base64url(v); every other value as it is. The mapping is
// injective, so equality filters work on the stored form, and decodeTag
// reverses it.
func tagValue(v string) string {
	if safeTag(v) {
		return v
	}
	return encodedPrefix + base64.RawURLEncoding.EncodeToString([]byte(v))
}

func safeTag(v string) bool {
	if v == "" || strings.HasPrefix(v, encodedPrefix) || strings.HasSuffix(v, `\`) || !utf8.ValidString(v) {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] == 0x7f {
			return false
		}
	}
	return true
}

// decodeTag reverses tagValue and fieldString.
func decodeTag(v string) string {
	if rest, ok := strings.CutPrefix(v, encodedPrefix); ok {
		if b, err := base64.RawURLEncoding.DecodeString(rest); err == nil {
			return string(b)
		}
	}
	return v
}

// fieldString answers v as stored in a string field. Line protocol carries
// any string field, but Flux's CSV answers (1.8 and 2.x: Go's encoding/csv
// with CRLF line ends) drop every carriage return inside a value. Values
// holding one, invalid UTF-8, or starting with encodedPrefix are stored as
// encodedPrefix + base64url(v); decodeTag reverses it.
func fieldString(v string) string {
	if strings.ContainsRune(v, '\r') || strings.HasPrefix(v, encodedPrefix) || !utf8.ValidString(v) {
		return encodedPrefix + base64.RawURLEncoding.EncodeToString([]byte(v))
	}
	return v
}

// lineWriter builds line protocol. Tags must be added in key order.
type lineWriter struct{ b []byte }

var (
	measEscaper = strings.NewReplacer(`,`, `\,`, ` `, `\ `)
	tagEscaper  = strings.NewReplacer(`,`, `\,`, `=`, `\=`, ` `, `\ `)
	strEscaper  = strings.NewReplacer(`\`, `\\`, `"`, `\"`)
)

func (w *lineWriter) start(meas string) { w.b = append(w.b, measEscaper.Replace(meas)...) }

// tag adds a tag; value must already be a stored tag value (tagValue).
func (w *lineWriter) tag(k, v string) {
	w.b = append(w.b, ',')
	w.b = append(w.b, k...)
	w.b = append(w.b, '=')
	w.b = append(w.b, tagEscaper.Replace(v)...)
}

type fieldSep struct{ n int }

func (w *lineWriter) sep(f *fieldSep) {
	if f.n == 0 {
		w.b = append(w.b, ' ')
	} else {
		w.b = append(w.b, ',')
	}
	f.n++
}

func (w *lineWriter) str(f *fieldSep, k, v string) {
	w.sep(f)
	w.b = append(w.b, k...)
	w.b = append(w.b, '=', '"')
	w.b = append(w.b, strEscaper.Replace(v)...)
	w.b = append(w.b, '"')
}

func (w *lineWriter) int(f *fieldSep, k string, v int64) {
	w.sep(f)
	w.b = append(w.b, k...)
	w.b = append(w.b, '=')
	w.b = strconv.AppendInt(w.b, v, 10)
	w.b = append(w.b, 'i')
}

// float writes a float field; the value always parses as a float (never
// as an integer), so the field's type never changes.
func (w *lineWriter) float(f *fieldSep, k string, v float64) {
	w.sep(f)
	w.b = append(w.b, k...)
	w.b = append(w.b, '=')
	w.b = strconv.AppendFloat(w.b, v, 'g', -1, 64)
}

func (w *lineWriter) end(t int64) {
	w.b = append(w.b, ' ')
	w.b = strconv.AppendInt(w.b, t, 10)
	w.b = append(w.b, '\n')
}

// operationSeries answers the series key of op (without dup), the key the
// slot allocator works on.
func operationSeries(op *tsdb.Operation) string {
	return op.OperationMode + "\x00" + op.SessionID.String() + "\x00" + op.ToolID + "\x00" + op.ToolName
}

// writeOperation appends op as one point at time created_at + offset ns.
func (w *lineWriter) writeOperation(op *tsdb.Operation, offset, dup int) {
	w.start(measOperation)
	if dup > 0 {
		w.tag(dupTag, strconv.Itoa(dup))
	}
	w.tag("operation_mode", op.OperationMode)
	w.tag("session_id", op.SessionID.String())
	w.tag("tool_id", tagValue(op.ToolID))
	w.tag("tool_name", op.ToolName)
	var f fieldSep
	if op.FilePath != nil {
		w.str(&f, "file_path", fieldString(*op.FilePath))
	}
	w.str(&f, "id", op.ID.String())
	params := string(op.Parameters)
	if params == "" {
		params = "{}"
	}
	w.str(&f, "parameters", params)
	w.float(&f, "response_time_ms", op.ResponseTimeMs)
	w.int(&f, "tokens_actual", op.TokensActual)
	w.int(&f, "tokens_original", op.TokensOriginal)
	w.int(&f, "tokens_prevented", op.TokensPrevented)
	w.end(op.CreatedAt.Truncate(time.Microsecond).UnixNano() + int64(offset))
}

// Session events (measurement tool_session, tags event, session_id,
// tool_id). A session is the merge of its events and its operations; see
// sessions.go.
const (
	eventStart     = "start"
	eventHeartbeat = "heartbeat"
	eventEnd       = "end"
)

func (w *lineWriter) writeSessionEvent(event, sessionID, toolID string, at time.Time, s *tsdb.Session) {
	w.start(measSession)
	w.tag("event", event)
	w.tag("session_id", sessionID)
	w.tag("tool_id", tagValue(toolID))
	var f fieldSep
	if s != nil {
		if s.InstanceID != nil {
			w.str(&f, "instance_id", fieldString(*s.InstanceID))
		}
		if s.ProcessID != nil {
			w.int(&f, "process_id", *s.ProcessID)
		}
		if s.ProjectID != nil {
			w.str(&f, "project_id", fieldString(*s.ProjectID))
		}
		if s.ToolVersion != nil {
			w.str(&f, "tool_version", fieldString(*s.ToolVersion))
		}
		if s.WorkspacePath != nil {
			w.str(&f, "workspace_path", fieldString(*s.WorkspacePath))
		}
	}
	w.int(&f, "v", 1)
	w.end(at.Truncate(time.Microsecond).UnixNano())
}

// slots hands out point-time offsets. InfluxDB keeps one point per series
// and timestamp: a second write with the same key overwrites the first.
// Operations arrive at microsecond precision, so each gets the time
// created_at + d ns with d in [0, 999], d unique among the operations of its
// series (tool_name, operation_mode, tool_id, session_id) and microsecond
// that this process has written. Because d < 1 µs, reading created_at back is
// truncating the point time to the microsecond, and windows on created_at map
// exactly onto point times (see timeRange).
//
// d starts at a hash of the operation id and probes upward, so that after a
// restart (the table starts empty) or between replicas two operations of one
// series and microsecond still only collide with probability about k/1000
// (k: operations already at that key), not certainly. When all 1000 slots are
// taken, the operation gets the next dup=N series instead.
//
// The table is bounded (maxKeys, oldest key evicted first): operations
// reusing a key evicted long ago fall back to the hash odds above.
type slots struct {
	mu    sync.Mutex
	used  map[slotKey]*slotSet
	order []slotKey // ring of keys in insertion order, for eviction
	next  int
	max   int
}

type slotKey struct {
	series string
	dup    int
	micros int64
}

type slotSet [16]uint64 // 1024 bits, 1000 used

const slotsPerMicro = 1000

func newSlots(maxKeys int) *slots {
	return &slots{used: make(map[slotKey]*slotSet), max: maxKeys}
}

// assign answers the offset and dup series for op.
func (s *slots) assign(op *tsdb.Operation) (offset, dup int) {
	series := operationSeries(op)
	micros := op.CreatedAt.Truncate(time.Microsecond).UnixNano() / 1000
	start := int(binary.BigEndian.Uint64(op.ID[8:]) % slotsPerMicro)
	s.mu.Lock()
	defer s.mu.Unlock()
	for dup = 0; ; dup++ {
		k := slotKey{series, dup, micros}
		set := s.used[k]
		if set == nil {
			set = new(slotSet)
			s.insert(k, set)
		}
		if d, ok := set.take(start); ok {
			return d, dup
		}
	}
}

func (s *slots) insert(k slotKey, set *slotSet) {
	if len(s.order) < s.max {
		s.order = append(s.order, k)
	} else {
		delete(s.used, s.order[s.next])
		s.order[s.next] = k
		s.next = (s.next + 1) % s.max
	}
	s.used[k] = set
}

// take marks and answers the first free slot at or after start (wrapping).
func (set *slotSet) take(start int) (int, bool) {
	for i := 0; i < slotsPerMicro; {
		d := (start + i) % slotsPerMicro
		word := set[d/64] >> (d % 64)
		if word == ^uint64(0)>>(d%64) { // the rest of this word is taken
			i += 64 - d%64
			continue
		}
		if word&1 == 0 {
			set[d/64] |= 1 << (d % 64)
			return d, true
		}
		// Jump to the next free bit in this word.
		skip := bits.TrailingZeros64(^word)
		i += skip
	}
	return 0, false
}
