package influx_test

import (
	"context"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx"
)

// randomSpend answers n spend points at random instants of [from, to), of
// three tool ids and three models (one of them ""), half with a session.
// Costs are multiples of 1/64 below 10, whose sums are exact in any order.
func randomSpend(r *rand.Rand, n int, from, to time.Time) []tsdb.SpendPoint {
	span := int64(to.Sub(from) / time.Microsecond)
	points := make([]tsdb.SpendPoint, n)
	for i := range points {
		points[i] = tsdb.SpendPoint{
			ID: uuid.New(), ToolID: []string{"a", "b", "c"}[r.Intn(3)], Model: []string{"", "m1", "m2"}[r.Intn(3)],
			Time:    from.Add(time.Duration(r.Int63n(span)) * time.Microsecond),
			CostUSD: float64(r.Intn(640)) / 64,
			Tokens:  tsdb.Tokens{Input: r.Int63n(5000), Output: r.Int63n(500), CacheRead: r.Int63n(20000), CacheCreation: r.Int63n(100)},
		}
		if i%2 == 0 {
			sess := uuid.New()
			points[i].SessionID = &sess
		}
	}
	return points
}

func writeSpendOK(t *testing.T, s *influx.Store, points []tsdb.SpendPoint) {
	t.Helper()
	if err := s.WriteSpend(context.Background(), points); err != nil {
		t.Fatalf("WriteSpend(%d points): %v", len(points), err)
	}
}

// spendAnswers is everything a store's spend aggregates say about w.
func spendAnswers(t *testing.T, s *influx.Store, w tsdb.Window) string {
	t.Helper()
	return aggregateAnswers(t, w, s.SpendBreakdown, func(m tsdb.SpendTotals) string {
		return m.ToolID + "/" + m.Model
	}, s.SpendTrend)
}

// TestSpendCacheAnswersEqualUncached: a store with the spend cache and one
// without, on the same database, answer the same spend breakdowns and
// trends over 35 days of points: windows ending now (the open hour and
// the partial edge hours read raw), windows whose both edges fall inside
// hours that hold points, cold, warm, and after writes into the open hour,
// into cached hours and before the first point.
func TestSpendCacheAnswersEqualUncached(t *testing.T) {
	cached, uncached := cachedAndUncached(t, realtools.SharedInfluxd(t))
	r := rand.New(rand.NewSource(11))
	now := time.Now().UTC().Truncate(time.Microsecond)
	writeSpendOK(t, cached, randomSpend(r, 1500, now.Add(-35*24*time.Hour), now))
	writeSpendOK(t, cached, randomSpend(r, 300, now.Add(-50*time.Hour), now))
	inPast := func(end time.Time) []tsdb.Window {
		past := end.Add(-3*24*time.Hour + 41*time.Minute)
		return []tsdb.Window{
			{Start: ptr(end.Add(-30*24*time.Hour + 17*time.Minute)), End: past},
			{Start: ptr(past.Add(-5*time.Hour - 13*time.Minute)), End: past, ToolID: "a"},
		}
	}

	checkAsUncached(t, cached, uncached, spendAnswers, inPast, func(st influx.Stats) int {
		if st.CacheHours != 0 || st.SpendCacheRows < st.SpendCacheHours {
			t.Fatalf("the cache of operations holds %d hours (no operation was written or read), the spend cache %d hours in %d rows",
				st.CacheHours, st.SpendCacheHours, st.SpendCacheRows)
		}
		return st.SpendCacheHours
	}, 24*34, func(now time.Time) {
		writeSpendOK(t, cached, randomSpend(r, 50, now.Add(-time.Minute), now))                     // the open hour
		writeSpendOK(t, cached, randomSpend(r, 50, now.Add(-30*time.Hour), now.Add(-20*time.Hour))) // cached hours
		writeSpendOK(t, cached, randomSpend(r, 10, now.Add(-40*24*time.Hour), now.Add(-39*24*time.Hour)))
	})
}

// TestSpendCacheDropsHoursOnDelivery: spend this store writes into closed,
// cached hours, and before its first point, is in the next answer.
func TestSpendCacheDropsHoursOnDelivery(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	cfg := config(t, srv)
	cfg.CacheTTL = influx.CacheNoExpiry // only deliveries may drop hours
	s := open(t, cfg)
	hour := time.Date(2025, 5, 6, 7, 0, 0, 0, time.UTC)
	w := tsdb.Window{Start: ptr(hour.Add(-3 * time.Hour)), End: hour.Add(3 * time.Hour)}
	var written []tsdb.SpendPoint
	write := func(points []tsdb.SpendPoint) {
		t.Helper()
		writeSpendOK(t, s, points)
		written = append(written, points...)
		got, err := s.SpendBreakdown(context.Background(), w)
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(got, func(a, b tsdb.SpendTotals) int { return strings.Compare(a.Model, b.Model) })
		if want := spendOf(written); !slices.Equal(got, want) {
			t.Fatalf("after %d points: breakdown\n%+v\nwant\n%+v", len(written), got, want)
		}
		tr, err := s.SpendTrend(context.Background(), w, tsdb.Hourly)
		if err != nil {
			t.Fatal(err)
		}
		var cost, want float64
		for _, b := range tr {
			cost += b.CostUSD
		}
		for _, m := range got {
			want += m.CostUSD
		}
		if cost != want {
			t.Fatalf("after %d points: the hourly trend costs %v, the breakdown %v", len(written), cost, want)
		}
	}
	write(mkSpend(10, hour.Add(10*time.Minute)))
	if st := s.Stats(); st.SpendCacheHours < 3 {
		t.Fatalf("the spend cache holds %d hours, want the 3 closed hours from the first point's", st.SpendCacheHours)
	}
	write(mkSpend(5, hour.Add(20*time.Minute)))          // into a cached hour
	write(mkSpend(4, hour.Add(-150*time.Minute)))        // before the first point
	write(mkSpend(6, hour.Add(2*time.Hour+time.Second))) // into another cached hour
}

// TestSpendCacheTTL: spend another replica (a second store on the same
// database) writes into an hour this store cached is in this store's
// answers once the TTL has run out after it.
func TestSpendCacheTTL(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	cfg := config(t, srv)
	cfg.CacheTTL = 1500 * time.Millisecond
	s := open(t, cfg)
	other := cfg
	other.OutboxDir, other.DeadLetterPath = t.TempDir()+"/replica-b", ""
	b := open(t, other)
	hour := time.Date(2025, 5, 6, 7, 0, 0, 0, time.UTC)
	w := tsdb.Window{Start: ptr(hour.Add(-time.Hour)), End: hour.Add(2 * time.Hour)}
	points := func() int64 {
		t.Helper()
		bd, err := s.SpendBreakdown(context.Background(), w)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, m := range bd {
			n += m.Points
		}
		return n
	}
	writeSpendOK(t, s, mkSpend(10, hour.Add(10*time.Minute)))
	filled := time.Now()
	if n := points(); n != 10 {
		t.Fatalf("points %d, want 10", n)
	}
	writeSpendOK(t, b, []tsdb.SpendPoint{{ID: uuid.New(), ToolID: "other-replica", Model: "m", Time: hour.Add(75 * time.Minute), CostUSD: 0.5}})
	written := time.Now()
	if n := points(); time.Since(filled) < cfg.CacheTTL/2 && n != 10 {
		// Not a rule (the answer may be fresher than the TTL), but here
		// nothing could have read the hour again yet.
		t.Errorf("right after the other replica's write: points %d, want the cached 10", n)
	}
	time.Sleep(time.Until(written.Add(cfg.CacheTTL)))
	if n := points(); n != 11 {
		t.Errorf("%v after the other replica's write (TTL %v): points %d, want 11", time.Since(written), cfg.CacheTTL, n)
	}
}
