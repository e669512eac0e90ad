package sqlite

import (
	"context"
	"database/sql"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/internal/sqlq"
)

// dialect is how this store writes the statements it shares with the
// PostgreSQL store: times as unix microseconds, operation ids as 16 bytes,
// session ids as text, and an hourly rollup of all keys together.
var dialect = sqlq.Dialect{
	Param:     func(int) string { return "?" },
	Time:      func(t time.Time) any { return t.UnixMicro() },
	ID:        func(id uuid.UUID) any { return id[:] },
	SessionID: func(id uuid.UUID) any { return id.String() },
	BucketStart: func(q *sqlq.Query, col string, width int64) string {
		// floor(t / width) * width, right for times before 1970 too
		w := strconv.FormatInt(width, 10)
		return col + " - ((" + col + " % " + w + ") + " + w + ") % " + w
	},
	Micros:     func(expr string) string { return expr },
	UUIDText:   uuidText,
	SessionKey: uuidText, // tool_sessions keeps text ids
	Sum:        func(expr string) string { return "total(" + expr + ")" },
	Int: func(expr string) string {
		return "CAST(min(max(" + expr + ", -9223372036854775808.0), 9223372036854775807.0) AS INTEGER)"
	},
	HourlyAll:      "op_rollup_hourly_all",
	LowCardinality: "+",
	Greatest:       "max",
	FileDaySeek:    true,
}

// uuidText writes a 16-byte id as the lower-case hyphenated text of the
// UUID.
func uuidText(expr string) string {
	h := "hex(" + expr + ")"
	part := func(from, n int) string {
		return "substr(" + h + ", " + strconv.Itoa(from) + ", " + strconv.Itoa(n) + ")"
	}
	return "lower(" + part(1, 8) + " || '-' || " + part(9, 4) + " || '-' || " + part(13, 4) + " || '-' || " +
		part(17, 4) + " || '-' || " + part(21, 12) + ")"
}

// Aggregate answers the groups of q (see sqlq.Dialect.GroupOperations).
func (s *Store) Aggregate(ctx context.Context, q tsdb.AggregateQuery) (tsdb.AggregateResult, error) {
	if err := s.startRead(ctx); err != nil {
		return tsdb.AggregateResult{}, err
	}
	out, err := dialect.GroupOperations(ctx, queryIn(s.reader), &s.horizon, q)
	return out, s.wrap("aggregate", err)
}

// Breakdown answers the totals per (tool name, mode) pair of the operations
// in w (see sqlq.Dialect.Breakdown).
func (s *Store) Breakdown(ctx context.Context, w tsdb.Window) ([]tsdb.ModeTotals, error) {
	if err := s.startRead(ctx); err != nil {
		return nil, err
	}
	out, err := dialect.Breakdown(ctx, queryIn(s.reader), &s.horizon, w)
	return out, s.wrap("breakdown", err)
}

// Trend answers the totals per hourly or daily UTC bucket of the operations
// in w, oldest first (see sqlq.Dialect.Trend).
func (s *Store) Trend(ctx context.Context, w tsdb.Window, step tsdb.Step) ([]tsdb.Bucket, error) {
	if err := s.startRead(ctx); err != nil {
		return nil, err
	}
	out, err := dialect.Trend(ctx, queryIn(s.reader), &s.horizon, w, step)
	return out, s.wrap("trend", err)
}

// queryIn runs sqlq's queries in db, a connection pool or a transaction.
func queryIn(db interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}) sqlq.QueryFunc {
	return func(ctx context.Context, q string, args ...any) (sqlq.Rows, func(), error) {
		rows, err := db.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, nil, err
		}
		return rows, func() { rows.Close() }, nil
	}
}
