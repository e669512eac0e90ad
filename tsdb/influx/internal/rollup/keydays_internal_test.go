package rollup

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/internal/query"
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
	if want := fmt.Sprintf("rows (twice an hourly cache), %d bytes each", unsafe.Sizeof(keyRow{})); !strings.Contains(doc, want) {
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
	var c *KeyDays
	c = &KeyDays{
		dim: tsdb.DimFilePath,
		ttl: time.Hour, max: 100, now: func() time.Time { return day.Add(48 * time.Hour) },
		spans: map[keySpan]*keyEntry{}, paths: map[string]string{}, reading: map[keySpan]*keyRead{},
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
	var mu sync.Mutex // spans are read a few at a time (prefetch)
	var reads [][2]time.Time
	c := &KeyDays{
		dim: tsdb.DimFilePath,
		ttl: time.Hour, max: 1000, now: func() time.Time { return now },
		spans: map[keySpan]*keyEntry{}, paths: map[string]string{}, reading: map[keySpan]*keyRead{},
		span: func(context.Context, time.Time, time.Time) (time.Time, time.Time, bool, error) {
			spans++
			return first, last, true, nil
		},
		sum: func(_ context.Context, q tsdb.AggregateQuery, _ *tsdb.GroupSums) error {
			mu.Lock()
			defer mu.Unlock()
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

// TestFileDaysRefreshesWhatAnswersUse: a refresh reads again the spans
// and the bounds that answers used since they were read, once half the
// TTL old, and nothing else; an answer after the TTL of the first read
// then comes from the cache.
func TestFileDaysRefreshesWhatAnswersUse(t *testing.T) {
	day := time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC)
	now := day.AddDate(0, 0, 10)
	reads, spans := 0, 0
	var mu sync.Mutex // spans are read a few at a time (prefetch)
	c := newKeyDays(tsdb.DimFilePath, func(context.Context, tsdb.AggregateQuery, *tsdb.GroupSums) error {
		mu.Lock()
		defer mu.Unlock()
		reads++
		return nil
	}, func(context.Context, time.Time, time.Time) (time.Time, time.Time, bool, error) {
		spans++
		return day, day.AddDate(0, 0, 3).Add(-time.Hour), true, nil
	}, Options{TTL: time.Hour, MaxRows: 100})
	c.Close() // the refresher's ticks are this test's calls of refresh
	c.now = func() time.Time { return now }
	end := day.AddDate(0, 0, 3).Add(-time.Microsecond)
	closed := tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimFilePath}, Filter: tsdb.OperationFilter{Start: &day, End: &end}, Limit: 10}
	open := tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimFilePath}, Filter: tsdb.OperationFilter{Start: &day}, Limit: 10}
	answer := func(q tsdb.AggregateQuery) {
		t.Helper()
		if _, err := c.Aggregate(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	refresh := func() {
		t.Helper()
		if err := c.renew(t.Context()); err != nil {
			t.Fatal(err)
		}
	}

	answer(closed) // reads the three days
	if reads != 3 {
		t.Fatalf("%d reads, want the 3 days", reads)
	}
	now = now.Add(40 * time.Minute)
	refresh()
	if reads != 3 {
		t.Errorf("a refresh read %d spans no answer used since they were read, want none", reads-3)
	}
	answer(closed)
	answer(open) // reads where operations are, and the current minute
	if reads != 4 || spans != 1 {
		t.Fatalf("%d reads and %d questions of where operations are, want 4 and 1", reads, spans)
	}
	refresh()
	if reads != 7 || spans != 1 {
		t.Errorf("the refresh at 40 minutes: %d reads, %d questions; want the 3 days used (7) and no question (1), which is new", reads, spans)
	}
	answer(closed) // uses the refreshed days
	now = now.Add(40 * time.Minute)
	before := reads
	answer(closed)
	if reads != before {
		t.Errorf("after the TTL of the first read: %d reads, want none (the refreshed days)", reads-before)
	}
	answer(open) // uses the bounds read at 40 minutes
	refresh()
	if spans != 2 {
		t.Errorf("the refresh at 80 minutes: %d questions, want the bounds answers used read again (2)", spans)
	}
}

// TestFileDaysRefresherRuns: the refresher of a cache with a TTL reads
// again, without any answer asking, a span that an answer used, and Close
// stops it.
func TestFileDaysRefresherRuns(t *testing.T) {
	var reads atomic.Int64
	c := newKeyDays(tsdb.DimFilePath, func(context.Context, tsdb.AggregateQuery, *tsdb.GroupSums) error {
		reads.Add(1)
		return nil
	}, nil, Options{TTL: 400 * time.Millisecond, MaxRows: 100})
	day := time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC)
	end := day.AddDate(0, 0, 1).Add(-time.Microsecond)
	q := tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimFilePath}, Filter: tsdb.OperationFilter{Start: &day, End: &end}, Limit: 10}
	for range 2 {
		if _, err := c.Aggregate(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d reads, want 1", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for reads.Load() == 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := reads.Load(); n < 2 {
		t.Fatalf("%d reads after 10 s, want the refresher's second", n)
	}
	c.Close()
	n := reads.Load()
	time.Sleep(time.Second)
	if m := reads.Load(); m != n {
		t.Errorf("%d reads after Close, want %d", m, n)
	}
}

// TestFileDaysReadsMissingSpansTogether: the minutes that closed since
// the last answer are read spanReads at a time, not one by one, and each
// once.
func TestFileDaysReadsMissingSpansTogether(t *testing.T) {
	now := time.Date(2025, 6, 20, 12, 0, 30, 0, time.UTC)
	var mu sync.Mutex
	inFlight, most := 0, 0
	reads := map[time.Time]int{}
	c := newKeyDays(tsdb.DimFilePath, func(_ context.Context, q tsdb.AggregateQuery, _ *tsdb.GroupSums) error {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		reads[*q.Filter.Start]++
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		inFlight--
		mu.Unlock()
		return nil
	}, nil, Options{MaxRows: 1000})
	c.now = func() time.Time { return now }
	start := now.Add(-time.Hour)
	end := now.Add(time.Hour)
	q := tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimFilePath}, Filter: tsdb.OperationFilter{Start: &start, End: &end}, Limit: 10}
	if _, err := c.Aggregate(t.Context(), q); err != nil {
		t.Fatal(err)
	}
	now = now.Add(20 * time.Minute)
	clear(reads)
	most = 0
	if _, err := c.Aggregate(t.Context(), q); err != nil {
		t.Fatal(err)
	}
	for m := now.Add(-20 * time.Minute).Truncate(time.Minute); m.Before(now.Truncate(time.Minute)); m = m.Add(time.Minute) {
		if reads[m] != 1 {
			t.Errorf("the minute %v closed since the last answer was read %d times, want 1", m, reads[m])
		}
	}
	if most < 2 || most > spanReads {
		t.Errorf("at most %d reads at once, want 2 to %d", most, spanReads)
	}
}

// TestKeyDaysReadRunsPerSum: a cold answer by session reads its missing
// days a run of up to a week per sum (grouped by day too), the hours at
// its edges a run of up to a day per sum (grouped by hour), and the
// minutes there an hour's run per read of minute sums, not a read per
// span; by file, the hours in runs too, and the days and minutes a sum
// each; where the server cannot sum minutes (query.ErrNoPoints), a sum
// per minute. It caches every span it read, empty ones too, and answers
// the sums of the operations of its window; the next answer reads
// nothing.
func TestKeyDaysReadRunsPerSum(t *testing.T) {
	day := time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC)
	now := day.AddDate(0, 0, 40)
	var ops []tsdb.Operation
	sessions := []string{"6f1c3a2e-0000-4000-8000-000000000001", "6f1c3a2e-0000-4000-8000-000000000002"}
	for i := range 30 * 24 * 60 / 5 { // one every 5 minutes for 30 days, none after
		if i%13 == 0 {
			continue // spans with fewer
		}
		ops = append(ops, tsdb.Operation{SessionID: uuid.MustParse(sessions[i%2]), FilePath: ptr(fmt.Sprintf("/f%d", i%3)),
			CreatedAt: day.Add(time.Duration(i) * 5 * time.Minute), TokensOriginal: int64(i)})
	}
	in := func(op *tsdb.Operation, lo, hi time.Time) bool {
		return !op.CreatedAt.Before(lo) && op.CreatedAt.Before(hi)
	}
	type kind struct {
		name    string
		dim     tsdb.Dimension
		minutes bool // sums minutes
		noMin   bool // answers query.ErrNoPoints to minute sums
	}
	sessionsK, noMinK, filesK := kind{"sessions", tsdb.DimSessionID, true, false},
		kind{"sessions without minute sums", tsdb.DimSessionID, true, true}, kind{"files", tsdb.DimFilePath, false, false}
	for _, tc := range []struct {
		name       string
		start, end time.Time
		reads      map[kind]int
	}{
		// 37 whole days: 5 weeks and 2 days.
		{"days", day.Add(-2 * 24 * time.Hour), day.Add(35*24*time.Hour - time.Microsecond),
			map[kind]int{sessionsK: 6, noMinK: 6, filesK: 37}},
		// 19 hours, 5 days, 7 hours.
		{"days and hours", day.Add(3*24*time.Hour + 5*time.Hour), day.Add(9*24*time.Hour + 7*time.Hour - time.Microsecond),
			map[kind]int{sessionsK: 3, noMinK: 3, filesK: 7}},
		// 43 minutes, 18 hours, 5 days, 7 hours, 23 minutes; without minute
		// sums the first read of minutes fails and each minute is a sum.
		{"days, hours and minutes", day.Add(3*24*time.Hour + 5*time.Hour + 17*time.Minute), day.Add(9*24*time.Hour + 7*time.Hour + 23*time.Minute - time.Microsecond),
			map[kind]int{sessionsK: 5, noMinK: 1 + 2 + 1 + 43 + 23, filesK: 5 + 2 + 43 + 23}},
	} {
		for _, k := range []kind{sessionsK, noMinK, filesK} {
			var reads atomic.Int64
			c := newKeyDays(k.dim, func(_ context.Context, q tsdb.AggregateQuery, out *tsdb.GroupSums) error {
				reads.Add(1)
				sumOps(ops, q, out)
				return nil
			}, nil, Options{MaxRows: 10000})
			if k.minutes {
				c.minutes = func(_ context.Context, lo, hi time.Time, add func(int64, string, tsdb.Totals, tsdb.CacheCounts)) error {
					reads.Add(1)
					if k.noMin {
						return query.ErrNoPoints
					}
					var sums tsdb.GroupSums
					for i := range ops {
						if op := &ops[i]; in(op, lo, hi) {
							sums.Add([]tsdb.KeyValue{{Start: op.CreatedAt.Truncate(time.Minute)}, k.dim.Of(op, nil)}, tsdb.TotalsOf(op), tsdb.CacheOf(op))
						}
					}
					for _, g := range sums.Rank(tsdb.AggregateQuery{Limit: math.MaxInt}).Groups {
						add(g.Key[0].Start.UnixMicro(), g.Key[1].Text, g.Totals, g.Cache)
					}
					return nil
				}
			}
			c.Close()
			c.now = func() time.Time { return now }
			q := tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{k.dim}, Filter: tsdb.OperationFilter{Start: &tc.start, End: &tc.end}, Limit: 10}
			want := tsdb.GroupSums{}
			for i := range ops {
				if op := &ops[i]; in(op, tc.start, tc.end.Add(time.Microsecond)) {
					want.Add([]tsdb.KeyValue{k.dim.Of(op, nil)}, tsdb.TotalsOf(op), tsdb.CacheOf(op))
				}
			}
			wantReads := tc.reads[k]
			for _, pass := range []string{"cold", "warm"} {
				reads.Store(0)
				got, err := c.Aggregate(t.Context(), q)
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(got) != fmt.Sprint(want.Rank(q)) {
					t.Errorf("%s, %s, %s: %v, want %v", tc.name, k.name, pass, got, want.Rank(q))
				}
				if pass == "warm" {
					wantReads = 0
				}
				if n := reads.Load(); n != int64(wantReads) {
					t.Errorf("%s, %s, %s: %d reads, want %d", tc.name, k.name, pass, n, wantReads)
				}
			}
		}
	}
}

// TestKeyDaysRenewChecksCounts: a renewal checks each span an answer used
// against the source's count of its operations, renews the spans whose
// count is their entries' without reading them, and reads again only a span
// another writer wrote into (no delivery told the cache); a check that
// fails renews nothing.
func TestKeyDaysRenewChecksCounts(t *testing.T) {
	day := time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC)
	now := day.AddDate(0, 0, 10)
	var mu sync.Mutex // spans are read a few at a time (prefetch)
	ops := []tsdb.Operation{}
	for d := range 3 {
		for i := range 4 {
			ops = append(ops, tsdb.Operation{FilePath: ptr(fmt.Sprintf("/f%d", i%2)), TokensOriginal: int64(10 * i),
				ResponseTimeMs: 0.1, CreatedAt: day.AddDate(0, 0, d).Add(time.Duration(i) * time.Hour)})
		}
	}
	in := func(op *tsdb.Operation, lo, hi time.Time) bool {
		return !op.CreatedAt.Before(lo) && op.CreatedAt.Before(hi)
	}
	var reads []time.Time // the start of each span read
	c := newKeyDays(tsdb.DimFilePath, func(_ context.Context, q tsdb.AggregateQuery, out *tsdb.GroupSums) error {
		mu.Lock()
		defer mu.Unlock()
		reads = append(reads, *q.Filter.Start)
		sumOps(ops, q, out)
		return nil
	}, nil, Options{TTL: time.Hour, MaxRows: 100})
	c.Close() // the refresher's ticks are this test's calls of renew
	c.now = func() time.Time { return now }
	checks := 0
	var failCheck error
	c.count = func(_ context.Context, lo, hi time.Time) (int64, error) {
		mu.Lock() // checked a few at a time too
		defer mu.Unlock()
		checks++
		var n int64
		for i := range ops {
			if in(&ops[i], lo, hi) {
				n++
			}
		}
		return n, failCheck
	}
	end := day.AddDate(0, 0, 3).Add(-time.Microsecond)
	q := tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimFilePath}, Filter: tsdb.OperationFilter{Start: &day, End: &end}, Limit: 10}
	answer := func() string {
		t.Helper()
		got, err := c.Aggregate(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(got)
	}
	step := func(what string, wantChecks int, wantReads ...time.Time) {
		t.Helper()
		checks, reads = 0, nil
		if err := c.renew(t.Context()); err != nil && failCheck == nil {
			t.Fatal(err)
		}
		slices.SortFunc(reads, time.Time.Compare)
		if checks != wantChecks || !slices.Equal(reads, wantReads) {
			t.Errorf("%s: %d checks and reads of %v; want %d and %v", what, checks, reads, wantChecks, wantReads)
		}
	}

	answer()
	answer() // used since read
	now = now.Add(40 * time.Minute)
	step("a renewal of unchanged days", 3)
	reads = nil
	answer() // used again
	now = now.Add(40 * time.Minute)
	if answer(); len(reads) != 0 {
		t.Errorf("80 minutes after the first read, 40 after the check: reads of %v, want none", reads)
	}

	// Another writer's operation on the second day, which no delivery
	// announced: its check differs, and that day alone is read again.
	ops = append(ops, tsdb.Operation{FilePath: ptr("/new"), TokensOriginal: 7, CreatedAt: day.AddDate(0, 0, 1).Add(5 * time.Hour)})
	now = now.Add(40 * time.Minute)
	step("a renewal after another writer's operation", 3, day.AddDate(0, 0, 1))
	if got := answer(); !strings.Contains(got, "/new") {
		t.Errorf("after the renewal: %s, want the other writer's /new", got)
	}

	// A failing check renews nothing. Once the TTL has run out an answer
	// checks the expired days itself: it reads the one another writer
	// wrote into meanwhile, and renews the others.
	answer()
	now = now.Add(40 * time.Minute)
	failCheck = fmt.Errorf("InfluxDB is away")
	step("a renewal whose check fails", 1)
	failCheck = nil
	ops = append(ops, tsdb.Operation{FilePath: ptr("/later"), CreatedAt: day.AddDate(0, 0, 2).Add(7 * time.Hour)})
	now = now.Add(40 * time.Minute)
	checks, reads = 0, nil
	got := answer()
	if checks != 3 || !slices.Equal(reads, []time.Time{day.AddDate(0, 0, 2)}) || !strings.Contains(got, "/later") {
		t.Errorf("an answer after the TTL: %d checks, reads of %v, %s; want 3, the third day, and /later", checks, reads, got)
	}
	checks, reads = 0, nil
	if answer(); checks != 0 || len(reads) != 0 {
		t.Errorf("the next answer: %d checks and reads of %v, want none", checks, reads)
	}
}

// sumOps adds the operations of ops in q's window to out, grouped by q's
// dimensions: the sum of a KeyDays whose source is ops.
func sumOps(ops []tsdb.Operation, q tsdb.AggregateQuery, out *tsdb.GroupSums) {
	lo, hi := *q.Filter.Start, q.Filter.End.Add(time.Microsecond) // End is inclusive
	for i := range ops {
		if op := &ops[i]; !op.CreatedAt.Before(lo) && op.CreatedAt.Before(hi) {
			key := make([]tsdb.KeyValue, len(q.GroupBy))
			for j, d := range q.GroupBy {
				key[j] = d.Of(op, nil)
			}
			out.Add(key, tsdb.TotalsOf(op), tsdb.CacheOf(op))
		}
	}
}
