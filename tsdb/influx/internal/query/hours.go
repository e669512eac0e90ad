package query

import (
	"context"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// HourKey is a key of the hourly totals; ToolID as stored in its tag
// (schema.TagValue).
type HourKey struct{ ToolID, ToolName, Mode string }

// HourRow is the totals of one key in one UTC hour.
type HourRow struct {
	Hour int64 // unix microseconds of the hour's start
	Key  *HourKey
	tsdb.Totals
}

// hourQueries answers the two Flux queries (sums of the four fields, and
// counts) of the totals per UTC hour and (tool_id, tool_name,
// operation_mode) of the operations with point times in [lo, hi), of tool
// id tid when given (a predicate, see toolIDPred). Windows are aligned to
// the epoch, hence to UTC hours; a window's _time is its start, or lo for
// the first when lo is not aligned. Shapes as in trendQueries: grouped on
// 1.x, per series on 2.x.
func (s *Reader) hourQueries(lo, hi time.Time, tid string, perSeries bool) (sums, counts string) {
	sum := s.opsSource(lo, hi, fieldPred(sumFields...), tid)
	cnt := s.opsSource(lo, hi, fieldPred(countField), tid)
	win := func(fn string) string {
		return "\n  |> aggregateWindow(every: 1h, fn: " + fn + `, createEmpty: false, timeSrc: "_start")`
	}
	const keys = `"tool_id", "tool_name", "operation_mode"`
	if perSeries {
		return sum + win("sum") + `
  |> group(columns: [` + keys + `, "_field", "_time"])
  |> sum()
  |> yield(name: "sum")`, cnt + win("count") + `
  |> group(columns: [` + keys + `, "_time"])
  |> sum()
  |> yield(name: "count")`
	}
	return sum + `
  |> group(columns: [` + keys + `, "_field"])` + win("sum") + `
  |> yield(name: "sum")`, cnt + `
  |> group(columns: [` + keys + `])` + win("count") + `
  |> yield(name: "count")`
}

// ReadHours answers the totals per UTC hour and key of the operations of
// tool id toolID (all when empty) with point times in [lo, hi), one row per
// (hour, key) with operations: with InfluxQL on InfluxDB 1.x (see
// influxql.go), with Flux elsewhere. name names the read in logs.
func (s *Reader) ReadHours(ctx context.Context, name string, lo, hi time.Time, toolID string) ([]HourRow, error) {
	s.learnVersion(ctx)
	if s.v1.Load() && !s.cfg.AlwaysFlux {
		return s.readHoursQL(ctx, name, lo, hi, toolID)
	}
	tid := toolIDPred(toolID)
	type rk struct {
		hour int64
		key  HourKey
	}
	m := map[rk]*HourRow{}
	var order []rk
	sums, counts := s.hourQueries(lo, hi, tid, s.perSeries.Load())
	err := s.queryEach(ctx, name, func(r row) error {
		k := rk{tsdb.FloorTo(r.time("_time").UnixMicro(), tsdb.MicrosPerHour),
			HourKey{r.str(schema.TagToolID), r.str(schema.TagToolName), r.str(schema.TagOperationMode)}}
		hr := m[k]
		if hr == nil {
			key := k.key
			hr = &HourRow{Hour: k.hour, Key: &key}
			m[k] = hr
			order = append(order, k)
		}
		addField(&hr.Totals, r)
		return nil
	}, sums, counts)
	if err != nil {
		return nil, err
	}
	out := make([]HourRow, 0, len(order))
	for _, k := range order {
		if hr := m[k]; hr.Count > 0 {
			out = append(out, *hr)
		}
	}
	return out, nil
}
