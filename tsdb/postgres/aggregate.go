package postgres

import (
	"context"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/internal/sqlq"
)

// dialect is how this store writes the statements it shares with the
// embedded store: times as timestamptz, ids as uuid, buckets by date_bin.
var dialect = sqlq.Dialect{
	Param:     func(n int) string { return "$" + strconv.Itoa(n) },
	Time:      func(t time.Time) any { return t.UTC() },
	ID:        func(id uuid.UUID) any { return id },
	SessionID: func(id uuid.UUID) any { return id },
	BucketStart: func(_ *sqlq.Query, col string, width int64) string {
		stride := "'1 hour'::interval"
		if width == tsdb.MicrosPerDay {
			stride = "'1 day'::interval"
		}
		return "date_bin(" + stride + ", " + col + ", 'epoch'::timestamptz)"
	},
	Micros: func(expr string) string { return "(extract(epoch FROM " + expr + ") * 1000000)::bigint" },
	Sum:    func(expr string) string { return "sum(" + expr + ")" },
	Int: func(expr string) string {
		return "least(greatest(" + expr + ", -9223372036854775808), 9223372036854775807)::bigint"
	},
	UUIDText:   func(expr string) string { return "(" + expr + ")::text" },
	SessionKey: func(expr string) string { return expr },
	// The database's collation may order text by a locale's rules.
	TextCollate: ` COLLATE "C"`,
	Greatest:    "greatest",
}

// Aggregate answers the groups of q (see sqlq.Dialect.GroupOperations).
func (s *Store) Aggregate(ctx context.Context, q tsdb.AggregateQuery) (tsdb.AggregateResult, error) {
	ctx, cancel, err := s.startRead(ctx)
	defer cancel()
	if err != nil {
		return tsdb.AggregateResult{}, err
	}
	out, err := dialect.GroupOperations(ctx, queryIn(s.pool), &s.horizon, q)
	return out, s.wrap("aggregate", err)
}

// Breakdown answers the totals per (tool name, mode) pair of the operations
// in w (see sqlq.Dialect.Breakdown).
func (s *Store) Breakdown(ctx context.Context, w tsdb.Window) ([]tsdb.ModeTotals, error) {
	ctx, cancel, err := s.startRead(ctx)
	defer cancel()
	if err != nil {
		return nil, err
	}
	out, err := dialect.Breakdown(ctx, queryIn(s.pool), &s.horizon, w)
	return out, s.wrap("breakdown", err)
}

// Trend answers the totals per hourly or daily UTC bucket of the operations
// in w, oldest first (see sqlq.Dialect.Trend).
func (s *Store) Trend(ctx context.Context, w tsdb.Window, step tsdb.Step) ([]tsdb.Bucket, error) {
	ctx, cancel, err := s.startRead(ctx)
	defer cancel()
	if err != nil {
		return nil, err
	}
	out, err := dialect.Trend(ctx, queryIn(s.pool), &s.horizon, w, step)
	return out, s.wrap("trend", err)
}

// queryIn runs sqlq's queries in db, the pool or a transaction.
func queryIn(db interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}) sqlq.QueryFunc {
	return func(ctx context.Context, q string, args ...any) (sqlq.Rows, func(), error) {
		rows, err := db.Query(ctx, q, args...)
		if err != nil {
			return nil, nil, err
		}
		return rows, rows.Close, nil
	}
}
