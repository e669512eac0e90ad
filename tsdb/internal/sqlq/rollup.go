package sqlq

import (
	"bytes"
	"cmp"
	"slices"

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
	type rowKey struct {
		start                  int64
		toolID, toolName, mode string
		fileNull               bool
		filePath               string
		sessionID              uuid.UUID
	}
	sums := make(map[rowKey]*OpRollup, 4)
	for i := range ops {
		op := &ops[i]
		k := rowKey{start: tsdb.FloorTo(op.CreatedAt.UnixMicro(), width)}
		switch key {
		case ByTool:
			k.toolID, k.toolName, k.mode = op.ToolID, op.ToolName, op.OperationMode
		case ByFile:
			k.fileNull = op.FilePath == nil
			if op.FilePath != nil {
				k.filePath = *op.FilePath
			}
		case BySession:
			k.sessionID = op.SessionID
		}
		r := sums[k]
		if r == nil {
			r = &OpRollup{Start: k.start, ToolID: k.toolID, ToolName: k.toolName, Mode: k.mode, FileNull: k.fileNull, FilePath: k.filePath,
				SessionID: k.sessionID}
			sums[k] = r
		}
		r.Totals.Add(tsdb.TotalsOf(op))
		r.Cache.Add(tsdb.CacheOf(op))
	}
	out := make([]OpRollup, 0, len(sums))
	for _, r := range sums {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b OpRollup) int {
		return cmp.Or(cmp.Compare(a.Start, b.Start), cmp.Compare(a.ToolID, b.ToolID),
			cmp.Compare(a.ToolName, b.ToolName), cmp.Compare(a.Mode, b.Mode),
			cmp.Compare(boolInt(a.FileNull), boolInt(b.FileNull)), cmp.Compare(a.FilePath, b.FilePath),
			bytes.Compare(a.SessionID[:], b.SessionID[:]))
	})
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
