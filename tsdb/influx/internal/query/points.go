package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// The rollup cache keeps, besides the totals of closed hours, the points
// themselves of the few minutes at a window's edges (see package rollup),
// so that an answer does not read them again: on InfluxDB 1.8 any raw
// query walks every series of its shard and costs 25-50 ms even over a
// minute of points. A point is what the cache needs to add it to an
// answer (its time, its series, its values as a row of its hour) and to
// recognise it again when this store delivers it (its key, series and
// time, is unique in InfluxDB: a point written again replaces it).

// Point is one point of a measurement: its time in nanoseconds, its
// series (the tag set, see seriesOf) and its values as the row of its hour
// (a count of one).
type Point[R any] struct {
	NS     int64
	Series string
	Row    R
}

// ErrNoPoints is answered by the point reads on servers where they are not
// InfluxQL (2.x, Cloud, or AlwaysFlux): there Flux pushes the edges'
// aggregates down, and the cache reads those instead.
var ErrNoPoints = errors.New("influx: point reads need InfluxQL (InfluxDB 1.x)")

// seriesOf answers the canonical text of a tag set (tags without a value
// left out, keys sorted): the same for a series read back with InfluxQL
// and for its points in line protocol.
func seriesOf(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k, v := range tags {
		if v != "" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(tags[k])
		b.WriteByte(0)
	}
	return b.String()
}

// readPointsQL reads the points of measurement meas with times in [lo, hi)
// with one InfluxQL statement (the fields, every series apart: GROUP BY
// *), and hands each row's values (after its time) to add with its series'
// tags and its time in nanoseconds, chunk by chunk as the answer comes (see
// influxQLEach): at most maxPointRows points.
func (s *Reader) readPointsQL(ctx context.Context, name, meas string, fields []string, lo, hi time.Time,
	add func(tags map[string]string, series string, ns int64, v []qlValue) error) error {
	return s.selectPointsQL(ctx, name, meas, fields, lo, hi, "", "*", maxPointRows, add)
}

// selectPointsQL is readPointsQL with the conditions of where (InfluxQL,
// joined with AND; "" for none), the tags of groupBy ("*" for all, as
// readPointsQL; "" for none, when add needs no tags: a raw read answers
// every point, also points of several series at one time) and a bound of
// its own.
func (s *Reader) selectPointsQL(ctx context.Context, name, meas string, fields []string, lo, hi time.Time, where, groupBy string, maxRows int,
	add func(tags map[string]string, series string, ns int64, v []qlValue) error) error {
	s.learnVersion(ctx)
	if !s.readsQL() {
		return ErrNoPoints
	}
	if s.closed.Load() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	return s.eachPointQL(ctx, name, selectQL(meas, fields, lo, hi, where, groupBy, ""), len(fields), maxRows, add)
}

// selectQL answers the InfluxQL statement of selectPointsQL, followed by
// tail (its ORDER BY, LIMIT; "" for none).
func selectQL(meas string, fields []string, lo, hi time.Time, where, groupBy, tail string) string {
	sel := make([]string, len(fields))
	for i, f := range fields {
		sel[i] = qlIdent(f)
	}
	if where != "" {
		where = " AND " + where
	}
	if groupBy != "" {
		groupBy = " GROUP BY " + groupBy
	}
	q := fmt.Sprintf(`SELECT %s FROM %s WHERE time >= %d AND time < %d%s%s`,
		strings.Join(sel, ", "), qlIdent(meas), lo.UnixNano(), hi.UnixNano(), where, groupBy)
	if tail != "" {
		q += " " + tail
	}
	return q
}

// eachPointQL runs q, a selectQL of fields columns, within ctx and hands
// each row to add as selectPointsQL does.
func (s *Reader) eachPointQL(ctx context.Context, name, q string, fields, maxRows int,
	add func(tags map[string]string, series string, ns int64, v []qlValue) error) error {
	start := time.Now()
	n := 0
	defer func() { s.log.Debug("influxql query", "query", name, "points", n, "took", time.Since(start)) }()
	return s.influxQLEach(ctx, q, maxRows, func(sr qlSeries) error {
		key := seriesOf(sr.Tags)
		for _, v := range sr.Values {
			if len(v) != fields+1 {
				return fmt.Errorf("influx: influxql: %d columns in a row, want %d", len(v), fields+1)
			}
			var t int64
			if err := num(v[0], &t); err != nil {
				return fmt.Errorf("influx: influxql: time: %w", err)
			}
			if err := add(sr.Tags, key, t, v[1:]); err != nil {
				return fmt.Errorf("influx: influxql: %w", err)
			}
			n++
		}
		return nil
	})
}

// maxPointRows bounds the points one read of points answers (the points
// of a few edge minutes; a read of more answers ErrTooLarge).
const maxPointRows = 250000

// opPointFields are the fields an operation's point row is made of, in
// the order ReadPoints selects them.
var opPointFields = []string{schema.FieldTokensOriginal, schema.FieldTokensActual, schema.FieldTokensPrevented,
	schema.FieldResponseTimeMs, schema.FieldCacheHit}

// pointSums sets op's sums and cache hit from v, the values of
// opPointFields in a row of readPointsQL.
func pointSums(op *tsdb.Operation, v []qlValue) error {
	var rt json.Number
	if err := errors.Join(num(v[0], &op.TokensOriginal), num(v[1], &op.TokensActual), num(v[2], &op.TokensPrevented),
		num(v[3], &rt)); err != nil {
		return err
	}
	f, err := rt.Float64()
	if err != nil {
		return fmt.Errorf("response time %q", rt)
	}
	op.ResponseTimeMs, op.CacheHit = f, nil
	if hit, ok := v[4].boolean(); ok {
		op.CacheHit = &cacheHits[0]
		if hit {
			op.CacheHit = &cacheHits[1]
		}
	}
	return nil
}

// cacheHits are the values an operation's CacheHit points to when read by
// pointSums (read only).
var cacheHits = [2]bool{false, true}

// ReadPoints answers the operations with point times in [lo, hi), each as
// the row of its hour, with InfluxQL (ErrNoPoints elsewhere).
func (s *Reader) ReadPoints(ctx context.Context, name string, lo, hi time.Time) ([]Point[HourRow], error) {
	var out []Point[HourRow]
	keys := map[HourKey]*HourKey{}
	err := s.readPointsQL(ctx, name, schema.Operation, opPointFields, lo, hi,
		func(tags map[string]string, series string, ns int64, v []qlValue) error {
			k := HourKey{tags[schema.TagToolID], tags[schema.TagToolName], tags[schema.TagOperationMode]}
			kp := keys[k]
			if kp == nil {
				kp = &k
				keys[k] = kp
			}
			var op tsdb.Operation
			if err := pointSums(&op, v); err != nil {
				return err
			}
			r := HourRow{Hour: tsdb.FloorTo(ns, int64(time.Hour)) / int64(time.Microsecond), Key: kp,
				Totals: tsdb.TotalsOf(&op), Cache: tsdb.CacheOf(&op)}
			out = append(out, Point[HourRow]{NS: ns, Series: series, Row: r})
			return nil
		})
	return out, err
}

// ReadSpendPoints answers the spend points with times in [lo, hi), each as
// the row of its hour, with InfluxQL (ErrNoPoints elsewhere).
func (s *Reader) ReadSpendPoints(ctx context.Context, name string, lo, hi time.Time) ([]Point[SpendHourRow], error) {
	var out []Point[SpendHourRow]
	err := s.readPointsQL(ctx, name, schema.Spend, spendFields, lo, hi,
		func(tags map[string]string, series string, ns int64, v []qlValue) error {
			r := SpendHourRow{Hour: tsdb.FloorTo(ns, int64(time.Hour)) / int64(time.Microsecond)}
			r.ToolID, r.Model, r.Points = tags[schema.TagToolID], tags[schema.TagModel], 1
			var cost json.Number
			if err := errors.Join(num(v[0], &cost), num(v[1], &r.Tokens.Input), num(v[2], &r.Tokens.Output),
				num(v[3], &r.Tokens.CacheRead), num(v[4], &r.Tokens.CacheCreation)); err != nil {
				return err
			}
			f, err := cost.Float64()
			if err != nil {
				return fmt.Errorf("cost %q", cost)
			}
			r.CostUSD = f
			out = append(out, Point[SpendHourRow]{NS: ns, Series: series, Row: r})
			return nil
		})
	return out, err
}

// lpLine is one line of line protocol, split: its measurement, its tags
// (unescaped), its fields (values as written) and its time.
type lpLine struct {
	meas   string
	tags   map[string]string
	fields map[string]string
	ns     int64
}

// parseLine splits one line of the line protocol the store writes (see
// delivery.Encoder): measurement and tag keys and values escape `,`, `=`
// and ` ` with a backslash; string fields are quoted, escaping `"` and
// `\`. It answers false for a line it cannot read.
func parseLine(line []byte) (lpLine, bool) {
	var l lpLine
	i := 0
	// token reads up to an unescaped byte of stop, unescaping.
	token := func(stop string) string {
		var b []byte
		for i < len(line) {
			c := line[i]
			if c == '\\' && i+1 < len(line) {
				b = append(b, line[i+1])
				i += 2
				continue
			}
			if strings.IndexByte(stop, c) >= 0 {
				break
			}
			b = append(b, c)
			i++
		}
		return string(b)
	}
	l.meas = token(", ")
	l.tags = map[string]string{}
	for i < len(line) && line[i] == ',' {
		i++
		k := token("=")
		if i >= len(line) {
			return l, false
		}
		i++
		l.tags[k] = token(", ")
	}
	if i >= len(line) || line[i] != ' ' {
		return l, false
	}
	i++
	l.fields = map[string]string{}
	for {
		k := token("=")
		if i >= len(line) {
			return l, false
		}
		i++
		if i < len(line) && line[i] == '"' { // a string: kept quoted, skipped
			j := i + 1
			for j < len(line) && line[j] != '"' {
				if line[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(line) {
				return l, false
			}
			l.fields[k] = string(line[i : j+1])
			i = j + 1
		} else {
			j := i
			for j < len(line) && line[j] != ',' && line[j] != ' ' {
				j++
			}
			l.fields[k] = string(line[i:j])
			i = j
		}
		if i >= len(line) {
			return l, false
		}
		if line[i] == ' ' {
			break
		}
		i++ // ','
	}
	ns, err := strconv.ParseInt(string(bytes.TrimSpace(line[i+1:])), 10, 64)
	if err != nil {
		return l, false
	}
	l.ns = ns
	return l, true
}

func lpInt(s string) (int64, error) { return strconv.ParseInt(strings.TrimSuffix(s, "i"), 10, 64) }

func lpBool(s string) (bool, bool) {
	switch s {
	case "t", "T", "true", "True", "TRUE":
		return true, true
	case "f", "F", "false", "False", "FALSE":
		return false, true
	}
	return false, false
}

// ParsePoint answers the operation point of one line of line protocol, as
// ReadPoints would read it back, and false when the line is not one.
func ParsePoint(line []byte) (Point[HourRow], bool) {
	l, ok := parseLine(line)
	if !ok || l.meas != schema.Operation {
		return Point[HourRow]{}, false
	}
	k := &HourKey{l.tags[schema.TagToolID], l.tags[schema.TagToolName], l.tags[schema.TagOperationMode]}
	r := HourRow{Hour: tsdb.FloorTo(l.ns, int64(time.Hour)) / int64(time.Microsecond), Key: k, Totals: tsdb.Totals{Count: 1}}
	var err error
	var errs []error
	r.TokensOriginal, err = lpInt(l.fields[schema.FieldTokensOriginal])
	errs = append(errs, err)
	r.TokensActual, err = lpInt(l.fields[schema.FieldTokensActual])
	errs = append(errs, err)
	r.TokensPrevented, err = lpInt(l.fields[schema.FieldTokensPrevented])
	errs = append(errs, err)
	r.ResponseTimeSumMs, err = strconv.ParseFloat(l.fields[schema.FieldResponseTimeMs], 64)
	errs = append(errs, err)
	if errors.Join(errs...) != nil {
		return Point[HourRow]{}, false
	}
	if v, present := l.fields[schema.FieldCacheHit]; present {
		hit, ok := lpBool(v)
		if !ok {
			return Point[HourRow]{}, false
		}
		r.Cache.Lookups = 1
		if hit {
			r.Cache.Hits = 1
		}
	}
	return Point[HourRow]{NS: l.ns, Series: seriesOf(l.tags), Row: r}, true
}

// ParseSpendPoint answers the spend point of one line of line protocol, as
// ReadSpendPoints would read it back, and false when the line is not one.
func ParseSpendPoint(line []byte) (Point[SpendHourRow], bool) {
	l, ok := parseLine(line)
	if !ok || l.meas != schema.Spend {
		return Point[SpendHourRow]{}, false
	}
	r := SpendHourRow{Hour: tsdb.FloorTo(l.ns, int64(time.Hour)) / int64(time.Microsecond)}
	r.ToolID, r.Model, r.Points = l.tags[schema.TagToolID], l.tags[schema.TagModel], 1
	var err error
	var errs []error
	r.CostUSD, err = strconv.ParseFloat(l.fields[schema.FieldCostUSD], 64)
	errs = append(errs, err)
	r.Tokens.Input, err = lpInt(l.fields[schema.FieldTokensInput])
	errs = append(errs, err)
	r.Tokens.Output, err = lpInt(l.fields[schema.FieldTokensOutput])
	errs = append(errs, err)
	r.Tokens.CacheRead, err = lpInt(l.fields[schema.FieldTokensCacheRead])
	errs = append(errs, err)
	r.Tokens.CacheCreation, err = lpInt(l.fields[schema.FieldTokensCacheCreation])
	errs = append(errs, err)
	if errors.Join(errs...) != nil {
		return Point[SpendHourRow]{}, false
	}
	return Point[SpendHourRow]{NS: l.ns, Series: seriesOf(l.tags), Row: r}, true
}

// Plus answers the row with o's totals added (o of the same hour and key).
func (r HourRow) Plus(o HourRow) HourRow {
	r.Totals.Add(o.Totals)
	r.Cache.Lookups += o.Cache.Lookups
	r.Cache.Hits += o.Cache.Hits
	return r
}

// Plus answers the row with o's totals added (o of the same hour and key).
func (r SpendHourRow) Plus(o SpendHourRow) SpendHourRow {
	r.SpendTotals.Add(o.SpendTotals)
	return r
}
