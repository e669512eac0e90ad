// Package tsdb defines the stores that keep tool operations and sessions: the
// domain types they speak, the small interfaces each part of the service
// needs of a store (and Store, all of them together), the validation rules
// every path into a store applies, and the window planner that splits an
// aggregate's window into rollup and raw reads. The embedded store
// (tsdb/sqlite) and the InfluxDB store (tsdb/influx) implement Store;
// tsdb/storetest is the conformance suite both pass.
//
// The package imports nothing of this module but the wire package
// client/api (the contract's names and bounds): the service layer and the
// HTTP layer speak its types, so a store never depends on how an answer is
// priced or served.
package tsdb

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"time"

	"github.com/google/uuid"
)

// Errors a Store returns. Callers test them with errors.Is.
var (
	// ErrNotFound: the session asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: the store cannot be reached right now; the caller may
	// retry. Wrapped errors carry the cause.
	ErrUnavailable = errors.New("store unavailable")
	// ErrBacklogFull: the store's local backlog of writes not yet delivered
	// has reached its bound; nothing of the write was stored, and the caller
	// may retry later.
	ErrBacklogFull = errors.New("store backlog full")
)

// Operation is one tool call as reported by a client and accepted by the
// service. Every field is already validated; the store keeps it as given.
type Operation struct {
	ID              uuid.UUID
	SessionID       uuid.UUID
	ToolName        string
	OperationMode   string
	Parameters      json.RawMessage // a JSON object, compact; never null ("{}" when absent)
	FilePath        *string         // nil when absent
	TokensOriginal  int64
	TokensActual    int64
	TokensPrevented int64 // may be negative: the tool cost more than its baseline
	ResponseTimeMs  float64
	ToolID          string
	CreatedAt       time.Time // UTC, microsecond precision (the service truncates)
	// CacheHit says whether the tool answered from its cache; nil when the
	// client did not say (unknown, never counted as a miss).
	CacheHit *bool

	// Keyed: the ID came from the client (its operation_id, or derived from
	// its Idempotency-Key), so a retry carries the same ID and must be
	// stored once.
	Keyed bool
	// Duplicate is set by WriteOperations on an operation whose ID was
	// already stored: a retry, which it did not store again.
	Duplicate bool
}

// OperationFilter selects operations. Zero values mean "no filter".
// Start and End are inclusive.
type OperationFilter struct {
	SessionID     *uuid.UUID
	ToolName      string
	OperationMode string
	ToolID        string
	Start         *time.Time
	End           *time.Time
	Limit         int // > 0
	Offset        int // >= 0
}

// OperationPage is one page of operations, newest first (ties broken by id,
// descending), and the number of all operations matching the filter.
type OperationPage struct {
	Operations []Operation
	Total      int64
}

// Window selects operations for an aggregate: those of ToolID (all when
// empty) with Start <= created_at <= End. A nil Start has no lower bound.
type Window struct {
	ToolID string
	Start  *time.Time
	End    time.Time
}

// Totals are the sums over a set of operations.
type Totals struct {
	Count             int64
	TokensOriginal    int64
	TokensActual      int64
	TokensPrevented   int64
	ResponseTimeSumMs float64
}

// TotalsOf answers the totals of one operation.
func TotalsOf(op *Operation) Totals {
	return Totals{Count: 1, TokensOriginal: op.TokensOriginal, TokensActual: op.TokensActual,
		TokensPrevented: op.TokensPrevented, ResponseTimeSumMs: op.ResponseTimeMs}
}

// Add adds o to t.
func (t *Totals) Add(o Totals) {
	t.Count = AddSat(t.Count, o.Count)
	t.TokensOriginal = AddSat(t.TokensOriginal, o.TokensOriginal)
	t.TokensActual = AddSat(t.TokensActual, o.TokensActual)
	t.TokensPrevented = AddSat(t.TokensPrevented, o.TokensPrevented)
	t.ResponseTimeSumMs += o.ResponseTimeSumMs
}

// AddSat answers a + b held at the bounds of an int64 instead of wrapping
// around: the contract takes any token count up to 2^63-1, so that a sum
// of two can exceed what an int64 holds. A total at a bound says "at least
// this much"; the stores' SQL sums are held the same way (see
// internal/sqlq.AddSat).
func AddSat(a, b int64) int64 {
	s := a + b
	switch {
	case b > 0 && s < a:
		return math.MaxInt64
	case b < 0 && s > a:
		return math.MinInt64
	}
	return s
}

// CacheCounts count the operations of a set whose cache_hit is known
// (Lookups) and those of them that were hits (Hits); operations with an
// unknown cache_hit count in neither.
type CacheCounts struct {
	Lookups, Hits int64
}

// Add adds o to c.
func (c *CacheCounts) Add(o CacheCounts) {
	c.Lookups += o.Lookups
	c.Hits += o.Hits
}

// CacheOf answers the cache counts of one operation.
func CacheOf(op *Operation) CacheCounts {
	switch {
	case op.CacheHit == nil:
		return CacheCounts{}
	case *op.CacheHit:
		return CacheCounts{Lookups: 1, Hits: 1}
	}
	return CacheCounts{Lookups: 1}
}

// ModeTotals are the totals of one (tool name, operation mode) pair.
type ModeTotals struct {
	ToolName      string
	OperationMode string
	Totals
}

// Step is the width of a trend bucket.
type Step int

// Trend bucket widths. Buckets are aligned to UTC hour or day starts.
const (
	Hourly Step = iota
	Daily
)

// String names the step.
func (s Step) String() string {
	if s == Daily {
		return "daily"
	}
	return "hourly"
}

// Micros is the width of the step's buckets in microseconds.
func (s Step) Micros() int64 {
	if s == Daily {
		return MicrosPerDay
	}
	return MicrosPerHour
}

// Truncate returns the start of the bucket that holds t (UTC).
func (s Step) Truncate(t time.Time) time.Time {
	t = t.UTC()
	if s == Daily {
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
	return t.Truncate(time.Hour)
}

// Next returns the start of the bucket after the one starting at t.
func (s Step) Next(t time.Time) time.Time {
	if s == Daily {
		return t.AddDate(0, 0, 1)
	}
	return t.Add(time.Hour)
}

// Bucket is the totals of the operations whose created_at falls in
// [Start, next bucket start), restricted to the window asked for.
type Bucket struct {
	Start time.Time // UTC, aligned to the step
	Totals
}

// Session is a client's working session (Phase 1 of the contract).
type Session struct {
	SessionID     uuid.UUID
	ToolID        string
	ToolVersion   *string
	ProcessID     *int64
	InstanceID    *string
	ProjectID     *string
	WorkspacePath *string
	StartedAt     time.Time
	EndedAt       *time.Time
	LastActivity  time.Time
}

// SessionStats are a session and the totals of its operations.
type SessionStats struct {
	Session
	TotalOperations   int64
	TokensSaved       int64 // sum of tokens_prevented
	TotalCompressions int64 // its read operations
	TotalEmbeddings   int64 // its search operations
}

// SessionMatch says which open session get_or_create may reuse: the newest
// not-ended one with InstanceID when given (whatever its tool); failing that
// (or when no InstanceID is given), the newest not-ended one with ToolID and
// ProcessID, when ProcessID is given. Newest means latest started_at, then
// latest last_activity, then highest id.
type SessionMatch struct {
	ToolID     string
	InstanceID *string
	ProcessID  *int64
}

// OperationWriter stores operations: the ingest path's need of a store.
type OperationWriter interface {
	// WriteOperations stores ops durably, in one batch where the store can:
	// when it returns nil, every operation survives a crash. It creates each
	// operation's session when missing (tool_id from the operation, started
	// and last active at its created_at, no process id) and otherwise moves
	// the session's last_activity forward to the newest created_at; it never
	// reopens an ended session. An operation whose ID is already stored (a
	// client's retry; for stores that cannot look every ID up cheaply, at
	// least every Keyed one) is not stored again and gets Duplicate set. On
	// error, none of ops may be visible.
	WriteOperations(ctx context.Context, ops []Operation) error
}

// OperationReader lists and exports stored operations.
type OperationReader interface {
	// QueryOperations answers one page of operations matching f.
	QueryOperations(ctx context.Context, f OperationFilter) (OperationPage, error)

	// ExportOperations hands fn every operation matching f (its Limit and
	// Offset are ignored), oldest first: created_at ascending, ties by id
	// ascending. It holds a bounded number of operations at a time however
	// many match, so that exporting millions costs constant memory. fn may
	// not keep op after it returns. ExportOperations stops at the first
	// error of fn and answers it unwrapped, and stops when ctx ends.
	ExportOperations(ctx context.Context, f OperationFilter, fn func(op *Operation) error) error
}

// Aggregator sums operations over windows: the reports' need of a store.
type Aggregator interface {
	// Breakdown answers the totals of every (tool name, mode) pair with at
	// least one operation in w, in no particular order (an empty, non-nil
	// slice when there is none). On a store with a raw horizon (see
	// Expirer), w is taken as HorizonWindow makes it: an edge inside
	// an hour before the horizon counts that hour whole; so for Trend.
	Breakdown(ctx context.Context, w Window) ([]ModeTotals, error)

	// Trend answers the totals per step bucket of the operations in w,
	// oldest first, only for buckets that hold at least one operation (an
	// empty, non-nil slice when there is none).
	Trend(ctx context.Context, w Window, step Step) ([]Bucket, error)

	// FirstOperationTime answers the created_at of the oldest operation of
	// toolID (all tools when empty); ok is false when there is none. On a
	// store with a raw horizon (see Expirer), an oldest operation before
	// the horizon is answered by the start of its hour.
	FirstOperationTime(ctx context.Context, toolID string) (t time.Time, ok bool, err error)

	// Aggregate answers the groups of q with at least one operation (see
	// AggregateQuery), from the rollups when q.FromRollups(), so that its
	// cost grows with buckets and keys rather than operations.
	Aggregate(ctx context.Context, q AggregateQuery) (AggregateResult, error)
}

// SessionStore keeps sessions (Phase 1 of the contract).
type SessionStore interface {
	// CreateSession stores a new session.
	CreateSession(ctx context.Context, s Session) error

	// FindOpenSession answers the session that m selects (see SessionMatch),
	// or ErrNotFound.
	FindOpenSession(ctx context.Context, m SessionMatch) (Session, error)

	// TouchSession sets the session's last_activity to at (when later than
	// the one stored) and answers it; ErrNotFound when it does not exist.
	// It never reopens an ended session (its last_activity still moves).
	TouchSession(ctx context.Context, id uuid.UUID, at time.Time) (Session, error)

	// EndSession marks the session ended at `at` and answers it with its
	// totals; a session already ended is answered unchanged. ErrNotFound when
	// it does not exist.
	EndSession(ctx context.Context, id uuid.UUID, at time.Time) (SessionStats, error)

	// GetSession answers the session and its totals, or ErrNotFound.
	GetSession(ctx context.Context, id uuid.UUID) (SessionStats, error)

	// ActiveSessions answers the sessions not ended whose last_activity is at
	// or after since, of toolID (all when empty), newest activity first.
	ActiveSessions(ctx context.Context, toolID string, since time.Time) ([]SessionStats, error)
}

// Expiry is what one ExpireBefore call did.
type Expiry struct {
	// Horizon is the store's raw horizon after the call: raw operations
	// and spend points before it are deleted, or about to be, and
	// aggregates read the rollups for every hour before it.
	Horizon time.Time
	// Operations and SpendPoints count the raw rows the call deleted.
	Operations  int
	SpendPoints int
	// More: raw rows before the cutoff may remain; call again (after a
	// pause) to delete the next batch.
	More bool
}

// Expirer is a store that deletes raw rows past a retention while keeping
// their hourly and daily rollups, so that aggregates over any range still
// answer. A store implements it or not; the service expires only through
// it.
type Expirer interface {
	// ExpireBefore moves the store's raw horizon to cutoff rounded down to
	// the UTC hour, unless it is there or later already (it never moves
	// back; it is persisted, so other replicas and later runs plan with
	// it), then deletes at most batch raw operations and spend points
	// older than that hour in one short transaction. From the moment the
	// horizon moves, aggregates treat every hour before it as expired:
	// an edge of a window that falls inside such an hour counts the whole
	// hour (from its rollup), and QueryOperations and ExportOperations
	// answer only the raw operations that remain. Operations written later
	// with a created_at before the horizon count in the rollups and are
	// listed until the next call deletes them.
	ExpireBefore(ctx context.Context, cutoff time.Time, batch int) (Expiry, error)
}

// Pinger tells whether a store can serve.
type Pinger interface {
	// Ping answers nil when the store can serve reads and writes.
	Ping(ctx context.Context) error
}

// Store is every part of a store together: what tsdb/sqlite, tsdb/postgres
// and tsdb/influx implement and tsdb/storetest checks (Run and RunSpend). Implementations are safe for
// concurrent use.
type Store interface {
	OperationWriter
	OperationReader
	Aggregator
	SessionStore
	SpendStore
	Pinger

	// Close releases the store. Writes that returned nil stay durable.
	Close() error
}
