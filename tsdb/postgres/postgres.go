// Package postgres is the tsdb.Store over PostgreSQL (pgx and its pool), the
// production store: any number of stateless replicas of the service share
// one database and see each other's writes.
//
// tool_operations is partitioned by month on created_at; a month's
// partition is created (under an advisory lock, in a short transaction of
// its own) the first time a replica writes into it. An operation's id is
// unique across partitions through the small table operation_ids, inserted
// in the same transaction as the operations: a retry is stored once
// whichever replica takes it. Hourly and daily rollups are upserted in that
// same transaction too, so aggregates read O(days + hours) rollup rows plus
// the raw rows of at most two partial hours (tsdb.PlanWindow), and an
// acknowledged write is a committed one. A small write (single operations)
// is staged instead, and moved into the tables in batches and before every
// read (see pending.go). Schema migrations are versioned
// (schema_version) and run under an advisory lock, so replicas starting
// together never race. Retention (ExpireBefore) drops wholly expired month
// partitions and deletes the rest in batches, behind a raw horizon that
// every replica plans its aggregates with.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/internal/sqlq"
)

// ErrSchemaTooNew is returned by Open for a database migrated by a newer
// version of this program, whose schema this code does not know.
var ErrSchemaTooNew = errors.New("database schema is newer than this program")

var errClosed = fmt.Errorf("%w: store closed", tsdb.ErrUnavailable)

// Config says which database to use and how.
type Config struct {
	// URL is the connection URL, postgresql:// or postgres:// (any
	// libpq-style parameter pgx understands may follow).
	URL string
	// MaxConns bounds the pool's connections (0: the URL's
	// pool_max_conns, or else defaultMaxConns).
	MaxConns int32
	// ExportPage is how many operations an export reads per query (0:
	// 5000). Memory held by an export is bounded by it.
	ExportPage int
	// QueryTimeout bounds every read (each page of an export) and session
	// update: a server that stops answering costs a request that long,
	// then tsdb.ErrUnavailable (0: 30 s). Writes are bounded by their
	// caller's context.
	QueryTimeout time.Duration
	// Announce makes every write announce the operations it stores, in
	// its transaction, to the FollowOperations of other store values (the
	// other replicas), so that every replica's live stream carries them.
	// The service sets it; a bulk copy (the import) leaves it off, so
	// that history does not flood the live streams.
	Announce bool
}

const (
	defaultExportPage   = 5000
	defaultQueryTimeout = 30 * time.Second
	// defaultConnectTimeout bounds a new connection (TCP and start-up),
	// unless the URL's connect_timeout says otherwise.
	defaultConnectTimeout = 10 * time.Second
	// defaultMaxConns is the pool's size unless the URL or Config says
	// otherwise: the service's writer of small commits, its two of
	// batches (see exporter.TrackerOptions.BulkWriters) and the mover
	// (see pending.go) may hold one each, and reads keep four.
	defaultMaxConns = 8
)

// Store is the PostgreSQL implementation of tsdb.Store. It is safe for
// concurrent use.
type Store struct {
	pool       *pgxpool.Pool
	logger     *slog.Logger
	exportPage int
	timeout    time.Duration // of a read: Config.QueryTimeout
	announce   bool          // Config.Announce
	origin     string        // names this value's announcements (see feed.go)
	closed     atomic.Bool

	// months holds the months (unix microseconds of their first instant)
	// whose partition this process knows to exist.
	months sync.Map

	// horizon is the raw horizon of retention (see ExpireBefore).
	horizon sqlq.Horizon
	// walk is where ExpireBefore's walk of a wholly expired partition's
	// operation ids stands.
	walkMu sync.Mutex
	walk   partitionWalk

	// Staging (see pending.go): pending counts the operations this store
	// staged since its last move; drainMu makes its moves one at a time;
	// mover runs them in the background.
	pending atomic.Int64
	drainMu sync.Mutex
	mover   *sqlq.Mover
}

var (
	_ tsdb.Store         = (*Store)(nil)
	_ tsdb.OperationFeed = (*Store)(nil)
)

// Open connects to the database, applies the schema migrations it lacks and
// returns the store. A database that cannot be reached is an error wrapping
// tsdb.ErrUnavailable. A nil logger discards logs. The password in the URL is
// never logged.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "postgres")
	if !strings.HasPrefix(cfg.URL, "postgresql://") && !strings.HasPrefix(cfg.URL, "postgres://") {
		return nil, errors.New("postgres: the URL must begin with postgresql:// or postgres://")
	}
	pc, err := pgxpool.ParseConfig(cfg.URL) // its errors redact the password
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	switch {
	case cfg.MaxConns > 0:
		pc.MaxConns = cfg.MaxConns
	case !strings.Contains(cfg.URL, "pool_max_conns="):
		pc.MaxConns = max(pc.MaxConns, defaultMaxConns)
	}
	if pc.ConnConfig.ConnectTimeout == 0 { // no connect_timeout in the URL
		pc.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	// Times are timestamptz; the session's zone only matters to text
	// forms, but UTC keeps every one of them unambiguous.
	pc.ConnConfig.RuntimeParams["timezone"] = "UTC"
	pc.ConnConfig.RuntimeParams["application_name"] = "omnimemory-metrics"
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &Store{pool: pool, logger: logger, exportPage: cfg.ExportPage, timeout: cfg.QueryTimeout,
		announce: cfg.Announce, origin: newOrigin()}
	if s.exportPage <= 0 {
		s.exportPage = defaultExportPage
	}
	if s.timeout <= 0 {
		s.timeout = defaultQueryTimeout
	}
	log := logger.With("host", pc.ConnConfig.Host, "port", pc.ConnConfig.Port,
		"database", pc.ConnConfig.Database, "user", pc.ConnConfig.User)
	from, to, err := s.migrate(ctx)
	if err != nil {
		pool.Close()
		return nil, s.wrap("migrate", err)
	}
	if from != to {
		log.Info("schema migrated", "from", from, "to", to)
	}
	log.Info("opened", "schema_version", to)
	var pending bool
	if err := pool.QueryRow(ctx, anyPendingSQL).Scan(&pending); err != nil {
		pool.Close()
		return nil, s.wrap("look for pending operations", err)
	}
	s.startMover()
	if pending {
		log.Info("operations left pending are moved into the tables")
		s.mover.Now()
	}
	return s, nil
}

// Ping answers nil when the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	return s.wrap("ping", s.pool.Ping(ctx))
}

// Close moves the operations pending (see pending.go) and closes the
// pool; every write that returned nil is committed, and what a failed move
// leaves pending is moved by the next store to read or open the database.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.mover.Stop()
	if s.pending.Load() > 0 {
		ctx, cancel := s.bound(context.Background())
		if err := s.drain(ctx); err != nil {
			s.logger.Warn("moving pending operations on close failed; the next store to read or open the database moves them", "err", err)
		}
		cancel()
	}
	s.pool.Close()
	return nil
}

// startRead checks that the store is open, bounds ctx with the query
// timeout and moves the pending operations, so that the read sees them.
func (s *Store) startRead(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if s.closed.Load() {
		return ctx, func() {}, errClosed
	}
	ctx, cancel := s.bound(ctx)
	if err := s.flush(ctx); err != nil {
		cancel()
		return ctx, func() {}, err
	}
	return ctx, cancel, nil
}

// bound gives a read or a session update the store's query timeout.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// wrap names the failed operation, and marks failures to reach the
// database (network errors, a server shutting down or refusing
// connections) as tsdb.ErrUnavailable. A context's end is answered as is.
func (s *Store) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, tsdb.ErrUnavailable) {
		// No answer in time: the server, or the way to it, stalls.
		return fmt.Errorf("postgres: %s: %w: no answer in time: %w", op, tsdb.ErrUnavailable, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, tsdb.ErrUnavailable) || errors.Is(err, tsdb.ErrNotFound) || errors.Is(err, ErrSchemaTooNew) {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	if unavailable(err) {
		return fmt.Errorf("postgres: %s: %w: %w", op, tsdb.ErrUnavailable, err)
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

func unavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // shutdown, cannot connect now
			pgErr.Code == "53300": // too many connections
			return true
		}
		return false
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connErr) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) ||
		strings.Contains(err.Error(), "closed pool") || strings.Contains(err.Error(), "conn closed") ||
		strings.Contains(err.Error(), "unexpected EOF")
}
