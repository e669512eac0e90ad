package query

import (
	"context"
	"strings"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// HourKey is a key of the hourly totals of operations; ToolID as stored in
// its tag (schema.TagValue).
type HourKey struct{ ToolID, ToolName, Mode string }

// HourRow is the totals of the operations of one key in one UTC hour.
type HourRow struct {
	Hour int64 // unix microseconds of the hour's start
	Key  *HourKey
	tsdb.Totals
	Cache tsdb.CacheCounts
}

// SpendKey is a key of the hourly totals of spend points: a tool id and a
// model as stored in their tags (schema.TagValue).
type SpendKey struct{ ToolID, Model string }

// SpendHourRow is the totals of the spend points of one (tool id, model)
// in one UTC hour; its ToolID and Model are as stored in their tags
// (SpendBreakdownOf decodes them).
type SpendHourRow struct {
	Hour int64 // unix microseconds of the hour's start
	tsdb.SpendTotals
}

// What the rollup cache asks of a row (rollup.Row): its hour, its tool id
// as stored in its tag, and its key, which WithKey replaces by the cache's
// one copy of it, so that the rows of every hour share their keys' memory.

// HourStart answers the unix microseconds of the row's hour.
func (r HourRow) HourStart() int64 { return r.Hour }

// ToolTag answers the row's tool id as stored in its tag.
func (r HourRow) ToolTag() string { return r.Key.ToolID }

// KeyValue answers the row's key.
func (r HourRow) KeyValue() HourKey { return *r.Key }

// WithKey answers the row with key k, equal to its own.
func (r HourRow) WithKey(k *HourKey) HourRow {
	r.Key = k
	return r
}

// PointCount answers how many operations the row adds up.
func (r HourRow) PointCount() int64 { return r.Count }

// HourStart answers the unix microseconds of the row's hour.
func (r SpendHourRow) HourStart() int64 { return r.Hour }

// ToolTag answers the row's tool id as stored in its tag.
func (r SpendHourRow) ToolTag() string { return r.ToolID }

// KeyValue answers the row's key.
func (r SpendHourRow) KeyValue() SpendKey { return SpendKey{r.ToolID, r.Model} }

// WithKey answers the row with the strings of key k, equal to its own.
func (r SpendHourRow) WithKey(k *SpendKey) SpendHourRow {
	r.ToolID, r.Model = k.ToolID, k.Model
	return r
}

// PointCount answers how many spend points the row adds up.
func (r SpendHourRow) PointCount() int64 { return r.Points }

// countQuery is a Flux source of points to count per window, and the name
// of the result its counts come back under.
type countQuery struct{ src, name string }

// windowQueries answers the Flux queries of the sums of the points that sum
// selects and of the counts of the points of each of counts, per
// window of every (aligned to the epoch, hence to UTC hours and days) and
// per the tag columns keys, in one of two shapes, both valid on Flux 0.65
// and 2.x, with the same answer:
//
//   - grouped (InfluxDB 1.x): range |> filter |> group(columns: [keys...,
//     "_field"]) |> aggregateWindow. 1.8 pushes range, filter and group
//     into storage (ReadGroup) and windows a handful of tables: about 4
//     times faster on 1.8 than per series, where windowing every series'
//     table dominates.
//   - per series (InfluxDB 2.x): range |> filter |> aggregateWindow, the
//     shape 2.x pushes down whole (ReadWindowAggregate: storage sums each
//     series per window), then the per-series sums are added up per window
//     and key.
//
// The store picks per series once the server says it is 2.x (the
// X-Influxdb-Version header of a write or ping answer). A window's _time
// is its start, or the range start for the first when that is not
// aligned. The sums' result is named "sum", the counts' as in counts.
func windowQueries(sum string, counts []countQuery, every string, keys []string, perSeries bool) []string {
	cols := func(more ...string) string {
		all := append(keys[:len(keys):len(keys)], more...)
		if len(all) == 0 {
			return ""
		}
		return `"` + strings.Join(all, `", "`) + `"`
	}
	win := func(fn string) string {
		return "\n  |> aggregateWindow(every: " + every + ", fn: " + fn + `, createEmpty: false, timeSrc: "_start")`
	}
	q := func(src, fn, name string, group ...string) string {
		if perSeries {
			return src + win(fn) + `
  |> group(columns: [` + cols(append(group, "_time")...) + `])
  |> sum()
  |> yield(name: "` + name + `")`
		}
		return src + `
  |> group(columns: [` + cols(group...) + `])` + win(fn) + `
  |> yield(name: "` + name + `")`
	}
	qs := []string{q(sum, "sum", "sum", "_field")}
	for _, c := range counts {
		qs = append(qs, q(c.src, "count", c.name))
	}
	return qs
}

// opsWindows answers the Flux queries (sums of the four fields, and counts:
// of operations, and with cache also of cache lookups and hits, results
// "lookups" and "hits") of the totals per window of every and per the tag
// columns keys of the operations with point times in [lo, hi), of tool id
// tid when given (a predicate, see toolIDPred); see windowQueries.
func (s *Reader) opsWindows(lo, hi time.Time, tid, every string, keys []string, cache bool) []string {
	counts := []countQuery{{s.opsSource(lo, hi, fieldPred(countField), tid), "count"}}
	if cache {
		hit := `r._field == "` + schema.FieldCacheHit + `"`
		counts = append(counts,
			countQuery{s.opsSource(lo, hi, hit, tid), "lookups"},
			countQuery{s.opsSource(lo, hi, hit+` and r._value == true`, tid), "hits"})
	}
	return windowQueries(s.opsSource(lo, hi, fieldPred(sumFields...), tid), counts, every, keys, s.perSeries.Load())
}

// ReadHours answers the totals per UTC hour and key of the operations of
// tool id toolID (all when empty) with point times in [lo, hi), one row per
// (hour, key) with operations: with InfluxQL on InfluxDB 1.x (see
// influxql.go), with Flux elsewhere. name names the read in logs.
func (s *Reader) ReadHours(ctx context.Context, name string, lo, hi time.Time, toolID string) ([]HourRow, error) {
	s.learnVersion(ctx)
	if s.readsQL() {
		return s.readHoursQL(ctx, name, lo, hi, toolID)
	}
	type rk struct {
		hour int64
		key  HourKey
	}
	m := map[rk]*HourRow{}
	var order []rk
	keys := []string{schema.TagToolID, schema.TagToolName, schema.TagOperationMode}
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
	}, s.opsWindows(lo, hi, toolIDPred(toolID), "1h", keys, true)...)
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
