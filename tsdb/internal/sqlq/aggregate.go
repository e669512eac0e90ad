package sqlq

import (
	"context"
	"database/sql"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// operationGroups are the operations as GroupOperations sums them: the sums
// of Operations, then the cache lookups (operations whose cache_hit is
// known) and hits.
var operationGroups = func() Series {
	s := Operations
	s.Sums = append(slices.Clone(Operations.Sums),
		Sum{Raw: "CASE WHEN cache_hit IS NULL THEN 0 ELSE 1 END", Rollup: "cache_lookups"},
		Sum{Raw: "CASE WHEN cache_hit THEN 1 ELSE 0 END", Rollup: "cache_hits"},
	)
	return s
}()

// The operations as GroupOperations sums them per file and per session:
// from their day rollups, each keyed by its dimension alone.
var (
	fileGroups    = dayRollup("op_rollup_file_daily")
	sessionGroups = dayRollup("op_rollup_session_daily")
)

func dayRollup(table string) Series {
	s := operationGroups
	s.Hourly, s.Daily, s.Key, s.AllKeys = "", table, "", false
	return s
}

// keyedRollup answers the day rollup that answers q, if one does: q
// groups by file (and day) on no filter but time, or by session or project
// (and day) on no filter but time and session.
func keyedRollup(q tsdb.AggregateQuery) (Series, bool) {
	f := q.Filter
	if f.ToolID != "" || f.ToolName != "" || f.OperationMode != "" {
		return Series{}, false
	}
	for _, c := range []struct {
		series Series
		dims   []tsdb.Dimension // the first: one of the others must be asked for
	}{
		{fileGroups, []tsdb.Dimension{tsdb.DimDay, tsdb.DimFilePath}},
		{sessionGroups, []tsdb.Dimension{tsdb.DimDay, tsdb.DimSessionID, tsdb.DimProjectID}},
	} {
		if c.series.Daily == fileGroups.Daily && f.SessionID != nil {
			continue
		}
		all := true
		for _, d := range q.GroupBy {
			all = all && slices.Contains(c.dims, d)
		}
		if all && slices.ContainsFunc(q.GroupBy, func(d tsdb.Dimension) bool { return d != tsdb.DimDay }) {
			return c.series, true
		}
	}
	return Series{}, false
}

// The positions of operationGroups' sums (s0, s1, ...).
const (
	sumCount = iota
	sumOriginal
	sumActual
	sumPrevented
	sumResponseTime
	sumLookups
	sumHits
)

// groupPlan is how GroupOperations reads a query: the series and the
// parts of its window, the inner key columns every part groups by (one per
// dimension, but one session column shared by session_id and project_id),
// and which inner column each dimension takes its value from.
type groupPlan struct {
	series Series
	parts  []tsdb.Part
	inner  []tsdb.Dimension // the dimension whose column each inner key holds (session_id for both session dimensions)
	of     []int            // of[i]: the inner key of q.GroupBy[i]
}

func planGroups(q tsdb.AggregateQuery, horizon int64) groupPlan {
	p := groupPlan{series: operationGroups}
	w := q.Window()
	series, keyed := keyedRollup(q)
	switch end := w.End.UnixMicro() + 1; {
	case q.FromRollups():
		// Hour keys need hour rows: no day rows then.
		p.parts = tsdb.PlanWindow(w, tsdb.PlanOptions{Daily: !slices.Contains(q.GroupBy, tsdb.DimHour), RawHorizon: horizon})
	case keyed:
		p.series = series
		p.parts = tsdb.PlanWindow(w, tsdb.PlanOptions{DaysOnly: true, RawHorizon: horizon})
	case w.Start == nil || w.Start.UnixMicro() < end:
		raw := tsdb.Part{Source: tsdb.FromRaw, Hi: end, NoLower: w.Start == nil}
		if w.Start != nil {
			raw.Lo = w.Start.UnixMicro()
		}
		p.parts = []tsdb.Part{raw}
	}
	for _, d := range q.GroupBy {
		col := d
		if d == tsdb.DimProjectID {
			col = tsdb.DimSessionID // the project comes from the session
		}
		i := slices.Index(p.inner, col)
		if i < 0 {
			i = len(p.inner)
			p.inner = append(p.inner, col)
		}
		p.of = append(p.of, i)
	}
	return p
}

// keyColumn writes the column of dimension dim in the rows of p: the
// operation's own columns (also in rollup rows, for the dimensions they
// carry), or the start of the hour or day that holds the row's time.
func (d *Dialect) keyColumn(q *Query, p partTable, dim tsdb.Dimension) string {
	step, isTime := dim.Step()
	switch {
	case dim == tsdb.DimFilePath && p.table == fileGroups.Daily:
		return "CASE WHEN file_null = 1 THEN NULL ELSE file_path END"
	case !isTime:
		return string(dim)
	case p.width == step.Micros():
		return p.timeCol // rollup rows are their own buckets
	}
	return d.BucketStart(q, p.timeCol, step.Micros())
}

// GroupOperations answers q (see tsdb.AggregateQuery) in one statement:
// the rollup rows of its window's plan and the raw rows of its partial
// hours when q.FromRollups(); the day rows per file or per session (see
// keyedRollup) and the raw rows of its partial days when one of those
// answers it; its raw rows otherwise. A project comes from the session,
// joined once per session, not per operation. The database groups and
// ranks, and answers the first q.Limit groups and the number of all of
// them (by file path alone, in a dialect that can, it ranks before it sums:
// see rankedFiles). Rollup plans read no raw row before the raw horizon hz (see
// Horizon.Consistent): an edge hour, or an edge day of a day-only rollup,
// that starts before it counts whole; a grouping read from raw rows counts
// the raw rows that remain.
func (d *Dialect) GroupOperations(ctx context.Context, query QueryFunc, hz *Horizon, q tsdb.AggregateQuery) (out tsdb.AggregateResult, err error) {
	err = hz.Consistent(ctx, query, func(horizon int64) error {
		out, err = d.groupOperations(ctx, query, q, horizon)
		return err
	})
	return out, err
}

func (d *Dialect) groupOperations(ctx context.Context, query QueryFunc, q tsdb.AggregateQuery, horizon int64) (tsdb.AggregateResult, error) {
	out := tsdb.AggregateResult{Groups: []tsdb.AggregateGroup{}}
	p := planGroups(q, horizon)
	if len(p.parts) == 0 {
		return out, nil
	}
	stmt, args, ok := d.rankedFiles(q, p)
	if !ok {
		stmt, args = d.groupStatement(q, p)
	}
	rows, done, err := query(ctx, stmt, args...)
	if err != nil {
		return out, err
	}
	defer done()
	texts := make([]sql.NullString, len(q.GroupBy))
	starts := make([]int64, len(q.GroupBy))
	dest := make([]any, 0, len(q.GroupBy)+len(operationGroups.Sums)+1)
	for i, dim := range q.GroupBy {
		if _, isTime := dim.Step(); isTime {
			dest = append(dest, &starts[i])
		} else {
			dest = append(dest, &texts[i])
		}
	}
	var g tsdb.AggregateGroup
	dest = append(dest, &g.Count, &g.TokensOriginal, &g.TokensActual, &g.TokensPrevented, &g.ResponseTimeSumMs,
		&g.Cache.Lookups, &g.Cache.Hits, &out.TotalGroups)
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return out, err
		}
		group := g
		group.Key = make([]tsdb.KeyValue, len(q.GroupBy))
		for i, dim := range q.GroupBy {
			if _, isTime := dim.Step(); isTime {
				group.Key[i] = tsdb.KeyValue{Start: time.UnixMicro(starts[i]).UTC()}
			} else {
				group.Key[i] = tsdb.KeyValue{Null: !texts[i].Valid, Text: texts[i].String}
			}
		}
		out.Groups = append(out.Groups, group)
	}
	return out, rows.Err()
}

// groupStatement writes the statement of p's plan of q: the parts of its
// window grouped by the key, ranked, the first q.Limit groups (see
// GroupOperations).
func (d *Dialect) groupStatement(q tsdb.AggregateQuery, p groupPlan) (string, []any) {
	sq := d.NewQuery()
	f := Filter{ToolID: q.Filter.ToolID, ToolName: q.Filter.ToolName, Mode: q.Filter.OperationMode, SessionID: q.Filter.SessionID}
	allKeys := !slices.ContainsFunc(q.GroupBy, func(dim tsdb.Dimension) bool { _, t := dim.Step(); return !t }) && f == (Filter{})
	union := d.unionParts(sq, p.series, p.parts, f, allKeys, func(sq *Query, pt partTable) []string {
		cols := make([]string, len(p.inner))
		for i, dim := range p.inner {
			cols[i] = d.keyColumn(sq, pt, dim)
		}
		return cols
	})

	from := " FROM (" + union + ") AS parts"
	keys := make([]string, len(q.GroupBy))  // the output's key columns, named g0, g1, ...
	order := make([]string, len(q.GroupBy)) // their tie-break, ascending
	for i, dim := range q.GroupBy {
		col := "parts.k" + strconv.Itoa(p.of[i])
		switch dim {
		case tsdb.DimHour, tsdb.DimDay:
			col = d.Micros(col)
		case tsdb.DimSessionID:
			col = d.UUIDText(col)
		case tsdb.DimProjectID:
			col = "sess.project_id" + d.TextCollate
			from += " LEFT JOIN tool_sessions AS sess ON sess.session_id = " + d.SessionKey("parts.k"+strconv.Itoa(p.of[i]))
		default:
			col += d.TextCollate
		}
		keys[i] = col + " AS g" + strconv.Itoa(i)
		order[i] = "g" + strconv.Itoa(i) + " NULLS FIRST"
	}
	groupBy := make([]string, len(q.GroupBy))
	for i := range groupBy {
		groupBy[i] = "g" + strconv.Itoa(i)
	}
	if figure := groupOrder(d, q.Order); figure != "" {
		order = append([]string{figure + " DESC"}, order...)
	}
	return "SELECT " + strings.Join(keys, ", ") + ", " + strings.Join(d.sumColumns(operationGroups), ", ") + ", count(*) OVER ()" +
		from + " GROUP BY " + strings.Join(groupBy, ", ") +
		" HAVING " + d.Sum("s0") + " <> 0" + // a key that Subtract parts cancel held no row in the window
		" ORDER BY " + strings.Join(order, ", ") + " LIMIT " + sq.Arg(q.Limit), sq.Args
}

// maxSeekDays bounds the whole days whose rows rankedFiles seeks, one per
// day and ranked file; a longer window groups them all.
const maxSeekDays = 400

// rankedFiles writes the statement of q when it groups by file path alone,
// from the day rollup per file (see keyedRollup), in a dialect that seeks
// that rollup's rows by (day, file_null, file_path) (Dialect.FileDaySeek),
// over at most maxSeekDays whole days up to the day after tomorrow (and
// any after it); ok is false otherwise.
//
// Grouping sorts every day row of the window (a day row per file and day),
// and a sort's cost grows with the width of what it sorts, so the
// statement ranks first (ranked: every part of the plan grouped by file
// with only the sums that rank, then the first q.Limit files and the number
// of all), then sums the totals of those files alone: their day rows found
// by seeks, one per file and day, and the raw rows of the window's edges.
// One statement reads one snapshot, so both agree. Its answer is
// groupStatement's, column for column.
func (d *Dialect) rankedFiles(q tsdb.AggregateQuery, p groupPlan) (stmt string, args []any, ok bool) {
	if !d.FileDaySeek || p.series.Daily != fileGroups.Daily || !slices.Equal(q.GroupBy, []tsdb.Dimension{tsdb.DimFilePath}) {
		return "", nil, false
	}
	// A window without an end reaches the last day there is: its days
	// from the day after tomorrow on, which hold operations dated ahead of
	// the clock if any, are grouped whole, as raw parts are, not sought.
	seekEnd := tsdb.FloorTo(time.Now().UnixMicro(), tsdb.MicrosPerDay) + 2*tsdb.MicrosPerDay
	var days []int64
	var rest []tsdb.Part
	for _, pt := range p.parts {
		if pt.Source == tsdb.FromRaw {
			rest = append(rest, pt)
			continue
		}
		if hi := max(pt.Lo, seekEnd); hi < pt.Hi {
			ahead := pt
			ahead.Lo, pt.Hi = hi, hi
			rest = append(rest, ahead)
		}
		if pt.NoLower || int64(len(days))+(pt.Hi-pt.Lo)/tsdb.MicrosPerDay > maxSeekDays {
			return "", nil, false
		}
		for day := pt.Lo; day < pt.Hi; day += tsdb.MicrosPerDay {
			days = append(days, day)
		}
	}
	if len(days) == 0 {
		return "", nil, false
	}
	sq := d.NewQuery()
	key := func(sq *Query, pt partTable) []string { return []string{d.keyColumn(sq, pt, tsdb.DimFilePath)} }
	// The ranking groups by the path's text, then whether there is none:
	// a sort whose first key is never null compares its keys faster.
	textKey := func(_ *Query, pt partTable) []string {
		if pt.table == fileGroups.Daily {
			return []string{"file_path", "file_null"}
		}
		return []string{"coalesce(file_path, '')", "CASE WHEN file_path IS NULL THEN 1 ELSE 0 END"}
	}
	order := func(figure string) string {
		if figure == "" {
			return " ORDER BY g0 NULLS FIRST"
		}
		return " ORDER BY " + figure + " DESC, g0 NULLS FIRST"
	}

	need := orderSums(q.Order)
	narrow := p.series
	narrow.Sums = make([]Sum, len(need))
	for j, i := range need {
		narrow.Sums[j] = p.series.Sums[i]
	}
	figure := rankFigure(d, q.Order, func(i int) string { return d.Sum("s" + strconv.Itoa(slices.Index(need, i))) })
	ranked := "SELECT CASE WHEN parts.k1 = 1 THEN NULL ELSE parts.k0" + d.TextCollate + " END AS g0, count(*) OVER () AS n FROM (" +
		d.unionParts(sq, narrow, p.parts, Filter{}, false, textKey) + ") AS parts GROUP BY parts.k0, parts.k1 HAVING " + d.Sum("s0") + " <> 0" +
		order(figure) + " LIMIT " + sq.Arg(q.Limit)

	values := make([]string, len(days))
	for i, day := range days {
		values[i] = "(" + sq.Arg(d.Time(time.UnixMicro(day))) + ")"
	}
	sums := make([]string, len(p.series.Sums))
	for i, sum := range p.series.Sums {
		sums[i] = d.Sum("f."+sum.Rollup) + " AS s" + strconv.Itoa(i)
	}
	union := "SELECT CASE WHEN f.file_null = 1 THEN NULL ELSE f.file_path END AS k0, " + strings.Join(sums, ", ") +
		" FROM ranked CROSS JOIN (VALUES " + strings.Join(values, ", ") + ") AS days" +
		" JOIN " + fileGroups.Daily + " AS f ON f.day = days.column1" +
		" AND f.file_null = CASE WHEN ranked.g0 IS NULL THEN 1 ELSE 0 END AND f.file_path = coalesce(ranked.g0, '')" +
		" GROUP BY k0"
	if len(rest) > 0 {
		union += " UNION ALL " + d.unionParts(sq, p.series, rest, Filter{}, false, key)
	}
	return "WITH ranked AS MATERIALIZED (" + ranked + ")" +
		" SELECT parts.k0" + d.TextCollate + " AS g0, " + strings.Join(d.sumColumns(operationGroups), ", ") + ", (SELECT n FROM ranked LIMIT 1)" +
		" FROM (" + union + ") AS parts" +
		" WHERE parts.k0 IN (SELECT g0 FROM ranked) OR parts.k0 IS NULL AND EXISTS (SELECT 1 FROM ranked WHERE g0 IS NULL)" +
		" GROUP BY g0 HAVING " + d.Sum("s0") + " <> 0" + order(groupOrder(d, q.Order)), sq.Args, true
}

// groupOrder writes the figure that ranks groups in order o ("" for the key
// alone), over the outer sums of operationGroups' s0, s1, ...
func groupOrder(d *Dialect, o tsdb.AggregateOrder) string {
	return rankFigure(d, o, func(i int) string { return d.Sum("s" + strconv.Itoa(i)) })
}

// orderSums are the positions of operationGroups' sums that rank groups in
// order o, the count first (it tells the groups with operations).
func orderSums(o tsdb.AggregateOrder) []int {
	switch o {
	case tsdb.OrderByTokensPrevented:
		return []int{sumCount, sumPrevented}
	case tsdb.OrderByTokensOriginal:
		return []int{sumCount, sumOriginal}
	case tsdb.OrderByTokensActual:
		return []int{sumCount, sumActual}
	case tsdb.OrderByAvgResponseTime:
		return []int{sumCount, sumResponseTime}
	}
	return []int{sumCount}
}

// rankFigure writes the figure of order o ("" for the key alone); sum(i)
// writes the total of operationGroups' i-th sum.
func rankFigure(d *Dialect, o tsdb.AggregateOrder, sum func(i int) string) string {
	switch o {
	case tsdb.OrderByTokensPrevented:
		return sum(sumPrevented)
	case tsdb.OrderByTokensOriginal:
		return sum(sumOriginal)
	case tsdb.OrderByTokensActual:
		return sum(sumActual)
	case tsdb.OrderByCount:
		return sum(sumCount)
	case tsdb.OrderByAvgResponseTime:
		return "coalesce(" + sum(sumResponseTime) + ", 0.0) / " + d.Int(sum(sumCount))
	}
	return ""
}
