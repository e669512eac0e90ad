package rollup

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// TestDeliveredHours: each cache takes the hours of its own measurement's
// points from delivered line protocol, and no other's.
func TestDeliveredHours(t *testing.T) {
	h := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	lp := "tool_operation,operation_mode=full id=\"x\" " + itoa(h.Add(59*time.Minute).UnixNano()) + "\n" +
		"tool_session,event=start v=1i " + itoa(h.Add(-5*time.Hour).UnixNano()) + "\n" +
		"tool_operationx,a=b v=1i " + itoa(h.Add(-6*time.Hour).UnixNano()) + "\n" +
		"llm_spend,model=m,tool_id=a cost_usd=1 " + itoa(h.Add(-3*time.Hour+time.Minute).UnixNano()) + "\n" +
		"llm_spendx,model=m cost_usd=1 " + itoa(h.Add(-7*time.Hour).UnixNano()) + "\n" +
		"tool_operation,operation_mode=full id=\"y\" " + itoa(h.Add(2*time.Hour).UnixNano())
	for _, tc := range []struct {
		meas  string
		hours []time.Time
		first time.Time
	}{
		{schema.Operation, []time.Time{h, h.Add(2 * time.Hour)}, h.Add(59 * time.Minute)},
		{schema.Spend, []time.Time{h.Add(-3 * time.Hour)}, h.Add(-3*time.Hour + time.Minute)},
	} {
		hours := map[int64]struct{}{}
		var minTime time.Time
		deliveredHours([]byte(lp), tc.meas, hours, &minTime)
		var want []int64
		for _, w := range tc.hours {
			want = append(want, w.UnixMicro())
		}
		got := slices.Sorted(maps.Keys(hours))
		if !slices.Equal(got, want) || !minTime.Equal(tc.first) {
			t.Fatalf("%s: hours %v, first %v; want %v, %v", tc.meas, got, minTime, want, tc.first)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestSpans(t *testing.T) {
	d := time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC).UnixMicro()
	h := tsdb.MicrosPerHour
	hours := []int64{d - 2*h, d - h, d, d + h, d + 3*h}
	got := spans(hours)
	want := [][2]int64{{d - 2*h, d}, {d, d + 2*h}, {d + 3*h, d + 4*h}}
	if !slices.Equal(got, want) {
		t.Fatalf("spans %v, want %v (cut at the day and at gaps)", got, want)
	}
}

// TestSparseHistory: a window of 400 days whose points lie in its first
// and last days reads the days that hold points (and asks where the first
// and the last point are) instead of every day; it answers their exact
// sums, from the cache the second time (the empty days cached too), and a point delivered into one
// of the days found empty counts at once. When the question fails, every
// day is read.
func TestSparseHistory(t *testing.T) {
	db, r, slots := newFakeDB(5)
	c := newCache(t, db)
	end := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -1)
	start := end.AddDate(0, 0, -400)
	deliver := func(lp []byte) {
		db.write(lp)
		c.Delivered([][]byte{lp})
	}
	deliver(minuteOps(r, slots, 50, start.Add(3*time.Hour)))
	deliver(minuteOps(r, slots, 50, end.Add(-20*time.Hour)))
	if n := exactReads(t, c, db, "cold", start, end); n > 10 {
		t.Errorf("cold: %d reads of 400 days with points in two, want a few", n)
	}
	if db.spans.Load() == 0 {
		t.Error("cold: the first and last point were never asked")
	}
	spans := db.spans.Load()
	if n := exactReads(t, c, db, "warm", start, end); n != 0 || db.spans.Load() != spans {
		t.Errorf("warm: %d reads and %d questions, want none", n, db.spans.Load()-spans)
	}
	deliver(minuteOps(r, slots, 7, start.AddDate(0, 0, 200)))
	exactReads(t, c, db, "after a delivery into an empty day", start, end)

	db2, r2, slots2 := newFakeDB(6)
	db2.spanErr = errors.New("no answer")
	c2 := newCache(t, db2)
	lp := minuteOps(r2, slots2, 50, start.Add(3*time.Hour))
	db2.write(lp)
	c2.Delivered([][]byte{lp})
	if n := exactReads(t, c2, db2, "question failing", start, end); n < 400 {
		t.Errorf("question failing: %d reads, want every day read", n)
	}
}
