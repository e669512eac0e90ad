// Package influx is the tsdb.Store over InfluxDB (2.x, Cloud, or 1.8+
// through its v2 compatibility API), composed of the parts telegraf's
// InfluxDB output draws apart too: writing and delivery
// (internal/delivery), querying (internal/query: Flux, InfluxQL, version
// detection) and the hourly rollup cache (internal/rollup).
//
// Schema: see package schema. The point time is created_at plus an offset
// below one microsecond that keeps every point key unique (see
// delivery.Slots).
//
// Writes go through a durable local outbox (internal/outbox) and a single
// drainer goroutine: a write survives InfluxDB outages and process crashes
// once it returned nil, and is delivered exactly once. Queries are Flux
// that runs on Flux 0.65 (InfluxDB 1.8) and on 2.x, and InfluxQL for hourly
// totals on 1.x. Aggregates and list totals come from an hourly rollup
// cache of closed hours (and, on 1.x, of the points of windows' edge
// minutes), so that warm answers cost O(hours), not O(operations), on 1.8
// too, where Flux cannot push aggregates down, and query nothing.
//
// It is also a tsdb.SpendStore: spend points go through the same outbox,
// drainer and idempotency ledger as operations, and their aggregates come
// from a second hourly rollup cache, of the same kind (rollup.Cache), so
// that a warm 30-day spend answer costs O(hours), not O(points), too.
package influx

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/internal/delivery"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/internal/query"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/internal/rollup"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// ErrBacklogFull: the local outbox is at its bound (InfluxDB has been away
// or slow for long); the write stored nothing. The HTTP layer answers 503
// with Retry-After.
// It is tsdb.ErrBacklogFull, so that callers need not import this package.
var ErrBacklogFull = tsdb.ErrBacklogFull

// Store is the InfluxDB tsdb.Store. It is safe for concurrent use.
type Store struct {
	w *delivery.Writer // writes, the outbox and its drainer
	q *query.Reader    // reads and the server's version
	// Closed hours' totals of operations and of spend points; nil when the
	// cache is turned off (Config.CacheMaxRows < 0).
	ops   *rollup.Operations
	spend *rollup.Spend
	// Closed days' totals per file path and per session of operations;
	// nil with the caches off.
	files, sessions *rollup.KeyDays

	closeOnce sync.Once
}

var (
	_ tsdb.Store      = (*Store)(nil)
	_ tsdb.SpendStore = (*Store)(nil)
)

// Open opens the outbox and starts the drainer. It does not contact
// InfluxDB: the service starts, and accepts writes, while InfluxDB is down;
// Ping tells whether it answers.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Store, error) {
	return open(ctx, cfg, logger, false)
}

// open is Open; alwaysFlux reads hourly totals with Flux on InfluxDB 1.x
// too (the path of 2.x), for the tests that compare both.
func open(_ context.Context, cfg Config, logger *slog.Logger, alwaysFlux bool) (*Store, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "influx")
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
	s := &Store{}
	s.q = query.New(query.Options{
		URL: cfg.URL, Token: cfg.Token, Org: cfg.Org, Bucket: cfg.Bucket,
		QueryTimeout: cfg.QueryTimeout, RequestTimeout: cfg.RequestTimeout,
		ExportPageSize: cfg.ExportPageSize, AlwaysFlux: alwaysFlux,
		HTTP: httpc, Logger: logger,
	})
	if cfg.CacheMaxRows > 0 {
		o := rollup.Options{TTL: cfg.CacheTTL, MaxRows: cfg.CacheMaxRows, Logger: logger}
		s.ops, s.spend = rollup.NewOperations(s.q, o), rollup.NewSpend(s.q, o)
		s.files, s.sessions = rollup.NewFileDays(s.q, o), rollup.NewSessionDays(s.q, o)
	}
	wo := delivery.Options{
		URL: cfg.URL, Token: cfg.Token, Org: cfg.Org, Bucket: cfg.Bucket,
		HTTP:      httpc,
		OutboxDir: cfg.OutboxDir, OutboxMaxBytes: cfg.OutboxMaxBytes, DeadLetterPath: cfg.DeadLetterPath,
		WriteTimeout: cfg.WriteTimeout, RequestTimeout: cfg.RequestTimeout,
		RetryMin: cfg.RetryMin, RetryMax: cfg.RetryMax,
		MaxBatchBytes: cfg.MaxBatchBytes, SlotKeys: cfg.SlotKeys,
		Registerer: cfg.Registerer, Logger: logger,
		OnHeader: s.q.NoteVersion,
	}
	if s.ops != nil {
		wo.OnDelivered = func(lps [][]byte) {
			s.ops.Delivered(lps)
			s.spend.Delivered(lps)
			s.files.Delivered(lps)
			s.sessions.Delivered(lps)
		}
	}
	w, err := delivery.Open(wo)
	if err != nil {
		s.closeReads()
		return nil, err
	}
	s.w = w
	return s, nil
}

// Close stops the drainer and closes the outbox. What it has not delivered
// stays in the outbox for the next Open.
func (s *Store) Close() error {
	err := delivery.ErrClosed
	s.closeOnce.Do(func() {
		err = s.w.Close()
		s.closeReads()
	})
	return err
}

// closeReads stops the caches' refreshers and closes the reader.
func (s *Store) closeReads() {
	if s.ops != nil {
		s.ops.Close()
		s.spend.Close()
		s.files.Close()
		s.sessions.Close()
	}
	s.q.Close()
}

// Stats are the outbox and cache figures, for tests and diagnostics.
type Stats struct {
	OutboxRecords int
	OutboxBytes   int64
	// CacheHours and CacheRows: closed hours held by the hourly rollup
	// cache of operations, and their rows (at most Config.CacheMaxRows).
	CacheHours, CacheRows int
	// SpendCacheHours and SpendCacheRows: the same of the cache of spend
	// points (at most Config.CacheMaxRows rows too).
	SpendCacheHours, SpendCacheRows int
	// FileCacheRows and SessionCacheRows: the (span, file path) rows of
	// the cache of closed spans' totals per file, and the (span, session)
	// rows of the one per session (at most twice Config.CacheMaxRows each).
	FileCacheRows, SessionCacheRows int
}

// Stats answers the outbox's current depth and the cache's size.
func (s *Store) Stats() Stats {
	var st Stats
	st.OutboxRecords, st.OutboxBytes = s.w.Backlog()
	if s.ops != nil {
		st.CacheHours, st.CacheRows = s.ops.Stats()
		st.SpendCacheHours, st.SpendCacheRows = s.spend.Stats()
		st.FileCacheRows, st.SessionCacheRows = s.files.Rows(), s.sessions.Rows()
	}
	return st
}

// Ping answers nil when InfluxDB answers and the bucket can be queried.
func (s *Store) Ping(ctx context.Context) error { return s.q.Ping(ctx) }

// WriteOperations encodes ops with unique point keys and submits them.
// Sessions need no write of their own: a session with no start event is
// derived from its operations.
func (s *Store) WriteOperations(ctx context.Context, ops []tsdb.Operation) error {
	return s.w.WriteOperations(ctx, ops)
}

// WriteSpend encodes points with unique point keys and submits them
// through the outbox, as WriteOperations does keyed operations: a point
// whose id the idempotency ledger holds (a retried export) is marked
// Duplicate and not stored again.
func (s *Store) WriteSpend(ctx context.Context, points []tsdb.SpendPoint) error {
	return s.w.WriteSpend(ctx, points)
}

// SpendBreakdown answers the totals of every (tool id, model) with a spend
// point in w: from the spend cache's hourly totals, or, without the cache,
// summed from the window's points by InfluxDB.
func (s *Store) SpendBreakdown(ctx context.Context, w tsdb.Window) ([]tsdb.SpendTotals, error) {
	if s.spend != nil {
		return rollup.AnswerDays(ctx, s.spend, w, query.SpendBreakdownOf)
	}
	return s.q.SpendBreakdown(ctx, w)
}

// SpendTrend answers the spend per UTC hour or day bucket of w: from the
// spend cache's hourly totals, or, without the cache, summed from the
// window's points by InfluxDB.
func (s *Store) SpendTrend(ctx context.Context, w tsdb.Window, step tsdb.Step) ([]tsdb.SpendBucket, error) {
	if s.spend != nil {
		answer := rollup.Answer[query.SpendHourRow, query.SpendKey, []tsdb.SpendBucket]
		if step == tsdb.Daily {
			answer = rollup.AnswerDays[query.SpendHourRow, query.SpendKey, []tsdb.SpendBucket]
		}
		return answer(ctx, s.spend, w, func(rows []query.SpendHourRow) []tsdb.SpendBucket {
			return query.SpendTrendOf(rows, step)
		})
	}
	return s.q.SpendTrend(ctx, w, step)
}

// QueryOperations answers one page of operations, newest created_at first;
// with the cache, its total comes from the cached hourly counts, or from
// InfluxDB while the cache lacks much of the window (rollup.Counter).
func (s *Store) QueryOperations(ctx context.Context, f tsdb.OperationFilter) (tsdb.OperationPage, error) {
	var count query.Counter
	if s.ops != nil {
		count = rollup.Counter(s.ops)
	}
	return s.q.QueryOperations(ctx, f, count)
}

// ExportOperations hands fn every operation matching f, oldest first, in
// pages of about Config.ExportPageSize.
func (s *Store) ExportOperations(ctx context.Context, f tsdb.OperationFilter, fn func(*tsdb.Operation) error) error {
	return s.q.Export(ctx, f, fn)
}

// Breakdown answers the totals per (tool name, mode) in w.
func (s *Store) Breakdown(ctx context.Context, w tsdb.Window) ([]tsdb.ModeTotals, error) {
	if s.ops != nil {
		return rollup.AnswerDays(ctx, s.ops, w, query.BreakdownOf)
	}
	return s.q.Breakdown(ctx, w)
}

// Trend answers the totals per UTC hour or day bucket of w.
func (s *Store) Trend(ctx context.Context, w tsdb.Window, step tsdb.Step) ([]tsdb.Bucket, error) {
	if s.ops != nil {
		answer := rollup.Answer[query.HourRow, query.HourKey, []tsdb.Bucket]
		if step == tsdb.Daily {
			answer = rollup.AnswerDays[query.HourRow, query.HourKey, []tsdb.Bucket]
		}
		return answer(ctx, s.ops, w, func(rows []query.HourRow) []tsdb.Bucket {
			return query.TrendOf(rows, step)
		})
	}
	return s.q.Trend(ctx, w, step)
}

// Aggregate answers the groups of q: from the hourly totals of its window
// (the rollup cache's closed hours, raw totals for the rest) when
// q.FromRollups(); by file path, or by session or project (and day) over
// dates only, from the totals per file or session of its closed days,
// hours and minutes (cached) and its other operations; else from its
// operations, grouped in Go.
func (s *Store) Aggregate(ctx context.Context, q tsdb.AggregateQuery) (tsdb.AggregateResult, error) {
	if !q.FromRollups() {
		if s.files != nil {
			for _, c := range []*rollup.KeyDays{s.files, s.sessions} {
				if c.Serves(q) {
					return c.Aggregate(ctx, q)
				}
			}
		}
		return s.q.AggregateOperations(ctx, q)
	}
	end := q.Filter.End
	if end == nil {
		// No end: up to the latest created_at a service accepts (its clock
		// plus the skew allowed), so that the window's trailing edge is
		// minutes the cache holds, not a read of every minute to year 9999.
		end = new(time.Now().Add(api.MaxClockSkew))
	}
	lo, hi, ok := query.TimeRange(q.Filter.Start, end)
	if !ok {
		return tsdb.AggregateResult{Groups: []tsdb.AggregateGroup{}}, nil
	}
	var rows []query.HourRow
	var err error
	switch {
	case s.ops != nil && !slices.Contains(q.GroupBy, tsdb.DimHour):
		// Grouped by tool, mode or day: a cached day comes as its sums.
		rows, err = s.ops.DayRows(ctx, lo, hi, q.Filter.ToolID)
	case s.ops != nil:
		rows, err = s.ops.HourRows(ctx, lo, hi, q.Filter.ToolID)
	default:
		rows, err = s.q.ReadHours(ctx, "aggregate hours", lo, hi, q.Filter.ToolID)
	}
	if err != nil {
		return tsdb.AggregateResult{}, err
	}
	return query.GroupHours(rows, q), nil
}

// FirstOperationTime answers the oldest created_at (of toolID when given).
func (s *Store) FirstOperationTime(ctx context.Context, toolID string) (time.Time, bool, error) {
	if s.ops != nil {
		return s.ops.FirstTime(ctx, toolID)
	}
	return s.q.FirstOperationTime(ctx, toolID)
}

// GetSession answers the session and its totals, or tsdb.ErrNotFound.
func (s *Store) GetSession(ctx context.Context, id uuid.UUID) (tsdb.SessionStats, error) {
	return s.q.GetSession(ctx, id)
}

// FindOpenSession answers the newest open session that m matches.
func (s *Store) FindOpenSession(ctx context.Context, m tsdb.SessionMatch) (tsdb.Session, error) {
	return s.q.FindOpenSession(ctx, m)
}

// ActiveSessions answers the open sessions (of toolID when given) active
// at or after since, newest activity first.
func (s *Store) ActiveSessions(ctx context.Context, toolID string, since time.Time) ([]tsdb.SessionStats, error) {
	return s.q.ActiveSessions(ctx, toolID, since)
}

// CreateSession writes the session's start event (and a heartbeat at its
// LastActivity, and an end event, when given).
func (s *Store) CreateSession(ctx context.Context, sess tsdb.Session) error {
	var e delivery.Encoder
	id := sess.SessionID.String()
	e.SessionEvent(schema.EventStart, id, sess.ToolID, sess.StartedAt, &sess)
	if sess.LastActivity.After(sess.StartedAt) {
		e.SessionEvent(schema.EventHeartbeat, id, sess.ToolID, sess.LastActivity, nil)
	}
	if sess.EndedAt != nil {
		e.SessionEvent(schema.EventEnd, id, sess.ToolID, *sess.EndedAt, nil)
	}
	return s.w.Submit(ctx, e.Bytes())
}

// TouchSession writes a heartbeat at `at` when it is later than the
// session's last activity, and answers the session.
func (s *Store) TouchSession(ctx context.Context, id uuid.UUID, at time.Time) (tsdb.Session, error) {
	st, err := s.q.GetSession(ctx, id)
	if err != nil {
		return tsdb.Session{}, err
	}
	at = at.UTC().Truncate(time.Microsecond)
	if !at.After(st.LastActivity) {
		return st.Session, nil
	}
	var e delivery.Encoder
	e.SessionEvent(schema.EventHeartbeat, id.String(), st.ToolID, at, nil)
	if err := s.w.Submit(ctx, e.Bytes()); err != nil {
		return tsdb.Session{}, err
	}
	st.LastActivity = at
	return st.Session, nil
}

// EndSession writes the end event unless the session already ended, and
// answers the session with its totals.
func (s *Store) EndSession(ctx context.Context, id uuid.UUID, at time.Time) (tsdb.SessionStats, error) {
	st, err := s.q.GetSession(ctx, id)
	if err != nil || st.EndedAt != nil {
		return st, err
	}
	at = at.UTC().Truncate(time.Microsecond)
	var e delivery.Encoder
	e.SessionEvent(schema.EventEnd, id.String(), st.ToolID, at, nil)
	if err := s.w.Submit(ctx, e.Bytes()); err != nil {
		return tsdb.SessionStats{}, err
	}
	st.EndedAt = &at
	return st, nil
}

// EdgeStats answers the edge minutes the cache of operations holds and
// their points, for tests and diagnostics.
func (s *Store) EdgeStats() (minutes, points int) {
	if s.ops == nil {
		return 0, 0
	}
	return s.ops.EdgeStats()
}
