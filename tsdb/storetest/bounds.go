package storetest

import (
	"math"
	"testing"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// RunTotalsAtTheBounds checks the store with totals beyond an int64: the
// contract takes token counts up to 2^63-1, so that two operations can
// sum past what a total holds. Every write and read succeeds, and every
// total is held at the bound it passed (as tsdb.AddSat holds it): from the
// rollups (a whole day), from the raw rows (part of an hour), by the
// hour, in an aggregate and in the session's tokens saved. The first
// operation is read before the others are written, so that a store that
// stages small writes has moved it into its rollups by then.
func RunTotalsAtTheBounds(t *testing.T, newStore func(t *testing.T) tsdb.Store) {
	s := newStore(t)
	g := newIDs(63)
	big := int64(1) << 62 // a float64 holds it exactly, as it does the bounds: SQLite sums in reals
	saved := g.mk(opSpec{at: at(10, 0, 0, 0), orig: big})
	write(t, s, saved)
	day := tsdb.Window{Start: ptr(at(0, 0, 0, 0)), End: at(24, 0, 0, 0)}
	checkBreakdown(t, s, day, []tsdb.ModeTotals{{ToolName: api.ToolRead, OperationMode: "full",
		Totals: tsdb.Totals{Count: 1, TokensOriginal: big, TokensPrevented: big}}})

	other := uuid.MustParse("6f1c1e2a-0000-4000-8000-0000000000b2")
	write(t, s,
		g.mk(opSpec{at: at(10, 1, 0, 0), orig: big}),
		g.mk(opSpec{at: at(10, 2, 0, 0), mode: "overview", act: big, toolID: "cursor", session: other}),
		g.mk(opSpec{at: at(10, 3, 0, 0), mode: "overview", act: big, toolID: "cursor", session: other}),
		// Two in one write: their sum passes the bound before any SQL.
		g.mk(opSpec{at: at(10, 4, 0, 0), mode: "symbol", orig: big}),
		g.mk(opSpec{at: at(10, 5, 0, 0), mode: "symbol", orig: big}))
	full := tsdb.Totals{Count: 2, TokensOriginal: math.MaxInt64, TokensPrevented: math.MaxInt64}
	overview := tsdb.Totals{Count: 2, TokensActual: math.MaxInt64, TokensPrevented: math.MinInt64}
	symbol := full
	want := []tsdb.ModeTotals{
		{ToolName: api.ToolRead, OperationMode: "full", Totals: full},
		{ToolName: api.ToolRead, OperationMode: "overview", Totals: overview},
		{ToolName: api.ToolRead, OperationMode: "symbol", Totals: symbol},
	}
	checkBreakdown(t, s, day, want)
	checkBreakdown(t, s, tsdb.Window{Start: ptr(at(9, 30, 0, 0)), End: at(10, 30, 0, 0)}, want)
	for _, c := range []struct {
		toolID string
		want   tsdb.Totals
	}{{"claude-code", tsdb.Totals{Count: 4, TokensOriginal: math.MaxInt64, TokensPrevented: math.MaxInt64}}, {"cursor", overview}} {
		w := day
		w.ToolID = c.toolID
		checkTrend(t, s, w, tsdb.Hourly, []tsdb.Bucket{{Start: at(10, 0, 0, 0), Totals: c.want}})
	}

	res, err := s.Aggregate(t.Context(), tsdb.AggregateQuery{
		GroupBy: []tsdb.Dimension{tsdb.DimOperationMode},
		Filter:  tsdb.OperationFilter{Start: day.Start, End: ptr(day.End)},
		Order:   tsdb.OrderByTokensOriginal,
		Limit:   10,
	})
	if err != nil {
		t.Fatalf("Aggregate: %v", err)
	}
	if len(res.Groups) != 3 || res.Groups[0].Totals != full || res.Groups[1].Totals != symbol || res.Groups[2].Totals != overview {
		t.Errorf("Aggregate by mode: %+v, want full %+v, symbol %+v, overview %+v", res.Groups, full, symbol, overview)
	}

	for _, c := range []struct {
		id   uuid.UUID
		want int64
		ops  int64
	}{{saved.SessionID, math.MaxInt64, 4}, {other, math.MinInt64, 2}} {
		stats, err := s.GetSession(t.Context(), c.id)
		if err != nil {
			t.Fatalf("GetSession: %v", err)
		}
		if stats.TotalOperations != c.ops || stats.TokensSaved != c.want {
			t.Errorf("session %s: %d operations, %d tokens saved; want %d and %d", c.id, stats.TotalOperations, stats.TokensSaved, c.ops, c.want)
		}
	}
}
