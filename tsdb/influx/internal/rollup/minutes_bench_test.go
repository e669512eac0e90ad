package rollup

import (
	"context"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/internal/query"
)

// heapObjects answers the bytes of the heap's objects, live and not yet
// swept: what the process's resident memory follows.
func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// watchHeap samples heapObjects every 100 µs until the function it
// answers is called, and raises *peak to the most seen above base.
func watchHeap(peak *uint64, base uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(100 * time.Microsecond)
		defer t.Stop()
		for {
			if h := heapObjects(); h > base && h-base > *peak {
				*peak = h - base
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// BenchmarkEdgeBurst: the first answer over the last hour when its edge
// holds a burst of 130,000 points in two minutes, as the benchmark's
// single-operation phase leaves one: what it allocates (B/op) and the
// most heap it holds at once above what it started from (peak-heap-MB).
// The points come from memory, so both are the cache's own.
func BenchmarkEdgeBurst(b *testing.B) {
	db, r, slots := newFakeDB(7)
	now := time.Now().UTC()
	burst := now.Add(-3 * time.Minute).Truncate(time.Minute)
	for m := range 2 {
		for range 13 {
			db.write(minuteOps(r, slots, 5000, burst.Add(time.Duration(m)*time.Minute)))
		}
	}
	for m := 5; m < 60; m += 5 { // quiet minutes besides
		db.write(minuteOps(r, slots, 50, now.Add(-time.Duration(m)*time.Minute).Truncate(time.Minute)))
	}
	lo, hi := now.Add(-time.Hour), now
	var want []query.HourRow
	for _, p := range db.in(lo, hi) {
		want = append(want, p.Row)
	}
	ctx := context.Background()
	var peak uint64
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		c := New[query.HourRow, query.HourKey](db.source(), Options{TTL: -1, MaxRows: 1 << 18})
		runtime.GC()
		stop := watchHeap(&peak, heapObjects())
		b.StartTimer()
		rows, err := c.HourRows(ctx, lo, hi, "")
		b.StopTimer()
		stop()
		c.Close()
		if err != nil {
			b.Fatal(err)
		}
		if got, want := total(rows), total(want); got != want {
			b.Fatalf("%+v, want %+v", got, want)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
}
