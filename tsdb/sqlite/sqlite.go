// Package sqlite is the embedded tsdb.Store: one SQLite file (modernc.org/sqlite,
// pure Go, no cgo) in WAL mode, the service's zero-set-up default.
//
// One writer connection takes every write in a BEGIN IMMEDIATE transaction, so
// writers queue in Go instead of failing with SQLITE_BUSY; a pool of read-only
// connections serves queries in parallel with it (WAL readers see the last
// committed state and never block the writer). synchronous=FULL makes every
// acknowledged commit survive power loss. A commit of a few operations is
// staged in pending_operations and moved into the tables in batches, and
// before any read (see pending.go).
//
// Breakdowns, trends and list totals read rollup rows, hourly and daily,
// maintained in the same transaction as the raw operations: daily rows for
// the whole days of a window, hourly rows for the whole hours of its partial
// days, and raw rows (through the created_at indexes) only for its partial
// first and last hour. Their cost grows with the number of days and hours in
// the window, not with the number of operations.
//
// Retention (ExpireBefore) deletes raw operations and spend points behind a
// raw horizon kept in the file, which every aggregate is planned with: no
// raw row before it is read, and the rollups answer for those hours.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/internal/sqlq"
)

// ErrSchemaTooNew is returned by Open for a database written by a newer
// version of this program, whose schema this code does not know.
var ErrSchemaTooNew = errors.New("database schema is newer than this program")

// busyTimeoutMs bounds how long a connection waits for a lock held by
// another process on the same file (within this process the single writer
// connection already serialises writes).
const busyTimeoutMs = 10000

// Page cache sizes in KiB (SQLite's negative cache_size). SQLite's page
// cache is memory of this process: the writer's and every reader's count
// towards its resident size, so they are sized for a working set, not for the
// file. Batches of time-ordered (UUIDv7) operations touch the right edges of
// the table and its indexes plus a hot page per session, tool and mode; a
// reader touches rollup rows and the pages of a page of operations. The
// operating system's file cache holds the rest of the file.
const (
	writerCacheKiB     = 16 << 10
	readerCacheKiB     = 8 << 10
	checkpointCacheKiB = 1 << 10
)

// readerConns is how many reader connections a store opens: queries run
// in parallel with the writer, on every core.
func readerConns() int { return max(4, runtime.GOMAXPROCS(0)) }

// PageCacheBytes is the most memory the page caches of an open store hold
// (the writer's, every reader's and the checkpointer's): memory of this
// process that SQLite allocates outside Go's heap, so that Go's memory
// limit does not count it.
func PageCacheBytes() int64 {
	return int64(writerCacheKiB+readerConns()*readerCacheKiB+checkpointCacheKiB) << 10
}

// walFallbackPages is the writer's own automatic checkpoint threshold (WAL
// pages), far above what the background checkpointer lets the log reach;
// it bounds the log should the checkpointer fall behind.
const walFallbackPages = 50000

// checkpointEvery is the least time between two background checkpoints.
const checkpointEvery = 200 * time.Millisecond

// Store is the SQLite implementation of tsdb.Store. It is safe for
// concurrent use.
type Store struct {
	writer *sql.DB // exactly one connection; BEGIN IMMEDIATE
	// stmts are WriteOperations' statements, prepared by its first call
	// (outside any transaction: the writer's one connection is free then).
	stmtsMu sync.Mutex
	stmts   *writeStmts
	reader  *sql.DB // read-only pool
	ckpt    *sql.DB // one connection: background WAL checkpoints
	path    string
	logger  *slog.Logger
	closed  atomic.Bool

	ckptWake chan struct{} // a commit happened (buffered 1)
	ckptDone chan struct{}

	// writeMu serialises writes of operations and drains (pending.go);
	// pending counts the operations this process staged and has not
	// drained; mover drains them in the background.
	writeMu sync.Mutex
	pending atomic.Int64
	mover   *sqlq.Mover
	// staged holds copies of the operations this process staged since
	// its last drain, so that a drain need not read them back (see
	// drainLocked); nil once unknown (a failed move, a crash's leftovers,
	// the bound stagedMax). Guarded by writeMu.
	staged []tsdb.Operation

	stop chan struct{} // closed by Close: the checkpointer ends

	// horizon is the raw horizon of retention (see ExpireBefore).
	horizon sqlq.Horizon
	// autoVacuum: the file was created with auto_vacuum=INCREMENTAL, so
	// free pages can be given back to the file system.
	autoVacuum bool
	// noVacuumLogged: the first expiry on a file without auto_vacuum said
	// how to give its free pages back.
	noVacuumLogged sync.Once
}

var _ tsdb.Store = (*Store)(nil)

// Open opens (creating when missing) the database file at path, applies the
// schema migrations it lacks and returns the store. A path beginning with
// "~/" is taken relative to the user's home directory; the file's folder is
// created (mode 0700) when missing. Open refuses, with ErrSchemaTooNew, a file
// whose schema is newer than this code. A nil logger discards logs.
func Open(ctx context.Context, path string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "sqlite")

	abs, err := expandPath(path)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("create database folder: %w", err)
	}

	// Commits sync with fdatasync(2) instead of fsync(2), as SQLite does in
	// the build of every Linux distribution: the file's data and size reach
	// the disk as before, only its timestamps are not forced through the
	// file system's journal, which a commit otherwise waits for. The
	// library's own default is fsync; the switch is process-wide, and
	// where fdatasync does not exist (macOS, Windows) it answers
	// ErrFdatasyncUnavailable and SQLite syncs as before.
	_, _ = sqlite.Fdatasync(true)
	writer, err := sql.Open("sqlite", dsn(abs,
		"_txlock=immediate",
		// Takes effect on a new file only (before its first table): the
		// space retention frees can then be given back to the file system
		// (see ExpireBefore). An older file reuses its free pages instead.
		"_pragma=auto_vacuum(INCREMENTAL)",
		"_pragma=busy_timeout("+fmt.Sprint(busyTimeoutMs)+")",
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous(FULL)",
		"_pragma=cache_size(-"+fmt.Sprint(writerCacheKiB)+")",
		"_pragma=temp_store(MEMORY)",
		// Checkpoints run on their own connection (see checkpointLoop),
		// not inside the writer's commits.
		"_pragma=wal_autocheckpoint("+fmt.Sprint(walFallbackPages)+")",
	))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", abs, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)

	// The writer connects first: it switches the file to WAL and creates the
	// schema before any reader looks at it.
	from, to, err := migrate(ctx, writer)
	if err != nil {
		writer.Close()
		return nil, mapErr(fmt.Errorf("open %s: %w", abs, err))
	}

	readers := readerConns()
	reader, err := sql.Open("sqlite", dsn(abs,
		"_pragma=busy_timeout("+fmt.Sprint(busyTimeoutMs)+")",
		"_pragma=cache_size(-"+fmt.Sprint(readerCacheKiB)+")",
		"_pragma=query_only(1)",
		"_pragma=temp_store(MEMORY)",
	))
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("open %s: %w", abs, err)
	}
	reader.SetMaxOpenConns(readers)
	reader.SetMaxIdleConns(readers)
	reader.SetConnMaxLifetime(0)
	reader.SetConnMaxIdleTime(0)
	if err := reader.PingContext(ctx); err != nil {
		reader.Close()
		writer.Close()
		return nil, mapErr(fmt.Errorf("open %s for reading: %w", abs, err))
	}

	ckpt, err := sql.Open("sqlite", dsn(abs,
		"_pragma=busy_timeout("+fmt.Sprint(busyTimeoutMs)+")",
		"_pragma=synchronous(FULL)",
		"_pragma=cache_size(-"+fmt.Sprint(checkpointCacheKiB)+")",
	))
	if err != nil {
		reader.Close()
		writer.Close()
		return nil, fmt.Errorf("open %s: %w", abs, err)
	}
	ckpt.SetMaxOpenConns(1)
	ckpt.SetMaxIdleConns(1)
	ckpt.SetConnMaxLifetime(0)
	ckpt.SetConnMaxIdleTime(0)

	s := &Store{writer: writer, reader: reader, ckpt: ckpt, path: abs, logger: logger,
		ckptWake: make(chan struct{}, 1), ckptDone: make(chan struct{}), stop: make(chan struct{})}
	if err := s.openRetention(ctx); err != nil {
		ckpt.Close()
		reader.Close()
		writer.Close()
		return nil, mapErr(fmt.Errorf("open %s: %w", abs, err))
	}
	// Operations a previous run staged and did not move (it crashed, or
	// its Close could not): the next read, write or drain moves them.
	// (A schema older than the table's migration, as tests make, has none.)
	var pending int64
	if err := countPending(ctx, writer, &pending); err != nil {
		ckpt.Close()
		reader.Close()
		writer.Close()
		return nil, mapErr(fmt.Errorf("open %s: count pending operations: %w", abs, err))
	}
	s.pending.Store(pending)
	go s.checkpointLoop()
	s.startMover()
	if pending > 0 {
		logger.Info("operations left pending by the last run are moved into the tables", "pending", pending)
		s.mover.Wake()
	}
	if from != to {
		logger.Info("schema migrated", "path", abs, "from_version", from, "to_version", to)
	}
	logger.Info("store opened", "path", abs, "schema_version", to, "readers", readers)
	return s, nil
}

// countPending counts the rows of pending_operations, none when the table
// does not exist.
func countPending(ctx context.Context, db *sql.DB, n *int64) error {
	var tables int
	err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE name = 'pending_operations'`).Scan(&tables)
	if err != nil || tables == 0 {
		return err
	}
	return db.QueryRowContext(ctx, `SELECT count(*) FROM pending_operations`).Scan(n)
}

// checkpointLoop copies the write-ahead log into the database file in the
// background (PRAGMA wal_checkpoint(PASSIVE): it never waits for readers or
// the writer) at most every checkpointEvery after commits, so that the
// writer's commits only append to the log. With SQLite's automatic
// checkpoint the commit that crosses the threshold does this copy and its
// fsync itself, about a tenth of the writer's time under batch ingest. The
// log is reset by the next write once a checkpoint has copied all of it.
func (s *Store) checkpointLoop() {
	defer close(s.ckptDone)
	for {
		select {
		case <-s.stop:
			return
		case <-s.ckptWake:
		}
		var busy, logPages, done int
		err := s.ckpt.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logPages, &done)
		if err != nil && !s.closed.Load() {
			s.logger.Warn("background checkpoint failed", "err", err)
		}
		if !s.sleep(checkpointEvery) {
			return
		}
	}
}

// sleep waits d, and answers false at once when the store closes.
func (s *Store) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.stop:
		return false
	case <-t.C:
		return true
	}
}

// committed tells the checkpointer that the log grew.
func (s *Store) committed() {
	select {
	case s.ckptWake <- struct{}{}:
	default:
	}
}

// expandPath resolves "~/" and makes path absolute.
func expandPath(path string) (string, error) {
	if path == "" {
		return "", errors.New("sqlite: empty database path")
	}
	if path == "~" || strings.HasPrefix(path, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("sqlite: expand %q: %w", path, err)
		}
		path = filepath.Join(home, strings.TrimPrefix(path, "~"))
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("sqlite: resolve %q: %w", path, err)
	}
	return abs, nil
}

// dsn builds a file: URI for the modernc driver. Escaping the path keeps
// '?', '#' and '%' in folder names from being read as URI syntax.
func dsn(path string, params ...string) string {
	u := url.URL{Path: filepath.ToSlash(path)}
	return "file:" + u.EscapedPath() + "?" + strings.Join(params, "&")
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// Ping answers nil when both the writer connection and a reader connection
// answer a query.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	var one int
	if err := s.writer.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return s.wrap("ping writer", err)
	}
	if err := s.reader.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&one); err != nil {
		return s.wrap("ping reader", err)
	}
	return nil
}

// Close checkpoints the write-ahead log into the database file and closes
// both connection pools. Writes that returned nil were durable before Close
// and stay so whatever Close answers. Close is idempotent.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.stop)
	<-s.ckptDone
	s.mover.Stop()
	var errs []error
	if err := s.ckpt.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close checkpointer: %w", err))
	}
	if err := s.reader.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close readers: %w", err))
	}
	// Pending operations move into the tables, so that the file holds
	// them where any reader of it looks. Those that fail stay pending for
	// the next Open.
	s.writeMu.Lock()
	if s.pending.Load() > 0 {
		stmts, err := s.writeStmts(context.Background())
		if err == nil {
			err = s.drainLocked(context.Background(), stmts, false)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("move pending operations: %w", err))
		}
	}
	s.writeMu.Unlock()
	// With the readers gone, TRUNCATE can fold the whole log into the file
	// and leave a zero-length -wal behind.
	s.stmtsMu.Lock()
	if s.stmts != nil {
		s.stmts.close()
	}
	s.stmtsMu.Unlock()
	if _, err := s.writer.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		errs = append(errs, fmt.Errorf("checkpoint: %w", err))
	}
	if err := s.writer.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close writer: %w", err))
	}
	err := errors.Join(errs...)
	if err != nil {
		s.logger.Warn("store closed with errors", "path", s.path, "err", err)
	} else {
		s.logger.Info("store closed", "path", s.path)
	}
	return err
}

// errClosed is answered by every call on a closed store.
var errClosed = fmt.Errorf("%w: sqlite store is closed", tsdb.ErrUnavailable)

// wrap adds what failed to err and marks faults of the store (closed, I/O,
// disk full, locked) with tsdb.ErrUnavailable so callers can tell them from
// bad requests.
func (s *Store) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	if s.closed.Load() && !errors.Is(err, tsdb.ErrUnavailable) {
		return fmt.Errorf("%w: %s: sqlite store is closed: %w", tsdb.ErrUnavailable, what, err)
	}
	return mapErr(fmt.Errorf("%s: %w", what, err))
}

// mapErr marks err with tsdb.ErrUnavailable when it is a fault of the store
// rather than of the request.
func mapErr(err error) error {
	if err == nil || errors.Is(err, tsdb.ErrUnavailable) || errors.Is(err, tsdb.ErrNotFound) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if errors.Is(err, sql.ErrConnDone) || strings.Contains(err.Error(), "sql: database is closed") {
		return fmt.Errorf("%w: %w", tsdb.ErrUnavailable, err)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
			sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PROTOCOL,
			sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_PERM:
			return fmt.Errorf("%w: %w", tsdb.ErrUnavailable, err)
		}
	}
	return err
}
