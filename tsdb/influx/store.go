// Package influx is the tsdb.Store over InfluxDB (2.x, Cloud, or 1.8+
// through its v2 compatibility API), with influxdb-client-go/v2 for queries
// and its own writer for writes.
//
// Schema: measurement tool_operation, tags tool_name, operation_mode,
// tool_id, session_id; fields id, file_path (absent when nil), parameters
// (JSON text), tokens_original, tokens_actual, tokens_prevented (integers),
// response_time_ms (float). The point time is created_at plus an offset
// below one microsecond that keeps every point key unique (see slots).
// Sessions are events of measurement tool_session (see sessions.go).
//
// Writes go through a durable local outbox (internal/outbox) and a single
// drainer goroutine (see writer.go): a write survives InfluxDB outages and
// process crashes once it returned nil, and is delivered exactly once.
// Queries are Flux that runs on Flux 0.65 (InfluxDB 1.8) and on 2.x.
// Aggregates and list totals come from an hourly rollup cache of closed
// hours (see cache.go), so that warm answers cost O(hours), not
// O(operations), on 1.8 too, where Flux cannot push aggregates down.
package influx

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"

	"github.com/omnimemory/omnimemory-metrics/internal/outbox"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

var errClosed = errors.New("influx: store closed")

// Store is the InfluxDB tsdb.Store. It is safe for concurrent use.
type Store struct {
	cfg    Config
	log    *slog.Logger
	client influxdb2.Client
	httpc  *http.Client
	bucket string // the Flux literal of cfg.Bucket

	ob       *outbox.Outbox
	writeURL string
	slots    *slots
	metrics  *metrics

	// ledger holds the ids of keyed operations taken, so that a client's
	// retry is stored once; keyedMu makes its check and record one step.
	ledger  *ledger
	keyedMu sync.Mutex

	tokenBase uint64
	tokenSeq  atomic.Uint64
	waitMu    sync.Mutex
	waiters   map[uint64]*waiter

	ctx       context.Context // cancelled by Close: stops requests in flight
	cancel    context.CancelFunc
	kick      chan struct{}
	stop      chan struct{}
	drainDone chan struct{}
	closed    atomic.Bool
	closeOnce sync.Once

	// cache holds the totals of closed hours (nil when turned off).
	cache       *hourCache
	refreshDone chan struct{}
	// edges are the raw reads of window edges in flight (see readEdge).
	edgeMu sync.Mutex
	edges  map[edgeKey]*edgeFlight

	// degraded: the drainer's last attempt failed in a retryable way.
	degraded atomic.Bool
	// perSeries: the server is InfluxDB 2.x (see trendQueries).
	perSeries atomic.Bool
	// v1: the server said it is InfluxDB 1.x: hourly totals are read with
	// InfluxQL (see influxql.go) unless FluxOnly, and a Flux range's stop
	// is moved 1 ns earlier, since 1.8 takes a point at exactly the stop
	// into the range (see opsSource).
	v1 atomic.Bool
	// versionKnown: an answer carried X-Influxdb-Version; versionAsked: a
	// /ping answered (with or without it), so readHours asks no more.
	versionKnown, versionAsked atomic.Bool

	logMu       sync.Mutex
	lastErrKind string
	dlMu        sync.Mutex
}

var _ tsdb.Store = (*Store)(nil)

// Open opens the outbox and starts the drainer. It does not contact
// InfluxDB: the service starts, and accepts writes, while InfluxDB is down;
// Ping tells whether it answers.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Store, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "influx")
	ob, err := outbox.Open(outbox.Options{
		Dir:      cfg.OutboxDir,
		MaxBytes: cfg.OutboxMaxBytes,
		Logger:   logger.With("component", "outbox"),
	})
	if err != nil {
		return nil, fmt.Errorf("influx: %w", err)
	}
	led, err := openLedger(filepath.Join(cfg.OutboxDir, "idempotency.ledger"), ledgerMax, ledgerTTL, time.Now())
	if err != nil {
		ob.Close()
		return nil, err
	}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   cfg.DialTimeout,
		MaxIdleConns:          32,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	httpc := &http.Client{Transport: transport}
	opts := influxdb2.DefaultOptions().
		SetHTTPClient(httpc).
		SetHTTPRequestTimeout(uint(max(cfg.QueryTimeout, cfg.RequestTimeout) / time.Second))
	client := influxdb2.NewClientWithOptions(strings.TrimRight(cfg.URL, "/"), cfg.Token, opts)

	var seed [8]byte
	_, _ = rand.Read(seed[:])
	sctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		ledger:    led,
		cfg:       cfg,
		log:       logger,
		client:    client,
		httpc:     httpc,
		bucket:    fluxString(cfg.Bucket),
		ob:        ob,
		writeURL:  writeURL(&cfg),
		slots:     newSlots(cfg.SlotKeys),
		tokenBase: binary.BigEndian.Uint64(seed[:]) &^ (1<<32 - 1),
		waiters:   make(map[uint64]*waiter),
		ctx:       sctx,
		cancel:    cancel,
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		drainDone: make(chan struct{}),
	}
	s.metrics = newMetrics(cfg.Registerer,
		func() float64 { return float64(ob.Len()) },
		func() float64 { return float64(ob.Bytes()) })
	if cfg.CacheMaxRows > 0 {
		s.cache = newHourCache(cfg.CacheTTL, cfg.CacheMaxRows)
		s.refreshDone = make(chan struct{})
		if cfg.CacheTTL > 0 {
			go s.refreshLoop()
		} else {
			close(s.refreshDone)
		}
	}
	if n := ob.Len(); n > 0 {
		logger.Info("outbox holds undelivered batches from an earlier run", "records", n, "bytes", ob.Bytes())
	}
	go s.drain()
	return s, nil
}

// Close stops the drainer and closes the outbox. What it has not delivered
// stays in the outbox for the next Open.
func (s *Store) Close() error {
	err := errClosed
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		s.cancel()
		<-s.drainDone
		if s.refreshDone != nil {
			<-s.refreshDone
		}
		err = errors.Join(s.ob.Close(), s.ledger.Close())
		s.client.Close()
		s.httpc.CloseIdleConnections()
	})
	return err
}

// Stats are the outbox and cache figures, for tests and diagnostics.
type Stats struct {
	OutboxRecords int
	OutboxBytes   int64
	// CacheHours and CacheRows: closed hours held by the hourly rollup
	// cache, and their rows (see Config.CacheMaxRows).
	CacheHours, CacheRows int
}

// Stats answers the outbox's current depth and the cache's size.
func (s *Store) Stats() Stats {
	st := Stats{OutboxRecords: s.ob.Len(), OutboxBytes: s.ob.Bytes()}
	if s.cache != nil {
		st.CacheHours, st.CacheRows = s.cache.stats()
	}
	return st
}

// Ping answers nil when InfluxDB answers and the bucket can be queried.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
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
func (s *Store) ping(ctx context.Context) error {
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
	s.noteVersion(resp.Header)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("ping: HTTP %d", resp.StatusCode)
	}
	return nil
}

// noteVersion records whether the server is InfluxDB 2.x or later. Any
// other answer (1.x, or a build without a version: "unknown") keeps the
// shapes that suit 1.x.
func (s *Store) noteVersion(h http.Header) {
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

// WriteOperations encodes ops with unique point keys and submits them (see
// writer.go). Sessions need no write of their own: a session with no start
// event is derived from its operations (see sessions.go).
func (s *Store) WriteOperations(ctx context.Context, ops []tsdb.Operation) error {
	if len(ops) == 0 {
		return nil
	}
	keyed := false
	for i := range ops {
		keyed = keyed || ops[i].Keyed
	}
	if keyed {
		// A keyed operation the ledger knows is a client's retry: skip it.
		s.keyedMu.Lock()
		defer s.keyedMu.Unlock()
		s.ledger.markDuplicates(ops)
	}
	var w lineWriter
	w.b = make([]byte, 0, 400*len(ops))
	for i := range ops {
		if ops[i].Duplicate {
			continue
		}
		off, dup := s.slots.assign(&ops[i])
		w.writeOperation(&ops[i], off, dup)
	}
	if err := s.submit(ctx, w.b); err != nil {
		return err
	}
	if keyed {
		// The operations are durable already; a ledger that cannot record
		// them only weakens the detection of their retries.
		if err := s.ledger.add(ops, time.Now()); err != nil {
			s.log.Warn("idempotency ledger not updated", "err", err)
		}
	}
	return nil
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
func (s *Store) query(ctx context.Context, name, flux string, fn func(row) error) error {
	if s.closed.Load() {
		return errClosed
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
func (s *Store) queryEach(ctx context.Context, name string, fn func(row) error, queries ...string) error {
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
func (s *Store) queryErr(ctx context.Context, err error) error {
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
