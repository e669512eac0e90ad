package sqlq

import (
	"bytes"
	"cmp"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// RollupKey says what a rollup table keys its rows by besides their bucket.
type RollupKey int

// The keys of the operation rollup tables.
const (
	// ByTool: tool id, tool name and mode (op_rollup_hourly,
	// op_rollup_daily).
	ByTool RollupKey = iota
	// ByBucket: nothing but the bucket (op_rollup_hourly_all).
	ByBucket
	// ByFile: the file path, or none (op_rollup_file_daily).
	ByFile
	// BySession: the session (op_rollup_session_daily).
	BySession
)

// OpRollup is one row of an operation rollup table: the sums of the
// operations of one bucket and key (the fields of other keys are zero).
type OpRollup struct {
	Start                  int64 // unix microseconds of the bucket's start
	ToolID, ToolName, Mode string
	FileNull               bool // ByFile: the operations have no file path
	FilePath               string
	SessionID              uuid.UUID // BySession
	tsdb.Totals
	Cache tsdb.CacheCounts
}

// OpRollups sums ops into rollup rows of width microseconds (an hour or a
// day) keyed by key, in key order (bucket first): concurrent writers then
// lock shared rollup rows in one order and cannot deadlock.
func OpRollups(ops []tsdb.Operation, width int64, key RollupKey) []OpRollup {
	// Each key sums under a map key of its own fields alone, and sorts by
	// them alone: the other fields are zero in every row, so the order is
	// that of (start, tool id, tool name, mode, no file, file path,
	// session) all the same, for less hashing and comparing per operation.
	switch key {
	case ByTool:
		type k struct {
			start                  int64
			toolID, toolName, mode string
		}
		return sumRows(ops, width,
			func(op *tsdb.Operation, start int64) k { return k{start, op.ToolID, op.ToolName, op.OperationMode} },
			func(k k) OpRollup {
				return OpRollup{Start: k.start, ToolID: k.toolID, ToolName: k.toolName, Mode: k.mode}
			},
			func(a, b *OpRollup) int {
				return cmp.Or(cmp.Compare(a.Start, b.Start), strings.Compare(a.ToolID, b.ToolID))
			},
			func(a, b *OpRollup) int {
				return cmp.Or(strings.Compare(a.ToolName, b.ToolName), strings.Compare(a.Mode, b.Mode))
			})
	case ByFile:
		type k struct {
			start    int64
			fileNull bool
			filePath string
		}
		return sumRows(ops, width,
			func(op *tsdb.Operation, start int64) k {
				if op.FilePath == nil {
					return k{start: start, fileNull: true}
				}
				return k{start: start, filePath: *op.FilePath}
			},
			func(k k) OpRollup { return OpRollup{Start: k.start, FileNull: k.fileNull, FilePath: k.filePath} },
			func(a, b *OpRollup) int {
				return cmp.Or(cmp.Compare(a.Start, b.Start), cmp.Compare(boolInt(a.FileNull), boolInt(b.FileNull)))
			},
			func(a, b *OpRollup) int { return strings.Compare(a.FilePath, b.FilePath) })
	case BySession:
		type k struct {
			start     int64
			sessionID uuid.UUID
		}
		return sumRows(ops, width,
			func(op *tsdb.Operation, start int64) k { return k{start, op.SessionID} },
			func(k k) OpRollup { return OpRollup{Start: k.start, SessionID: k.sessionID} },
			func(a, b *OpRollup) int { return cmp.Compare(a.Start, b.Start) },
			func(a, b *OpRollup) int { return bytes.Compare(a.SessionID[:], b.SessionID[:]) })
	}
	return sumRows(ops, width,
		func(_ *tsdb.Operation, start int64) int64 { return start },
		func(start int64) OpRollup { return OpRollup{Start: start} },
		func(a, b *OpRollup) int { return cmp.Compare(a.Start, b.Start) },
		func(a, b *OpRollup) int { return 0 })
}

// sumRows sums ops into a row per key (keyOf: an operation's key, given
// the start of its bucket of width; rowOf: the empty row of a key), in the
// order of cmp1 then cmp2 (the second only on a tie of the first). A run of
// operations with the key of the one before (a batch in time order) adds to
// its row without a map lookup.
func sumRows[K comparable](ops []tsdb.Operation, width int64, keyOf func(*tsdb.Operation, int64) K, rowOf func(K) OpRollup,
	cmp1, cmp2 func(a, b *OpRollup) int) []OpRollup {
	rows := make([]OpRollup, 0, 8)
	index := make(map[K]int, 8)
	var last K
	at := -1
	for i := range ops {
		op := &ops[i]
		k := keyOf(op, tsdb.FloorTo(op.CreatedAt.UnixMicro(), width))
		if at < 0 || k != last {
			j, ok := index[k]
			if !ok {
				j = len(rows)
				index[k] = j
				rows = append(rows, rowOf(k))
			}
			last, at = k, j
		}
		r := &rows[at]
		r.Totals.Add(tsdb.TotalsOf(op))
		r.Cache.Add(tsdb.CacheOf(op))
	}
	order := make([]*OpRollup, len(rows))
	for i := range rows {
		order[i] = &rows[i]
	}
	slices.SortFunc(order, func(a, b *OpRollup) int {
		if c := cmp1(a, b); c != 0 {
			return c
		}
		return cmp2(a, b)
	})
	out := make([]OpRollup, len(rows))
	for i, r := range order {
		out[i] = *r
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// The bounds of a bigint, as SQL both dialects read as bigints.
const (
	sqlMaxInt = "9223372036854775807"
	sqlMinInt = "(-9223372036854775807 - 1)"
)

// AddSat writes a + b, two bigint expressions, held at the bounds of a
// bigint instead of failing (PostgreSQL: "bigint out of range") or turning
// into a real that no longer reads as an integer (SQLite), as tsdb.AddSat
// holds the sums made in Go. A rollup row's upsert that failed would fail
// every later move of the operations staged behind it.
func AddSat(a, b string) string {
	return "CASE WHEN " + b + " > 0 AND " + a + " > " + sqlMaxInt + " - " + b + " THEN " + sqlMaxInt +
		" WHEN " + b + " < 0 AND " + a + " < " + sqlMinInt + " - " + b + " THEN " + sqlMinInt +
		" ELSE " + a + " + " + b + " END"
}

// RollupSumsSet writes the SET list of the upsert that adds a batch's sums
// to an operation rollup row (ref: the row's name and a dot, or "" when
// the columns need no qualifier), the integer sums held by AddSat.
func RollupSumsSet(ref string) string {
	set := make([]string, 0, 7)
	for _, c := range []string{"count", "tokens_original", "tokens_actual", "tokens_prevented", "response_time_sum", "cache_lookups", "cache_hits"} {
		if c == "response_time_sum" {
			set = append(set, "\n\t"+c+" = "+ref+c+" + excluded."+c)
			continue
		}
		set = append(set, "\n\t"+c+" = "+AddSat(ref+c, "excluded."+c))
	}
	return strings.Join(set, ",")
}
