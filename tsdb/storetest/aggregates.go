package storetest

import (
	"math/rand"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

func mt(tool, mode string, n, orig, act, prev int64, rt float64) tsdb.ModeTotals {
	return tsdb.ModeTotals{ToolName: tool, OperationMode: mode, Totals: tot(n, orig, act, prev, rt)}
}

func tot(n, orig, act, prev int64, rt float64) tsdb.Totals {
	return tsdb.Totals{Count: n, TokensOriginal: orig, TokensActual: act, TokensPrevented: prev, ResponseTimeSumMs: rt}
}

func testBreakdownHand(t *testing.T, s tsdb.Store) {
	g := newIDs(10)
	R, S := api.ToolRead, api.ToolSearch
	ops := []tsdb.Operation{
		g.mk(opSpec{tool: R, mode: "full", toolID: "A", at: at(10, 17, 23, 123456), orig: 1000, act: 200, rt: 10}),
		g.mk(opSpec{tool: R, mode: "full", toolID: "A", at: at(10, 17, 23, 123455), orig: 7, act: 7, rt: 1}),
		g.mk(opSpec{tool: R, mode: "overview", toolID: "B", at: at(11, 0, 0, 0), orig: 500, act: 100, rt: 20}),
		g.mk(opSpec{tool: S, mode: "semantic", toolID: "A", at: at(12, 30, 0, 0), orig: 300, act: 400, rt: 30}),
		g.mk(opSpec{tool: S, mode: "semantic", toolID: "A", at: at(13, 5, 0, 0), orig: 200, act: 50, rt: 40.5}),
		g.mk(opSpec{tool: R, mode: "full", toolID: "A", at: at(13, 5, 0, 1), orig: 10, act: 5, rt: 2}),
		g.mk(opSpec{tool: R, mode: "full", toolID: "B", at: at(0, 0, 0, -1), orig: 50, act: 10, rt: 5}),
		// max(0, orig-act) form: prevented 0 although actual > original
		g.mk(opSpec{tool: S, mode: "symbol", toolID: "B", at: at(11, 30, 0, 0), orig: 10, act: 20, prev: ptr(int64(0)), rt: 0.25}),
	}
	writeBatches(t, s, ops, 3)
	start, end := at(10, 17, 23, 123456), at(13, 5, 0, 0)
	tests := []struct {
		name string
		w    tsdb.Window
		want []tsdb.ModeTotals
	}{
		{"unaligned window, inclusive edges", tsdb.Window{Start: &start, End: end}, []tsdb.ModeTotals{
			mt(R, "full", 1, 1000, 200, 800, 10),
			mt(R, "overview", 1, 500, 100, 400, 20),
			mt(S, "semantic", 2, 500, 450, 50, 70.5),
			mt(S, "symbol", 1, 10, 20, 0, 0.25),
		}},
		{"tool id", tsdb.Window{ToolID: "A", Start: &start, End: end}, []tsdb.ModeTotals{
			mt(R, "full", 1, 1000, 200, 800, 10),
			mt(S, "semantic", 2, 500, 450, 50, 70.5),
		}},
		{"edges 1us inside", tsdb.Window{Start: ptr(start.Add(time.Microsecond)), End: end.Add(-time.Microsecond)}, []tsdb.ModeTotals{
			mt(R, "overview", 1, 500, 100, 400, 20),
			mt(S, "semantic", 1, 300, 400, -100, 30),
			mt(S, "symbol", 1, 10, 20, 0, 0.25),
		}},
		{"no start", tsdb.Window{End: end}, []tsdb.ModeTotals{
			mt(R, "full", 3, 1057, 217, 840, 16),
			mt(R, "overview", 1, 500, 100, 400, 20),
			mt(S, "semantic", 2, 500, 450, 50, 70.5),
			mt(S, "symbol", 1, 10, 20, 0, 0.25),
		}},
		{"no start, tool id", tsdb.Window{ToolID: "B", End: end}, []tsdb.ModeTotals{
			mt(R, "full", 1, 50, 10, 40, 5),
			mt(R, "overview", 1, 500, 100, 400, 20),
			mt(S, "symbol", 1, 10, 20, 0, 0.25),
		}},
		{"aligned hours", tsdb.Window{Start: ptr(at(11, 0, 0, 0)), End: at(13, 0, 0, 0)}, []tsdb.ModeTotals{
			mt(R, "overview", 1, 500, 100, 400, 20),
			mt(S, "semantic", 1, 300, 400, -100, 30),
			mt(S, "symbol", 1, 10, 20, 0, 0.25),
		}},
		{"one instant", tsdb.Window{Start: ptr(at(11, 0, 0, 0)), End: at(11, 0, 0, 0)}, []tsdb.ModeTotals{
			mt(R, "overview", 1, 500, 100, 400, 20),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			sortModes(want)
			if brute := bruteBreakdown(ops, tc.w); !modesEq(brute, want) {
				t.Fatalf("test data: brute force disagrees:%s", fmtModes(brute))
			}
			checkBreakdown(t, s, tc.w, want)
		})
	}
}

// edgeData puts operations on and next to hour and day boundaries.
func edgeData(g *ids) []tsdb.Operation {
	var ops []tsdb.Operation
	tools := []string{api.ToolRead, api.ToolSearch}
	modes := []string{"full", "symbol", "tri_index"}
	i := 0
	for h := -2; h < 30; h += 3 {
		hour := base.Add(time.Duration(h) * time.Hour)
		for _, d := range []time.Duration{-time.Microsecond, 0, time.Microsecond, 17*time.Minute + 23*time.Second + 123456*time.Microsecond, 59*time.Minute + 59*time.Second} {
			i++
			ops = append(ops, g.mk(opSpec{tool: tools[i%2], mode: modes[i%3], toolID: []string{"A", "B"}[i/2%2],
				at: hour.Add(d), orig: int64(10 * i), act: int64(7 * (i % 5) * i), rt: float64(i) * 0.5}))
		}
	}
	return ops
}

func testBreakdownEdges(t *testing.T, s tsdb.Store) {
	g := newIDs(11)
	ops := edgeData(g)
	write(t, s, ops...)
	var windows []tsdb.Window
	for i, a := range ops {
		for _, b := range ops[i:] {
			if b.CreatedAt.Before(a.CreatedAt) {
				continue
			}
			for _, d := range []time.Duration{0, time.Microsecond} {
				windows = append(windows, tsdb.Window{Start: ptr(a.CreatedAt.Add(d)), End: b.CreatedAt.Add(-d)})
			}
		}
		windows = append(windows, tsdb.Window{End: a.CreatedAt}, tsdb.Window{ToolID: "B", End: a.CreatedAt},
			tsdb.Window{ToolID: "A", Start: &a.CreatedAt, End: a.CreatedAt.Add(26 * time.Hour)})
	}
	windows = append(windows,
		tsdb.Window{Start: ptr(at(10, 17, 23, 123456)), End: at(13, 5, 0, 0)},
		tsdb.Window{Start: ptr(at(1, 0, 0, 0)), End: at(25, 0, 0, 0)},
		tsdb.Window{Start: ptr(at(1, 0, 0, 0)), End: at(24, 59, 59, 999999)},
	)
	// Every pair would be a few thousand queries; a fixed sample keeps it quick.
	r := rand.New(rand.NewSource(11))
	r.Shuffle(len(windows), func(i, j int) { windows[i], windows[j] = windows[j], windows[i] })
	for _, w := range windows[:min(len(windows), 400)] {
		checkBreakdown(t, s, w, bruteBreakdown(ops, w))
		if t.Failed() {
			return
		}
	}
}

func testBreakdownEmpty(t *testing.T, s tsdb.Store) {
	w := tsdb.Window{Start: ptr(at(0, 0, 0, 0)), End: at(24, 0, 0, 0)}
	checkBreakdown(t, s, w, []tsdb.ModeTotals{})
	checkBreakdown(t, s, tsdb.Window{End: at(24, 0, 0, 0)}, []tsdb.ModeTotals{})
	checkTrend(t, s, w, tsdb.Hourly, []tsdb.Bucket{})
	checkTrend(t, s, w, tsdb.Daily, []tsdb.Bucket{})

	g := newIDs(12)
	write(t, s, g.mk(opSpec{at: at(12, 0, 0, 0), orig: 5, toolID: "A"}))
	for _, w := range []tsdb.Window{
		{Start: ptr(at(12, 0, 0, 1)), End: at(13, 0, 0, 0)},
		{Start: ptr(at(11, 0, 0, 0)), End: at(11, 59, 59, 999999)},
		{End: at(11, 59, 59, 999999)},
		{ToolID: "B", Start: ptr(at(0, 0, 0, 0)), End: at(24, 0, 0, 0)},
	} {
		checkBreakdown(t, s, w, []tsdb.ModeTotals{})
		checkTrend(t, s, w, tsdb.Hourly, []tsdb.Bucket{})
		checkTrend(t, s, w, tsdb.Daily, []tsdb.Bucket{})
	}
}

// checkTrendSumsBreakdown checks that the buckets add up to the breakdown.
func checkTrendSumsBreakdown(t *testing.T, s tsdb.Store, w tsdb.Window) {
	t.Helper()
	modes, err := s.Breakdown(t.Context(), w)
	if err != nil {
		t.Fatal(err)
	}
	var want tsdb.Totals
	for _, m := range modes {
		want.Add(m.Totals)
	}
	for _, step := range []tsdb.Step{tsdb.Hourly, tsdb.Daily} {
		buckets, err := s.Trend(t.Context(), w, step)
		if err != nil {
			t.Fatal(err)
		}
		var got tsdb.Totals
		for _, b := range buckets {
			got.Add(b.Totals)
		}
		if !totalsEq(got, want) {
			t.Errorf("Trend(%s, step %v) buckets sum to %s, Breakdown totals %s", fmtWindow(w), step, fmtTotals(got), fmtTotals(want))
		}
	}
}

func testTrendHourly(t *testing.T, s tsdb.Store) {
	g := newIDs(13)
	R, S := api.ToolRead, api.ToolSearch
	ops := []tsdb.Operation{
		g.mk(opSpec{tool: R, at: at(9, 59, 59, 999999), orig: 10, act: 5, rt: 1}),
		g.mk(opSpec{tool: R, at: at(10, 0, 0, 0), orig: 100, act: 50, rt: 2}),
		g.mk(opSpec{tool: S, mode: "semantic", at: at(10, 30, 0, 0), orig: 200, act: 100, rt: 3, toolID: "B"}),
		g.mk(opSpec{tool: R, at: at(10, 59, 59, 999999), orig: 1, act: 1, rt: 4}),
		g.mk(opSpec{tool: R, at: at(12, 15, 0, 0), orig: 40, act: 10, rt: 5}),
		g.mk(opSpec{tool: S, mode: "tri_index", at: at(13, 0, 0, 0), orig: 8, act: 9, rt: 6}),
	}
	write(t, s, ops...)
	tests := []struct {
		name string
		w    tsdb.Window
		want []tsdb.Bucket
	}{
		{"window starts mid-bucket", tsdb.Window{Start: ptr(at(10, 20, 0, 0)), End: at(13, 0, 0, 0)}, []tsdb.Bucket{
			{Start: at(10, 0, 0, 0), Totals: tot(2, 201, 101, 100, 7)},
			{Start: at(12, 0, 0, 0), Totals: tot(1, 40, 10, 30, 5)},
			{Start: at(13, 0, 0, 0), Totals: tot(1, 8, 9, -1, 6)},
		}},
		{"no start", tsdb.Window{End: at(13, 0, 0, 0)}, []tsdb.Bucket{
			{Start: at(9, 0, 0, 0), Totals: tot(1, 10, 5, 5, 1)},
			{Start: at(10, 0, 0, 0), Totals: tot(3, 301, 151, 150, 9)},
			{Start: at(12, 0, 0, 0), Totals: tot(1, 40, 10, 30, 5)},
			{Start: at(13, 0, 0, 0), Totals: tot(1, 8, 9, -1, 6)},
		}},
		{"end 1us before an operation", tsdb.Window{Start: ptr(at(9, 59, 59, 999999)), End: at(12, 59, 59, 999999)}, []tsdb.Bucket{
			{Start: at(9, 0, 0, 0), Totals: tot(1, 10, 5, 5, 1)},
			{Start: at(10, 0, 0, 0), Totals: tot(3, 301, 151, 150, 9)},
			{Start: at(12, 0, 0, 0), Totals: tot(1, 40, 10, 30, 5)},
		}},
		{"tool id", tsdb.Window{ToolID: "B", Start: ptr(at(0, 0, 0, 0)), End: at(23, 0, 0, 0)}, []tsdb.Bucket{
			{Start: at(10, 0, 0, 0), Totals: tot(1, 200, 100, 100, 3)},
		}},
		{"inside one hour", tsdb.Window{Start: ptr(at(10, 0, 0, 1)), End: at(10, 59, 59, 999999)}, []tsdb.Bucket{
			{Start: at(10, 0, 0, 0), Totals: tot(2, 201, 101, 100, 7)},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if brute := bruteTrend(ops, tc.w, tsdb.Hourly); !bucketsEq(brute, tc.want) {
				t.Fatalf("test data: brute force disagrees:%s", fmtBuckets(brute))
			}
			checkTrend(t, s, tc.w, tsdb.Hourly, tc.want)
			checkTrendSumsBreakdown(t, s, tc.w)
		})
	}
}

func testTrendDaily(t *testing.T, s tsdb.Store) {
	g := newIDs(14)
	day := func(d, h int) time.Time { return base.AddDate(0, 0, d).Add(time.Duration(h) * time.Hour) }
	ops := []tsdb.Operation{
		g.mk(opSpec{at: day(0, 0).Add(-time.Microsecond), orig: 1, act: 0, rt: 1}),
		g.mk(opSpec{at: day(0, 0), orig: 10, act: 0, rt: 2}),
		g.mk(opSpec{at: day(0, 12), orig: 100, act: 0, rt: 3, tool: api.ToolSearch, mode: "semantic"}),
		g.mk(opSpec{at: day(1, 8), orig: 1000, act: 0, rt: 4}),
		g.mk(opSpec{at: day(3, 0), orig: 10000, act: 20000, rt: 5}),
	}
	write(t, s, ops...)
	tests := []struct {
		name string
		w    tsdb.Window
		want []tsdb.Bucket
	}{
		{"several days", tsdb.Window{Start: ptr(day(-1, 12)), End: day(3, 0)}, []tsdb.Bucket{
			{Start: day(-1, 0), Totals: tot(1, 1, 0, 1, 1)},
			{Start: day(0, 0), Totals: tot(2, 110, 0, 110, 5)},
			{Start: day(1, 0), Totals: tot(1, 1000, 0, 1000, 4)},
			{Start: day(3, 0), Totals: tot(1, 10000, 20000, -10000, 5)},
		}},
		{"window starts and ends mid-day", tsdb.Window{Start: ptr(day(0, 6)), End: day(1, 8).Add(-time.Microsecond)}, []tsdb.Bucket{
			{Start: day(0, 0), Totals: tot(1, 100, 0, 100, 3)},
		}},
		{"start at exact day start", tsdb.Window{Start: ptr(day(0, 0)), End: day(1, 8)}, []tsdb.Bucket{
			{Start: day(0, 0), Totals: tot(2, 110, 0, 110, 5)},
			{Start: day(1, 0), Totals: tot(1, 1000, 0, 1000, 4)},
		}},
		{"no start", tsdb.Window{End: day(0, 11)}, []tsdb.Bucket{
			{Start: day(-1, 0), Totals: tot(1, 1, 0, 1, 1)},
			{Start: day(0, 0), Totals: tot(1, 10, 0, 10, 2)},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if brute := bruteTrend(ops, tc.w, tsdb.Daily); !bucketsEq(brute, tc.want) {
				t.Fatalf("test data: brute force disagrees:%s", fmtBuckets(brute))
			}
			checkTrend(t, s, tc.w, tsdb.Daily, tc.want)
			checkTrendSumsBreakdown(t, s, tc.w)
		})
	}
}

// testRandomized proves that the store's aggregates (whatever rollups it
// keeps) equal a brute-force computation over the raw operations.
// edgyTime answers a time of randTime, or, as often as they are rare in
// real traffic but matter to a rollup, an hour's start or its last
// microsecond, a day's start, or the created_at of one of ops.
func edgyTime(r *rand.Rand, randTime func() time.Time, ops []tsdb.Operation) time.Time {
	switch p := r.Intn(100); {
	case p < 10:
		return randTime().Truncate(time.Hour)
	case p < 15:
		return randTime().Truncate(time.Hour).Add(-time.Microsecond)
	case p < 18:
		return tsdb.Daily.Truncate(randTime())
	case p < 23 && len(ops) > 0:
		return ops[r.Intn(len(ops))].CreatedAt
	}
	return randTime()
}

func testRandomized(t *testing.T, s tsdb.Store) {
	const seed = 20250114
	r := rand.New(rand.NewSource(seed))
	g := newIDs(seed)
	from := time.Date(2024, 12, 10, 0, 0, 0, 0, time.UTC)
	span := int64(40 * 24 * time.Hour / time.Microsecond)
	toolIDs := []string{"claude-code", "cursor", "windsurf"}
	var sessPool [20]uuid.UUID
	for i := range sessPool {
		sessPool[i] = g.next()
	}
	randTime := func() time.Time { return from.Add(time.Duration(r.Int63n(span)) * time.Microsecond) }

	ops := make([]tsdb.Operation, 0, 3000)
	for len(ops) < 3000 {
		ts := edgyTime(r, randTime, ops)
		orig, act := r.Int63n(20000), r.Int63n(20000)
		sp := opSpec{
			session: sessPool[r.Intn(len(sessPool))],
			tool:    api.ToolNames[r.Intn(len(api.ToolNames))],
			mode:    api.OperationModes[r.Intn(len(api.OperationModes))],
			toolID:  toolIDs[r.Intn(len(toolIDs))],
			at:      ts, orig: orig, act: act,
			rt: float64(r.Intn(40000)) / 8, // exact binary fractions: sums do not round
		}
		if r.Intn(3) == 0 {
			sp.prev = ptr(max(0, orig-act))
		}
		ops = append(ops, g.mk(sp))
	}
	for i := 0; i < len(ops); {
		n := 1 + r.Intn(400)
		write(t, s, ops[i:min(i+n, len(ops))]...)
		i += n
	}

	windows := []tsdb.Window{
		{End: from.AddDate(0, 0, 41)},
		{Start: ptr(from.AddDate(0, 0, -1)), End: from.AddDate(0, 0, 41)},
		{ToolID: "cursor", End: from.AddDate(0, 0, 41)},
	}
	for len(windows) < 100 {
		var w tsdb.Window
		start := from.Add(time.Duration(r.Int63n(span+2*int64(24*time.Hour/time.Microsecond))-int64(24*time.Hour/time.Microsecond)) * time.Microsecond)
		dur := time.Duration(r.Int63n(int64(15*24*time.Hour/time.Microsecond))) * time.Microsecond
		switch p := r.Intn(100); {
		case p < 10: // edges on operations
			start = ops[r.Intn(len(ops))].CreatedAt
			dur = ops[r.Intn(len(ops))].CreatedAt.Sub(start)
			if dur < 0 {
				dur = -dur
				start = start.Add(-dur)
			}
		case p < 20: // aligned edges
			start = start.Truncate(time.Hour)
			dur = dur.Truncate(time.Hour)
		case p < 25: // short windows
			dur = dur % (3 * time.Hour)
		}
		w.End = start.Add(dur)
		if r.Intn(100) >= 15 {
			w.Start = &start
		}
		if r.Intn(100) < 30 {
			w.ToolID = toolIDs[r.Intn(len(toolIDs))]
		}
		windows = append(windows, w)
	}
	checkAll := func(phase string, windows []tsdb.Window) {
		t.Helper()
		for _, w := range windows {
			checkBreakdown(t, s, w, bruteBreakdown(ops, w))
			checkTrend(t, s, w, tsdb.Hourly, bruteTrend(ops, w, tsdb.Hourly))
			checkTrend(t, s, w, tsdb.Daily, bruteTrend(ops, w, tsdb.Daily))
			if t.Failed() {
				t.Fatalf("seed %d, %s: stopping at the first window that differs", seed, phase)
			}
		}
	}
	checkAll("first pass", windows)
	// Asked again: a store that caches aggregates answers from its cache.
	checkAll("second pass", windows[:35])

	// Late data into hours already asked about (long closed), at instants
	// that hold operations already, and before the first operation: every
	// later answer must count it.
	late := make([]tsdb.Operation, 0, 300)
	for len(late) < cap(late) {
		var ts time.Time
		switch p := r.Intn(100); {
		case p < 30:
			ts = ops[r.Intn(len(ops))].CreatedAt
		case p < 35:
			ts = from.Add(-time.Duration(1+r.Int63n(int64(48*time.Hour/time.Microsecond))) * time.Microsecond)
		default:
			ts = randTime()
		}
		orig, act := r.Int63n(20000), r.Int63n(20000)
		late = append(late, g.mk(opSpec{
			session: sessPool[r.Intn(len(sessPool))],
			tool:    api.ToolNames[r.Intn(len(api.ToolNames))],
			mode:    api.OperationModes[r.Intn(len(api.OperationModes))],
			toolID:  toolIDs[r.Intn(len(toolIDs))],
			at:      ts, orig: orig, act: act, rt: float64(r.Intn(40000)) / 8,
		}))
	}
	for i := 0; i < len(late); {
		n := 1 + r.Intn(100)
		write(t, s, late[i:min(i+n, len(late))]...)
		i += n
	}
	ops = append(ops, late...)
	checkAll("after late writes", windows)
	want := ops[0].CreatedAt
	for _, op := range ops {
		if op.CreatedAt.Before(want) {
			want = op.CreatedAt
		}
	}
	if got, ok, err := s.FirstOperationTime(t.Context(), ""); err != nil || !ok || !got.Equal(want) {
		t.Errorf("after late writes: FirstOperationTime = %v, %v, %v; want %v", got, ok, err, want)
	}
}

func testFirstOperationTime(t *testing.T, s tsdb.Store) {
	for _, id := range []string{"", "A"} {
		if ts, ok, err := s.FirstOperationTime(t.Context(), id); err != nil || ok {
			t.Fatalf("empty store: FirstOperationTime(%q) = %v, %v, %v; want ok=false", id, ts, ok, err)
		}
	}
	g := newIDs(15)
	write(t, s,
		g.mk(opSpec{toolID: "A", at: at(12, 0, 0, 7)}),
		g.mk(opSpec{toolID: "B", at: at(3, 4, 5, 678901)}),
		g.mk(opSpec{toolID: "A", at: at(5, 0, 0, 1)}),
	)
	write(t, s, g.mk(opSpec{toolID: "A", at: at(20, 0, 0, 0)}))
	for _, tc := range []struct {
		id   string
		want time.Time
		ok   bool
	}{
		{"", at(3, 4, 5, 678901), true},
		{"A", at(5, 0, 0, 1), true},
		{"B", at(3, 4, 5, 678901), true},
		{"C", time.Time{}, false},
	} {
		got, ok, err := s.FirstOperationTime(t.Context(), tc.id)
		if err != nil {
			t.Fatalf("FirstOperationTime(%q): %v", tc.id, err)
		}
		if ok != tc.ok || (ok && !got.Equal(tc.want)) {
			t.Errorf("FirstOperationTime(%q) = %s, %v; want %s, %v", tc.id, got.Format(time.RFC3339Nano), ok, tc.want.Format(time.RFC3339Nano), tc.ok)
		}
	}
}
