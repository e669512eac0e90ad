package postgres

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/internal/sqlq"
)

var _ tsdb.SpendStore = (*Store)(nil)

// insertSpendSQL stores a batch's points and answers the ids it stored:
// the others were stored before (a retried export, by any replica).
const insertSpendSQL = `INSERT INTO spend_points (id, tool_id, model, session_id, at, cost_usd,
	tokens_input, tokens_output, tokens_cache_read, tokens_cache_creation)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::timestamptz[], $6::float8[],
	$7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[])
ON CONFLICT (id) DO NOTHING RETURNING id`

// spendRollupSQL are the upserts of the hourly and daily spend rollups.
var spendRollupSQL = sqlq.SpendUpserts("SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::bigint[], $5::float8[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])")

// WriteSpend stores points and their hourly and daily rollups in one
// transaction: committed when it returns nil, none of it visible when it
// fails. A point whose id is stored already (by this replica or another) is
// marked Duplicate and left out.
func (s *Store) WriteSpend(ctx context.Context, points []tsdb.SpendPoint) error {
	if s.closed.Load() {
		return errClosed
	}
	first := sqlq.FirstCopies(points)
	if len(first) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		n := len(first)
		var (
			ids, sessions   = make([][16]byte, n), make([]*[16]byte, n)
			toolIDs, models = make([]string, n), make([]string, n)
			ats             = make([]time.Time, n)
			costs           = make([]float64, n)
			in, out, cr, cc = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		)
		for j, i := range first {
			p := &points[i]
			ids[j], toolIDs[j], models[j], ats[j], costs[j] = p.ID, p.ToolID, p.Model, p.Time.UTC(), p.CostUSD
			if p.SessionID != nil {
				sid := [16]byte(*p.SessionID)
				sessions[j] = &sid
			}
			in[j], out[j], cr[j], cc[j] = p.Tokens.Input, p.Tokens.Output, p.Tokens.CacheRead, p.Tokens.CacheCreation
		}
		rows, err := tx.Query(ctx, insertSpendSQL, ids, toolIDs, models, sessions, ats, costs, in, out, cr, cc)
		if err != nil {
			return err
		}
		stored, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return err
		}
		isNew := make(map[uuid.UUID]bool, len(stored))
		for _, id := range stored {
			isNew[id] = true
		}
		fresh := make([]tsdb.SpendPoint, 0, len(stored))
		for _, i := range first {
			points[i].Duplicate = !isNew[points[i].ID]
			if !points[i].Duplicate {
				fresh = append(fresh, points[i])
			}
		}
		var b pgx.Batch
		for _, r := range spendRollupSQL {
			rollups := sqlq.SpendRollups(fresh, r.Width)
			if len(rollups) == 0 {
				continue
			}
			m := len(rollups)
			starts, tools, mods := make([]time.Time, m), make([]string, m), make([]string, m)
			pts, usd := make([]int64, m), make([]float64, m)
			ri, ro, rr, rc := make([]int64, m), make([]int64, m), make([]int64, m), make([]int64, m)
			for k, row := range rollups {
				starts[k], tools[k], mods[k], pts[k], usd[k] = row.Start, row.ToolID, row.Model, row.Points, row.CostUSD
				ri[k], ro[k], rr[k], rc[k] = row.Tokens.Input, row.Tokens.Output, row.Tokens.CacheRead, row.Tokens.CacheCreation
			}
			b.Queue(r.SQL, starts, tools, mods, pts, usd, ri, ro, rr, rc)
		}
		return tx.SendBatch(ctx, &b).Close()
	})
	return s.wrap("write spend", err)
}

// SpendBreakdown answers the spend per (tool id, model) of the points in w.
func (s *Store) SpendBreakdown(ctx context.Context, w tsdb.Window) ([]tsdb.SpendTotals, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	out, err := dialect.SpendBreakdown(ctx, queryIn(s.pool), &s.horizon, w)
	return out, s.wrap("spend breakdown", err)
}

// SpendTrend answers the spend per hourly or daily bucket of the points in
// w, oldest first.
func (s *Store) SpendTrend(ctx context.Context, w tsdb.Window, step tsdb.Step) ([]tsdb.SpendBucket, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	out, err := dialect.SpendTrend(ctx, queryIn(s.pool), &s.horizon, w, step)
	return out, s.wrap("spend trend", err)
}
