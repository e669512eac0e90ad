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

// TestHoursDueAreCounted: a renewal counts the points of the cached
// hours an answer used, a day's run per count (Source.Count), and reads
// none whose count is their entries'; it reads again the day another
// writer wrote into (no delivery told the cache), and the answers stay
// exact. An answer over hours whose entries expired counts them too,
// reads only the day written into meanwhile, and the next answer reads
// nothing; a delivery while the count runs gets its day read; when the
// count fails, the expired hours are read.
func TestHoursDueAreCounted(t *testing.T) {
	db, r, slots := newFakeDB(4)
	end := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -5)
	start := end.AddDate(0, 0, -3)
	for h := start; h.Before(end); h = h.Add(5 * time.Hour) {
		db.write(minuteOps(r, slots, 4, h.Add(11*time.Minute)))
	}
	var counts atomic.Int64
	var countErr atomic.Bool
	var during func() // runs once in the next count, after it has counted
	src := db.source()
	src.Count = func(_ context.Context, lo, hi time.Time) (int64, error) {
		counts.Add(1)
		if countErr.Load() {
			return 0, errors.New("no answer")
		}
		n := int64(len(db.in(lo, hi)))
		if f := during; f != nil {
			during = nil
			f()
		}
		return n, nil
	}
	const ttl = 2 * time.Second
	c := New[query.HourRow, query.HourKey](src, Options{TTL: ttl, MaxRows: 1 << 18})
	c.refresh.Close() // the refresher's ticks are this test's calls of renew
	t.Cleanup(c.Close)
	answer := func(phase string) (reads, checks int64) {
		t.Helper()
		before := counts.Load()
		return exactReads(t, c, db, phase, start, end), counts.Load() - before
	}
	renew := func() (reads, checks int64) {
		before, beforeCounts := db.reads.Load(), counts.Load()
		c.renew(context.Background())
		return db.reads.Load() - before, counts.Load() - beforeCounts
	}

	if reads, _ := answer("cold"); reads == 0 {
		t.Fatal("cold: no read")
	}
	answer("used") // the hours are in use
	time.Sleep(ttl/2 + 100*time.Millisecond)
	if reads, checks := renew(); reads != 0 || checks != 3 {
		t.Errorf("a renewal of unchanged hours: %d reads, %d counts; want none and one count a day (3)", reads, checks)
	}
	if reads, checks := answer("after the renewal"); reads != 0 || checks != 0 {
		t.Errorf("after the renewal: %d reads, %d counts; want none", reads, checks)
	}

	// Another writer's points, which no delivery announced.
	db.write(minuteOps(r, slots, 2, start.Add(30*time.Hour+7*time.Minute)))
	time.Sleep(ttl/2 + 100*time.Millisecond)
	if reads, checks := renew(); reads != 1 || checks != 3 {
		t.Errorf("a renewal after another writer's points: %d reads, %d counts; want the one day read and 3 counts", reads, checks)
	}
	if reads, _ := answer("after another writer's points"); reads != 0 {
		t.Errorf("after another writer's points: %d reads, want none", reads)
	}

	// Expired: the answer counts, and reads the hour written into.
	db.write(minuteOps(r, slots, 2, start.Add(50*time.Hour+3*time.Minute)))
	time.Sleep(ttl + 100*time.Millisecond)
	if reads, checks := answer("expired"); reads != 1 || checks != 3 {
		t.Errorf("expired: %d reads, %d counts; want the one day read and 3 counts", reads, checks)
	}
	if reads, checks := answer("after the expired answer"); reads != 0 || checks != 0 {
		t.Errorf("after the expired answer: %d reads, %d counts; want none", reads, checks)
	}

	// A delivery into an hour while its count runs: that hour is read,
	// not renewed by a count that did not see the delivered points.
	during = func() {
		lp := minuteOps(r, slots, 3, start.Add(5*time.Hour+9*time.Minute))
		db.write(lp)
		c.Delivered([][]byte{lp})
	}
	time.Sleep(ttl + 100*time.Millisecond)
	before := db.reads.Load()
	rows, err := c.HourRows(context.Background(), start, end, "")
	if err != nil {
		t.Fatal(err)
	}
	var want []query.HourRow
	for _, p := range db.in(start, end) { // the delivered points included
		want = append(want, p.Row)
	}
	if reads := db.reads.Load() - before; reads != 1 || total(rows) != total(want) {
		t.Errorf("expired, a delivery while counting: %d reads, %+v; want the one day read, %+v", reads, total(rows), total(want))
	}

	countErr.Store(true)
	time.Sleep(ttl + 100*time.Millisecond)
	if reads, _ := answer("expired, the count failing"); reads < 3 {
		t.Errorf("expired, the count failing: %d reads, want the hours read (a day's run per read, 3 or more)", reads)
	}
}
