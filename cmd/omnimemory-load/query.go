package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql over pgx, the driver of the PostgreSQL store
	_ "modernc.org/sqlite"             // the driver the service's embedded store uses
)

// queryCase is one range of one aggregate endpoint.
type queryCase struct {
	Endpoint string `json:"endpoint"` // tool-breakdown, api-savings or aggregate
	Range    string `json:"range"`
	// GroupBy is the custom aggregation's group_by (endpoint aggregate):
	// its window is start_date = now - Range, its top 100 groups.
	GroupBy string `json:"group_by,omitempty"`
}

func (q queryCase) String() string {
	if q.GroupBy != "" {
		return q.Endpoint + " by " + q.GroupBy + " top 100, " + q.Range
	}
	return q.Endpoint + " " + q.Range
}

// target answers the case's p95 ceiling: a custom aggregation over raw rows
// (by file path) has its own (the embedded store and PostgreSQL keep a
// rollup per file, InfluxDB caches the totals per file of closed days and
// hours); every other case has targetQueryP95Ms.
func (q queryCase) target() float64 {
	if q.GroupBy == "file_path" {
		return targetAggregateP95Ms
	}
	return targetQueryP95Ms
}

// url answers the request of the case at now.
func (q queryCase) url(base string, now time.Time) string {
	if q.Endpoint == "aggregate" {
		v := url.Values{"group_by": {q.GroupBy}, "limit": {"100"}}
		if d := rangeDuration(q.Range); d > 0 {
			v.Set("start_date", now.Add(-d).UTC().Format(time.RFC3339))
		}
		return base + "/metrics/aggregate?" + v.Encode()
	}
	return base + "/metrics/" + q.Endpoint + "?" + url.Values{"time_range": {q.Range}}.Encode()
}

// queryCases is every range of both aggregate endpoints, and the custom
// aggregations of 30 days: by tool and mode (from rollups) and the top
// 100 files (from raw rows, or the per-file day rollups).
var queryCases = []queryCase{
	{Endpoint: "tool-breakdown", Range: "1h"}, {Endpoint: "tool-breakdown", Range: "24h"},
	{Endpoint: "tool-breakdown", Range: "7d"}, {Endpoint: "tool-breakdown", Range: "30d"},
	{Endpoint: "api-savings", Range: "1h"}, {Endpoint: "api-savings", Range: "24h"},
	{Endpoint: "api-savings", Range: "7d"}, {Endpoint: "api-savings", Range: "30d"}, {Endpoint: "api-savings", Range: "all"},
	{Endpoint: "aggregate", Range: "30d", GroupBy: "tool_name,operation_mode"},
	{Endpoint: "aggregate", Range: "30d", GroupBy: "file_path"},
}

// rangeDuration answers the window of a time_range; "all" answers 0.
func rangeDuration(r string) time.Duration {
	switch r {
	case "1h":
		return time.Hour
	case "24h":
		return 24 * time.Hour
	case "7d":
		return 7 * 24 * time.Hour
	case "30d":
		return 30 * 24 * time.Hour
	}
	return 0
}

// queryResult is the latency of one query case.
type queryResult struct {
	queryCase
	Latency    latencyStats `json:"latency"`
	Errors     int          `json:"errors"`
	TimedOut   int          `json:"timed_out"` // errors that were the request timeout
	FirstError string       `json:"first_error,omitempty"`
	Capped     bool         `json:"capped"` // the time budget ended it before its request count
}

// minQueryRequests is the fewest requests of a case of the query phase
// whatever its budget, so that a p95 is not the first, cold answer alone:
// a store whose first answer fills a cache (InfluxDB's top of files) is
// measured as a board refreshing it sees it.
const minQueryRequests = 20

// isTimeout reports whether err is a request that ran out of time.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// querySpec bounds the query phase: each case runs requests sequentially
// (one connection, so each figure is the latency of one request alone)
// until requests were sent or budget passed, and at least
// minQueryRequests of them.
type querySpec struct {
	requests int
	budget   time.Duration
	timeout  time.Duration // of one request; 0: 90s
	progress io.Writer
	label    string
	// trickle, when set, is sent meanwhile at trickleRate requests/s on a
	// connection of its own: live writes, so that every answer's trailing
	// edge holds operations written just before it.
	trickle     sendFunc
	trickleRate int
}

// runTrickle calls send rate times a second until ctx ends; it answers
// the requests that failed.
func runTrickle(ctx context.Context, send sendFunc, rate int) (failed int64) {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for seq := int64(0); ; seq++ {
		select {
		case <-ctx.Done():
			return failed
		case <-tick.C:
		}
		if _, err := send(ctx, 0, seq); err != nil && ctx.Err() == nil {
			failed++
		}
	}
}

// runQueries times every case against the service at base.
func runQueries(ctx context.Context, base string, s querySpec) (out []queryResult, err error) {
	timeout := s.timeout
	if timeout <= 0 {
		timeout = 90 * time.Second
	}
	c := newClient(1, timeout)
	defer c.CloseIdleConnections()
	if s.trickle != nil && s.trickleRate > 0 {
		tctx, stop := context.WithCancel(ctx)
		done := make(chan int64, 1)
		go func() { done <- runTrickle(tctx, s.trickle, s.trickleRate) }()
		defer func() {
			stop()
			if n := <-done; n > 0 && err == nil {
				err = fmt.Errorf("%d writes beside the queries failed", n)
			}
		}()
	}
	bar := newBarUnit(s.progress, int64(len(queryCases)*s.requests), s.label, "req")
	defer func() { _ = bar.Finish(); fmt.Fprintln(s.progress) }()
	for _, qc := range queryCases {
		res := queryResult{queryCase: qc}
		var lat []time.Duration
		start := time.Now()
		for i := 0; i < s.requests; i++ {
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			if i >= minQueryRequests && time.Since(start) > s.budget {
				res.Capped = true
				_ = bar.Add(s.requests - i)
				break
			}
			t0 := time.Now()
			_, err := do(ctx, c, http.MethodGet, qc.url(base, t0), "", nil, http.StatusOK)
			d := time.Since(t0)
			_ = bar.Add(1)
			if err != nil {
				if ctx.Err() != nil {
					return out, ctx.Err()
				}
				res.Errors++
				if isTimeout(err) {
					res.TimedOut++
				}
				if res.FirstError == "" {
					res.FirstError = err.Error()
				}
				if res.Errors >= 5 {
					_ = bar.Add(s.requests - i - 1)
					break
				}
				continue
			}
			lat = append(lat, d)
		}
		res.Latency = summarize(lat)
		out = append(out, res)
	}
	return out, nil
}

// rawResult is the latency of the plain SQL over the raw rows for one window.
type rawResult struct {
	Range   string       `json:"range"`
	Latency latencyStats `json:"latency"`
	Rows    int64        `json:"operations"` // operations in the window
	Capped  bool         `json:"capped"`
}

// rawDB is a store's database opened read-only for the plain SQL over the
// raw rows: the aggregate a store without rollups runs.
type rawDB struct {
	db    *sql.DB
	query string          // rawSQL in the driver's placeholders
	bound func(int64) any // a window's bound (unix microseconds) as the driver takes it
}

// rawSQL is the aggregate over every raw row of a window, grouped; lo and hi
// are the placeholders of the window's bounds.
func rawSQL(lo, hi string) string {
	return `SELECT tool_name, operation_mode, count(*), sum(tokens_original), sum(tokens_actual),
	sum(tokens_prevented), sum(response_time_ms)
FROM tool_operations WHERE created_at BETWEEN ` + lo + ` AND ` + hi + ` GROUP BY tool_name, operation_mode`
}

// openRawSQLite opens the service's SQLite file read-only (modernc.org/sqlite,
// the service's reader cache size); created_at is unix microseconds there.
func openRawSQLite(path string) (*rawDB, error) {
	u := url.URL{Path: filepath.ToSlash(path)}
	db, err := sql.Open("sqlite", "file:"+u.EscapedPath()+"?mode=ro&_pragma=busy_timeout(5000)&_pragma=cache_size(-16384)&_pragma=query_only(1)")
	if err != nil {
		return nil, err
	}
	return &rawDB{db: db, query: rawSQL("?", "?"), bound: func(us int64) any { return us }}, nil
}

// openRawPostgres opens the service's PostgreSQL database (pgx through
// database/sql) in read-only transactions; created_at is a timestamptz
// there.
func openRawPostgres(dbURL string) (*rawDB, error) {
	db, err := sql.Open("pgx", dbURL+"&default_transaction_read_only=on")
	if err != nil {
		return nil, err
	}
	return &rawDB{db: db, query: rawSQL("$1", "$2"), bound: func(us int64) any { return time.UnixMicro(us).UTC() }}, nil
}

// runRawSQL times the raw SQL of r over the windows of the query cases (1h,
// 24h, 7d, 30d, all), on one connection, and closes r.
func runRawSQL(ctx context.Context, r *rawDB, s querySpec) ([]rawResult, error) {
	defer r.db.Close()
	r.db.SetMaxOpenConns(1)
	windows := []string{"1h", "24h", "7d", "30d", "all"}
	bar := newBarUnit(s.progress, int64(len(windows)*s.requests), s.label, "queries")
	defer func() { _ = bar.Finish(); fmt.Fprintln(s.progress) }()
	var out []rawResult
	for _, w := range windows {
		res := rawResult{Range: w}
		var lat []time.Duration
		start := time.Now()
		for i := 0; i < s.requests; i++ {
			if i > 0 && time.Since(start) > s.budget {
				res.Capped = true
				_ = bar.Add(s.requests - i)
				break
			}
			now := time.Now()
			from := int64(0)
			if d := rangeDuration(w); d > 0 {
				from = now.Add(-d).UnixMicro()
			}
			qctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			t0 := time.Now()
			n, err := rawQuery(qctx, r.db, r.query, r.bound(from), r.bound(now.UnixMicro()))
			d := time.Since(t0)
			cancel()
			if err != nil {
				return out, fmt.Errorf("raw SQL %s: %w", w, err)
			}
			_ = bar.Add(1)
			res.Rows = n
			lat = append(lat, d)
		}
		res.Latency = summarize(lat)
		out = append(out, res)
	}
	return out, nil
}

// rawQuery runs query (rawSQL) and reads every row as a handler would; it
// answers the operations counted.
func rawQuery(ctx context.Context, db *sql.DB, query string, from, to any) (int64, error) {
	rows, err := db.QueryContext(ctx, query, from, to)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var total int64
	for rows.Next() {
		var (
			tool, mode      string
			n, o, a, p      int64
			responseTimeSum float64
		)
		if err := rows.Scan(&tool, &mode, &n, &o, &a, &p, &responseTimeSum); err != nil {
			return 0, err
		}
		total += n
	}
	return total, rows.Err()
}
