package sqlq

import (
	"cmp"
	"slices"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// OpRollup is one row of an operation rollup table: the sums of the
// operations of one (bucket, tool id, tool name, mode), or of one bucket
// over all keys.
type OpRollup struct {
	Start                  int64 // unix microseconds of the bucket's start
	ToolID, ToolName, Mode string
	tsdb.Totals
	Cache tsdb.CacheCounts
}

// OpRollups sums ops into rollup rows of width microseconds (an hour or a
// day), one per key, or with allKeys one per bucket (the keys left empty),
// in (start, tool id, tool name, mode) order: concurrent writers then lock
// shared rollup rows in one order and cannot deadlock.
func OpRollups(ops []tsdb.Operation, width int64, allKeys bool) []OpRollup {
	type key struct {
		start                  int64
		toolID, toolName, mode string
	}
	sums := make(map[key]*OpRollup, 4)
	for i := range ops {
		op := &ops[i]
		k := key{start: tsdb.FloorTo(op.CreatedAt.UnixMicro(), width)}
		if !allKeys {
			k.toolID, k.toolName, k.mode = op.ToolID, op.ToolName, op.OperationMode
		}
		r := sums[k]
		if r == nil {
			r = &OpRollup{Start: k.start, ToolID: k.toolID, ToolName: k.toolName, Mode: k.mode}
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
			cmp.Compare(a.ToolName, b.ToolName), cmp.Compare(a.Mode, b.Mode))
	})
	return out
}
