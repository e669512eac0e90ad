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
	Cache tsdb.CacheCounts
}

// hourQueries answers the four Flux queries (sums of the four fields,
// counts of operations, of cache lookups and of cache hits) of the totals
// per UTC hour and (tool_id, tool_name, operation_mode) of the operations
// with point times in [lo, hi), of tool id tid when given (a predicate, see
// toolIDPred). Windows are aligned to the epoch, hence to UTC hours; a
// window's _time is its start, or lo for the first when lo is not aligned.
// Shapes as in trendQueries: grouped on 1.x, per series on 2.x.
func (s *Reader) hourQueries(lo, hi time.Time, tid string, perSeries bool) []string {
	win := func(fn string) string {
		return "\n  |> aggregateWindow(every: 1h, fn: " + fn + `, createEmpty: false, timeSrc: "_start")`
	}
	const keys = `"tool_id", "tool_name", "operation_mode"`
	sum := s.opsSource(lo, hi, fieldPred(sumFields...), tid)
	if perSeries {
		sum += win("sum") + `
  |> group(columns: [` + keys + `, "_field", "_time"])
  |> sum()`
	} else {
		sum += `
  |> group(columns: [` + keys + `, "_field"])` + win("sum")
	}
	out := []string{sum + `
  |> yield(name: "sum")`}
	for _, c := range []struct{ pred, name string }{
		{fieldPred(countField), "count"},
		{`r._field == "` + schema.FieldCacheHit + `"`, "lookups"},
		{`r._field == "` + schema.FieldCacheHit + `" and r._value == true`, "hits"},
	} {
		cnt := s.opsSource(lo, hi, c.pred, tid)
		if perSeries {
			cnt += win("count") + `
  |> group(columns: [` + keys + `, "_time"])
  |> sum()`
		} else {
			cnt += `
  |> group(columns: [` + keys + `])` + win("count")
		}
		out = append(out, cnt+`
  |> yield(name: "`+c.name+`")`)
	}
	return out
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
		switch r.result {
		case "lookups":
			hr.Cache.Lookups += r.int("_value")
		case "hits":
			hr.Cache.Hits += r.int("_value")
		default:
			addField(&hr.Totals, r)
		}
		return nil
	}, s.hourQueries(lo, hi, tid, s.perSeries.Load())...)
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
