package query

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// sumFields are the fields Breakdown and Trend add up; countField is counted
// (every operation has it).
var sumFields = []string{"tokens_original", "tokens_actual", "tokens_prevented", "response_time_ms"}

const countField = "tokens_original"

// fieldPred answers the Flux predicate `r._field == a or r._field == b`.
func fieldPred(fields ...string) string {
	p := ""
	for i, f := range fields {
		if i > 0 {
			p += " or "
		}
		p += `r._field == "` + f + `"`
	}
	if len(fields) > 1 {
		p = "(" + p + ")"
	}
	return p
}

// opsSource answers from |> range |> filter for operations in [lo, hi) with
// the tag predicates given and the field predicate, all in one filter so
// that the storage engine applies it (pushdown on 1.8 and 2.x).
func (s *Reader) opsSource(lo, hi time.Time, fields string, tags ...string) string {
	return s.source(schema.Operation, lo, hi, fields, tags...)
}

// source is opsSource for the points of measurement meas.
func (s *Reader) source(meas string, lo, hi time.Time, fields string, tags ...string) string {
	if s.v1.Load() {
		// InfluxDB 1.8 takes a point at exactly the stop into the range;
		// point times are whole nanoseconds, so stop 1 ns earlier there.
		hi = hi.Add(-time.Nanosecond)
	}
	return `from(bucket: ` + s.bucket + `)
  |> ` + fluxRange(lo, hi) + `
  |> filter(fn: (r) => ` + pred(append([]string{`r._measurement == ` + fluxString(meas)}, append(tags, fields)...)...) + `)`
}

func toolIDPred(toolID string) string {
	if toolID == "" {
		return ""
	}
	return eq("tool_id", schema.TagValue(toolID))
}

// QueryOperations answers one page of operations, newest created_at first,
// ties by id descending, and the number of all matches, in two steps: the
// count and the page's keys (sorted and cut in Flux on the id field alone,
// point times truncated to the microsecond, i.e. created_at), then the
// page's points pivoted into operations. With count (the hourly cache)
// and no session filter, the total comes from count and the keys are
// searched only in the newest hours that hold offset+limit matches (the
// whole range again if they turn out to hold fewer), unless the cache
// does not hold the window yet (ErrCold).
func (s *Reader) QueryOperations(ctx context.Context, f tsdb.OperationFilter, count Counter) (tsdb.OperationPage, error) {
	s.learnVersion(ctx)
	page := tsdb.OperationPage{Operations: []tsdb.Operation{}}
	lo, hi, ok := TimeRange(f.Start, f.End)
	if !ok {
		return page, nil
	}
	tags := operationTags(f)
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	// Phase 1: the total, and the page's keys (created_at, id) from the id
	// field alone: one field sorted, not every field pivoted.
	total := s.opsSource(lo, hi, `r._field == "id"`, tags...) + `
  |> group()
  |> count()
  |> yield(name: "total")`
	keys := func(from time.Time) string {
		return s.opsSource(from, hi, `r._field == "id"`, tags...) + `
  |> group()
  |> truncateTimeColumn(unit: 1us)
  |> sort(columns: ["_time", "_value"], desc: true)
  |> limit(n: ` + strconv.Itoa(limit) + `, offset: ` + strconv.Itoa(max(f.Offset, 0)) + `)
  |> keep(columns: ["_time", "_value"])
  |> yield(name: "keys")`
	}
	want := map[string]bool{}
	var first, last time.Time
	addKey := func(t time.Time, id string) {
		if len(want) == 0 || t.Before(first) {
			first = t
		}
		if len(want) == 0 || t.After(last) {
			last = t
		}
		want[id] = true
	}
	collect := func(r row) error {
		switch r.result {
		case "total":
			page.Total += r.int("_value")
		case "keys":
			addKey(r.time("_time"), r.str("_value"))
		}
		return nil
	}
	// On 1.x the keys and the page are read with InfluxQL, unless the page
	// lies deeper than qlListMax matches: InfluxQL cannot skip them, and
	// the service would hold their keys. The count is InfluxQL's at any
	// depth.
	v1ql := s.readsQL()
	where, ql := operationWhereQL(f), v1ql && max(f.Offset, 0)+limit <= qlListMax
	readKeys := func(from time.Time) error {
		if ql {
			err := s.keysQL(ctx, from, hi, where, max(f.Offset, 0), limit, addKey)
			if !errors.Is(err, ErrTooLarge) {
				return err
			}
			ql = false // more than qlListMax at the page's last microsecond
			clear(want)
		}
		return s.query(ctx, "query operations keys", keys(from), collect)
	}
	var err error
	counted := false
	if count != nil && f.SessionID == nil {
		// The total from the hourly counts, and the page's keys searched
		// only in the newest hours that hold offset+limit matches: a first
		// page sorts about a page of points, not the whole range. A cache
		// that does not hold the window yet (ErrCold) leaves the count to
		// the server.
		var from time.Time
		page.Total, from, err = count(ctx, lo, hi, f, max(f.Offset, 0)+limit)
		switch {
		case errors.Is(err, ErrCold):
			page.Total, err = 0, nil
		case err != nil:
			return page, err
		case int64(max(f.Offset, 0)) >= page.Total:
			return page, nil
		default:
			counted = true
			err = readKeys(from)
			if err == nil && len(want) < limit && from.After(lo) {
				// Fewer matches than counted (another writer's points, not
				// yet in the cached counts): search the whole range.
				clear(want)
				err = readKeys(lo)
			}
		}
	}
	switch {
	case counted: // the total and the keys read above
	case v1ql:
		if page.Total, err = s.countQL(ctx, "query operations count", schema.Operation, countField, lo, hi, where); err == nil {
			err = readKeys(lo)
		}
	default:
		err = s.queryEach(ctx, "query operations", collect, total, keys(lo))
	}
	if err != nil || len(want) == 0 {
		return page, err
	}
	// Phase 2: the page's operations in full. Every match strictly inside
	// [first, last] is on the page (the page is a run of the sorted
	// matches), so this reads the page plus at most the ties at its two
	// ends, which the id set drops.
	if ql {
		err = s.selectPointsQL(ctx, "query operations page", schema.Operation, operationColumnsQL, first, last.Add(time.Microsecond),
			where, "", math.MaxInt, func(_ map[string]string, _ string, ns int64, v []qlValue) error {
				if id, _ := v[0].str(); !want[id] {
					return nil
				}
				op, err := qlOperation(ns, v)
				if err == nil {
					page.Operations = append(page.Operations, op)
				}
				return err
			})
	} else {
		q := s.operationsSource(first, last.Add(time.Microsecond), tags)
		err = s.query(ctx, "query operations page", q, func(r row) error {
			if !want[r.str("id")] {
				return nil
			}
			op, err := rowOperation(r)
			if err != nil {
				return err
			}
			page.Operations = append(page.Operations, op)
			return nil
		})
	}
	if err != nil {
		return tsdb.OperationPage{}, err
	}
	slices.SortFunc(page.Operations, func(a, b tsdb.Operation) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID.String(), a.ID.String())
	})
	return page, nil
}

// Counter answers how many operations match f (but its session filter)
// in [lo, hi), and the start of the newest span of whole hours that holds
// at least need of them (lo when there are fewer): the hourly cache's
// answer, for QueryOperations. ErrCold: the cache does not hold enough of
// the window to answer at once; QueryOperations then counts on the server.
type Counter func(ctx context.Context, lo, hi time.Time, f tsdb.OperationFilter, need int) (int64, time.Time, error)

// ErrCold is a Counter's answer when its cache would first have to read
// much of the window.
var ErrCold = errors.New("influx: the hourly cache does not hold the window yet")

// filterTags answers the tags f's filters ask for (not its time range),
// each a tag key and its value as stored, for the predicates of Flux
// (operationTags) and of InfluxQL (operationWhereQL).
func filterTags(f tsdb.OperationFilter) [][2]string {
	var tags [][2]string
	if f.SessionID != nil {
		tags = append(tags, [2]string{schema.TagSessionID, f.SessionID.String()})
	}
	if f.ToolName != "" {
		tags = append(tags, [2]string{schema.TagToolName, f.ToolName})
	}
	if f.OperationMode != "" {
		tags = append(tags, [2]string{schema.TagOperationMode, f.OperationMode})
	}
	if f.ToolID != "" {
		tags = append(tags, [2]string{schema.TagToolID, schema.TagValue(f.ToolID)})
	}
	return tags
}

// operationTags answers the Flux tag predicates of f's filters (not its
// time range).
func operationTags(f tsdb.OperationFilter) []string {
	var preds []string
	for _, t := range filterTags(f) {
		preds = append(preds, eq(t[0], t[1]))
	}
	return preds
}

// operationsSource answers the operations with point times in [lo, hi)
// that match tags, one row per operation, in no particular order, for
// rowOperation.
func (s *Reader) operationsSource(lo, hi time.Time, tags []string) string {
	return s.opsSource(lo, hi, "", tags...) + pivotOperations
}

// pivotOperations turns the points of operations (every field of all of
// them) into one row per operation, every field a column, for rowOperation.
const pivotOperations = `
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> map(fn: (r) => ({r with has_file_path: exists r.file_path}))`

func rowOperation(r row) (tsdb.Operation, error) {
	op := tsdb.Operation{
		ToolName:        r.str("tool_name"),
		OperationMode:   r.str("operation_mode"),
		Parameters:      json.RawMessage(r.str("parameters")),
		TokensOriginal:  r.int("tokens_original"),
		TokensActual:    r.int("tokens_actual"),
		TokensPrevented: r.int("tokens_prevented"),
		ResponseTimeMs:  r.float("response_time_ms"),
		ToolID:          schema.Decode(r.str("tool_id")),
		CreatedAt:       r.time("_time").Truncate(time.Microsecond),
	}
	// CSV answers cannot tell null from "": has_file_path can.
	var file *string
	if has, _ := r.values["has_file_path"].(bool); has {
		file = new(r.str("file_path"))
	}
	if hit, ok := r.values[schema.FieldCacheHit].(bool); ok {
		op.CacheHit = &hit
	}
	if err := finishOperation(&op, r.str("id"), r.str("session_id"), file); err != nil {
		return op, fmt.Errorf("influx: %w", err)
	}
	return op, nil
}

// finishOperation sets op's ids from their text and its file path from
// its stored form (file nil: none), and gives it "{}" for no parameters:
// the part of rowOperation (Flux) and qlOperation (InfluxQL) that does not
// depend on the form of the answer.
func finishOperation(op *tsdb.Operation, id, session string, file *string) error {
	var err error
	if op.ID, err = uuid.Parse(id); err != nil {
		return fmt.Errorf("operation id %q: %w", id, err)
	}
	if op.SessionID, err = uuid.Parse(session); err != nil {
		return fmt.Errorf("session id %q: %w", session, err)
	}
	if file != nil {
		op.FilePath = new(schema.Decode(*file))
	}
	if len(op.Parameters) == 0 {
		op.Parameters = json.RawMessage("{}")
	}
	return nil
}

// Breakdown answers the totals per (tool name, mode) in w: one grouped sum
// over the four fields and one grouped count, both pushdown shapes
// (range |> filter |> group |> sum/count).
func (s *Reader) Breakdown(ctx context.Context, w tsdb.Window) ([]tsdb.ModeTotals, error) {
	lo, hi, ok := TimeRange(w.Start, &w.End)
	if !ok {
		return []tsdb.ModeTotals{}, nil
	}
	tid := toolIDPred(w.ToolID)
	sums := s.opsSource(lo, hi, fieldPred(sumFields...), tid) + `
  |> group(columns: ["tool_name", "operation_mode", "_field"])
  |> sum()
  |> yield(name: "sum")`
	counts := s.opsSource(lo, hi, fieldPred(countField), tid) + `
  |> group(columns: ["tool_name", "operation_mode"])
  |> count()
  |> yield(name: "count")`
	m := totalsBy[modeKey]{}
	err := s.queryEach(ctx, "breakdown", func(r row) error {
		addField(m.at(modeKey{r.str("tool_name"), r.str("operation_mode")}), r)
		return nil
	}, sums, counts)
	if err != nil {
		return nil, err
	}
	return modeTotals(m), nil
}

// modeKey is a (tool name, mode) pair of Breakdown.
type modeKey struct{ tool, mode string }

// totalsBy sums totals per key.
type totalsBy[K comparable] map[K]*tsdb.Totals

// at answers the totals of k, zero when first asked.
func (m totalsBy[K]) at(k K) *tsdb.Totals {
	t := m[k]
	if t == nil {
		t = new(tsdb.Totals)
		m[k] = t
	}
	return t
}

// BreakdownOf answers Breakdown's rows from hourly totals.
func BreakdownOf(rows []HourRow) []tsdb.ModeTotals {
	m := totalsBy[modeKey]{}
	for _, r := range rows {
		m.at(modeKey{r.Key.ToolName, r.Key.Mode}).Add(r.Totals)
	}
	return modeTotals(m)
}

// TrendOf answers Trend's rows from hourly totals.
func TrendOf(rows []HourRow, step tsdb.Step) []tsdb.Bucket {
	m := totalsBy[time.Time]{}
	for _, r := range rows {
		m.at(step.Truncate(time.UnixMicro(r.Hour).UTC())).Add(r.Totals)
	}
	return buckets(m)
}

// CountOf answers, from the hourly totals of [lo, hi) (of f's tool id),
// how many operations match f (but its session filter), and the start of
// the newest span of hours that holds at least need of them (lo when there
// are fewer): a Counter's answer.
func CountOf(rows []HourRow, lo time.Time, f tsdb.OperationFilter, need int) (int64, time.Time) {
	perHour := map[int64]int64{}
	var total int64
	for _, r := range rows {
		if f.ToolName != "" && r.Key.ToolName != f.ToolName || f.OperationMode != "" && r.Key.Mode != f.OperationMode {
			continue
		}
		perHour[r.Hour] += r.Count
		total += r.Count
	}
	hours := slices.Sorted(maps.Keys(perHour))
	var acc int64
	for i := len(hours) - 1; i >= 0; i-- {
		if acc += perHour[hours[i]]; acc >= int64(need) {
			if t := time.UnixMicro(hours[i]); t.After(lo) {
				return total, t
			}
			break
		}
	}
	return total, lo
}

// modeTotals answers Breakdown's rows: the pairs with operations.
func modeTotals(m totalsBy[modeKey]) []tsdb.ModeTotals {
	out := []tsdb.ModeTotals{}
	for k, t := range m {
		if t.Count > 0 {
			out = append(out, tsdb.ModeTotals{ToolName: k.tool, OperationMode: k.mode, Totals: *t})
		}
	}
	return out
}

// buckets answers Trend's rows: the buckets with operations, oldest first.
func buckets(m totalsBy[time.Time]) []tsdb.Bucket {
	out := []tsdb.Bucket{}
	for k, t := range m {
		if t.Count > 0 {
			out = append(out, tsdb.Bucket{Start: k, Totals: *t})
		}
	}
	slices.SortFunc(out, func(a, b tsdb.Bucket) int { return a.Start.Compare(b.Start) })
	return out
}

// addField adds one aggregate row (result "sum" per field, or "count") to t.
func addField(t *tsdb.Totals, r row) {
	if r.result == "count" {
		t.Count += r.int("_value")
		return
	}
	switch r.str("_field") {
	case "tokens_original":
		t.TokensOriginal += r.int("_value")
	case "tokens_actual":
		t.TokensActual += r.int("_value")
	case "tokens_prevented":
		t.TokensPrevented += r.int("_value")
	case "response_time_ms":
		t.ResponseTimeSumMs += r.float("_value")
	}
}

// Trend answers the totals per UTC hour or day bucket of w, with
// aggregateWindow (windows aligned to the epoch, hence to UTC hours and
// days; see windowQueries). A window's _start is the bucket start, or the range start for the
// first, partial bucket, so the bucket is Truncate(_start). The range is
// exactly the window, so only operations in it count.
func (s *Reader) Trend(ctx context.Context, w tsdb.Window, step tsdb.Step) ([]tsdb.Bucket, error) {
	lo, hi, ok := TimeRange(w.Start, &w.End)
	if !ok {
		return []tsdb.Bucket{}, nil
	}
	every := "1h"
	if step == tsdb.Daily {
		every = "1d"
	}
	m := totalsBy[time.Time]{}
	err := s.queryEach(ctx, "trend", func(r row) error {
		addField(m.at(step.Truncate(r.time("_time"))), r)
		return nil
	}, s.opsWindows(lo, hi, toolIDPred(w.ToolID), every, nil, false)...)
	if err != nil {
		return nil, err
	}
	return buckets(m), nil
}

// FirstOperationTime reads the oldest created_at (of toolID when given).
func (s *Reader) FirstOperationTime(ctx context.Context, toolID string) (time.Time, bool, error) {
	return s.firstTime(ctx, "first operation time", schema.Operation, "id", toolID)
}

// FirstSpendTime reads the time of the oldest spend point (of toolID when
// given).
func (s *Reader) FirstSpendTime(ctx context.Context, toolID string) (time.Time, bool, error) {
	return s.firstTime(ctx, "first spend time", schema.Spend, spendCount, toolID)
}

// firstTime reads the oldest point time, to the microsecond, of the points
// of measurement meas (of toolID when given) that have field: the first
// point of every series, then the earliest of those.
func (s *Reader) firstTime(ctx context.Context, name, meas, field, toolID string) (time.Time, bool, error) {
	q := s.source(meas, minTime, maxTime, `r._field == `+fluxString(field), toolIDPred(toolID)) + `
  |> first()
  |> group()
  |> keep(columns: ["_time"])
  |> sort(columns: ["_time"])
  |> limit(n: 1)`
	var first time.Time
	found := false
	err := s.query(ctx, name, q, func(r row) error {
		t := r.time("_time")
		if !found || t.Before(first) {
			first, found = t, true
		}
		return nil
	})
	if err != nil || !found {
		return time.Time{}, false, err
	}
	return first.Truncate(time.Microsecond), true, nil
}

// OperationSpan answers the times of the first and the last operation in
// [lo, hi), and false when there is none (see span). It asks of
// tokens_actual, an integer every operation has: InfluxDB 1.8 answers
// first() and last() of an integer field about three times faster than of
// the string id (30 days of 2,000,000 operations: about 60 ms against
// 200 ms).
func (s *Reader) OperationSpan(ctx context.Context, lo, hi time.Time) (first, last time.Time, ok bool, err error) {
	return s.span(ctx, "operation span", schema.Operation, schema.FieldTokensActual, lo, hi)
}

// SpendSpan answers the times of the first and the last spend point in
// [lo, hi), and false when there is none (see span).
func (s *Reader) SpendSpan(ctx context.Context, lo, hi time.Time) (first, last time.Time, ok bool, err error) {
	return s.span(ctx, "spend span", schema.Spend, spendCount, lo, hi)
}

// span answers the times of the first and the last point of measurement
// meas that have field, in [lo, hi), and false when there is none: the
// first and last point of every series, whatever lies between them
// (InfluxQL's first() and last() on 1.x; Flux's, pushed down to storage,
// on 2.x), so that a cache can tell the hours before the first and after
// the last empty without reading them.
func (s *Reader) span(ctx context.Context, name, meas, field string, lo, hi time.Time) (first, last time.Time, ok bool, err error) {
	s.learnVersion(ctx)
	see := func(t time.Time) {
		if !ok || t.Before(first) {
			first = t
		}
		if !ok || t.After(last) {
			last = t
		}
		ok = true
	}
	if s.readsQL() {
		where := fmt.Sprintf(` FROM %s WHERE time >= %d AND time < %d`, qlIdent(meas), lo.UnixNano(), hi.UnixNano())
		ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
		defer cancel()
		series, err := s.influxQL(ctx, `SELECT first(`+qlIdent(field)+`)`+where+`; SELECT last(`+qlIdent(field)+`)`+where)
		if err != nil {
			return first, last, false, err
		}
		for _, sr := range series {
			for _, v := range sr.Values {
				var ns int64
				if len(v) == 0 || num(v[0], &ns) != nil {
					return first, last, false, fmt.Errorf("influx: influxql: %s: a row without a time", name)
				}
				see(time.Unix(0, ns).UTC())
			}
		}
		return first, last, ok, nil
	}
	// Two reads, each of them alone after its selector, so that 2.x pushes
	// both down.
	data := s.source(meas, lo, hi, `r._field == `+fluxString(field))
	q := `union(tables: [
  ` + data + `
  |> first(),
  ` + data + `
  |> last()])
  |> group()
  |> keep(columns: ["_time"])`
	err = s.query(ctx, name, q, func(r row) error {
		see(r.time("_time"))
		return nil
	})
	return first, last, ok && err == nil, err
}

// qlListMax bounds offset+limit of a list read with InfluxQL (keysQL);
// deeper pages are read with Flux, which sorts and skips inside InfluxDB.
const qlListMax = 10000

// keysQL hands add the created_at and id of the matches of where in
// [from, hi) at positions [offset, offset+limit) of a list's order
// (created_at descending, ties by id descending), with InfluxQL: the ids
// of the newest offset+limit points (ORDER BY time DESC, which InfluxDB
// merges across series), and of every point of the microsecond of the
// last of them, since point times do not order the operations of one
// microsecond by id. More than qlListMax there answer ErrTooLarge.
func (s *Reader) keysQL(ctx context.Context, from, hi time.Time, where string, offset, limit int, add func(t time.Time, id string)) error {
	type key struct {
		us int64
		id string
	}
	var keys []key
	read := func(name string, lo, hi time.Time, tail string) error {
		ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
		defer cancel()
		return s.eachPointQL(ctx, name, selectQL(schema.Operation, []string{schema.FieldID}, lo, hi, where, "", tail), 1, qlListMax,
			func(_ map[string]string, _ string, ns int64, v []qlValue) error {
				id, ok := v[0].str()
				if !ok {
					return fmt.Errorf("operation id %v", v[0])
				}
				keys = append(keys, key{time.Unix(0, ns).Truncate(time.Microsecond).UnixMicro(), strings.Clone(id)})
				return nil
			})
	}
	n := offset + limit
	if err := read("query operations keys", from, hi, "ORDER BY time DESC LIMIT "+strconv.Itoa(n)); err != nil {
		return err
	}
	if len(keys) == n {
		// The microsecond of the last point read may hold more.
		edge := keys[n-1].us
		keys = slices.DeleteFunc(keys, func(k key) bool { return k.us == edge })
		if err := read("query operations ties", time.UnixMicro(edge), time.UnixMicro(edge+1), ""); err != nil {
			return err
		}
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := cmp.Compare(b.us, a.us); c != 0 {
			return c
		}
		return strings.Compare(b.id, a.id)
	})
	for _, k := range keys[min(offset, len(keys)):min(n, len(keys))] {
		add(time.UnixMicro(k.us).UTC(), k.id)
	}
	return nil
}

// CountOperations answers how many operations have point times in
// [lo, hi): a count of the integer field countField, which every
// operation has. InfluxDB 1.8 counts a UTC day of 200,000 operations that
// way in about 40 ms, against about 110 ms for the string id, 160-210 ms
// per hour (GROUP BY time(1h)) and 0.75 s for the day's hourly totals.
func (s *Reader) CountOperations(ctx context.Context, lo, hi time.Time) (int64, error) {
	return s.countPoints(ctx, "count operations", schema.Operation, countField, lo, hi)
}

// CountSpend answers how many spend points have times in [lo, hi), as
// CountOperations.
func (s *Reader) CountSpend(ctx context.Context, lo, hi time.Time) (int64, error) {
	return s.countPoints(ctx, "count spend", schema.Spend, spendCount, lo, hi)
}

// countPoints answers how many points of measurement meas, each of which
// has field, have times in [lo, hi).
func (s *Reader) countPoints(ctx context.Context, name, meas, field string, lo, hi time.Time) (int64, error) {
	s.learnVersion(ctx)
	if s.readsQL() {
		return s.countQL(ctx, name, meas, field, lo, hi, "")
	}
	var n int64
	err := s.query(ctx, name, s.source(meas, lo, hi, `r._field == "`+field+`"`)+`
  |> group()
  |> count()`, func(r row) error {
		n += r.int("_value")
		return nil
	})
	return n, err
}

// countQL answers how many points of measurement meas that have field
// match the InfluxQL condition where ("" none) in [lo, hi), with InfluxQL.
func (s *Reader) countQL(ctx context.Context, name, meas, field string, lo, hi time.Time, where string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	series, err := s.influxQL(ctx, callQL("count", meas, field, lo, hi, where))
	if err != nil {
		return 0, err
	}
	var total int64
	for _, sr := range series {
		for _, v := range sr.Values {
			var n int64
			if len(v) < 2 || num(v[1], &n) != nil {
				return 0, fmt.Errorf("influx: influxql: %s: a row without a count", name)
			}
			total += n
		}
	}
	return total, nil
}
