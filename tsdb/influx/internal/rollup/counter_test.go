package rollup

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/internal/query"
)

// TestCounterOfAColdWindow: a list's count over more closed hours than the
// cache holds (coldHours) answers query.ErrCold at once, without waiting
// on the hours' read, which runs in the background (no other fill starts
// meanwhile);
// once it has landed the count comes from the cache, exact, with no read.
// A window of more closed hours than the cache keeps answers ErrCold and
// reads nothing; Close cancels a fill in flight and waits for it.
func TestCounterOfAColdWindow(t *testing.T) {
	db, r, slots := newFakeDB(3)
	end := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	start := end.Add(-100 * time.Hour)
	for h := start; h.Before(end); h = h.Add(time.Hour) {
		db.write(minuteOps(r, slots, 3, h.Add(7*time.Minute)))
	}
	first := start.Add(7 * time.Minute)
	release := make(chan struct{})
	var inRead atomic.Int64
	src := db.source()
	readHours := src.ReadHours
	src.ReadHours = func(ctx context.Context, name string, lo, hi time.Time, toolID string) ([]query.HourRow, error) {
		inRead.Add(1)
		defer inRead.Add(-1)
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return readHours(ctx, name, lo, hi, toolID)
	}
	src.FirstTime = func(context.Context, string) (time.Time, bool, error) { return first, true, nil }
	newCounter := func(maxRows int) (*Operations, query.Counter) {
		c := New[query.HourRow, query.HourKey](src, Options{TTL: -1, MaxRows: maxRows})
		t.Cleanup(c.Close)
		return c, Counter(c)
	}
	ctx := context.Background()
	lo, hi := start.Add(-24*time.Hour), end.Add(time.Hour)

	c, count := newCounter(1 << 18)
	for i := range 3 {
		// A count that waited on the read would end with its context.
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, _, err := count(ctx, lo, hi, tsdb.OperationFilter{}, 10)
		cancel()
		if !errors.Is(err, query.ErrCold) {
			t.Fatalf("count %d of a cold window of 100 hours: %v, want ErrCold", i, err)
		}
	}
	waitFor(t, "the background fill to reach its read", func() bool { return inRead.Load() > 0 })
	if c.refresh.background(func(context.Context) {}) {
		t.Error("a second background fill started while the cold counts' one ran")
	}
	close(release)
	waitFor(t, "the background fill to land", func() bool {
		return len(c.hc.missing(start.UnixMicro(), end.UnixMicro(), time.Now())) == 0
	})
	reads := db.reads.Load()
	total, from, err := count(ctx, lo, hi, tsdb.OperationFilter{}, 10)
	if err != nil || total != int64(len(db.in(lo, hi))) {
		t.Fatalf("warm count = %d, %v; want %d", total, err, len(db.in(lo, hi)))
	}
	if want := end.Add(-4 * time.Hour); !from.Equal(want) {
		t.Errorf("warm count: the newest 10 from %v, want %v (3 an hour)", from, want)
	}
	if n := db.reads.Load() - reads; n != 0 {
		t.Errorf("warm count read %d times, want 0", n)
	}

	// More closed hours than the cache keeps: ErrCold, and nothing read.
	_, small := newCounter(2 * 64)
	reads = db.reads.Load()
	if _, _, err := small(ctx, lo, hi, tsdb.OperationFilter{}, 10); !errors.Is(err, query.ErrCold) {
		t.Fatalf("count of 100 hours in a cache of 64: %v, want ErrCold", err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := db.reads.Load() - reads; n != 0 {
		t.Errorf("count of more hours than the cache keeps read %d times, want 0", n)
	}

	// Close cancels a fill in flight and waits for it.
	blocked := make(chan struct{})
	var once sync.Once
	src.ReadHours = func(ctx context.Context, _ string, _, _ time.Time, _ string) ([]query.HourRow, error) {
		once.Do(func() { close(blocked) })
		<-ctx.Done()
		return nil, ctx.Err()
	}
	c3 := New[query.HourRow, query.HourKey](src, Options{TTL: -1, MaxRows: 1 << 18})
	if _, _, err := Counter(c3)(ctx, lo, hi, tsdb.OperationFilter{}, 10); !errors.Is(err, query.ErrCold) {
		t.Fatalf("cold count: %v, want ErrCold", err)
	}
	<-blocked
	c3.Close()
	c3.refresh.mu.Lock()
	busy := c3.refresh.busy
	c3.refresh.mu.Unlock()
	if busy {
		t.Error("Close returned while its background fill ran")
	}
}

// waitFor waits up to 10 s for cond.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestBackgroundOneAtATime: the refresher runs one background fill at a
// time, another once it has ended, and none once closed.
func TestBackgroundOneAtATime(t *testing.T) {
	r := startRefresher(0, nil)
	release, ran := make(chan struct{}), make(chan struct{}, 3)
	fill := func(context.Context) { <-release; ran <- struct{}{} }
	if !r.background(fill) {
		t.Fatal("the first fill did not start")
	}
	if r.background(fill) {
		t.Error("a second fill started while the first ran")
	}
	close(release)
	<-ran
	waitFor(t, "a fill to start after the first ended", func() bool { return r.background(func(context.Context) {}) })
	r.Close()
	if r.background(fill) {
		t.Error("a fill started after Close")
	}
}
