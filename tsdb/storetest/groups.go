package storetest

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

func fmtKey(k []tsdb.KeyValue) string {
	parts := make([]string, len(k))
	for i, v := range k {
		switch {
		case v.Null:
			parts[i] = "null"
		case !v.Start.IsZero():
			parts[i] = v.Start.Format(time.RFC3339)
		default:
			parts[i] = fmt.Sprintf("%q", v.Text)
		}
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// bruteGroups is the answer of q over ops, by brute force.
func bruteGroups(ops []tsdb.Operation, projects map[uuid.UUID]*string, q tsdb.AggregateQuery) tsdb.AggregateResult {
	var sums tsdb.GroupSums
	for _, op := range ops {
		if !matches(op, q.Filter) {
			continue
		}
		key := make([]tsdb.KeyValue, len(q.GroupBy))
		for i, d := range q.GroupBy {
			key[i] = d.Of(&op, projects[op.SessionID])
		}
		sums.Add(key, totalsOf(op), tsdb.CacheOf(&op))
	}
	return sums.Rank(q)
}

func fmtQuery(q tsdb.AggregateQuery) string {
	f := q.Filter
	var b strings.Builder
	fmt.Fprintf(&b, "group_by %v order %d limit %d", q.GroupBy, q.Order, q.Limit)
	if f.SessionID != nil {
		fmt.Fprintf(&b, " session %s", f.SessionID)
	}
	for _, c := range []struct{ name, v string }{{"tool", f.ToolName}, {"mode", f.OperationMode}, {"tool_id", f.ToolID}} {
		if c.v != "" {
			fmt.Fprintf(&b, " %s %s", c.name, c.v)
		}
	}
	for _, c := range []struct {
		name string
		v    *time.Time
	}{{"start", f.Start}, {"end", f.End}} {
		if c.v != nil {
			fmt.Fprintf(&b, " %s %s", c.name, c.v.Format(time.RFC3339Nano))
		}
	}
	return b.String()
}

func fmtGroups(r tsdb.AggregateResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d groups in all", r.TotalGroups)
	for _, g := range r.Groups {
		fmt.Fprintf(&b, "\n\t%s %s cache=%d/%d", fmtKey(g.Key), fmtTotals(g.Totals), g.Cache.Hits, g.Cache.Lookups)
	}
	return b.String()
}

func groupsEq(got, want tsdb.AggregateResult) bool {
	if got.TotalGroups != want.TotalGroups || len(got.Groups) != len(want.Groups) {
		return false
	}
	for i, g := range got.Groups {
		w := want.Groups[i]
		if len(g.Key) != len(w.Key) || !totalsEq(g.Totals, w.Totals) || g.Cache != w.Cache {
			return false
		}
		for j := range g.Key {
			if g.Key[j].Compare(w.Key[j]) != 0 || g.Key[j].Null != w.Key[j].Null {
				return false
			}
		}
	}
	return true
}

// checkGroups compares s.Aggregate(q) with want: the same groups, in the
// same order, with the same keys and figures, and the same total.
func checkGroups(t *testing.T, s tsdb.Store, q tsdb.AggregateQuery, want tsdb.AggregateResult) {
	t.Helper()
	got, err := s.Aggregate(t.Context(), q)
	if err != nil {
		t.Fatalf("Aggregate(%s): %v", fmtQuery(q), err)
	}
	if got.Groups == nil {
		t.Errorf("Aggregate(%s): nil groups, want a non-nil (empty) slice", fmtQuery(q))
	}
	if !groupsEq(got, want) {
		t.Errorf("Aggregate(%s):\ngot:  %s\nwant: %s", fmtQuery(q), fmtGroups(got), fmtGroups(want))
	}
}

// groupData is a day and a half of operations in three sessions: two
// started with a project, one created by its operations (no project); read
// operations with file paths (three tied on tokens prevented, one of them
// not ASCII), search operations without; cache_hit true, false and unknown;
// operations on hour and day boundaries.
func groupData(t *testing.T, s tsdb.Store, g *ids) ([]tsdb.Operation, map[uuid.UUID]*string) {
	t.Helper()
	alpha, beta, implicit := g.next(), g.next(), g.next()
	projects := map[uuid.UUID]*string{alpha: ptr("alpha"), beta: ptr("beta")}
	for _, id := range []uuid.UUID{alpha, beta} {
		createSession(t, s, tsdb.Session{SessionID: id, ToolID: "claude-code", ProjectID: projects[id],
			StartedAt: at(-1, 0, 0, 0), LastActivity: at(-1, 0, 0, 0)})
	}
	R, S := api.ToolRead, api.ToolSearch
	type spec struct {
		sess      uuid.UUID
		tool      string
		mode      string
		toolID    string
		file      string // "" none
		at        time.Time
		orig, act int64
		rt        float64
		hit       *bool
	}
	specs := []spec{
		{alpha, R, "full", "claude-code", "src/a.py", at(9, 0, 0, 0), 1000, 100, 10, ptr(true)},
		{alpha, R, "overview", "claude-code", "src/a.py", at(9, 30, 0, 0), 2000, 200, 20, ptr(false)},
		{beta, R, "symbol", "cursor", "src/b.py", at(9, 59, 59, 999999), 500, 50, 5, ptr(true)},
		{beta, R, "full", "cursor", "src/b.py", at(10, 0, 0, 0), 2500, 250, 2.5, nil},
		{implicit, R, "full", "claude-code", "src/c.py", at(10, 15, 0, 0), 900, 900, 1, nil},
		{implicit, S, "semantic", "claude-code", "", at(11, 0, 0, 0), 3000, 300, 30, ptr(true)},
		{alpha, S, "tri_index", "cursor", "", at(23, 59, 59, 999999), 1700, 1000, 7.5, ptr(false)},
		{beta, S, "semantic", "claude-code", "", at(24, 0, 0, 0), 100, 150, 0.5, ptr(true)}, // the next day, overspent
		{alpha, R, "references", "claude-code", "src/Á.py", at(24, 30, 0, 0), 2700, 0, 4, nil},
	}
	ops := make([]tsdb.Operation, len(specs))
	for i, sp := range specs {
		op := g.mk(opSpec{session: sp.sess, tool: sp.tool, mode: sp.mode, toolID: sp.toolID, at: sp.at, orig: sp.orig, act: sp.act, rt: sp.rt})
		if sp.file != "" {
			op.FilePath = ptr(sp.file)
		}
		op.CacheHit = sp.hit
		ops[i] = op
	}
	writeBatches(t, s, ops, 4)
	return ops, projects
}

func grp(key []tsdb.KeyValue, n, orig, act, prev int64, rt float64, lookups, hits int64) tsdb.AggregateGroup {
	return tsdb.AggregateGroup{Key: key, Totals: tot(n, orig, act, prev, rt), Cache: tsdb.CacheCounts{Lookups: lookups, Hits: hits}}
}

func txt(s string) tsdb.KeyValue       { return tsdb.KeyValue{Text: s} }
func bucket(t time.Time) tsdb.KeyValue { return tsdb.KeyValue{Start: t} }

var null = tsdb.KeyValue{Null: true}

func keys(v ...tsdb.KeyValue) []tsdb.KeyValue { return v }

// testAggregateHand checks hand-computed answers: null keys, ties broken by
// key, limits and totals, hour and day buckets, projects through sessions,
// cache counts, every order.
func testAggregateHand(t *testing.T, s tsdb.Store) {
	g := newIDs(60)
	ops, projects := groupData(t, s, g)
	day := at(0, 0, 0, 0)
	all := tsdb.OperationFilter{}
	tests := []struct {
		name string
		q    tsdb.AggregateQuery
		want tsdb.AggregateResult
	}{
		{"file_path, null key, ties by key", tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimFilePath}, Filter: all, Limit: 10},
			tsdb.AggregateResult{TotalGroups: 5, Groups: []tsdb.AggregateGroup{
				grp(keys(null), 3, 4800, 1450, 3350, 38, 3, 2),
				grp(keys(txt("src/a.py")), 2, 3000, 300, 2700, 30, 2, 1),
				grp(keys(txt("src/b.py")), 2, 3000, 300, 2700, 7.5, 1, 1),
				grp(keys(txt("src/Á.py")), 1, 2700, 0, 2700, 4, 0, 0), // after b: bytes, not a locale's order
				grp(keys(txt("src/c.py")), 1, 900, 900, 0, 1, 0, 0),
			}}},
		{"file_path, limit 2 of 5", tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimFilePath}, Filter: all, Limit: 2},
			tsdb.AggregateResult{TotalGroups: 5, Groups: []tsdb.AggregateGroup{
				grp(keys(null), 3, 4800, 1450, 3350, 38, 3, 2),
				grp(keys(txt("src/a.py")), 2, 3000, 300, 2700, 30, 2, 1),
			}}},
		{"project, by count", tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimProjectID}, Filter: all, Order: tsdb.OrderByCount, Limit: 10},
			tsdb.AggregateResult{TotalGroups: 3, Groups: []tsdb.AggregateGroup{
				grp(keys(txt("alpha")), 4, 7400, 1300, 6100, 41.5, 3, 1),
				grp(keys(txt("beta")), 3, 3100, 450, 2650, 8, 2, 2),
				grp(keys(null), 2, 3900, 1200, 2700, 31, 1, 1),
			}}},
		{"project and day, by average response time", tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimProjectID, tsdb.DimDay}, Filter: all,
			Order: tsdb.OrderByAvgResponseTime, Limit: 10},
			tsdb.AggregateResult{TotalGroups: 5, Groups: []tsdb.AggregateGroup{
				grp(keys(null, bucket(day)), 2, 3900, 1200, 2700, 31, 1, 1),
				grp(keys(txt("alpha"), bucket(day)), 3, 4700, 1300, 3400, 37.5, 3, 1),
				grp(keys(txt("alpha"), bucket(day.Add(24*time.Hour))), 1, 2700, 0, 2700, 4, 0, 0),
				grp(keys(txt("beta"), bucket(day)), 2, 3000, 300, 2700, 7.5, 1, 1),
				grp(keys(txt("beta"), bucket(day.Add(24*time.Hour))), 1, 100, 150, -50, 0.5, 1, 1),
			}}},
		{"tool and mode, by tokens original", tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimToolName, tsdb.DimOperationMode}, Filter: all,
			Order: tsdb.OrderByTokensOriginal, Limit: 3},
			tsdb.AggregateResult{TotalGroups: 6, Groups: []tsdb.AggregateGroup{
				grp(keys(txt("read"), txt("full")), 3, 4400, 1250, 3150, 13.5, 1, 1),
				grp(keys(txt("search"), txt("semantic")), 2, 3100, 450, 2650, 30.5, 2, 2),
				grp(keys(txt("read"), txt("references")), 1, 2700, 0, 2700, 4, 0, 0),
			}}},
		{"hour, by count, ties by hour", tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimHour}, Filter: all, Order: tsdb.OrderByCount, Limit: 4},
			tsdb.AggregateResult{TotalGroups: 5, Groups: []tsdb.AggregateGroup{
				grp(keys(bucket(at(9, 0, 0, 0))), 3, 3500, 350, 3150, 35, 3, 2),
				grp(keys(bucket(at(10, 0, 0, 0))), 2, 3400, 1150, 2250, 3.5, 0, 0),
				grp(keys(bucket(at(24, 0, 0, 0))), 2, 2800, 150, 2650, 4.5, 1, 1),
				grp(keys(bucket(at(11, 0, 0, 0))), 1, 3000, 300, 2700, 30, 1, 1),
			}}},
		{"session and tool id, one session", tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimSessionID, tsdb.DimToolID},
			Filter: tsdb.OperationFilter{SessionID: ptr(ops[2].SessionID)}, Limit: 10},
			tsdb.AggregateResult{TotalGroups: 2, Groups: []tsdb.AggregateGroup{
				grp(keys(txt(ops[2].SessionID.String()), txt("cursor")), 2, 3000, 300, 2700, 7.5, 1, 1),
				grp(keys(txt(ops[2].SessionID.String()), txt("claude-code")), 1, 100, 150, -50, 0.5, 1, 1),
			}}},
		{"tool id over a window, ties by key", tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimToolID},
			Filter: tsdb.OperationFilter{Start: ptr(at(9, 59, 59, 999999)), End: ptr(at(10, 0, 0, 0))}, Order: tsdb.OrderByCount, Limit: 10},
			tsdb.AggregateResult{TotalGroups: 1, Groups: []tsdb.AggregateGroup{
				grp(keys(txt("cursor")), 2, 3000, 300, 2700, 7.5, 1, 1),
			}}},
		{"day of one tool id and mode, by key", tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimDay, tsdb.DimToolName},
			Filter: tsdb.OperationFilter{ToolID: "claude-code", OperationMode: "semantic"}, Order: tsdb.OrderByKey, Limit: 10},
			tsdb.AggregateResult{TotalGroups: 2, Groups: []tsdb.AggregateGroup{
				grp(keys(bucket(day), txt("search")), 1, 3000, 300, 2700, 30, 1, 1),
				grp(keys(bucket(day.Add(24*time.Hour)), txt("search")), 1, 100, 150, -50, 0.5, 1, 1),
			}}},
		{"nothing in the window", tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimFilePath},
			Filter: tsdb.OperationFilter{Start: ptr(at(12, 0, 0, 0)), End: ptr(at(23, 0, 0, 0))}, Limit: 10},
			tsdb.AggregateResult{Groups: []tsdb.AggregateGroup{}}},
		{"start after end", tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimHour},
			Filter: tsdb.OperationFilter{Start: ptr(at(12, 0, 0, 0)), End: ptr(at(11, 0, 0, 0))}, Limit: 10},
			tsdb.AggregateResult{Groups: []tsdb.AggregateGroup{}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if brute := bruteGroups(ops, projects, tc.q); !groupsEq(brute, tc.want) {
				t.Fatalf("test data: brute force disagrees:\n%s", fmtGroups(brute))
			}
			checkGroups(t, s, tc.q, tc.want)
		})
	}
}

// testAggregateEmpty: an empty store answers no group for any query.
func testAggregateEmpty(t *testing.T, s tsdb.Store) {
	for _, dims := range [][]tsdb.Dimension{{tsdb.DimFilePath}, {tsdb.DimHour, tsdb.DimToolID}, {tsdb.DimProjectID, tsdb.DimSessionID, tsdb.DimDay}} {
		checkGroups(t, s, tsdb.AggregateQuery{GroupBy: dims, Limit: 5}, tsdb.AggregateResult{Groups: []tsdb.AggregateGroup{}})
	}
}

// testAggregateRandomized compares Aggregate with the brute force over
// random operations (on and next to hour and day boundaries, some at one
// instant) and random queries: every dimension alone and in twos and
// threes, filters, windows with and without bounds, every order, limits.
func testAggregateRandomized(t *testing.T, s tsdb.Store) {
	const seed = 20260114
	r := rand.New(rand.NewSource(seed))
	g := newIDs(seed)
	from := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	span := int64(6 * 24 * time.Hour / time.Microsecond)
	randTime := func() time.Time { return from.Add(time.Duration(r.Int63n(span)) * time.Microsecond) }
	toolIDs := []string{"claude-code", "cursor", "windsurf"}
	files := []string{"a.go", "b.go", "c.go", "d/e.go", "Z.go", "é.go"}
	sessions := make([]uuid.UUID, 8)
	projects := map[uuid.UUID]*string{}
	for i := range sessions {
		sessions[i] = g.next()
		if i%4 == 3 {
			continue // implicit: created by its operations
		}
		sess := tsdb.Session{SessionID: sessions[i], ToolID: toolIDs[i%3], StartedAt: from.Add(-time.Hour), LastActivity: from.Add(-time.Hour)}
		if i%4 != 2 {
			sess.ProjectID = ptr([]string{"alpha", "beta", "Gamma"}[i%3])
			projects[sessions[i]] = sess.ProjectID
		}
		createSession(t, s, sess)
	}
	ops := make([]tsdb.Operation, 0, 1500)
	for len(ops) < cap(ops) {
		ts := edgyTime(r, randTime, ops)
		orig, act := r.Int63n(2000), r.Int63n(2000)
		op := g.mk(opSpec{
			session: sessions[r.Intn(len(sessions))],
			tool:    api.ToolNames[r.Intn(len(api.ToolNames))],
			mode:    api.OperationModes[r.Intn(3)],
			toolID:  toolIDs[r.Intn(len(toolIDs))],
			at:      ts, orig: orig, act: act,
			rt: float64(r.Intn(400)) / 4, // exact binary fractions: sums do not round
		})
		if r.Intn(4) > 0 {
			op.FilePath = ptr(files[r.Intn(len(files))])
		}
		if c := r.Intn(3); c < 2 {
			op.CacheHit = ptr(c == 1)
		}
		ops = append(ops, op)
	}
	for i := 0; i < len(ops); {
		n := 1 + r.Intn(300)
		write(t, s, ops[i:min(i+n, len(ops))]...)
		i += n
	}

	dims := []tsdb.Dimension{tsdb.DimFilePath, tsdb.DimToolID, tsdb.DimSessionID, tsdb.DimProjectID,
		tsdb.DimToolName, tsdb.DimOperationMode, tsdb.DimHour, tsdb.DimDay}
	rollupDims := []tsdb.Dimension{tsdb.DimToolID, tsdb.DimToolName, tsdb.DimOperationMode, tsdb.DimHour, tsdb.DimDay}
	for n := range 160 {
		pool := dims
		if n%2 == 0 {
			pool = rollupDims // half the queries are read from the rollups
		}
		q := tsdb.AggregateQuery{Order: tsdb.AggregateOrder(r.Intn(int(tsdb.OrderByKey) + 1)), Limit: []int{1, 3, 10, 1000}[r.Intn(4)]}
		for _, i := range r.Perm(len(pool))[:1+r.Intn(3)] {
			q.GroupBy = append(q.GroupBy, pool[i])
		}
		f := &q.Filter
		if r.Intn(3) > 0 {
			start := from.Add(time.Duration(r.Int63n(span+int64(12*time.Hour/time.Microsecond))-int64(6*time.Hour/time.Microsecond)) * time.Microsecond)
			switch r.Intn(4) {
			case 0:
				start = start.Truncate(time.Hour)
			case 1:
				start = ops[r.Intn(len(ops))].CreatedAt
			}
			f.Start = &start
		}
		if r.Intn(3) > 0 {
			end := from.Add(time.Duration(r.Int63n(span)) * time.Microsecond)
			if f.Start != nil {
				end = f.Start.Add(time.Duration(r.Int63n(int64(3*24*time.Hour/time.Microsecond))) * time.Microsecond)
			}
			if r.Intn(4) == 0 {
				end = ops[r.Intn(len(ops))].CreatedAt
			}
			f.End = &end
		}
		if r.Intn(4) == 0 {
			f.ToolID = toolIDs[r.Intn(len(toolIDs))]
		}
		if r.Intn(5) == 0 {
			f.ToolName = api.ToolNames[r.Intn(2)]
		}
		if r.Intn(5) == 0 {
			f.OperationMode = api.OperationModes[r.Intn(3)]
		}
		if pool[0] == tsdb.DimFilePath && r.Intn(6) == 0 {
			f.SessionID = &sessions[r.Intn(len(sessions))]
		}
		checkGroups(t, s, q, bruteGroups(ops, projects, q))
		if t.Failed() {
			t.Fatalf("seed %d, query %d: stopping at the first query that differs", seed, n)
		}
	}
	if !slices.ContainsFunc(ops, func(op tsdb.Operation) bool { return op.FilePath == nil }) {
		t.Fatal("test data: no operation without a file path")
	}
}

// testAggregateFilesOverDays compares the groups by file path alone with
// the brute force over windows of whole days and partial edge days (where
// stores read the day rollup per file), in every order, with limits that
// cut the ranking short: a file path that is the empty text is a group of
// its own, apart from the operations without one; the window's edges add
// files that no whole day holds, and some figures tie.
func testAggregateFilesOverDays(t *testing.T, s tsdb.Store) {
	g := newIDs(61)
	sess := g.next()
	files := []*string{nil, ptr(""), ptr("a.go"), ptr("b.go"), ptr("é.go"), ptr("edge.go")}
	var ops []tsdb.Operation
	for i := range 96 {
		file := files[i%5]
		when := at(-24+i, 17, 0, 0) // four days, one operation an hour
		if i%23 == 0 {
			file = files[5] // only at the window's edges
		}
		op := g.mk(opSpec{session: sess, tool: api.ToolRead, mode: "full", toolID: "claude-code", at: when,
			orig: int64(100 * (i % 4)), act: int64(10 * (i % 3)), rt: float64(i%8) / 4})
		op.FilePath = file
		if i%3 < 2 {
			op.CacheHit = ptr(i%3 == 1)
		}
		ops = append(ops, op)
	}
	writeBatches(t, s, ops, 40)
	for i, w := range [][2]time.Time{
		{at(-24, 0, 0, 0), at(72, 0, 0, 0)},  // whole days only
		{at(-19, 30, 0, 0), at(50, 5, 0, 0)}, // edge days read raw
		{at(-2, 0, 0, 0), at(69, 59, 0, 0)},  // edge days: the day's rollup less the rest
		{at(-24, 0, 0, 0), at(-1, 17, 0, 1)}, // one whole day, ending on an operation
		{at(100, 0, 0, 0), at(150, 0, 0, 0)}, // whole days after every operation
	} {
		for order := range tsdb.OrderByKey + 1 {
			q := tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimFilePath}, Order: order, Limit: []int{1, 2, 100}[(i+int(order))%3],
				Filter: tsdb.OperationFilter{Start: &w[0], End: &w[1]}}
			checkGroups(t, s, q, bruteGroups(ops, nil, q))
		}
	}
}

// testAggregateFilesAhead compares the groups by file path of windows
// that reach past the clock (no end, or an end years ahead) with the brute
// force, over operations of the last days and of days ahead of the clock
// (a client's clock set forward): the days up to now and those after it
// count alike.
func testAggregateFilesAhead(t *testing.T, s tsdb.Store) {
	g := newIDs(62)
	sess := g.next()
	now := time.Now().UTC()
	files := []*string{nil, ptr("a.go"), ptr("b.go"), ptr("ahead.go")}
	var ops []tsdb.Operation
	for i, h := range []int{-70, -50, -49, -30, -26, -3, -1, 20, 47, 49, 75, 24 * 40, 24 * 500} {
		file := files[i%3]
		if h > 48 {
			file = files[3] // only days after tomorrow hold it
		}
		op := g.mk(opSpec{session: sess, at: now.Add(time.Duration(h)*time.Hour + time.Duration(i)*time.Minute),
			orig: int64(100 * (1 + i%4)), act: int64(10 * (i % 3)), rt: float64(i%8) / 4})
		op.FilePath = file
		ops = append(ops, op)
	}
	write(t, s, ops...)
	start, far := now.Add(-60*time.Hour), now.Add(24*600*time.Hour)
	for i, end := range []*time.Time{nil, &far} {
		for order := range tsdb.OrderByKey + 1 {
			q := tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimFilePath}, Order: order, Limit: []int{1, 2, 100}[(i+int(order))%3],
				Filter: tsdb.OperationFilter{Start: &start, End: end}}
			checkGroups(t, s, q, bruteGroups(ops, nil, q))
		}
	}
}
