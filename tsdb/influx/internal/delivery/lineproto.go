package delivery

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// Encoder builds the line protocol of operations, session events and spend points (see
// package schema). Its zero value is ready to use.
type Encoder struct{ b []byte }

// Bytes answers the line protocol written so far.
func (w *Encoder) Bytes() []byte { return w.b }

var (
	measEscaper = strings.NewReplacer(`,`, `\,`, ` `, `\ `)
	tagEscaper  = strings.NewReplacer(`,`, `\,`, `=`, `\=`, ` `, `\ `)
	strEscaper  = strings.NewReplacer(`\`, `\\`, `"`, `\"`)
)

func (w *Encoder) start(meas string) { w.b = append(w.b, measEscaper.Replace(meas)...) }

// tag adds a tag; value must already be a stored tag value
// (schema.TagValue). Tags must be added in key order.
func (w *Encoder) tag(k, v string) {
	w.b = append(w.b, ',')
	w.b = append(w.b, k...)
	w.b = append(w.b, '=')
	w.b = append(w.b, tagEscaper.Replace(v)...)
}

type fieldSep struct{ n int }

func (w *Encoder) sep(f *fieldSep) {
	if f.n == 0 {
		w.b = append(w.b, ' ')
	} else {
		w.b = append(w.b, ',')
	}
	f.n++
}

func (w *Encoder) str(f *fieldSep, k, v string) {
	w.sep(f)
	w.b = append(w.b, k...)
	w.b = append(w.b, '=', '"')
	w.b = append(w.b, strEscaper.Replace(v)...)
	w.b = append(w.b, '"')
}

func (w *Encoder) int(f *fieldSep, k string, v int64) {
	w.sep(f)
	w.b = append(w.b, k...)
	w.b = append(w.b, '=')
	w.b = strconv.AppendInt(w.b, v, 10)
	w.b = append(w.b, 'i')
}

// boolean writes a boolean field.
func (w *Encoder) boolean(f *fieldSep, k string, v bool) {
	w.sep(f)
	w.b = append(w.b, k...)
	w.b = append(w.b, '=')
	w.b = strconv.AppendBool(w.b, v)
}

// float writes a float field; the value always parses as a float (never
// as an integer), so the field's type never changes.
func (w *Encoder) float(f *fieldSep, k string, v float64) {
	w.sep(f)
	w.b = append(w.b, k...)
	w.b = append(w.b, '=')
	w.b = strconv.AppendFloat(w.b, v, 'g', -1, 64)
}

func (w *Encoder) end(t int64) {
	w.b = append(w.b, ' ')
	w.b = strconv.AppendInt(w.b, t, 10)
	w.b = append(w.b, '\n')
}

// operationSeries hashes the series key of op (without dup), the key the
// slot allocator works on, into h.
func operationSeries(h *maphash.Hash, op *tsdb.Operation) {
	h.WriteString(op.OperationMode)
	h.WriteByte(0)
	h.Write(op.SessionID[:])
	h.WriteByte(0)
	h.WriteString(op.ToolID)
	h.WriteByte(0)
	h.WriteString(op.ToolName)
}

// spendSeries hashes the series key of p (without dup) for Slots into h;
// its first byte keeps it apart from every operation's.
func spendSeries(h *maphash.Hash, p *tsdb.SpendPoint) {
	h.WriteByte(1)
	h.WriteString(schema.Spend)
	h.WriteByte(0)
	h.WriteString(p.ToolID)
	h.WriteByte(0)
	h.WriteString(p.Model)
	h.WriteByte(0)
	if p.SessionID != nil {
		h.Write(p.SessionID[:])
	}
}

// Spend appends p as one point of schema.Spend at time p.Time + offset ns,
// in series dup when dup > 0 (see Slots).
func (w *Encoder) Spend(p *tsdb.SpendPoint, offset, dup int) {
	w.start(schema.Spend)
	if dup > 0 {
		w.tag(schema.TagDup, strconv.Itoa(dup))
	}
	w.tag(schema.TagModel, schema.TagValue(p.Model))
	if p.SessionID != nil {
		w.tag(schema.TagSessionID, p.SessionID.String())
	}
	w.tag(schema.TagToolID, schema.TagValue(p.ToolID))
	var f fieldSep
	w.float(&f, schema.FieldCostUSD, p.CostUSD)
	w.int(&f, schema.FieldTokensCacheCreation, p.Tokens.CacheCreation)
	w.int(&f, schema.FieldTokensCacheRead, p.Tokens.CacheRead)
	w.int(&f, schema.FieldTokensInput, p.Tokens.Input)
	w.int(&f, schema.FieldTokensOutput, p.Tokens.Output)
	w.end(p.Time.Truncate(time.Microsecond).UnixNano() + int64(offset))
}

// Operation appends op as one point at time created_at + offset ns, in
// series dup when dup > 0 (see Slots).
func (w *Encoder) Operation(op *tsdb.Operation, offset, dup int) {
	w.start(schema.Operation)
	if dup > 0 {
		w.tag(schema.TagDup, strconv.Itoa(dup))
	}
	w.tag(schema.TagOperationMode, op.OperationMode)
	w.tag(schema.TagSessionID, op.SessionID.String())
	w.tag(schema.TagToolID, schema.TagValue(op.ToolID))
	w.tag(schema.TagToolName, op.ToolName)
	var f fieldSep
	if op.CacheHit != nil {
		w.boolean(&f, schema.FieldCacheHit, *op.CacheHit)
	}
	if op.FilePath != nil {
		w.str(&f, schema.FieldFilePath, schema.FieldString(*op.FilePath))
	}
	w.str(&f, schema.FieldID, op.ID.String())
	params := string(op.Parameters)
	if params == "" {
		params = "{}"
	}
	w.str(&f, schema.FieldParameters, params)
	w.float(&f, schema.FieldResponseTimeMs, op.ResponseTimeMs)
	w.int(&f, schema.FieldTokensActual, op.TokensActual)
	w.int(&f, schema.FieldTokensOriginal, op.TokensOriginal)
	w.int(&f, schema.FieldTokensPrevented, op.TokensPrevented)
	w.end(op.CreatedAt.Truncate(time.Microsecond).UnixNano() + int64(offset))
}

// SessionEvent appends one session event (schema.EventStart,
// EventHeartbeat or EventEnd) at `at`; s carries a start event's
// attributes (nil for the others).
func (w *Encoder) SessionEvent(event, sessionID, toolID string, at time.Time, s *tsdb.Session) {
	w.start(schema.Session)
	w.tag(schema.TagEvent, event)
	w.tag(schema.TagSessionID, sessionID)
	w.tag(schema.TagToolID, schema.TagValue(toolID))
	var f fieldSep
	if s != nil {
		if s.InstanceID != nil {
			w.str(&f, schema.FieldInstanceID, schema.FieldString(*s.InstanceID))
		}
		if s.ProcessID != nil {
			w.int(&f, schema.FieldProcessID, *s.ProcessID)
		}
		if s.ProjectID != nil {
			w.str(&f, schema.FieldProjectID, schema.FieldString(*s.ProjectID))
		}
		if s.ToolVersion != nil {
			w.str(&f, schema.FieldToolVersion, schema.FieldString(*s.ToolVersion))
		}
		if s.WorkspacePath != nil {
			w.str(&f, schema.FieldWorkspacePath, schema.FieldString(*s.WorkspacePath))
		}
	}
	w.int(&f, schema.FieldVersion, 1)
	w.end(at.Truncate(time.Microsecond).UnixNano())
}

// Slots hands out point-time offsets. InfluxDB keeps one point per series
// and timestamp: a second write with the same key overwrites the first.
// Operations arrive at microsecond precision, so each gets the time
// created_at + d ns with d in [0, 999], d unique among the operations of its
// series (tool_name, operation_mode, tool_id, session_id) and microsecond
// that this process has written. Because d < 1 µs, reading created_at back is
// truncating the point time to the microsecond, and windows on created_at map
// exactly onto point times.
//
// d starts at a hash of the operation id and probes upward, so that after a
// restart (the table starts empty) or between replicas two operations of one
// series and microsecond still only collide with probability about k/1000
// (k: operations already at that key), not certainly. When all 1000 slots are
// taken, the operation gets the next dup=N series instead.
//
// The table is bounded (maxKeys, oldest key evicted first): operations
// reusing a key evicted long ago fall back to the hash odds above.
//
// A key is kept as a 64-bit hash of (series, dup, microsecond), and its
// taken offsets as the one offset until a second is taken, then as a set:
// nearly every key holds one point, so the default 65,536 keys take about
// 3 MB rather than the 30 MB of their series strings and sets. Two keys
// whose hashes collide share their offsets, which keeps each one's unique.
type Slots struct {
	seed maphash.Seed

	mu    sync.Mutex
	one   map[uint64]uint16   // keys with one offset taken: that offset
	many  map[uint64]*slotSet // keys with more offsets taken
	order []uint64            // ring of keys in insertion order, for eviction
	next  int
	max   int
}

type slotSet [16]uint64 // 1024 bits, 1000 used

const slotsPerMicro = 1000

// NewSlots answers a table that remembers at most maxKeys keys.
func NewSlots(maxKeys int) *Slots {
	return &Slots{seed: maphash.MakeSeed(), one: map[uint64]uint16{}, many: map[uint64]*slotSet{}, max: maxKeys}
}

// Assign answers the offset and dup series for op.
func (s *Slots) Assign(op *tsdb.Operation) (offset, dup int) {
	var h maphash.Hash
	h.SetSeed(s.seed)
	operationSeries(&h, op)
	return s.assign(h.Sum64(), op.CreatedAt, op.ID)
}

// AssignSpend answers the offset and dup series for p. A spend point's id
// is derived from its series and interval, so the offset its id hashes to
// is the same on every replica and after every restart: a retry that the
// ledger does not catch (another replica's) most likely lands on the same
// point key and overwrites the first copy.
func (s *Slots) AssignSpend(p *tsdb.SpendPoint) (offset, dup int) {
	var h maphash.Hash
	h.SetSeed(s.seed)
	spendSeries(&h, p)
	return s.assign(h.Sum64(), p.Time, p.ID)
}

// assign answers the offset and dup series of a point of the series
// hashed to series at time at, probing from the hash of id.
func (s *Slots) assign(series uint64, at time.Time, id uuid.UUID) (offset, dup int) {
	micros := at.Truncate(time.Microsecond).UnixNano() / 1000
	start := int(binary.BigEndian.Uint64(id[8:]) % slotsPerMicro)
	var b [24]byte
	binary.LittleEndian.PutUint64(b[:8], series)
	binary.LittleEndian.PutUint64(b[16:], uint64(micros))
	s.mu.Lock()
	defer s.mu.Unlock()
	for dup = 0; ; dup++ {
		binary.LittleEndian.PutUint64(b[8:16], uint64(dup))
		k := maphash.Bytes(s.seed, b[:])
		if set := s.many[k]; set != nil {
			if d, ok := set.take(start); ok {
				return d, dup
			}
			continue
		}
		d, ok := s.one[k]
		if !ok {
			s.insert(k)
			s.one[k] = uint16(start)
			return start, dup
		}
		set := new(slotSet)
		set.take(int(d))
		delete(s.one, k)
		s.many[k] = set
		d2, _ := set.take(start)
		return d2, dup
	}
}

// insert notes new key k, evicting the oldest past the bound.
func (s *Slots) insert(k uint64) {
	if len(s.order) < s.max {
		s.order = append(s.order, k)
		return
	}
	old := s.order[s.next]
	delete(s.one, old)
	delete(s.many, old)
	s.order[s.next] = k
	s.next = (s.next + 1) % s.max
}

// len answers the keys held.
func (s *Slots) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.one) + len(s.many)
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
