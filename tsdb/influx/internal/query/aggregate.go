package query

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// GroupHours answers q (which must be q.FromRollups()) from the hourly
// totals of its window and tool id: the rows of its tool name and mode,
// grouped in Go. It costs O(rows), whatever the operations behind them.
func GroupHours(rows []HourRow, q tsdb.AggregateQuery) tsdb.AggregateResult {
	var sums tsdb.GroupSums
	for _, r := range rows {
		if q.Filter.ToolName != "" && r.Key.ToolName != q.Filter.ToolName ||
			q.Filter.OperationMode != "" && r.Key.Mode != q.Filter.OperationMode {
			continue
		}
		hour := time.UnixMicro(r.Hour).UTC()
		key := make([]tsdb.KeyValue, len(q.GroupBy))
		for i, d := range q.GroupBy {
			switch d {
			case tsdb.DimToolID:
				key[i] = tsdb.KeyValue{Text: schema.Decode(r.Key.ToolID)}
			case tsdb.DimToolName:
				key[i] = tsdb.KeyValue{Text: r.Key.ToolName}
			case tsdb.DimOperationMode:
				key[i] = tsdb.KeyValue{Text: r.Key.Mode}
			case tsdb.DimHour:
				key[i] = tsdb.KeyValue{Start: hour}
			case tsdb.DimDay:
				key[i] = tsdb.KeyValue{Start: tsdb.Daily.Truncate(hour)}
			}
		}
		sums.Add(key, r.Totals, r.Cache)
	}
	return sums.Rank(q)
}

// AggregateOperations answers q from the operations themselves, grouped in
// Go (see SumOperations).
func (s *Reader) AggregateOperations(ctx context.Context, q tsdb.AggregateQuery) (tsdb.AggregateResult, error) {
	var sums tsdb.GroupSums
	if err := s.SumOperations(ctx, q, &sums); err != nil {
		return tsdb.AggregateResult{}, err
	}
	return sums.Rank(q), nil
}

// SumOperations adds the operations of q's window that match its filter to
// sums, grouped by q's dimensions: on 1.x read with InfluxQL
// (aggregatePointsQL), elsewhere as the export reads them (in pages of
// bounded size, oldest first); a project from the start event of the
// operation's session. Memory holds a page or a chunk and the groups; time
// grows with the operations of the window (see docs/influxdb.md).
func (s *Reader) SumOperations(ctx context.Context, q tsdb.AggregateQuery, sums *tsdb.GroupSums) error {
	s.learnVersion(ctx)
	var projects map[uuid.UUID]*string
	if slices.Contains(q.GroupBy, tsdb.DimProjectID) {
		var err error
		if projects, err = s.Projects(ctx); err != nil {
			return err
		}
	}
	if s.readsQL() {
		return s.aggregatePointsQL(ctx, q, projects, sums)
	}
	return s.Export(ctx, q.Filter, func(op *tsdb.Operation) error {
		addOperation(sums, q, op, projects)
		return nil
	})
}

// SumSessionMinutes calls add with the totals of each UTC minute (its
// start, unix microseconds) and session of the operations in [lo, hi),
// summed inside InfluxDB with one InfluxQL query: a cold answer by session
// reads the minutes at its edges at once, where a query per minute pays
// InfluxDB 1.8's fixed cost of walking every series each. ErrNoPoints
// where there is no InfluxQL (2.x).
func (s *Reader) SumSessionMinutes(ctx context.Context, lo, hi time.Time, add func(minute int64, session string, t tsdb.Totals, c tsdb.CacheCounts)) error {
	s.learnVersion(ctx)
	if !s.readsQL() {
		return ErrNoPoints
	}
	return s.sumTagsQL(ctx, "session minutes", lo, hi, "", "1m", []string{schema.TagSessionID},
		func(tags map[string]string, ns int64, t tsdb.Totals, c tsdb.CacheCounts) error {
			add(ns/int64(time.Microsecond), tags[schema.TagSessionID], t, c)
			return nil
		})
}

// addOperation adds op to sums, in its group of q's dimensions (projects:
// the project of each session that has one).
func addOperation(sums *tsdb.GroupSums, q tsdb.AggregateQuery, op *tsdb.Operation, projects map[uuid.UUID]*string) {
	addTotals(sums, q, op, projects, tsdb.TotalsOf(op), tsdb.CacheOf(op))
}

// addTotals adds t and c to sums, in the group of q's dimensions of op
// (an operation, or one that stands for a group of them).
func addTotals(sums *tsdb.GroupSums, q tsdb.AggregateQuery, op *tsdb.Operation, projects map[uuid.UUID]*string, t tsdb.Totals, c tsdb.CacheCounts) {
	key := make([]tsdb.KeyValue, len(q.GroupBy))
	for i, d := range q.GroupBy {
		key[i] = d.Of(op, projects[op.SessionID])
	}
	sums.Add(key, t, c)
}

// aggregatePointsQL adds the operations of q's window to sums, grouped by
// q's dimensions, on InfluxDB 1.x, whose Flux reads points about 60 times
// slower than InfluxQL. Grouped by tags and times alone, InfluxDB adds them
// up itself, a week per InfluxQL query (sumTagsQL: 30 days of 2,000,000
// operations by session in about 1 s, against 10 s read as points).
// Grouped by file path, a field InfluxDB cannot group by: the window's
// points, a UTC day per InfluxQL query (each within QueryTimeout), only
// the fields and tags the sums and the dimensions need, in no order (see
// selectPointsQL). Memory holds a chunk of the answer and the groups.
func (s *Reader) aggregatePointsQL(ctx context.Context, q tsdb.AggregateQuery, projects map[uuid.UUID]*string, sums *tsdb.GroupSums) error {
	lo, hi, ok := TimeRange(q.Filter.Start, q.Filter.End)
	if !ok {
		return nil
	}
	// A window within one UTC day is one query; a longer one is read from
	// its first point's day to its last's.
	first, last := lo, hi.Add(-time.Microsecond)
	if !first.Truncate(24 * time.Hour).Equal(last.Truncate(24 * time.Hour)) {
		var err error
		if first, last, ok, err = s.OperationSpan(ctx, lo, hi); err != nil || !ok {
			return err
		}
	}
	where := operationWhereQL(q.Filter)
	// The tags of the dimensions, and none else.
	var tags []string
	for _, d := range q.GroupBy {
		switch d {
		case tsdb.DimToolID:
			tags = append(tags, schema.TagToolID)
		case tsdb.DimToolName:
			tags = append(tags, schema.TagToolName)
		case tsdb.DimOperationMode:
			tags = append(tags, schema.TagOperationMode)
		case tsdb.DimSessionID, tsdb.DimProjectID:
			if !slices.Contains(tags, schema.TagSessionID) {
				tags = append(tags, schema.TagSessionID)
			}
		}
	}
	sessions := map[string]uuid.UUID{}
	// opOf answers the operation of a point or group with tags tv at ns:
	// what its dimensions other than the file path are read from.
	opOf := func(tv map[string]string, ns int64) (tsdb.Operation, error) {
		op := tsdb.Operation{
			ToolName:      tv[schema.TagToolName],
			OperationMode: tv[schema.TagOperationMode],
			ToolID:        schema.Decode(tv[schema.TagToolID]),
			CreatedAt:     time.Unix(0, ns).UTC().Truncate(time.Microsecond),
		}
		if sid, ok := tv[schema.TagSessionID]; ok {
			id, seen := sessions[sid]
			if !seen {
				var err error
				if id, err = uuid.Parse(sid); err != nil {
					return op, fmt.Errorf("session id %q: %w", sid, err)
				}
				sessions[sid] = id
			}
			op.SessionID = id
		}
		return op, nil
	}

	if !slices.Contains(q.GroupBy, tsdb.DimFilePath) {
		every := "1d"
		if slices.Contains(q.GroupBy, tsdb.DimHour) {
			every = "1h"
		}
		add := func(tv map[string]string, ns int64, t tsdb.Totals, c tsdb.CacheCounts) error {
			op, err := opOf(tv, ns)
			if err != nil {
				return err
			}
			addTotals(sums, q, &op, projects, t, c)
			return nil
		}
		const week = 7 * 24 * time.Hour
		for from := first.Truncate(24 * time.Hour); !from.After(last); from = from.Add(week) {
			a, b := within(from, from.Add(week), lo, hi)
			if err := s.sumTagsQL(ctx, "aggregate sums", a, b, where, every, tags, add); err != nil {
				return err
			}
		}
		return nil
	}

	fields := append(slices.Clip(opPointFields), schema.FieldFilePath)
	files := map[string]*string{}
	add := func(tv map[string]string, _ string, ns int64, v []qlValue) error {
		op, err := opOf(tv, ns)
		if err != nil {
			return err
		}
		if err := pointSums(&op, v); err != nil {
			return err
		}
		if fp, ok := v[len(opPointFields)].str(); ok {
			p := files[fp]
			if p == nil {
				fp = strings.Clone(fp) // not the chunk it is a part of
				p = new(schema.Decode(fp))
				files[fp] = p
			}
			op.FilePath = p
		}
		addOperation(sums, q, &op, projects)
		return nil
	}
	var groupBy []string
	for _, t := range tags {
		groupBy = append(groupBy, qlIdent(t))
	}
	// A UTC day per query, from the first point's to the last's.
	for day := first.Truncate(24 * time.Hour); !day.After(last); day = day.Add(24 * time.Hour) {
		a, b := within(day, day.Add(24*time.Hour), lo, hi)
		if err := s.selectPointsQL(ctx, "aggregate points", schema.Operation, fields, a, b, where, strings.Join(groupBy, ", "), math.MaxInt, add); err != nil {
			return err
		}
	}
	return nil
}

// within answers [from, to) cut to [lo, hi).
func within(from, to, lo, hi time.Time) (time.Time, time.Time) {
	if from.Before(lo) {
		from = lo
	}
	if to.After(hi) {
		to = hi
	}
	return from, to
}

// operationWhereQL answers the InfluxQL conditions of f's tag filters,
// joined with AND ("" when it has none).
func operationWhereQL(f tsdb.OperationFilter) string {
	var conds []string
	for _, t := range filterTags(f) {
		conds = append(conds, qlIdent(t[0])+" = "+qlString(t[1]))
	}
	return strings.Join(conds, " AND ")
}

// Projects answers the project of every session that has one, from the
// sessions' start events (the first start of a session wins, as for
// GetSession).
func (s *Reader) Projects(ctx context.Context) (map[uuid.UUID]*string, error) {
	q := `from(bucket: ` + s.bucket + `)
  |> ` + fluxRange(minTime, maxTime) + `
  |> filter(fn: (r) => r._measurement == "` + schema.Session + `" and r.event == "` + schema.EventStart + `")`
	starts := map[uuid.UUID]*sessAgg{}
	err := s.query(ctx, "session projects", q, func(r row) error {
		id, err := uuid.Parse(r.str("session_id"))
		if err != nil {
			return fmt.Errorf("influx: session id %q: %w", r.str("session_id"), err)
		}
		a := starts[id]
		if a == nil {
			a = &sessAgg{id: id}
			starts[id] = a
		}
		a.addEvent(r, r.time("_time").Truncate(time.Microsecond))
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make(map[uuid.UUID]*string, len(starts))
	for id, a := range starts {
		if a.attrs.ProjectID != nil {
			out[id] = a.attrs.ProjectID
		}
	}
	return out, nil
}
