package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/internal/sqlq"
)

const opColumnList = `id, session_id, tool_name, operation_mode, parameters, file_path,
	tokens_original, tokens_actual, tokens_prevented, response_time_ms, tool_id, created_at, cache_hit`

// insertOpsSQL stores a batch of operations in one statement: one array
// per column, unnested into rows.
const insertOpsSQL = `INSERT INTO tool_operations (` + opColumnList + `)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
	$7::bigint[], $8::bigint[], $9::bigint[], $10::float8[], $11::text[], $12::timestamptz[], $13::bool[])`

// insertIDsSQL claims the ids of a batch; the ids it answers are new, the
// others were stored before (a retry). A concurrent transaction claiming
// the same id makes this one wait for its outcome.
const insertIDsSQL = `INSERT INTO operation_ids (id) SELECT unnest($1::uuid[])
ON CONFLICT (id) DO NOTHING RETURNING id`

// upsertRollupSQL adds a batch's sums per key to a rollup table
// (op_rollup_hourly with column hour, or op_rollup_daily with column day).
func upsertRollupSQL(table, col string) string {
	return `INSERT INTO ` + table + ` AS r
	(` + col + `, tool_id, tool_name, operation_mode, count, tokens_original, tokens_actual, tokens_prevented, response_time_sum,
	cache_lookups, cache_hits)
SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::float8[],
	$10::bigint[], $11::bigint[])
ON CONFLICT (` + col + `, tool_id, tool_name, operation_mode) DO UPDATE SET` + rollupSumsSet
}

// rollupSumsSet adds the sums of a batch to those of a rollup row r.
const rollupSumsSet = `
	count             = r.count + excluded.count,
	tokens_original   = r.tokens_original + excluded.tokens_original,
	tokens_actual     = r.tokens_actual + excluded.tokens_actual,
	tokens_prevented  = r.tokens_prevented + excluded.tokens_prevented,
	response_time_sum = r.response_time_sum + excluded.response_time_sum,
	cache_lookups     = r.cache_lookups + excluded.cache_lookups,
	cache_hits        = r.cache_hits + excluded.cache_hits`

var (
	upsertHourlySQL = upsertRollupSQL("op_rollup_hourly", "hour")
	upsertDailySQL  = upsertRollupSQL("op_rollup_daily", "day")
)

// upsertSessionDailySQL adds a batch's sums per (day, session) to
// op_rollup_session_daily.
const upsertSessionDailySQL = `INSERT INTO op_rollup_session_daily AS r
	(day, session_id, count, tokens_original, tokens_actual, tokens_prevented, response_time_sum, cache_lookups, cache_hits)
SELECT * FROM unnest($1::timestamptz[], $2::uuid[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::float8[],
	$8::bigint[], $9::bigint[])
ON CONFLICT (day, session_id) DO UPDATE SET` + rollupSumsSet

// upsertFileDailySQL adds a batch's sums per (day, file path) to
// op_rollup_file_daily, whose rows are keyed by the path's SHA-256.
const upsertFileDailySQL = `INSERT INTO op_rollup_file_daily AS r
	(day, file_null, file_hash, file_path, count, tokens_original, tokens_actual, tokens_prevented, response_time_sum,
	cache_lookups, cache_hits)
SELECT u.day, u.file_null, sha256(convert_to(u.file_path, 'UTF8')), u.file_path, u.count, u.tokens_original, u.tokens_actual,
	u.tokens_prevented, u.response_time_sum, u.cache_lookups, u.cache_hits
FROM unnest($1::timestamptz[], $2::smallint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::float8[],
	$9::bigint[], $10::bigint[])
	AS u(day, file_null, file_path, count, tokens_original, tokens_actual, tokens_prevented, response_time_sum, cache_lookups, cache_hits)
ON CONFLICT (day, file_null, file_hash) DO UPDATE SET` + rollupSumsSet

// upsertSessionsSQL creates the missing sessions the way tsdb.Store
// documents (tool_id of the first operation, started and last active at it,
// no process id) and moves last_activity forward; ended_at is never
// touched, so an ended session stays ended. The running totals grow either
// way.
const upsertSessionsSQL = `INSERT INTO tool_sessions AS s
	(session_id, tool_id, started_at, last_activity, total_operations, tokens_saved, total_compressions, total_embeddings, implicit)
SELECT u.*, true FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[],
	$5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[]) AS u
ON CONFLICT (session_id) DO UPDATE SET
	started_at         = CASE WHEN s.implicit AND excluded.started_at < s.started_at THEN excluded.started_at ELSE s.started_at END,
	tool_id            = CASE WHEN s.implicit AND excluded.started_at < s.started_at THEN excluded.tool_id ELSE s.tool_id END,
	last_activity      = greatest(s.last_activity, excluded.last_activity),
	total_operations   = s.total_operations + excluded.total_operations,
	tokens_saved       = s.tokens_saved + excluded.tokens_saved,
	total_compressions = s.total_compressions + excluded.total_compressions,
	total_embeddings   = s.total_embeddings + excluded.total_embeddings`

// rollupArgs sums a batch per bucket of width and key and answers the
// upsert's arrays (the bucket, the key's columns, then the sums), in key
// order: concurrent writers then lock shared rollup rows in one order and
// cannot deadlock.
func rollupArgs(ops []tsdb.Operation, width int64, key sqlq.RollupKey) []any {
	rows := sqlq.OpRollups(ops, width, key)
	n := len(rows)
	var (
		starts                         = make([]time.Time, n)
		toolIDs, toolNames, modes      = make([]string, n), make([]string, n), make([]string, n)
		fileNull, filePaths            = make([]int16, n), make([]string, n)
		sessionIDs                     = make([][16]byte, n)
		counts, origs, acts, prevented = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		resp                           = make([]float64, n)
		lookups, hits                  = make([]int64, n), make([]int64, n)
	)
	for i, r := range rows {
		starts[i], toolIDs[i], toolNames[i], modes[i] = fromMicros(r.Start), r.ToolID, r.ToolName, r.Mode
		if r.FileNull {
			fileNull[i] = 1
		}
		filePaths[i], sessionIDs[i] = r.FilePath, r.SessionID
		counts[i], origs[i], acts[i], prevented[i], resp[i] = r.Count, r.TokensOriginal, r.TokensActual, r.TokensPrevented, r.ResponseTimeSumMs
		lookups[i], hits[i] = r.Cache.Lookups, r.Cache.Hits
	}
	sums := []any{counts, origs, acts, prevented, resp, lookups, hits}
	switch key {
	case sqlq.ByFile:
		return append([]any{starts, fileNull, filePaths}, sums...)
	case sqlq.BySession:
		return append([]any{starts, sessionIDs}, sums...)
	}
	return append([]any{starts, toolIDs, toolNames, modes}, sums...)
}

type sessionAgg struct {
	toolID      string
	first, last time.Time
	ops, saved  int64
	reads       int64
	searches    int64
}

// sessionArgs sums a batch per session and answers the upsert's arrays, in
// id order (the lock order).
func sessionArgs(ops []tsdb.Operation) []any {
	sums := map[uuid.UUID]*sessionAgg{}
	for i := range ops {
		op := &ops[i]
		sa := sums[op.SessionID]
		if sa == nil {
			sa = &sessionAgg{toolID: op.ToolID, first: op.CreatedAt, last: op.CreatedAt}
			sums[op.SessionID] = sa
		}
		if op.CreatedAt.Before(sa.first) {
			sa.first, sa.toolID = op.CreatedAt, op.ToolID
		}
		if op.CreatedAt.After(sa.last) {
			sa.last = op.CreatedAt
		}
		sa.ops++
		sa.saved += op.TokensPrevented
		switch op.ToolName {
		case api.ToolRead:
			sa.reads++
		case api.ToolSearch:
			sa.searches++
		}
	}
	ids := make([]uuid.UUID, 0, len(sums))
	for id := range sums {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	n := len(ids)
	var (
		toolIDs                        = make([]string, n)
		firsts, lasts                  = make([]time.Time, n), make([]time.Time, n)
		counts, saved, reads, searches = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	)
	for i, id := range ids {
		sa := sums[id]
		toolIDs[i], firsts[i], lasts[i] = sa.toolID, sa.first, sa.last
		counts[i], saved[i], reads[i], searches[i] = sa.ops, sa.saved, sa.reads, sa.searches
	}
	return []any{uuidArray(ids), toolIDs, firsts, lasts, counts, saved, reads, searches}
}

func opArgs(ops []tsdb.Operation) []any {
	n := len(ops)
	var (
		ids, sessions          = make([][16]byte, n), make([][16]byte, n)
		names, modes, params   = make([]string, n), make([]string, n), make([]string, n)
		files                  = make([]*string, n)
		origs, acts, prevented = make([]int64, n), make([]int64, n), make([]int64, n)
		resp                   = make([]float64, n)
		toolIDs                = make([]string, n)
		created                = make([]time.Time, n)
		cacheHits              = make([]*bool, n)
	)
	for i := range ops {
		op := &ops[i]
		ids[i], sessions[i], names[i], modes[i] = op.ID, op.SessionID, op.ToolName, op.OperationMode
		params[i] = string(op.Parameters)
		if params[i] == "" {
			params[i] = "{}"
		}
		files[i] = op.FilePath
		origs[i], acts[i], prevented[i], resp[i] = op.TokensOriginal, op.TokensActual, op.TokensPrevented, op.ResponseTimeMs
		toolIDs[i], created[i], cacheHits[i] = op.ToolID, op.CreatedAt.UTC(), op.CacheHit
	}
	return []any{ids, sessions, names, modes, params, files, origs, acts, prevented, resp, toolIDs, created, cacheHits}
}

// uuidArray is ids as pgx encodes a uuid[] argument fastest: as arrays of
// 16 bytes, copied whole, where a []uuid.UUID goes element by element
// through database/sql's Valuer (most of a batch's client CPU).
func uuidArray(ids []uuid.UUID) [][16]byte {
	out := make([][16]byte, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

// writeAttempts bounds how often WriteOperations runs its transaction when
// PostgreSQL aborts it to break a deadlock or a serialization conflict.
const writeAttempts = 3

// WriteOperations stores ops, their ids, hourly and daily rollups and their
// sessions in one transaction: all of it is committed when it returns nil,
// and none of it is visible when it fails. An operation whose id is stored
// already (by this replica or another), or carried by an earlier operation
// of ops, is marked Duplicate and not stored again.
func (s *Store) WriteOperations(ctx context.Context, ops []tsdb.Operation) error {
	if s.closed.Load() {
		return errClosed
	}
	if len(ops) == 0 {
		return nil
	}
	var months []time.Time
	for i := range ops {
		if m := monthStart(ops[i].CreatedAt); !slices.ContainsFunc(months, m.Equal) {
			months = append(months, m)
		}
	}
	if err := s.ensureMonths(ctx, months); err != nil {
		return s.wrap("create partitions", err)
	}
	var err error
	for attempt := 1; ; attempt++ {
		err = s.writeOnce(ctx, ops)
		var pgErr *pgconn.PgError
		if err == nil || attempt == writeAttempts || !errors.As(err, &pgErr) ||
			(pgErr.Code != "40P01" && pgErr.Code != "40001") {
			break
		}
		s.logger.Warn("write retried", "attempt", attempt, "error", err)
	}
	return s.wrap("write operations", err)
}

func (s *Store) writeOnce(ctx context.Context, ops []tsdb.Operation) error {
	// Within ops, the second copy of an id is a duplicate.
	seen := make(map[uuid.UUID]struct{}, len(ops))
	ids := make([]uuid.UUID, 0, len(ops))
	for i := range ops {
		_, dup := seen[ops[i].ID]
		ops[i].Duplicate = dup
		if !dup {
			seen[ops[i].ID] = struct{}{}
			ids = append(ids, ops[i].ID)
		}
	}
	// Claimed in id order, so two batches sharing ids cannot deadlock.
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit this is a no-op

	rows, err := tx.Query(ctx, insertIDsSQL, uuidArray(ids))
	if err != nil {
		return fmt.Errorf("claim ids: %w", err)
	}
	fresh := make(map[uuid.UUID]struct{}, len(ids))
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return fmt.Errorf("claim ids: %w", err)
		}
		fresh[id] = struct{}{}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("claim ids: %w", err)
	}
	store := ops
	if len(fresh) < len(ops) {
		store = make([]tsdb.Operation, 0, len(fresh))
		for i := range ops {
			if ops[i].Duplicate {
				continue
			}
			if _, ok := fresh[ops[i].ID]; !ok {
				ops[i].Duplicate = true
				continue
			}
			store = append(store, ops[i])
		}
	}
	if len(store) == 0 {
		return tx.Commit(ctx) // all were retries
	}

	// The rest goes in one round trip.
	var b pgx.Batch
	b.Queue(insertOpsSQL, opArgs(store)...)
	b.Queue(upsertHourlySQL, rollupArgs(store, tsdb.MicrosPerHour, sqlq.ByTool)...)
	b.Queue(upsertDailySQL, rollupArgs(store, tsdb.MicrosPerDay, sqlq.ByTool)...)
	b.Queue(upsertFileDailySQL, rollupArgs(store, tsdb.MicrosPerDay, sqlq.ByFile)...)
	b.Queue(upsertSessionDailySQL, rollupArgs(store, tsdb.MicrosPerDay, sqlq.BySession)...)
	b.Queue(upsertSessionsSQL, sessionArgs(store)...)
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// QueryOperations answers one page of the operations matching f, newest
// first (ties by id, descending), and the count of all matches, both from
// one snapshot.
func (s *Store) QueryOperations(ctx context.Context, f tsdb.OperationFilter) (tsdb.OperationPage, error) {
	if s.closed.Load() {
		return tsdb.OperationPage{}, errClosed
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if f.Limit <= 0 {
		return tsdb.OperationPage{}, fmt.Errorf("query operations: limit %d must be positive", f.Limit)
	}
	if f.Offset < 0 {
		return tsdb.OperationPage{}, fmt.Errorf("query operations: offset %d must not be negative", f.Offset)
	}
	var page tsdb.OperationPage
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		if page.Total, err = countOperations(ctx, tx, f); err != nil {
			return fmt.Errorf("count: %w", err)
		}
		page.Operations = []tsdb.Operation{}
		if int64(f.Offset) >= page.Total {
			return nil
		}
		q := dialect.NewQuery()
		sql := "SELECT " + opColumnList + " FROM tool_operations" + q.OperationWhere(f, false) +
			" ORDER BY created_at DESC, id DESC LIMIT " + q.Arg(f.Limit) + " OFFSET " + q.Arg(f.Offset)
		rows, err := tx.Query(ctx, sql, q.Args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		page.Operations = make([]tsdb.Operation, 0, min(int64(f.Limit), page.Total-int64(f.Offset)))
		for rows.Next() {
			op, err := scanOperation(rows)
			if err != nil {
				return err
			}
			page.Operations = append(page.Operations, op)
		}
		return rows.Err()
	})
	if err != nil {
		return tsdb.OperationPage{}, s.wrap("query operations", err)
	}
	return page, nil
}

// countOperations answers how many operations match f: a session's through
// its index (a session holds few), any other filter from the rollups (see
// sqlq.Dialect.CountOperations).
func countOperations(ctx context.Context, tx pgx.Tx, f tsdb.OperationFilter) (int64, error) {
	if f.SessionID == nil {
		return dialect.CountOperations(ctx, queryIn(tx), f)
	}
	var n int64
	q := dialect.NewQuery()
	err := tx.QueryRow(ctx, "SELECT count(*) FROM tool_operations"+q.OperationWhere(f, false), q.Args...).Scan(&n)
	return n, err
}

func scanOperation(rows pgx.Rows) (tsdb.Operation, error) {
	var (
		op     tsdb.Operation
		params string
	)
	if err := rows.Scan(&op.ID, &op.SessionID, &op.ToolName, &op.OperationMode, &params, &op.FilePath,
		&op.TokensOriginal, &op.TokensActual, &op.TokensPrevented, &op.ResponseTimeMs,
		&op.ToolID, &op.CreatedAt, &op.CacheHit); err != nil {
		return op, err
	}
	op.Parameters = []byte(params)
	op.CreatedAt = op.CreatedAt.UTC()
	return op, nil
}

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// FirstOperationTime answers the created_at of the oldest operation of toolID
// (all tools when empty), from the time indexes of the partitions.
func (s *Store) FirstOperationTime(ctx context.Context, toolID string) (time.Time, bool, error) {
	if s.closed.Load() {
		return time.Time{}, false, errClosed
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	q, a := `SELECT min(created_at) FROM tool_operations`, []any(nil)
	if toolID != "" {
		q, a = q+` WHERE tool_id = $1`, []any{toolID}
	}
	var first *time.Time
	if err := s.pool.QueryRow(ctx, q, a...).Scan(&first); err != nil {
		return time.Time{}, false, s.wrap("first operation time", err)
	}
	if first == nil {
		return time.Time{}, false, nil
	}
	return first.UTC(), true, nil
}
