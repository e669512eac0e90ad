package rollup

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// TestDocsQuoteTheFileRow: docs/influxdb.md quotes the size of a row of
// the cache of files per day as it is.
func TestDocsQuoteTheFileRow(t *testing.T) {
	b, err := os.ReadFile("../../../../docs/influxdb.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Join(strings.Fields(string(b)), " ")
	if want := fmt.Sprintf("rows (twice an hourly cache), %d bytes each", unsafe.Sizeof(fileRow{})); !strings.Contains(doc, want) {
		t.Errorf("docs/influxdb.md does not say %q", want)
	}
}

// TestFileDaysDropsAReadDeliveredInto: a span whose read a delivery falls
// in while it runs is answered but not stored, so the next answer reads it
// again and sees the delivered point. InfluxDB cannot time a delivery
// inside a read, so the read here is a function that delivers while it
// runs.
func TestFileDaysDropsAReadDeliveredInto(t *testing.T) {
	day := time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC)
	reads, deliver := 0, true
	var c *FileDays
	c = &FileDays{
		ttl: time.Hour, max: 100, now: func() time.Time { return day.Add(48 * time.Hour) },
		spans: map[fileSpan]*fileEntry{}, paths: map[string]string{}, reading: map[fileSpan]*fileRead{},
		span: func(context.Context, time.Time, time.Time) (time.Time, time.Time, bool, error) {
			return day, day.Add(time.Hour), true, nil
		},
		sum: func(_ context.Context, q tsdb.AggregateQuery, sums *tsdb.GroupSums) error {
			reads++
			if deliver {
				deliver = false
				c.Delivered([][]byte{fmt.Appendf(nil, "%s,tool_id=x f=1i %d\n", schema.Operation, day.Add(time.Minute).UnixNano())})
			}
			return nil
		},
	}
	end := day.Add(24*time.Hour - time.Microsecond)
	q := tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimFilePath}, Filter: tsdb.OperationFilter{Start: &day, End: &end}, Limit: 10}
	for range 2 {
		if _, err := c.Aggregate(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	if reads != 2 || c.Rows() != 1 {
		t.Errorf("%d reads of the day, %d rows cached; want 2 (the first dropped by the delivery), 1", reads, c.Rows())
	}
}

// TestFileDaysReadsWhereOperationsMayBe: a window without an end asks
// where operations are once per TTL, reads no span between the last
// operation and the minute before that question, and reads the minutes
// closed since then (another writer's live operations land there).
func TestFileDaysReadsWhereOperationsMayBe(t *testing.T) {
	now := time.Date(2025, 6, 20, 12, 0, 30, 0, time.UTC)
	first, last := now.AddDate(0, 0, -10), now.AddDate(0, 0, -8)
	spans := 0
	var reads [][2]time.Time
	c := &FileDays{
		ttl: time.Hour, max: 1000, now: func() time.Time { return now },
		spans: map[fileSpan]*fileEntry{}, paths: map[string]string{}, reading: map[fileSpan]*fileRead{},
		span: func(context.Context, time.Time, time.Time) (time.Time, time.Time, bool, error) {
			spans++
			return first, last, true, nil
		},
		sum: func(_ context.Context, q tsdb.AggregateQuery, _ *tsdb.GroupSums) error {
			reads = append(reads, [2]time.Time{*q.Filter.Start, *q.Filter.End})
			return nil
		},
	}
	answer := func() [][2]time.Time {
		t.Helper()
		reads = nil
		start := now.AddDate(0, 0, -30)
		q := tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimFilePath}, Filter: tsdb.OperationFilter{Start: &start}, Limit: 10}
		if _, err := c.Aggregate(t.Context(), q); err != nil {
			t.Fatal(err)
		}
		return reads
	}

	asked := now
	since := asked.Truncate(time.Minute).Add(-time.Minute)
	cold := answer()
	if spans != 1 {
		t.Fatalf("%d questions of where operations are, want 1", spans)
	}
	for _, r := range cold {
		if r[0].Before(first.Truncate(24*time.Hour)) || (r[0].After(last) && r[1].Before(since)) {
			t.Errorf("read [%v, %v], where no operation may be (%v .. %v, then from %v)", r[0], r[1], first, last, since)
		}
	}
	if !slices.ContainsFunc(cold, func(r [2]time.Time) bool { return r[0].Equal(first.Truncate(24 * time.Hour)) }) {
		t.Errorf("reads %v, want one of the day of the first operation", cold)
	}

	warm := answer()
	if spans != 1 || len(warm) != 1 || warm[0][1].Sub(warm[0][0]) >= time.Minute {
		t.Errorf("warm: %d questions, reads %v; want 1 question, the current minute's part alone", spans, warm)
	}

	now = now.Add(2 * time.Minute)
	closed := asked.Truncate(time.Minute)
	later := answer()
	if spans != 1 || !slices.Contains(later, [2]time.Time{closed, closed.Add(time.Minute - time.Microsecond)}) {
		t.Errorf("2 minutes later: %d questions, reads %v; want 1 question and a read of the minute %v closed since", spans, later, closed)
	}

	now = asked.Add(c.ttl)
	answer()
	if spans != 2 {
		t.Errorf("after the TTL: %d questions, want 2", spans)
	}
}
