// Package query is the InfluxDB store's read path: Flux that runs on Flux
// 0.65 (InfluxDB 1.8) and on 2.x, InfluxQL for the hourly totals on 1.x, and
// the detection of the server's version that chooses between them.
package query

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// ErrClosed: the reader is closed.
var ErrClosed = errors.New("influx: store closed")

// Options configure New; the store fills in its defaults first.
type Options struct {
	URL, Token, Org, Bucket string
	// QueryTimeout bounds every query.
	QueryTimeout time.Duration
	// RequestTimeout bounds one request of the client library (at least
	// QueryTimeout).
	RequestTimeout time.Duration
	// ExportPageSize bounds the operations one query of Export reads.
	ExportPageSize int
	// AlwaysFlux reads the hourly totals with Flux on InfluxDB 1.x too,
	// instead of InfluxQL: the path of 2.x, on a 1.x server.
	AlwaysFlux bool
	// HTTP sends every request.
	HTTP   *http.Client
	Logger *slog.Logger
}

// Reader runs the store's queries. It is safe for concurrent use.
type Reader struct {
	cfg    Options
	log    *slog.Logger
	client influxdb2.Client
	httpc  *http.Client
	bucket string // the Flux literal of cfg.Bucket
	closed atomic.Bool

	// perSeries: the server is InfluxDB 2.x (see windowQueries).
	perSeries atomic.Bool
	// v1: the server said it is InfluxDB 1.x: hourly totals are read with
	// InfluxQL (see influxql.go) unless AlwaysFlux, and a Flux range's stop
	// is moved 1 ns earlier, since 1.8 takes a point at exactly the stop
	// into the range (see opsSource).
	v1 atomic.Bool
	// versionKnown: an answer carried X-Influxdb-Version; versionAsked: a
	// /ping answered (with or without it), so LearnVersion asks no more.
	versionKnown, versionAsked atomic.Bool
	versionMu                  sync.Mutex // one /ping at a time; reads wait for it
}

// New answers a Reader. It does not contact InfluxDB.
func New(o Options) *Reader {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := influxdb2.DefaultOptions().
		SetHTTPClient(o.HTTP).
		SetHTTPRequestTimeout(uint(max(o.QueryTimeout, o.RequestTimeout) / time.Second))
	return &Reader{
		cfg:    o,
		log:    logger,
		client: influxdb2.NewClientWithOptions(strings.TrimRight(o.URL, "/"), o.Token, opts),
		httpc:  o.HTTP,
		bucket: fluxString(o.Bucket),
	}
}

// Close refuses further queries and releases the client's connections.
func (s *Reader) Close() {
	s.closed.Store(true)
	s.client.Close()
	s.httpc.CloseIdleConnections()
}

// Version answers what the reader knows of the server: whether it said its
// version, and whether that is 1.x or 2.x and later.
func (s *Reader) Version() (known, v1, v2 bool) {
	return s.versionKnown.Load(), s.v1.Load(), s.perSeries.Load()
}

// Ping answers nil when InfluxDB answers and the bucket can be queried.
func (s *Reader) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, min(s.cfg.QueryTimeout, 5*time.Second))
	defer cancel()
	if err := s.ping(ctx); err != nil {
		return fmt.Errorf("%w: influxdb ping: %v", tsdb.ErrUnavailable, redact(err.Error(), s.cfg.Token))
	}
	q := `from(bucket: ` + s.bucket + `) |> range(start: -1m) |> limit(n: 1) |> keep(columns: ["_time"])`
	if err := s.query(ctx, "ping", q, func(row) error { return nil }); err != nil {
		return err
	}
	return nil
}

// ping checks InfluxDB's /ping (1.x and 2.x alike) and notes its version.
func (s *Reader) ping(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(s.cfg.URL, "/")+"/ping", nil)
	if err != nil {
		return err
	}
	if s.cfg.Token != "" {
		req.Header.Set("Authorization", "Token "+s.cfg.Token)
	}
	resp, err := s.httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	s.NoteVersion(resp.Header)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("ping: HTTP %d", resp.StatusCode)
	}
	return nil
}

// NoteVersion records, from the headers of any answer of InfluxDB, whether
// the server is InfluxDB 2.x or later. Any other answer (1.x, or a build
// without a version: "unknown") keeps the shapes that suit 1.x.
func (s *Reader) NoteVersion(h http.Header) {
	v := strings.TrimPrefix(h.Get("X-Influxdb-Version"), "v")
	if v == "" {
		return
	}
	s.versionKnown.Store(true)
	major, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(major)
	s.perSeries.Store(err == nil && n >= 2)
	s.v1.Store(err == nil && n == 1)
}

// learnVersion asks /ping for the server's version, once, unless an answer
// carried it already: reads depend on it (InfluxQL on 1.x, and the stop of a
// Flux range, see opsSource). Reads that arrive while the /ping is in
// flight wait for it (at most 2 s), so that the first reads of a new store
// take the same path as later ones. A /ping that fails is asked again by a
// later read; one answered without a version is not.
func (s *Reader) learnVersion(ctx context.Context) {
	if s.versionKnown.Load() || s.versionAsked.Load() {
		return
	}
	s.versionMu.Lock()
	defer s.versionMu.Unlock()
	if s.versionKnown.Load() || s.versionAsked.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, min(s.cfg.QueryTimeout, 2*time.Second))
	defer cancel()
	if err := s.ping(ctx); err == nil {
		s.versionAsked.Store(true)
	}
}

// readsQL answers whether reads go through InfluxQL: on InfluxDB 1.x (as
// learnVersion learned it: a read calls that once, first, since a /ping
// that fails costs it up to its timeout), unless the reader was opened to
// read with Flux alone.
func (s *Reader) readsQL() bool {
	return s.v1.Load() && !s.cfg.AlwaysFlux
}

// row is one record of a query answer.
type row struct {
	result string
	values map[string]any
}

func (r row) str(k string) string {
	v, _ := r.values[k].(string)
	return v
}

func (r row) int(k string) int64 {
	switch v := r.values[k].(type) {
	case int64:
		return v
	case uint64:
		return int64(v)
	case float64:
		return int64(v)
	}
	return 0
}

func (r row) float(k string) float64 {
	switch v := r.values[k].(type) {
	case float64:
		return v
	case int64:
		return float64(v)
	case uint64:
		return float64(v)
	}
	return 0
}

func (r row) time(k string) time.Time {
	v, _ := r.values[k].(time.Time)
	return v.UTC()
}

// query runs a Flux query within QueryTimeout and hands every record to fn.
func (s *Reader) query(ctx context.Context, name, flux string, fn func(row) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	start, rows := time.Now(), 0
	defer func() { s.log.Debug("flux query", "query", name, "rows", rows, "took", time.Since(start)) }()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	// A QueryAPI per query: v2.14's caches its URL without synchronization.
	res, err := s.client.QueryAPI(s.cfg.Org).Query(ctx, flux)
	if err != nil {
		return s.queryErr(ctx, err)
	}
	defer res.Close()
	for res.Next() {
		rec := res.Record()
		rows++
		if err := fn(row{result: rec.Result(), values: rec.Values()}); err != nil {
			return err
		}
	}
	if err := res.Err(); err != nil {
		return s.queryErr(ctx, err)
	}
	return nil
}

// queryEach runs queries concurrently, as separate requests, and hands
// every record to fn (serialized); each query names its results with
// yield. An answer made of two pipelines (sums and a count) then takes
// about as long as the slower one, whatever the server does with several
// pipelines in one request.
func (s *Reader) queryEach(ctx context.Context, name string, fn func(row) error, queries ...string) error {
	if len(queries) == 1 {
		return s.query(ctx, name, queries[0], fn)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	errs := make([]error, len(queries))
	var wg sync.WaitGroup
	for i, q := range queries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.query(ctx, name, q, func(r row) error {
				mu.Lock()
				defer mu.Unlock()
				return fn(r)
			})
			if errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs { // the first cause, not a cancellation it caused
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return errors.Join(errs...)
}

// queryErr wraps tsdb.ErrUnavailable around failures to reach InfluxDB
// (no answer, timeouts, 5xx, 429); other errors are faults of the query.
func (s *Reader) queryErr(ctx context.Context, err error) error {
	msg := redact(err.Error(), s.cfg.Token)
	var he *ihttp.Error
	unavailable := ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded)
	if errors.As(err, &he) {
		if he.StatusCode == 0 || he.StatusCode >= 500 || he.StatusCode == http.StatusTooManyRequests {
			unavailable = true
		}
	} else {
		var ne net.Error
		if errors.As(err, &ne) {
			unavailable = true
		}
	}
	if unavailable {
		return fmt.Errorf("%w: influxdb query: %s", tsdb.ErrUnavailable, msg)
	}
	return fmt.Errorf("influx: query: %s", msg)
}

// redact answers s with the token replaced, for errors and logs.
func redact(s, token string) string {
	if token == "" {
		return s
	}
	return strings.ReplaceAll(s, token, "[token]")
}
