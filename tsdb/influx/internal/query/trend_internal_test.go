package query

import (
	"context"
	"encoding/json"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/internal/delivery"
)

func TestMain(m *testing.M) { os.Exit(realtools.RunMain(m)) }

// writeOps writes ops to bucket on srv, as the store's writer encodes them.
func writeOps(t *testing.T, srv *realtools.Influxd, bucket string, ops []tsdb.Operation) {
	t.Helper()
	var e delivery.Encoder
	slots := delivery.NewSlots(1 << 16)
	for i := range ops {
		off, dup := slots.Assign(&ops[i])
		e.Operation(&ops[i], off, dup)
	}
	u := srv.URL + "/api/v2/write?precision=ns&bucket=" + url.QueryEscape(bucket)
	resp, err := http.Post(u, "text/plain", strings.NewReader(string(e.Bytes())))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("write: %s", resp.Status)
	}
}

func newReader(t *testing.T, srv *realtools.Influxd, bucket string) *Reader {
	r := New(Options{URL: srv.URL, Bucket: bucket, QueryTimeout: 30 * time.Second, RequestTimeout: 30 * time.Second,
		ExportPageSize: 5000, HTTP: &http.Client{}})
	t.Cleanup(r.Close)
	return r
}

// randomOps answers n operations of random tools, modes, tokens and two
// tool ids, created at random in [from, from+span), drawn from seed.
func randomOps(seed int64, n int, from time.Time, span time.Duration) []tsdb.Operation {
	r := rand.New(rand.NewSource(seed))
	ops := make([]tsdb.Operation, 0, n)
	for range n {
		ops = append(ops, tsdb.Operation{
			ID: uuid.New(), SessionID: uuid.New(), ToolName: api.ToolNames[r.Intn(2)],
			OperationMode: api.OperationModes[r.Intn(6)], Parameters: json.RawMessage(`{}`),
			TokensOriginal: r.Int63n(1000), TokensActual: r.Int63n(1000), TokensPrevented: r.Int63n(1000) - 500,
			ResponseTimeMs: float64(r.Intn(1000)) / 4, ToolID: []string{"a", "b"}[r.Intn(2)],
			CreatedAt: from.Add(time.Duration(r.Int63n(int64(span/time.Microsecond))) * time.Microsecond),
		})
	}
	return ops
}

// TestTrendShapesAgree: the grouped Trend query (used on 1.x) and the
// per-series one (used on 2.x) answer the same on the same data.
func TestTrendShapesAgree(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	bucket := srv.NewBucket(t)
	s := newReader(t, srv, bucket)
	from := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
	ops := randomOps(7, 600, from, 72*time.Hour)
	writeOps(t, srv, bucket, ops)
	r := rand.New(rand.NewSource(8)) // the windows
	for i := range 10 {
		start := from.Add(time.Duration(r.Int63n(int64(48 * time.Hour))))
		w := tsdb.Window{Start: &start, End: start.Add(time.Duration(r.Int63n(int64(48 * time.Hour))))}
		if i%3 == 0 {
			w.ToolID = "a"
		}
		if i == 9 {
			w.Start = nil
		}
		for _, step := range []tsdb.Step{tsdb.Hourly, tsdb.Daily} {
			s.perSeries.Store(false)
			grouped, err := s.Trend(context.Background(), w, step)
			if err != nil {
				t.Fatal(err)
			}
			s.perSeries.Store(true)
			perSeries, err := s.Trend(context.Background(), w, step)
			if err != nil {
				t.Fatal(err)
			}
			if len(grouped) == 0 || !reflect.DeepEqual(grouped, perSeries) {
				t.Fatalf("window %d step %v: grouped %d buckets, per series %d buckets, or they differ", i, step, len(grouped), len(perSeries))
			}
		}
	}
}

// TestReadHoursInfluxQLEqualsFlux: on the 1.x test server the hourly
// totals read with InfluxQL equal those read with Flux.
func TestReadHoursInfluxQLEqualsFlux(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	bucket := srv.NewBucket(t)
	s := newReader(t, srv, bucket)
	from := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
	ops := randomOps(3, 300, from, 12*time.Hour)
	writeOps(t, srv, bucket, ops)
	ctx := context.Background()
	lo, hi := from.Add(90*time.Minute), from.Add(10*time.Hour+7*time.Minute)
	ql, err := s.ReadHours(ctx, "test", lo, hi, "a") // learns the version: InfluxQL on 1.x
	if err != nil {
		t.Fatal(err)
	}
	if known, v1, _ := s.Version(); !known || !v1 {
		t.Fatalf("version known %v, 1.x %v after a read; want both", known, v1)
	}
	s.cfg.AlwaysFlux = true
	flux, err := s.ReadHours(ctx, "test", lo, hi, "a")
	if err != nil {
		t.Fatal(err)
	}
	key := func(rows []HourRow) map[[4]string]tsdb.Totals {
		m := map[[4]string]tsdb.Totals{}
		for _, r := range rows {
			m[[4]string{time.UnixMicro(r.Hour).UTC().String(), r.Key.ToolID, r.Key.ToolName, r.Key.Mode}] = r.Totals
		}
		return m
	}
	if len(ql) == 0 || !reflect.DeepEqual(key(ql), key(flux)) {
		t.Fatalf("InfluxQL %d rows, Flux %d rows, or they differ:\n%v\n%v", len(ql), len(flux), key(ql), key(flux))
	}
}

// TestSpendPathsAgree: spend breakdowns, trends and hourly totals read with
// InfluxQL (1.x), with grouped Flux (2.x's queries on 1.x) and with
// per-series Flux (2.x) answer the same on the same points, including
// windows whose edges fall on points, and the hourly totals add up to the
// breakdown and the hourly trend. Costs are multiples of 1/128, whose sums are exact in any
// order.
func TestSpendPathsAgree(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	bucket := srv.NewBucket(t)
	s := newReader(t, srv, bucket)
	from := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
	r := rand.New(rand.NewSource(9))
	var e delivery.Encoder
	slots := delivery.NewSlots(1 << 16)
	var times []time.Time
	for i := range 500 {
		p := tsdb.SpendPoint{
			ID: uuid.New(), ToolID: []string{"a", "b"}[r.Intn(2)], Model: []string{"", "m", "n"}[r.Intn(3)],
			Time:    from.Add(time.Duration(r.Int63n(int64(72*time.Hour/time.Microsecond))) * time.Microsecond),
			CostUSD: float64(r.Intn(1000)) / 128,
			Tokens:  tsdb.Tokens{Input: r.Int63n(1000), Output: r.Int63n(100), CacheRead: r.Int63n(5000), CacheCreation: r.Int63n(50)},
		}
		if i%2 == 0 {
			sess := uuid.New()
			p.SessionID = &sess
		}
		off, dup := slots.AssignSpend(&p)
		e.Spend(&p, off, dup)
		times = append(times, p.Time)
	}
	u := srv.URL + "/api/v2/write?precision=ns&bucket=" + url.QueryEscape(bucket)
	resp, err := http.Post(u, "text/plain", strings.NewReader(string(e.Bytes())))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("write: %s", resp.Status)
	}
	ctx := context.Background()
	type answer struct {
		breakdown map[[2]string]tsdb.SpendTotals
		hourly    []tsdb.SpendBucket
		daily     []tsdb.SpendBucket
		hours     map[SpendKey]map[int64]tsdb.SpendTotals
	}
	read := func(w tsdb.Window) answer {
		t.Helper()
		var a answer
		rows, err := s.SpendBreakdown(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		a.breakdown = map[[2]string]tsdb.SpendTotals{}
		for _, row := range rows {
			a.breakdown[[2]string{row.ToolID, row.Model}] = row
		}
		if a.hourly, err = s.SpendTrend(ctx, w, tsdb.Hourly); err != nil {
			t.Fatal(err)
		}
		if a.daily, err = s.SpendTrend(ctx, w, tsdb.Daily); err != nil {
			t.Fatal(err)
		}
		lo, hi, _ := TimeRange(w.Start, &w.End)
		hours, err := s.ReadSpendHours(ctx, "test", lo, hi, w.ToolID)
		if err != nil {
			t.Fatal(err)
		}
		a.hours = map[SpendKey]map[int64]tsdb.SpendTotals{}
		for _, h := range hours {
			k := h.KeyValue()
			if a.hours[k] == nil {
				a.hours[k] = map[int64]tsdb.SpendTotals{}
			}
			if _, dup := a.hours[k][h.Hour]; dup || h.Hour%tsdb.MicrosPerHour != 0 {
				t.Fatalf("hour %d of %v read twice, or not the start of an hour", h.Hour, k)
			}
			a.hours[k][h.Hour] = h.SpendTotals
		}
		// Counted, as many points as the hours hold.
		if w.ToolID == "" {
			n, err := s.CountSpend(ctx, lo, hi)
			if err != nil {
				t.Fatal(err)
			}
			var want int64
			for _, h := range hours {
				want += h.PointCount()
			}
			if n != want {
				t.Fatalf("%d points counted, the hours hold %d", n, want)
			}
		}
		// The hours add up to the breakdown and the trend.
		if got := SpendBreakdownOf(hours); len(got) != len(rows) {
			t.Fatalf("the hours of %d keys, the breakdown %d", len(got), len(rows))
		} else {
			for _, g := range got {
				if a.breakdown[[2]string{g.ToolID, g.Model}] != g {
					t.Fatalf("the hours add up to %+v, the breakdown says %+v", g, a.breakdown[[2]string{g.ToolID, g.Model}])
				}
			}
		}
		if got := SpendTrendOf(hours, tsdb.Hourly); !reflect.DeepEqual(got, a.hourly) {
			t.Fatalf("the hours make the hourly trend\n%+v\nthe trend says\n%+v", got, a.hourly)
		}
		return a
	}
	for i := range 8 {
		start := times[r.Intn(len(times))]
		w := tsdb.Window{Start: &start, End: times[r.Intn(len(times))]}
		if w.End.Before(start) {
			w.Start, w.End = &w.End, start
		}
		if i%3 == 0 {
			w.ToolID = "a"
		}
		if i == 7 {
			w.Start = nil
		}
		s.cfg.AlwaysFlux = false
		s.perSeries.Store(false)
		ql := read(w) // the first read learns the version: InfluxQL on 1.x
		if known, v1, _ := s.Version(); !known || !v1 {
			t.Fatalf("version known %v, 1.x %v after a read; want both", known, v1)
		}
		s.cfg.AlwaysFlux = true
		grouped := read(w)
		s.perSeries.Store(true)
		perSeries := read(w)
		if len(ql.breakdown) == 0 || len(ql.daily) == 0 {
			t.Fatalf("window %d: empty answers", i)
		}
		if !reflect.DeepEqual(ql, grouped) || !reflect.DeepEqual(ql, perSeries) {
			t.Fatalf("window %d: InfluxQL, grouped Flux and per-series Flux differ:\n%+v\n%+v\n%+v", i, ql, grouped, perSeries)
		}
	}
}
