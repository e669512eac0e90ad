package influx_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx"
)

// randomOps answers n operations at random instants of [from, to).
func randomOps(r *rand.Rand, n int, from, to time.Time) []tsdb.Operation {
	span := int64(to.Sub(from) / time.Microsecond)
	sessions := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	ops := make([]tsdb.Operation, n)
	for i := range ops {
		ops[i] = tsdb.Operation{
			ID: uuid.New(), SessionID: sessions[r.Intn(len(sessions))], ToolName: api.ToolNames[r.Intn(2)],
			OperationMode: api.OperationModes[r.Intn(6)], Parameters: json.RawMessage(`{}`),
			TokensOriginal: r.Int63n(1000), TokensActual: r.Int63n(1000), TokensPrevented: r.Int63n(1000) - 300,
			ResponseTimeMs: float64(r.Intn(4000)) / 8, ToolID: []string{"a", "b", "c"}[r.Intn(3)],
			CreatedAt: from.Add(time.Duration(r.Int63n(span)) * time.Microsecond),
		}
	}
	return ops
}

// aggregateAnswers is what a breakdown (its rows sorted by key) and the
// hourly and daily trends of a store say about w.
func aggregateAnswers[T, B any](t *testing.T, w tsdb.Window, breakdown func(context.Context, tsdb.Window) ([]T, error),
	key func(T) string, trend func(context.Context, tsdb.Window, tsdb.Step) ([]B, error)) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	bd, err := breakdown(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(bd, func(a, b T) int { return strings.Compare(key(a), key(b)) })
	fmt.Fprintf(&b, "breakdown %+v\n", bd)
	for _, step := range []tsdb.Step{tsdb.Hourly, tsdb.Daily} {
		tr, err := trend(ctx, w, step)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "trend %v %+v\n", step, tr)
	}
	return b.String()
}

// answers is everything the aggregates and lists of a store say about w.
func answers(t *testing.T, s *influx.Store, w tsdb.Window) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	b.WriteString(aggregateAnswers(t, w, s.Breakdown, func(m tsdb.ModeTotals) string {
		return m.ToolName + "/" + m.OperationMode
	}, s.Trend))
	for _, f := range []tsdb.OperationFilter{
		{Limit: 50},
		{Limit: 20, Offset: 130},
		{Limit: 30, ToolName: api.ToolSearch, OperationMode: "semantic"},
		{Limit: 40, Offset: 10, ToolID: w.ToolID},
	} {
		f.Start, f.End = w.Start, &w.End
		page, err := s.QueryOperations(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]string, len(page.Operations))
		for i, op := range page.Operations {
			ids[i] = op.ID.String()
		}
		fmt.Fprintf(&b, "list total=%d %v\n", page.Total, ids)
	}
	for _, groupBy := range [][]tsdb.Dimension{
		{tsdb.DimToolName, tsdb.DimOperationMode}, // from day sums
		{tsdb.DimDay, tsdb.DimToolID},             // from day sums
		{tsdb.DimHour},                            // from hours
	} {
		q := tsdb.AggregateQuery{GroupBy: groupBy, Order: tsdb.OrderByCount, Limit: 1000,
			Filter: tsdb.OperationFilter{Start: w.Start, End: &w.End, ToolID: w.ToolID}}
		got, err := s.Aggregate(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "aggregate %v %+v\n", groupBy, got)
		q.Filter.End = nil // no end: up to the clock plus the skew allowed
		if got, err = s.Aggregate(ctx, q); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "aggregate without end %v %+v\n", groupBy, got)
	}
	first, ok, err := s.FirstOperationTime(ctx, w.ToolID)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "first %v %v\n", first, ok)
	return b.String()
}

// countIn answers how many operations s counts in w: its breakdown's
// counts, summed.
func countIn(t *testing.T, s *influx.Store, w tsdb.Window) int64 {
	t.Helper()
	bd, err := s.Breakdown(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, m := range bd {
		n += m.Count
	}
	return n
}

// cachedAndUncached opens a store with the hourly caches and one without
// on one fresh database of srv; each of adjust changes the cached store's
// configuration first.
func cachedAndUncached(t *testing.T, srv *realtools.Influxd, adjust ...func(*influx.Config)) (cached, uncached *influx.Store) {
	cfg := config(t, srv)
	ccfg := cfg
	for _, f := range adjust {
		f(&ccfg)
	}
	cached = open(t, ccfg)
	ncfg := cfg
	ncfg.OutboxDir = t.TempDir() + "/outbox2"
	ncfg.CacheMaxRows = -1
	return cached, open(t, ncfg)
}

// checkSameAnswers fails t when the stores cached and uncached answer (by
// answer) a window ending now differently: the last hour, day, 7 days (of
// tool id b) and 30 days, all time, all time of tool id c, and the windows
// more makes of now (when not nil).
func checkSameAnswers(t *testing.T, phase string, cached, uncached *influx.Store,
	answer func(*testing.T, *influx.Store, tsdb.Window) string, more func(end time.Time) []tsdb.Window) {
	t.Helper()
	end := time.Now().UTC()
	windows := []tsdb.Window{
		{Start: ptr(end.Add(-time.Hour)), End: end},
		{Start: ptr(end.Add(-24 * time.Hour)), End: end},
		{Start: ptr(end.Add(-7 * 24 * time.Hour)), End: end, ToolID: "b"},
		{Start: ptr(end.Add(-30 * 24 * time.Hour)), End: end},
		{End: end},
		{End: end, ToolID: "c"},
	}
	if more != nil {
		windows = append(windows, more(end)...)
	}
	for _, w := range windows {
		got, want := answer(t, cached, w), answer(t, uncached, w)
		if got != want {
			t.Fatalf("%s: window %v..%v %q: cached store answers\n%s\nuncached\n%s", phase, w.Start, w.End, w.ToolID, got, want)
		}
	}
}

// checkAsUncached checks that cached answers as uncached does
// (checkSameAnswers): cold, after which the cache holds at least minHours
// closed hours (by hours), warm, and after the late writes that write
// makes at now.
func checkAsUncached(t *testing.T, cached, uncached *influx.Store,
	answer func(*testing.T, *influx.Store, tsdb.Window) string, more func(end time.Time) []tsdb.Window,
	hours func(influx.Stats) int, minHours int, write func(now time.Time)) {
	t.Helper()
	checkSameAnswers(t, "cold", cached, uncached, answer, more)
	if n := hours(cached.Stats()); n < minHours {
		t.Fatalf("after the first answers the cache holds %d hours, want the %d closed hours since the first point at least", n, minHours)
	}
	checkSameAnswers(t, "warm", cached, uncached, answer, more)
	write(time.Now().UTC().Truncate(time.Microsecond))
	checkSameAnswers(t, "after late writes", cached, uncached, answer, more)
}

// TestCacheAnswersEqualUncached: a store with the hourly cache and one
// without, on the same database, answer the same, around the current time
// (the open hour and the edges read raw) and after writes into the current
// hour and into closed hours already cached.
func TestCacheAnswersEqualUncached(t *testing.T) {
	cached, uncached := cachedAndUncached(t, realtools.SharedInfluxd(t))
	r := rand.New(rand.NewSource(5))
	now := time.Now().UTC().Truncate(time.Microsecond)
	writeOK(t, cached, randomOps(r, 1500, now.Add(-50*time.Hour), now))
	writeOK(t, cached, randomOps(r, 200, now.Add(-9*24*time.Hour), now.Add(-8*24*time.Hour)))

	checkAsUncached(t, cached, uncached, answers, nil, func(st influx.Stats) int {
		return st.CacheHours
	}, 24*8, func(now time.Time) {
		writeOK(t, cached, randomOps(r, 100, now.Add(-time.Minute), now))                     // the open hour
		writeOK(t, cached, randomOps(r, 100, now.Add(-30*time.Hour), now.Add(-20*time.Hour))) // cached hours
		writeOK(t, cached, randomOps(r, 10, now.Add(-12*24*time.Hour), now.Add(-11*24*time.Hour)))
	})
}

// TestCacheDropsHoursOnDelivery: writes into closed, cached hours appear in
// the next answer, also when the outbox delivers them after an outage.
func TestCacheDropsHoursOnDelivery(t *testing.T) {
	srv := realtools.NewInfluxd(t)
	cfg := config(t, srv)
	cfg.WriteTimeout = time.Second
	cfg.CacheTTL = influx.CacheNoExpiry // only deliveries may drop hours
	s := open(t, cfg)
	ctx := context.Background()
	hour := time.Date(2025, 5, 6, 7, 0, 0, 0, time.UTC)
	w := tsdb.Window{Start: ptr(hour.Add(-2 * time.Hour)), End: hour.Add(3 * time.Hour)}
	count := func() int64 {
		t.Helper()
		n := countIn(t, s, w)
		tr, err := s.Trend(ctx, w, tsdb.Hourly)
		if err != nil {
			t.Fatal(err)
		}
		var m int64
		for _, b := range tr {
			m += b.Count
		}
		if m != n {
			t.Fatalf("trend counts %d, breakdown %d", m, n)
		}
		return n
	}
	sess := uuid.New()
	writeOK(t, s, mkOps(10, sess, hour.Add(10*time.Minute)))
	if n := count(); n != 10 {
		t.Fatalf("count %d, want 10", n)
	}
	if st := s.Stats(); st.CacheHours == 0 {
		t.Fatal("nothing cached")
	}
	writeOK(t, s, mkOps(5, sess, hour.Add(20*time.Minute)))
	if n := count(); n != 15 {
		t.Fatalf("after a write into a cached hour: count %d, want 15", n)
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	writeOK(t, s, mkOps(7, sess, hour.Add(30*time.Minute))) // into the outbox
	if n := s.Stats().OutboxRecords; n == 0 {
		t.Fatal("the write during the outage is not in the outbox")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitDrained(t, s, 30*time.Second)
	if n := count(); n != 22 {
		t.Fatalf("after a delayed delivery: count %d, want 22", n)
	}
}

// writeDirect writes line protocol to InfluxDB past the store, as another
// replica would.
func writeDirect(t *testing.T, srv *realtools.Influxd, bucket, lp string) {
	t.Helper()
	u := srv.URL + "/api/v2/write?precision=ns&bucket=" + url.QueryEscape(bucket)
	resp, err := http.Post(u, "text/plain", strings.NewReader(lp))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("direct write: %s %s", resp.Status, body)
	}
}

// TestCacheTTL: a write made to InfluxDB past this store (another
// replica's) is in the answers once the TTL has run out after it; with
// CacheNoExpiry it is not.
func TestCacheTTL(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	for _, tc := range []struct {
		name string
		ttl  time.Duration
	}{{"ttl", 1500 * time.Millisecond}, {"no expiry", influx.CacheNoExpiry}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(t, srv)
			cfg.CacheTTL = tc.ttl
			s := open(t, cfg)
			hour := time.Date(2025, 5, 6, 7, 0, 0, 0, time.UTC)
			w := tsdb.Window{Start: ptr(hour.Add(-time.Hour)), End: hour.Add(2 * time.Hour)}
			count := func() int64 {
				t.Helper()
				return countIn(t, s, w)
			}
			writeOK(t, s, mkOps(10, uuid.New(), hour.Add(10*time.Minute)))
			filled := time.Now()
			if n := count(); n != 10 {
				t.Fatalf("count %d, want 10", n)
			}
			other := uuid.New()
			writeDirect(t, srv, cfg.Bucket, fmt.Sprintf(
				"tool_operation,operation_mode=full,session_id=%s,tool_id=other-replica,tool_name=read id=\"%s\",parameters=\"{}\",response_time_ms=1.5,tokens_actual=1i,tokens_original=2i,tokens_prevented=1i %d\n",
				other, uuid.New(), hour.Add(75*time.Minute).UnixNano()))
			written := time.Now()
			n := count()
			if tc.ttl > 0 && time.Since(filled) < tc.ttl/2 && n != 10 {
				// Not a rule (the answer may be fresher than the TTL), but
				// here nothing could have read the hour again yet.
				t.Errorf("right after the direct write: count %d, want the cached 10", n)
			}
			if tc.ttl < 0 {
				time.Sleep(2 * time.Second)
				if n := count(); n != 10 {
					t.Errorf("without expiry: count %d after 2s, want the cached 10", n)
				}
				return
			}
			time.Sleep(time.Until(written.Add(tc.ttl)))
			if n := count(); n != 11 {
				t.Errorf("%v after the direct write (TTL %v): count %d, want 11", time.Since(written), tc.ttl, n)
			}
		})
	}
}

// TestCacheBoundedRows: the cache never holds more rows than CacheMaxRows.
func TestCacheBoundedRows(t *testing.T) {
	const maxRows = 100
	s, ref := cachedAndUncached(t, realtools.SharedInfluxd(t), func(c *influx.Config) { c.CacheMaxRows = maxRows })
	r := rand.New(rand.NewSource(9))
	from := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
	ops := randomOps(r, 2000, from, from.Add(10*24*time.Hour))
	writeOK(t, s, ops)
	for d := 0; d < 10; d++ {
		w := tsdb.Window{Start: ptr(from.AddDate(0, 0, d).Add(17 * time.Minute)), End: from.AddDate(0, 0, d+1)}
		got, want := answers(t, s, w), answers(t, ref, w)
		if got != want {
			t.Fatalf("day %d: cached\n%s\nuncached\n%s", d, got, want)
		}
		if st := s.Stats(); st.CacheRows > maxRows {
			t.Fatalf("cache holds %d rows, bound %d", st.CacheRows, maxRows)
		}
	}
	if !reflect.DeepEqual(answers(t, s, tsdb.Window{End: from.AddDate(0, 0, 11)}), answers(t, ref, tsdb.Window{End: from.AddDate(0, 0, 11)})) {
		t.Error("whole range: cached and uncached differ")
	}
}

func ptr[T any](v T) *T { return &v }

// queryCounter is a proxy to InfluxDB that counts the queries it passes
// (InfluxQL and Flux).
type queryCounter struct {
	URL string
	n   atomic.Int64
}

func newQueryCounter(t *testing.T, target string) *queryCounter {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	qc := &queryCounter{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/query" || r.URL.Path == "/api/v2/query" {
			qc.n.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	qc.URL = srv.URL
	return qc
}

// TestCacheEdgeMinutes: the points of the minutes at a window's edges
// (the partial hours, and the hour not yet closed up to now) are cached
// too, so that a warm answer ending now queries InfluxDB not at all, and
// stays exact: equal to the uncached answer after this store's writes into
// the current minute (added as they are delivered) and, once the TTL has
// run out, after another writer's.
func TestCacheEdgeMinutes(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	qc := newQueryCounter(t, srv.URL)
	const ttl = 4 * time.Second
	var bucket string
	cached, uncached := cachedAndUncached(t, srv, func(c *influx.Config) {
		c.URL, c.CacheTTL, bucket = qc.URL, ttl, c.Bucket
	})

	r := rand.New(rand.NewSource(11))
	now := time.Now().UTC().Truncate(time.Microsecond)
	writeOK(t, cached, randomOps(r, 600, now.Add(-4*time.Hour), now))
	writeOK(t, cached, randomOps(r, 20, now.Add(-20*time.Second), now))
	windows := func(end time.Time) []tsdb.Window {
		return []tsdb.Window{
			{Start: ptr(end.Add(-time.Hour)), End: end},
			{Start: ptr(end.Add(-150 * time.Minute)), End: end},
			{Start: ptr(end.Add(-150 * time.Minute)), End: end, ToolID: "b"},
			{Start: ptr(end.Add(-3*time.Hour + 17*time.Second)), End: end.Add(-40 * time.Minute)},
		}
	}
	// same fails t unless the cached store answers as the uncached one,
	// and answers how many queries the cached answers made.
	same := func(phase string) int64 {
		t.Helper()
		end := time.Now().UTC()
		key := func(m tsdb.ModeTotals) string { return m.ToolName + "/" + m.OperationMode }
		var got []string
		before := qc.n.Load()
		for _, w := range windows(end) {
			got = append(got, aggregateAnswers(t, w, cached.Breakdown, key, cached.Trend))
		}
		queries := qc.n.Load() - before
		for i, w := range windows(end) {
			if want := aggregateAnswers(t, w, uncached.Breakdown, key, uncached.Trend); got[i] != want {
				t.Fatalf("%s: window %v..%v %q: cached store answers\n%s\nuncached\n%s", phase, w.Start, w.End, w.ToolID, got[i], want)
			}
		}
		return queries
	}
	// warm checks that answers equal uncached ones without a query, trying
	// again when a new minute or hour to read began meanwhile.
	warm := func(phase string) {
		t.Helper()
		for try := 0; ; try++ {
			n := same(phase)
			if n == 0 {
				break
			}
			if try == 2 {
				t.Fatalf("%s: warm answers queried InfluxDB %d times", phase, n)
			}
		}
		if m, _ := cached.EdgeStats(); m == 0 {
			t.Fatalf("%s: no edge minute cached", phase)
		}
	}
	same("cold")
	warm("warm")

	// This store's writes into the current minute and into cached edge
	// minutes are in the next answer, without a query.
	now = time.Now().UTC().Truncate(time.Microsecond)
	writeOK(t, cached, randomOps(r, 30, now.Add(-5*time.Second), now))
	writeOK(t, cached, randomOps(r, 30, now.Add(-62*time.Minute), now.Add(-58*time.Minute)))
	warm("after this store's writes")

	// Another writer's point in the current minute is in the answers once
	// the TTL has run out.
	writeDirect(t, srv, bucket, fmt.Sprintf(
		"tool_operation,operation_mode=full,session_id=%s,tool_id=b,tool_name=read id=\"%s\",parameters=\"{}\",response_time_ms=1.5,tokens_actual=1i,tokens_original=2i,tokens_prevented=1i %d\n",
		uuid.New(), uuid.New(), time.Now().Add(-time.Second).UnixNano()))
	time.Sleep(ttl + 100*time.Millisecond)
	same("after another writer's point and the TTL")
}

// TestCacheEdgeMinutesManyPoints: edge minutes holding more points than
// one chunk of an InfluxQL answer (a burst of writes) are read whole, chunk
// by chunk, and cached: the cached answer equals the uncached one, and a
// warm one queries InfluxDB not at all.
func TestCacheEdgeMinutesManyPoints(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	qc := newQueryCounter(t, srv.URL)
	cached, uncached := cachedAndUncached(t, srv, func(c *influx.Config) { c.URL = qc.URL })

	r := rand.New(rand.NewSource(12))
	now := time.Now().UTC().Truncate(time.Microsecond)
	for range 5 {
		writeOK(t, cached, randomOps(r, 5000, now.Add(-3*time.Minute), now))
	}
	// A window starting inside the hour before: its edges are read by
	// minutes, 25,000 points in the last three.
	end := time.Now().UTC()
	w := tsdb.Window{Start: ptr(end.Add(-30 * time.Minute)), End: end}
	key := func(m tsdb.ModeTotals) string { return m.ToolName + "/" + m.OperationMode }
	want := aggregateAnswers(t, w, uncached.Breakdown, key, uncached.Trend)
	for _, phase := range []string{"cold", "warm"} {
		before := qc.n.Load()
		if got := aggregateAnswers(t, w, cached.Breakdown, key, cached.Trend); got != want {
			t.Fatalf("%s: cached store answers\n%s\nuncached\n%s", phase, got, want)
		}
		if n := qc.n.Load() - before; phase == "warm" && n > 0 {
			t.Fatalf("warm answers queried InfluxDB %d times", n)
		}
	}
	if n := countIn(t, uncached, w); n != 25000 {
		t.Fatalf("the window holds %d operations, want 25,000", n)
	}
}

// TestListOfAColdCache: lists over more closed hours than the hourly
// cache holds answer as a store without a cache does; the cache then
// reads those hours in the background, though no other answer asks for
// them, and the lists answer the same from it once they have landed.
// That a cold list does not wait on that read is TestCounterOfAColdWindow's
// (internal/rollup), whose source can hold a read back.
func TestListOfAColdCache(t *testing.T) {
	s, ref := cachedAndUncached(t, realtools.SharedInfluxd(t))
	r := rand.New(rand.NewSource(12))
	from := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	end := from.Add(10 * 24 * time.Hour)
	ops := randomOps(r, 600, from, end)
	writeOK(t, s, ops)
	lists := func(s *influx.Store) string {
		var b strings.Builder
		for _, f := range []tsdb.OperationFilter{
			{Limit: 50, Start: &from, End: &end},
			{Limit: 20, Offset: 130, ToolName: api.ToolRead, Start: &from, End: &end},
			{Limit: 10, ToolID: ops[0].ToolID, Start: ptr(from.Add(36 * time.Hour)), End: &end},
		} {
			page, err := s.QueryOperations(t.Context(), f)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "total=%d", page.Total)
			for _, op := range page.Operations {
				fmt.Fprintf(&b, " %v", op.ID)
			}
			b.WriteString("\n")
		}
		return b.String()
	}
	want := lists(ref)
	if got := lists(s); got != want {
		t.Fatalf("cold cache:\n%s\nwithout a cache:\n%s", got, want)
	}
	// The hours of the 10 days from the first operation's on, read in the
	// background (no other answer of this store asks for them, and the
	// lists ask for no other).
	first := slices.MinFunc(ops, func(a, b tsdb.Operation) int { return a.CreatedAt.Compare(b.CreatedAt) }).CreatedAt
	hours := int(end.Sub(first.Truncate(time.Hour)) / time.Hour)
	for deadline := time.Now().Add(time.Minute); s.Stats().CacheHours < hours; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the cache holds %d hours a minute after the cold lists, want the %d they span", s.Stats().CacheHours, hours)
		}
	}
	if got := lists(s); got != want {
		t.Fatalf("warm cache:\n%s\nwithout a cache:\n%s", got, want)
	}
}
