package sqlite

import (
	"context"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/internal/sqlq"
)

var _ tsdb.SpendStore = (*Store)(nil)

// spendRollupSQL are the upserts of the hourly and daily spend rollups.
var spendRollupSQL = sqlq.SpendUpserts("VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")

// WriteSpend stores points and their hourly and daily rollups in one
// transaction on the writer connection: durable when it returns nil, none
// of it visible when it fails. A point whose id is stored already is marked
// Duplicate and left out.
func (s *Store) WriteSpend(ctx context.Context, points []tsdb.SpendPoint) error {
	if s.closed.Load() {
		return errClosed
	}
	first := sqlq.FirstCopies(points)
	if len(first) == 0 {
		return nil
	}
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap("begin write", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op
	fresh := make([]tsdb.SpendPoint, 0, len(first))
	for _, i := range first {
		p := &points[i]
		var session any
		if p.SessionID != nil {
			session = p.SessionID[:]
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO spend_points (id, tool_id, model, session_id, at, cost_usd,
	tokens_input, tokens_output, tokens_cache_read, tokens_cache_creation)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			p.ID[:], p.ToolID, p.Model, session, p.Time.UnixMicro(), p.CostUSD,
			p.Tokens.Input, p.Tokens.Output, p.Tokens.CacheRead, p.Tokens.CacheCreation)
		if err != nil {
			return s.wrap("insert spend", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return s.wrap("insert spend", err)
		} else if n == 0 {
			p.Duplicate = true // a retried export
			continue
		}
		fresh = append(fresh, *p)
	}
	for _, r := range spendRollupSQL {
		for _, row := range sqlq.SpendRollups(fresh, r.Width) {
			if _, err := tx.ExecContext(ctx, r.SQL, row.Start.UnixMicro(), row.ToolID, row.Model, row.Points, row.CostUSD,
				row.Tokens.Input, row.Tokens.Output, row.Tokens.CacheRead, row.Tokens.CacheCreation); err != nil {
				return s.wrap("upsert spend rollup", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return s.wrap("commit write", err)
	}
	s.committed()
	return nil
}

// SpendBreakdown answers the spend per (tool id, model) of the points in w.
func (s *Store) SpendBreakdown(ctx context.Context, w tsdb.Window) ([]tsdb.SpendTotals, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	out, err := dialect.SpendBreakdown(ctx, queryIn(s.reader), &s.horizon, w)
	return out, s.wrap("spend breakdown", err)
}

// SpendTrend answers the spend per hourly or daily bucket of the points in
// w, oldest first.
func (s *Store) SpendTrend(ctx context.Context, w tsdb.Window, step tsdb.Step) ([]tsdb.SpendBucket, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	out, err := dialect.SpendTrend(ctx, queryIn(s.reader), &s.horizon, w, step)
	return out, s.wrap("spend trend", err)
}
