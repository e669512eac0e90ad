package influx_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx"
)

// fileCounts answers the operations per file path (null as "<none>") of
// the aggregate by file over [from, to].
func fileCounts(t *testing.T, s *influx.Store, from, to time.Time) map[string]int64 {
	t.Helper()
	return fileCountsIn(t, s, &from, &to)
}

// fileCountsIn is fileCounts of a window that may lack a start or an end
// (nil).
func fileCountsIn(t *testing.T, s *influx.Store, from, to *time.Time) map[string]int64 {
	t.Helper()
	r, err := s.Aggregate(context.Background(), tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimFilePath},
		Filter: tsdb.OperationFilter{Start: from, End: to}, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, g := range r.Groups {
		k := g.Key[0].Text
		if g.Key[0].Null {
			k = "<none>"
		}
		out[k] = g.Count
	}
	return out
}

// fileOps answers n operations of file path file ("" none), a minute apart
// from start.
func fileOps(n int, file string, start time.Time) []tsdb.Operation {
	ops := mkOps(n, uuid.New(), start)
	for i := range ops {
		ops[i].CreatedAt = start.Add(time.Duration(i) * time.Minute)
		if file != "" {
			ops[i].FilePath = ptr(file)
		}
	}
	return ops
}

// TestFileDaysFreshness: the top of files over whole closed days and hours
// comes from the cache of spans, which this store's writes into a cached
// span drop at once, and another writer's count once the TTL has run out
// (never with CacheNoExpiry).
func TestFileDaysFreshness(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	for _, tc := range []struct {
		name string
		ttl  time.Duration
	}{{"ttl", 1500 * time.Millisecond}, {"no expiry", influx.CacheNoExpiry}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(t, srv)
			cfg.CacheTTL = tc.ttl
			s := open(t, cfg)
			day := time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC)
			from, to := day.Add(-6*time.Hour), day.Add(3*24*time.Hour+5*time.Hour) // two partial days and three whole
			writeOK(t, s, fileOps(10, "a.go", day.Add(-2*time.Hour)))              // the leading partial day
			writeOK(t, s, fileOps(20, "a.go", day.Add(time.Hour)))
			writeOK(t, s, fileOps(5, "", day.Add(26*time.Hour)))
			writeOK(t, s, fileOps(7, "b.go", day.Add(3*24*time.Hour+time.Hour))) // the trailing one
			want := map[string]int64{"a.go": 30, "<none>": 5, "b.go": 7}
			if got := fileCounts(t, s, from, to); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("first answer %v, want %v", got, want)
			}
			filled := time.Now()
			// The three whole days (a.go, none, and an empty day), and the
			// closed hours of the partial days: six before (a.go, five
			// empty), five after (b.go, four empty).
			if n := s.Stats().FileCacheRows; n != 14 {
				t.Fatalf("%d rows cached, want 14", n)
			}

			writeOK(t, s, fileOps(4, "c.go", day.Add(50*time.Hour)))                // into the empty cached day
			writeOK(t, s, fileOps(2, "e.go", day.Add(-2*time.Hour+30*time.Minute))) // into a cached hour
			want["c.go"], want["e.go"] = 4, 2
			if got := fileCounts(t, s, from, to); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("after a write of this store into a cached day: %v, want %v", got, want)
			}

			writeDirect(t, srv, cfg.Bucket, fmt.Sprintf(
				"tool_operation,operation_mode=full,session_id=%s,tool_id=other-replica,tool_name=read file_path=\"d.go\",id=\"%s\",parameters=\"{}\",response_time_ms=1.5,tokens_actual=1i,tokens_original=2i,tokens_prevented=1i %d\n",
				uuid.New(), uuid.New(), day.Add(2*time.Hour).UnixNano()))
			written := time.Now()
			if got := fileCounts(t, s, from, to)["d.go"]; got != 0 && (tc.ttl < 0 || time.Since(filled) < tc.ttl/2) {
				t.Errorf("right after another writer's write into a cached day: d.go counts %d, want the cached 0", got)
			}
			if tc.ttl < 0 {
				time.Sleep(2 * time.Second)
				if got := fileCounts(t, s, from, to)["d.go"]; got != 0 {
					t.Errorf("without expiry: d.go counts %d after 2s, want the cached 0", got)
				}
				return
			}
			time.Sleep(time.Until(written.Add(tc.ttl)))
			if got := fileCounts(t, s, from, to)["d.go"]; got != 1 {
				t.Errorf("%v after another writer's write (TTL %v): d.go counts %d, want 1", time.Since(written), tc.ttl, got)
			}
		})
	}
}

// TestFileDaysBoundedRows: the cache of days never holds more than twice
// CacheMaxRows rows, and answers as the store without caches does.
func TestFileDaysBoundedRows(t *testing.T) {
	cached, uncached := cachedAndUncached(t, realtools.SharedInfluxd(t), func(c *influx.Config) { c.CacheMaxRows = 5 })
	day := time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)
	for d := range 6 {
		for f := range 2 {
			writeOK(t, cached, fileOps(3, fmt.Sprintf("f%d.go", f), day.Add(time.Duration(d)*24*time.Hour+time.Duration(f)*time.Hour)))
		}
	}
	from, to := day, day.Add(6*24*time.Hour-time.Microsecond)
	for range 2 {
		got, want := fileCounts(t, cached, from, to), fileCounts(t, uncached, from, to)
		if fmt.Sprint(got) != fmt.Sprint(want) || want["f0.go"] != 18 {
			t.Fatalf("cached %v, uncached %v, want 18 each", got, want)
		}
		if n := cached.Stats().FileCacheRows; n != 10 {
			t.Fatalf("%d rows cached, want the bound's 10 (5 of the 6 days, 2 rows a day)", n)
		}
	}
}

// TestFileDaysTrailingMinutes: right after writes, the closed minutes at a
// window's trailing edge are cached too, and this store's next write into
// one of them drops it.
func TestFileDaysTrailingMinutes(t *testing.T) {
	s := open(t, config(t, realtools.SharedInfluxd(t)))
	now := time.Now().UTC().Truncate(time.Minute)
	writeOK(t, s, fileOps(6, "m.go", now.Add(-8*time.Minute))) // a minute apart, up to now-3m
	from, to := now.Add(-10*time.Minute), now.Add(time.Minute)
	if got := fileCounts(t, s, from, to)["m.go"]; got != 6 {
		t.Fatalf("m.go counts %d, want 6", got)
	}
	if n := s.Stats().FileCacheRows; n < 6 {
		t.Fatalf("%d rows cached, want the 6 closed minutes' at least", n)
	}
	writeOK(t, s, fileOps(1, "m.go", now.Add(-5*time.Minute+time.Second)))
	if got := fileCounts(t, s, from, to)["m.go"]; got != 7 {
		t.Fatalf("after a write into a cached minute: m.go counts %d, want 7", got)
	}
}

// TestFileDaysOpenWindows: a window without a start or an end is cut to
// where operations are, which the cache reads once per TTL. This store's
// writes outside what it read count at once (before the first operation,
// ahead of the clock), as does another writer's operation in the current
// minute; another writer's before the first counts once the TTL has run
// out. (TestFileDaysReadsWhereOperationsMayBe follows the minutes.)
func TestFileDaysOpenWindows(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	cfg := config(t, srv)
	cfg.CacheTTL = 3 * time.Second
	s := open(t, cfg)
	now := time.Now().UTC()
	since := now.Add(-20 * 24 * time.Hour)
	writeOK(t, s, fileOps(5, "a.go", now.Add(-3*24*time.Hour)))
	writeOK(t, s, fileOps(3, "b.go", now.Add(-2*time.Hour)))
	want := map[string]int64{"a.go": 5, "b.go": 3}
	for _, w := range []struct {
		name     string
		from, to *time.Time
	}{{"all time", nil, nil}, {"since", &since, nil}, {"until", nil, &now}} {
		if got := fileCountsIn(t, s, w.from, w.to); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: %v, want %v", w.name, got, want)
		}
	}
	read := time.Now()

	line := func(file string, at time.Time) string {
		return fmt.Sprintf("tool_operation,operation_mode=full,session_id=%s,tool_id=other-replica,tool_name=read file_path=\"%s\",id=\"%s\",parameters=\"{}\",response_time_ms=1.5,tokens_actual=1i,tokens_original=2i,tokens_prevented=1i %d\n",
			uuid.New(), file, uuid.New(), at.UnixNano())
	}
	writeDirect(t, srv, cfg.Bucket, line("current.go", time.Now()))
	if got := fileCountsIn(t, s, &since, nil)["current.go"]; got != 1 {
		t.Errorf("since: another writer's operation of the current minute counts %d, want 1", got)
	}
	writeOK(t, s, fileOps(2, "early.go", now.Add(-40*24*time.Hour))) // before the first read
	writeOK(t, s, fileOps(1, "ahead.go", now.Add(2*24*time.Hour)))   // after the last, ahead of the clock
	want["early.go"], want["ahead.go"], want["current.go"] = 2, 1, 1
	if got := fileCountsIn(t, s, nil, nil); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("all time, after this store's writes outside what was read: %v, want %v", got, want)
	}

	writeDirect(t, srv, cfg.Bucket, line("older.go", now.Add(-60*24*time.Hour)))
	if got := fileCountsIn(t, s, nil, nil)["older.go"]; got != 0 && time.Since(read) < cfg.CacheTTL/2 {
		t.Errorf("all time, right after another writer's operation before the first: older.go counts %d, want 0 until the TTL", got)
	}
	time.Sleep(time.Until(read.Add(cfg.CacheTTL)))
	if got := fileCountsIn(t, s, nil, nil)["older.go"]; got != 1 {
		t.Errorf("all time, %v after the first read (TTL %v): older.go counts %d, want 1", time.Since(read), cfg.CacheTTL, got)
	}
}

// TestSessionDays: groupings by session, by project, and by either and
// day, over dates only, come from the cache of sessions per span, answer
// as the store without caches does, and count this store's next writes
// and a session's project started after the first answer at once.
func TestSessionDays(t *testing.T) {
	cached, uncached := cachedAndUncached(t, realtools.SharedInfluxd(t))
	ctx := context.Background()
	day := time.Date(2025, 8, 4, 0, 0, 0, 0, time.UTC)
	a, b, c := uuid.New(), uuid.New(), uuid.New()
	if err := cached.CreateSession(ctx, tsdb.Session{SessionID: a, ToolID: "t", ProjectID: ptr("p1"), StartedAt: day, LastActivity: day}); err != nil {
		t.Fatal(err)
	}
	writeOK(t, cached, mkOps(5, a, day.Add(3*time.Hour)))
	writeOK(t, cached, mkOps(4, b, day.Add(30*time.Hour)))
	writeOK(t, cached, mkOps(3, a, day.Add(50*time.Hour)))
	writeOK(t, cached, mkOps(3, b, day.Add(2*time.Hour+59*time.Minute+30*time.Second))) // the last minute of a run
	windows := [][2]time.Time{
		{day.Add(-2 * time.Hour), day.Add(3*24*time.Hour + 7*time.Hour)}, // days and hours
		// Minutes at both edges (summed per minute in one query), with
		// operations in them, and partial minutes.
		{day.Add(2*time.Hour + 41*time.Minute + 30*time.Second), day.Add(50*time.Hour + 5*time.Minute + 20*time.Second)},
	}
	groupings := [][]tsdb.Dimension{
		{tsdb.DimSessionID}, {tsdb.DimProjectID}, {tsdb.DimProjectID, tsdb.DimDay}, {tsdb.DimDay, tsdb.DimSessionID},
	}
	check := func(when string) {
		t.Helper()
		for _, w := range windows {
			for _, g := range groupings {
				q := tsdb.AggregateQuery{GroupBy: g, Filter: tsdb.OperationFilter{Start: &w[0], End: &w[1]}, Limit: 100}
				got, err := cached.Aggregate(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				want, err := uncached.Aggregate(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(got) != fmt.Sprint(want) || len(want.Groups) == 0 {
					t.Errorf("%s, %v, by %v: cached %v, uncached %v", when, w, g, got, want)
				}
			}
		}
	}
	check("first answers")
	if n := cached.Stats().SessionCacheRows; n == 0 {
		t.Fatal("no session rows cached")
	}
	writeOK(t, cached, mkOps(2, c, day.Add(26*time.Hour))) // into a cached day
	if err := cached.CreateSession(ctx, tsdb.Session{SessionID: c, ToolID: "t", ProjectID: ptr("p2"), StartedAt: day, LastActivity: day}); err != nil {
		t.Fatal(err)
	}
	check("after a write into a cached day and a new session's project")
}

// queryStats are influxd's own counts of the InfluxQL queries it answered
// and the bytes of their answers (its /debug/vars, httpd).
type queryStats struct{ requests, bytes int64 }

func influxdQueryStats(t *testing.T, srv *realtools.Influxd) queryStats {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(srv.URL + "/debug/vars")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var vars map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&vars); err != nil {
		t.Fatal(err)
	}
	for name, raw := range vars {
		if !strings.HasPrefix(name, "httpd") {
			continue
		}
		var v struct {
			Values struct {
				QueryReq       int64 `json:"queryReq"`
				QueryRespBytes int64 `json:"queryRespBytes"`
			} `json:"values"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		return queryStats{v.Values.QueryReq, v.Values.QueryRespBytes}
	}
	t.Fatal("influxd's /debug/vars has no httpd statistics")
	return queryStats{}
}

// renewedByCountsAlone asks ask (an answer over closed days nobody writes
// into, as a string to compare) once, then every 200 ms for twice the
// store's TTL, as a board would, and checks that the renewals that keep
// its cache within the TTL asked InfluxDB (srv) something, and were
// answered a small part of what the first answer read: counts of points,
// where reading the days again would be as much as the first read each
// time.
func renewedByCountsAlone(t *testing.T, srv *realtools.Influxd, ttl time.Duration, ask func() string) {
	t.Helper()
	start := influxdQueryStats(t, srv)
	want := ask()
	filled := influxdQueryStats(t, srv)
	cold := queryStats{filled.requests - start.requests, filled.bytes - start.bytes}
	for end := time.Now().Add(2 * ttl); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if got := ask(); got != want {
			t.Fatalf("answer %s, want the first one's %s", got, want)
		}
	}
	done := influxdQueryStats(t, srv)
	warm := queryStats{done.requests - filled.requests, done.bytes - filled.bytes}
	t.Logf("first answer: %d queries, %d bytes; renewals over %v: %d queries, %d bytes", cold.requests, cold.bytes, 2*ttl, warm.requests, warm.bytes)
	if warm.requests == 0 {
		t.Fatalf("no renewal asked InfluxDB anything in %v (TTL %v)", 2*ttl, ttl)
	}
	if warm.bytes*10 > cold.bytes {
		t.Errorf("renewals of unchanged days were answered %d bytes, against %d for the first answer's read of them: they read them again", warm.bytes, cold.bytes)
	}
}

// TestUnchangedDaysAreRenewedByCountsAlone: while a board keeps asking the
// top of files, or the breakdown, of closed days that nobody writes into,
// the caches behind them (of files per day, of hourly totals) renew what
// it uses by InfluxDB's counts of the days' points, without reading them
// again.
func TestUnchangedDaysAreRenewedByCountsAlone(t *testing.T) {
	srv := realtools.NewInfluxd(t)
	day := time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC)
	from, to := day, day.Add(3*24*time.Hour-time.Microsecond) // three whole closed days
	t.Run("top of files", func(t *testing.T) {
		cfg := config(t, srv)
		cfg.CacheTTL = 2 * time.Second
		s := open(t, cfg)
		for d := range 3 {
			for f := range 3 {
				writeOK(t, s, fileOps(200, fmt.Sprintf("d%d/f%d.go", d, f), day.Add(time.Duration(d)*24*time.Hour+time.Duration(f)*time.Hour)))
			}
		}
		renewedByCountsAlone(t, srv, cfg.CacheTTL, func() string {
			got := fileCounts(t, s, from, to)
			if len(got) != 9 {
				t.Fatalf("%d files, want 9: %v", len(got), got)
			}
			return fmt.Sprint(got)
		})
	})
	t.Run("breakdown", func(t *testing.T) {
		cfg := config(t, srv)
		cfg.CacheTTL = 2 * time.Second
		s := open(t, cfg)
		// Every hour of the three days, by eight clients: 576 hourly rows.
		for h := range 3 * 24 {
			for c := range 8 {
				ops := mkOps(3, uuid.New(), day.Add(time.Duration(h)*time.Hour+time.Duration(c)*time.Minute))
				for i := range ops {
					ops[i].ToolID = fmt.Sprintf("client-%d", c)
				}
				writeOK(t, s, ops)
			}
		}
		renewedByCountsAlone(t, srv, cfg.CacheTTL, func() string {
			bd, err := s.Breakdown(context.Background(), tsdb.Window{Start: &from, End: to})
			if err != nil {
				t.Fatal(err)
			}
			if len(bd) != 1 || bd[0].Totals.Count != 3*24*8*3 {
				t.Fatalf("breakdown %+v, want one tool and mode of %d operations", bd, 3*24*8*3)
			}
			return fmt.Sprint(bd)
		})
	})
}
