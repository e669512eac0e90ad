package query

import (
	"cmp"
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

// operationColumnsQL are the columns of an operation that exports and
// lists select with InfluxQL, in the order qlOperation reads them: its
// tags (as columns of their own) and fields, the sums and cache hit last,
// as pointSums reads them.
var operationColumnsQL = append([]string{schema.FieldID, schema.TagSessionID, schema.TagToolName, schema.TagOperationMode,
	schema.TagToolID, schema.FieldParameters, schema.FieldFilePath}, opPointFields...)

// exportQL is export on InfluxDB 1.x, with InfluxQL. Each query is a raw
// read of a window (without GROUP BY, so that InfluxDB merges the series
// in time order) of at most exportQLPages pages, whose answer comes in
// chunks of a page. Whenever more than a page is read, the operations of
// every microsecond before the last one read go to fn, sorted by created_at
// and id; the reads' time counts against QueryTimeout, fn's does not. A
// query cut by its limit leaves the microsecond of its last point to the
// next query; a microsecond of more than a page is read by id
// (exportMicro). The window's width adapts so that it holds about the
// limit. Reading many pages per query matters on 1.x: each query decodes
// whole blocks of every series' string fields, about 0.2-0.4 s on the
// bench's data whatever its window.
func (s *Reader) exportQL(ctx context.Context, lo, hi int64, f tsdb.OperationFilter, fn func(*tsdb.Operation) error) error {
	where := operationWhereQL(f)
	first, last, ok, err := s.exportBoundsQL(ctx, lo, hi, where)
	if err != nil || !ok {
		return err
	}
	cur, end := max(lo, first), min(hi, last+1)
	page := s.cfg.ExportPageSize
	limit := page * exportQLPages
	width := min(end-cur, tsdb.MicrosPerHour)
	ops := make([]tsdb.Operation, 0, page+1)
	// hand hands fn the operations of ops created before the microsecond
	// us, in order, and keeps the others.
	hand := func(us int64) error {
		slices.SortFunc(ops, compareOperations)
		k, _ := slices.BinarySearchFunc(ops, us, func(op tsdb.Operation, us int64) int { return cmp.Compare(op.CreatedAt.UnixMicro(), us) })
		if k > 0 {
			s.log.Debug("export page", "operations", k, "before", time.UnixMicro(us).UTC())
		}
		for i := range ops[:k] {
			if err := fn(&ops[i]); err != nil {
				return err
			}
		}
		n := copy(ops, ops[k:])
		clear(ops[n:]) // let the page's strings go
		ops = ops[:n]
		return nil
	}
	for cur < end {
		if err := ctx.Err(); err != nil {
			return err
		}
		stop := cur + min(width, end-cur)
		read, dense := 0, int64(-1)
		qctx, budget, cancel := withReadBudget(ctx, s.cfg.QueryTimeout)
		err := s.eachPointQL(qctx, "export page", selectQL(schema.Operation, operationColumnsQL, time.UnixMicro(cur), time.UnixMicro(stop), where, "", "LIMIT "+strconv.Itoa(limit)),
			len(operationColumnsQL), limit, func(_ map[string]string, _ string, ns int64, v []qlValue) error {
				op, err := qlOperation(ns, v)
				if err != nil {
					return err
				}
				ops = append(ops, op)
				read++
				if len(ops) <= page {
					return nil
				}
				us := op.CreatedAt.UnixMicro() // the newest yet: the points come in time order
				budget.pause()
				defer budget.resume()
				if err := hand(us); err != nil {
					return err
				}
				if len(ops) > page { // all of us
					dense = us
					return errDenseMicro
				}
				return nil
			})
		cancel()
		next := stop
		switch {
		case errors.Is(err, errDenseMicro):
			clear(ops)
			ops = ops[:0]
			if err := s.exportMicro(ctx, dense, operationTags(f), int64(page), fn); err != nil {
				return err
			}
			cur = dense + 1
			continue
		case err != nil:
			return err
		case read == limit:
			// The window holds more: the microsecond of the last point
			// read may go on.
			next = ops[len(ops)-1].CreatedAt.UnixMicro()
			width = max(1, next-cur)
		default:
			// About the limit at this window's density, at most 64 times
			// as wide.
			width = max(1, min(width*64, int64(float64(width)*float64(limit)/float64(max(1, read)))))
		}
		if err := hand(next); err != nil {
			return err
		}
		clear(ops)
		ops = ops[:0]
		cur = next
	}
	return nil
}

// exportQLPages is how many pages one query of exportQL reads at most.
const exportQLPages = 16

// errDenseMicro ends a query of exportQL at a microsecond that holds more
// than a page.
var errDenseMicro = errors.New("influx: more than a page at one microsecond")

// readBudget ends a context once the time outside its pauses reaches a
// bound: a query whose caller works between the chunks of its answer is
// bounded in its reads, not in the caller's work.
type readBudget struct {
	timer *time.Timer
	left  time.Duration
	since time.Time
}

// withReadBudget answers ctx ended after d of reads, its budget, and the
// func that releases both.
func withReadBudget(ctx context.Context, d time.Duration) (context.Context, *readBudget, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	b := &readBudget{left: d, since: time.Now()}
	b.timer = time.AfterFunc(d, cancel)
	return ctx, b, func() {
		b.timer.Stop()
		cancel()
	}
}

// pause stops counting time; resume counts it again.
func (b *readBudget) pause() {
	if b.timer.Stop() {
		b.left -= time.Since(b.since)
	}
}

func (b *readBudget) resume() {
	b.since = time.Now()
	b.timer.Reset(max(b.left, 0))
}

// exportBoundsQL answers the created_at (unix microseconds) of the first
// and the last operation in [lo, hi) that match where; ok is false when
// there is none. One request of two statements (first() and last() of an
// integer field, which cost a third of those of the string id on 1.8).
func (s *Reader) exportBoundsQL(ctx context.Context, lo, hi int64, where string) (first, last int64, ok bool, err error) {
	stmt := func(fn string) string {
		return callQL(fn, schema.Operation, schema.FieldTokensActual, time.UnixMicro(lo), time.UnixMicro(hi), where)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	series, err := s.influxQL(ctx, stmt("first")+"; "+stmt("last"))
	if err != nil {
		return 0, 0, false, err
	}
	var haveFirst, haveLast bool
	for _, sr := range series {
		for _, v := range sr.Values {
			var ns int64
			if len(v) == 0 || num(v[0], &ns) != nil {
				return 0, 0, false, fmt.Errorf("influx: influxql: export bounds: a row without a time")
			}
			us := time.Unix(0, ns).Truncate(time.Microsecond).UnixMicro()
			if sr.Statement == 0 {
				first, haveFirst = us, true
			} else {
				last, haveLast = us, true
			}
		}
	}
	// Both or neither, unless an operation was written between the two.
	return first, last, haveFirst && haveLast, nil
}

// qlOperation is the operation of a row of operationColumnsQL at point
// time ns, as rowOperation makes it of a Flux row.
func qlOperation(ns int64, v []qlValue) (tsdb.Operation, error) {
	if len(v) != len(operationColumnsQL) {
		return tsdb.Operation{}, fmt.Errorf("%d columns in a row, want %d", len(v), len(operationColumnsQL))
	}
	str := func(i int) string {
		s, _ := v[i].str()
		return strings.Clone(s) // not the chunk it is a part of
	}
	op := tsdb.Operation{
		ToolName:      str(2),
		OperationMode: str(3),
		ToolID:        schema.Decode(str(4)),
		Parameters:    json.RawMessage(str(5)),
		CreatedAt:     time.Unix(0, ns).UTC().Truncate(time.Microsecond),
	}
	var file *string
	if _, ok := v[6].str(); ok {
		file = new(str(6))
	}
	if err := finishOperation(&op, str(0), str(1), file); err != nil {
		return op, err
	}
	return op, pointSums(&op, v[7:])
}

// callQL answers the InfluxQL statement of fn (first, last, count) of
// field over the points of measurement meas in [lo, hi) that match where
// ("" all).
func callQL(fn, meas, field string, lo, hi time.Time, where string) string {
	if where != "" {
		where = " AND " + where
	}
	return fmt.Sprintf(`SELECT %s(%s) FROM %s WHERE time >= %d AND time < %d%s`, fn, qlIdent(field),
		qlIdent(meas), lo.UnixNano(), hi.UnixNano(), where)
}
