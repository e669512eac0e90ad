package rollup

import (
	"context"
	"fmt"
	"math/rand"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/internal/delivery"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/internal/query"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// fakeDB is a measurement of operation points in memory, keyed as
// InfluxDB keys them, with the reads a Source makes, counted.
type fakeDB struct {
	mu     sync.Mutex
	points map[pointKey]query.Point[query.HourRow]
	reads  atomic.Int64
	preads atomic.Int64 // point reads among the reads
	// maxRead, when above 0, is the most points a read answers: one of
	// more fails with query.ErrTooLarge, as InfluxQL's bounded answer does.
	maxRead int
	// during, when not nil, runs in each read of points after it has
	// taken its points and before it answers them.
	during func()
	spans  atomic.Int64 // questions of the first and last point
	// spanErr, when not nil, is the answer to every such question.
	spanErr error
}

func (d *fakeDB) write(lp []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, line := range slices.Collect(splitLines(lp)) {
		if p, ok := query.ParsePoint(line); ok {
			d.points[pointKey{p.NS, p.Series}] = p
		}
	}
}

func splitLines(lp []byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(lp) > 0 {
			i := slices.Index(lp, '\n')
			if i < 0 {
				i = len(lp)
			}
			if i > 0 && !yield(lp[:i]) {
				return
			}
			lp = lp[min(i+1, len(lp)):]
		}
	}
}

func (d *fakeDB) in(lo, hi time.Time) []query.Point[query.HourRow] {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []query.Point[query.HourRow]
	for _, p := range d.points {
		if p.NS >= lo.UnixNano() && p.NS < hi.UnixNano() {
			out = append(out, p)
		}
	}
	return out
}

func (d *fakeDB) source() Source[query.HourRow] {
	return Source[query.HourRow]{
		Measurement: schema.Operation,
		ReadHours: func(_ context.Context, _ string, lo, hi time.Time, toolID string) ([]query.HourRow, error) {
			d.reads.Add(1)
			var out []query.HourRow
			for _, p := range d.in(lo, hi) {
				if toolID == "" || p.Row.Key.ToolID == schema.TagValue(toolID) {
					out = append(out, p.Row)
				}
			}
			return out, nil
		},
		FirstTime: func(context.Context, string) (time.Time, bool, error) {
			return time.Unix(0, 0), true, nil
		},
		ReadPoints: func(_ context.Context, _ string, lo, hi time.Time) ([]query.Point[query.HourRow], error) {
			d.reads.Add(1)
			d.preads.Add(1)
			pts := d.in(lo, hi)
			if d.maxRead > 0 && len(pts) > d.maxRead {
				return nil, query.ErrTooLarge
			}
			if d.during != nil {
				d.during()
			}
			return pts, nil
		},
		ParsePoint: query.ParsePoint,
		Span: func(_ context.Context, lo, hi time.Time) (first, last time.Time, ok bool, err error) {
			d.spans.Add(1)
			if err := d.spanErr; err != nil {
				return first, last, false, err
			}
			for _, p := range d.in(lo, hi) {
				t := time.Unix(0, p.NS)
				if !ok || t.Before(first) {
					first = t
				}
				if !ok || t.After(last) {
					last = t
				}
				ok = true
			}
			return first, last, ok, nil
		},
	}
}

// newFakeDB answers an empty fakeDB, and a random source and point slots
// seeded with seed to write it with.
func newFakeDB(seed int64) (*fakeDB, *rand.Rand, *delivery.Slots) {
	return &fakeDB{points: map[pointKey]query.Point[query.HourRow]{}}, rand.New(rand.NewSource(seed)), delivery.NewSlots(1 << 16)
}

// newCache answers a cache of db's points, closed when tb ends.
func newCache(tb testing.TB, db *fakeDB) *Cache[query.HourRow, query.HourKey] {
	c := New[query.HourRow, query.HourKey](db.source(), Options{TTL: -1, MaxRows: 1 << 18})
	tb.Cleanup(c.Close)
	return c
}

// total answers the count and tokens of rows.
func total(rows []query.HourRow) tsdb.Totals {
	var t tsdb.Totals
	for _, r := range rows {
		t.Add(r.Totals)
	}
	return t
}

// exactReads fails t unless c answers the sums of db's points in [lo,
// hi), and answers how many reads of db that answer made.
func exactReads(t *testing.T, c *Cache[query.HourRow, query.HourKey], db *fakeDB, phase string, lo, hi time.Time) int64 {
	t.Helper()
	var want []query.HourRow
	for _, p := range db.in(lo, hi) {
		want = append(want, p.Row)
	}
	before := db.reads.Load()
	rows, err := c.HourRows(context.Background(), lo, hi, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := total(rows), total(want); got != want {
		t.Fatalf("%s: [%v, %v): %+v, want %+v", phase, lo, hi, got, want)
	}
	return db.reads.Load() - before
}

// minuteOps answers the line protocol of n reads at random times in the
// minute that starts at m, of tool ids a, b and c and two modes.
func minuteOps(r *rand.Rand, slots *delivery.Slots, n int, m time.Time) []byte {
	var e delivery.Encoder
	for range n {
		op := tsdb.Operation{ID: uuid.New(), SessionID: uuid.New(), ToolName: "read", OperationMode: []string{"full", "symbol"}[r.Intn(2)],
			TokensOriginal: r.Int63n(100), ToolID: []string{"a", "b", "c"}[r.Intn(3)],
			CreatedAt: m.Add(time.Duration(r.Int63n(int64(time.Minute/time.Microsecond))) * time.Microsecond)}
		off, dup := slots.Assign(&op)
		e.Operation(&op, off, dup)
	}
	return e.Bytes()
}

// TestEdgeMinutes: windows ending now and in the past answer the sums of
// their points, from the cache once warm (no read), after deliveries into
// cached minutes (added, a point delivered again counted once) and around
// big minutes (totals, and raw reads of edges among their points only).
func TestEdgeMinutes(t *testing.T) {
	db, r, slots := newFakeDB(3)
	c := newCache(t, db)
	now := time.Now().UTC()
	write := func(n int, from, to time.Time) {
		var e delivery.Encoder
		span := int64(to.Sub(from) / time.Microsecond)
		for range n {
			op := tsdb.Operation{ID: uuid.New(), SessionID: uuid.New(), ToolName: "read", OperationMode: "full",
				TokensOriginal: r.Int63n(100), ToolID: []string{"a", "b"}[r.Intn(2)],
				CreatedAt: from.Add(time.Duration(r.Int63n(span)) * time.Microsecond)}
			off, dup := slots.Assign(&op)
			e.Operation(&op, off, dup)
		}
		db.write(e.Bytes())
		c.Delivered([][]byte{e.Bytes()})
		c.Delivered([][]byte{e.Bytes()}) // delivered again: the same points
	}
	write(3000, now.Add(-5*time.Hour), now)
	big := now.Add(-100 * time.Minute).Truncate(time.Minute)
	write(bigMinute+500, big.Add(10*time.Second), big.Add(50*time.Second))
	write(bigMinute+500, now.Add(-20*time.Second), now)

	// A warm answer asks the windows the cold one asked: windows ending a
	// moment later would reach into a minute the cold answer did not read
	// when a minute began in between.
	check := func(phase string, end time.Time, warm bool) {
		t.Helper()
		windows := [][2]time.Time{
			{end.Add(-time.Hour), end}, {end.Add(-3 * time.Hour), end},
			{big.Add(-17 * time.Minute), big.Add(30 * time.Second)}, // ends among the big minute's points
			{big, big.Add(2 * time.Hour)},                           // holds all of them
			{end.Add(-5 * time.Hour), end.Add(-90 * time.Minute)},
		}
		for _, w := range windows {
			lo, hi := w[0].Truncate(time.Microsecond), w[1].Truncate(time.Microsecond).Add(time.Microsecond)
			before := db.reads.Load()
			rows, err := c.HourRows(context.Background(), lo, hi, "")
			if err != nil {
				t.Fatal(err)
			}
			var want []query.HourRow
			for _, p := range db.in(lo, hi) {
				want = append(want, p.Row)
			}
			if got, want := total(rows), total(want); got != want {
				t.Fatalf("%s: [%v, %v): %+v, want %+v", phase, lo, hi, got, want)
			}
			partialBig := w[1].Equal(big.Add(30 * time.Second))
			if n := db.reads.Load() - before; warm && n > 0 && !partialBig {
				t.Errorf("%s: [%v, %v): %d reads of a warm answer", phase, lo, hi, n)
			}
		}
	}
	end := time.Now().UTC()
	check("cold", end, false)
	check("warm", end, true)
	write(200, time.Now().Add(-time.Minute), time.Now())
	write(200, now.Add(-4*time.Hour), now.Add(-40*time.Minute))
	check("after deliveries", time.Now().UTC(), false)
	if m, p := c.EdgeStats(); m == 0 || p == 0 || p > c.mc.maxPoints {
		t.Fatalf("edge minutes %d, points %d (bound %d)", m, p, c.mc.maxPoints)
	}
	// A delivery into a closed big minute: the next answer reads it
	// again, and an answer after that finds its totals cached (the window
	// holds the minute and ends before the current one).
	for _, phase := range []string{"after a delivery into a big minute", "after another"} {
		write(10, big.Add(20*time.Second), big.Add(30*time.Second))
		lo, hi := big.Add(-10*time.Minute), big.Add(10*time.Minute) // edges: read by minutes
		exactReads(t, c, db, phase, lo, hi)
		if n := exactReads(t, c, db, phase+", warm", lo, hi); n > 0 {
			t.Errorf("%s: %d reads of a warm answer", phase, n)
		}
	}
}

// TestBigMinuteTakesNewPoints: points delivered into a cached big minute
// are added to its totals, so that answers stay exact without a read; a
// point delivered again (written again) drops them, and the answer after
// it reads the minute again.
func TestBigMinuteTakesNewPoints(t *testing.T) {
	db, r, slots := newFakeDB(6)
	c := newCache(t, db)
	big := time.Now().UTC().Add(-100 * time.Minute).Truncate(time.Minute)
	batch := func(n int) []byte { return minuteOps(r, slots, n, big) }
	db.write(batch(bigMinute + 500))
	lo, hi := big.Add(-10*time.Minute), big.Add(10*time.Minute)
	answer := func(phase string, wantReads int64) {
		t.Helper()
		if n := exactReads(t, c, db, phase, lo, hi); n != wantReads {
			t.Errorf("%s: %d reads, want %d", phase, n, wantReads)
		}
	}
	answer("cold", 1)
	answer("warm", 0)
	for i := range 3 {
		more := batch(20 + i) // a new key among them now and then
		db.write(more)
		c.Delivered([][]byte{more})
		answer(fmt.Sprintf("after new points %d", i), 0)
	}
	again := batch(10)
	db.write(again)
	c.Delivered([][]byte{again})
	c.Delivered([][]byte{again}) // written again
	answer("after a point written again", 1)
	answer("warm after it", 0)
}

// TestDeliveriesDuringAnEdgeRead: points delivered into minutes while a
// read of them is in flight, new ones and ones written again with other
// values, count once each with their last values, in the answer that made
// the read and in those that find the minutes cached: a small minute
// (points) and a big one (totals).
func TestDeliveriesDuringAnEdgeRead(t *testing.T) {
	db, r, slots := newFakeDB(8)
	c := newCache(t, db)
	small := time.Now().UTC().Truncate(time.Hour).Add(-30 * time.Minute)
	big := small.Add(time.Minute)
	smallOps, bigOps := minuteOps(r, slots, 200, small), minuteOps(r, slots, bigMinute+300, big)
	db.write(smallOps)
	db.write(bigOps)
	// again answers the first n points of lp with other token counts.
	tokens := regexp.MustCompile(`tokens_original=\d+i`)
	again := func(lp []byte, n int) []byte {
		var out []byte
		for line := range splitLines(lp) {
			if n--; n < 0 {
				break
			}
			out = append(out, tokens.ReplaceAll(line, []byte("tokens_original=1000i"))...)
			out = append(out, '\n')
		}
		return out
	}
	var once sync.Once
	db.during = func() {
		once.Do(func() {
			more := slices.Concat(minuteOps(r, slots, 30, small), minuteOps(r, slots, 30, big),
				again(smallOps, 10), again(bigOps, 10))
			db.write(more)
			c.Delivered([][]byte{more})
		})
	}
	lo, hi := small.Add(-10*time.Minute), small.Add(10*time.Minute)
	rows, err := c.HourRows(context.Background(), lo, hi, "")
	if err != nil {
		t.Fatal(err)
	}
	var want []query.HourRow
	for _, p := range db.in(lo, hi) { // the points delivered meanwhile included
		want = append(want, p.Row)
	}
	if got, want := total(rows), total(want); got != want {
		t.Fatalf("cold, deliveries during its read: %+v, want %+v", got, want)
	}
	if n := exactReads(t, c, db, "warm", lo, hi); n > 0 {
		t.Errorf("warm: %d reads", n)
	}
}

// TestEdgeMinutesTooLargeForOneRead: when the points of an edge's minutes
// are too many for one read (a burst of writes), the minutes are read in
// parts and cached: the answer is exact, and the next one reads nothing,
// instead of reading the whole edge again on every answer.
func TestEdgeMinutesTooLargeForOneRead(t *testing.T) {
	db, r, slots := newFakeDB(5)
	db.maxRead = 3 * bigMinute
	c := newCache(t, db)
	now := time.Now().UTC()
	// Minutes of a burst, each readable alone (two of them big), but not
	// all at once, then quiet ones; none is delivered through the cache.
	end := now.Add(-10 * time.Minute).Truncate(time.Minute)
	for m, n := range []int{2 * bigMinute, 2 * bigMinute, bigMinute / 2, 100, 100} {
		db.write(minuteOps(r, slots, n, end.Add(time.Duration(m-5)*time.Minute)))
	}
	lo, hi := end.Add(-20*time.Minute), end.Add(time.Minute)
	exactReads(t, c, db, "cold", lo, hi)
	if n := exactReads(t, c, db, "warm", lo, hi); n > 0 {
		t.Errorf("warm: %d reads", n)
	}
}

// TestDaySums: answers that take whole days as one row per key
// (AnswerDays) equal those that add up every hour, and a delivery into a
// day drops its sums.
func TestDaySums(t *testing.T) {
	db, r, slots := newFakeDB(4)
	c := newCache(t, db)
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -6)
	write := func(n int, from, to time.Time) {
		var e delivery.Encoder
		span := int64(to.Sub(from) / time.Microsecond)
		for range n {
			op := tsdb.Operation{ID: uuid.New(), SessionID: uuid.New(), ToolName: []string{"read", "search"}[r.Intn(2)],
				OperationMode: []string{"full", "semantic"}[r.Intn(2)], TokensOriginal: r.Int63n(100),
				ToolID: []string{"a", "b"}[r.Intn(2)], CreatedAt: from.Add(time.Duration(r.Int63n(span)) * time.Microsecond)}
			off, dup := slots.Assign(&op)
			e.Operation(&op, off, dup)
		}
		db.write(e.Bytes())
		c.Delivered([][]byte{e.Bytes()})
	}
	write(4000, day, day.AddDate(0, 0, 5))
	ctx := context.Background()
	check := func(phase string) {
		t.Helper()
		for _, w := range []tsdb.Window{
			{Start: ptr(day.Add(7 * time.Hour)), End: day.AddDate(0, 0, 4).Add(3 * time.Hour)},
			{Start: ptr(day), End: day.AddDate(0, 0, 5)},
			{Start: ptr(day.Add(-time.Hour)), End: day.AddDate(0, 0, 3), ToolID: "b"},
		} {
			for _, step := range []tsdb.Step{tsdb.Daily} {
				trend := func(rows []query.HourRow) []tsdb.Bucket { return query.TrendOf(rows, step) }
				got, err1 := AnswerDays(ctx, c, w, trend)
				want, err2 := Answer(ctx, c, w, trend)
				if err1 != nil || err2 != nil || fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("%s: %v trend: by days %v (%v), by hours %v (%v)", phase, w, got, err1, want, err2)
				}
			}
			sorted := func(rows []query.HourRow) string {
				b := query.BreakdownOf(rows)
				slices.SortFunc(b, func(x, y tsdb.ModeTotals) int {
					return strings.Compare(x.ToolName+x.OperationMode, y.ToolName+y.OperationMode)
				})
				return fmt.Sprint(b)
			}
			got, err1 := AnswerDays(ctx, c, w, sorted)
			want, err2 := Answer(ctx, c, w, sorted)
			if err1 != nil || err2 != nil || got != want {
				t.Fatalf("%s: %v breakdown: by days %v (%v), by hours %v (%v)", phase, w, got, err1, want, err2)
			}
		}
	}
	check("cold")
	c.hc.mu.Lock()
	days := len(c.hc.days)
	c.hc.mu.Unlock()
	if days == 0 {
		t.Fatal("no day sums kept")
	}
	check("warm")
	write(50, day.AddDate(0, 0, 1), day.AddDate(0, 0, 2))
	check("after a delivery into a day")
}

func ptr[T any](v T) *T { return &v }
