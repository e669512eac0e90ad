package query

import (
	"context"
	"fmt"
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

// AggregateOperations answers q from the operations themselves, read as the
// export reads them (in pages of bounded size, oldest first) and grouped in
// Go; a project from the start event of the operation's session. Memory
// holds a page and the groups; time grows with the operations of the window
// (see docs/influxdb.md).
func (s *Reader) AggregateOperations(ctx context.Context, q tsdb.AggregateQuery) (tsdb.AggregateResult, error) {
	var projects map[uuid.UUID]*string
	for _, d := range q.GroupBy {
		if d == tsdb.DimProjectID {
			var err error
			if projects, err = s.projects(ctx); err != nil {
				return tsdb.AggregateResult{}, err
			}
		}
	}
	var sums tsdb.GroupSums
	err := s.Export(ctx, q.Filter, func(op *tsdb.Operation) error {
		key := make([]tsdb.KeyValue, len(q.GroupBy))
		for i, d := range q.GroupBy {
			key[i] = d.Of(op, projects[op.SessionID])
		}
		sums.Add(key, tsdb.TotalsOf(op), tsdb.CacheOf(op))
		return nil
	})
	if err != nil {
		return tsdb.AggregateResult{}, err
	}
	return sums.Rank(q), nil
}

// projects answers the project of every session that has one, from the
// sessions' start events (the first start of a session wins, as for
// GetSession).
func (s *Reader) projects(ctx context.Context) (map[uuid.UUID]*string, error) {
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
