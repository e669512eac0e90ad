package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/internal/sqlq"
)

// opColumns are the columns of tool_operations in the order every query
// reads and writes them (see opRow).
var opColumns = []string{"id", "session_id", "tool_name", "operation_mode", "parameters", "file_path",
	"tokens_original", "tokens_actual", "tokens_prevented", "response_time_ms", "tool_id", "created_at", "cache_hit"}

var opColumnList = strings.Join(opColumns, ", ")

// insertNewIDsSQL stores the ids of a batch none of which is stored yet;
// one that is fails it with a unique violation.
const insertNewIDsSQL = `INSERT INTO operation_ids (id) SELECT unnest($1::uuid[])`

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
var rollupSumsSet = sqlq.RollupSumsSet("r.")

var (
	upsertHourlySQL = upsertRollupSQL("op_rollup_hourly", "hour")
	upsertDailySQL  = upsertRollupSQL("op_rollup_daily", "day")
)

// upsertSessionDailySQL adds a batch's sums per (day, session) to
// op_rollup_session_daily.
var upsertSessionDailySQL = `INSERT INTO op_rollup_session_daily AS r
	(day, session_id, count, tokens_original, tokens_actual, tokens_prevented, response_time_sum, cache_lookups, cache_hits)
SELECT * FROM unnest($1::timestamptz[], $2::uuid[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::float8[],
	$8::bigint[], $9::bigint[])
ON CONFLICT (day, session_id) DO UPDATE SET` + rollupSumsSet

// upsertFileDailySQL adds a batch's sums per (day, file path) to
// op_rollup_file_daily, whose rows are keyed by the path's SHA-256.
var upsertFileDailySQL = `INSERT INTO op_rollup_file_daily AS r
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
var upsertSessionsSQL = `INSERT INTO tool_sessions AS s
	(session_id, tool_id, started_at, last_activity, total_operations, tokens_saved, total_compressions, total_embeddings, implicit)
SELECT u.*, true FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[],
	$5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[]) AS u
ON CONFLICT (session_id) DO UPDATE SET
	started_at         = CASE WHEN s.implicit AND excluded.started_at < s.started_at THEN excluded.started_at ELSE s.started_at END,
	tool_id            = CASE WHEN s.implicit AND excluded.started_at < s.started_at THEN excluded.tool_id ELSE s.tool_id END,
	last_activity      = greatest(s.last_activity, excluded.last_activity),
	total_operations   = s.total_operations + excluded.total_operations,
	tokens_saved       = ` + sqlq.AddSat("s.tokens_saved", "excluded.tokens_saved") + `,
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
		sa.saved = tsdb.AddSat(sa.saved, op.TokensPrevented)
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

// copyMin is the smallest batch whose operations storeRows copies in
// (COPY takes round trips of its own); a smaller one is inserted in the
// round trip of the rollups.
const copyMin = 32

// insertOpsSQL inserts operations into table (tool_operations or
// pending_operations), given as opArrays answers them: one array per
// column, so that a statement of any size is one prepared statement with
// thirteen parameters, each encoded whole, where a VALUES list takes
// thirteen per operation.
func insertOpsSQL(table string) string {
	return "INSERT INTO " + table + " (" + opColumnList + `)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
	$7::bigint[], $8::bigint[], $9::bigint[], $10::float8[], $11::text[], $12::timestamptz[], $13::bool[])`
}

var (
	insertOpsSQLTable   = insertOpsSQL("tool_operations")
	insertOpsSQLPending = insertOpsSQL("pending_operations")
)

// opArrays answers the arguments of insertOpsSQL: ops' columns, in
// opColumns order.
func opArrays(ops []tsdb.Operation) []any {
	n := len(ops)
	var (
		ids, sessions                 = make([][16]byte, n), make([][16]byte, n)
		tools, modes, params, toolIDs = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		files                         = make([]*string, n)
		orig, actual, prevented       = make([]int64, n), make([]int64, n), make([]int64, n)
		rt                            = make([]float64, n)
		at                            = make([]time.Time, n)
		hits                          = make([]*bool, n)
	)
	for i := range ops {
		op := &ops[i]
		ids[i], sessions[i], tools[i], modes[i] = op.ID, op.SessionID, op.ToolName, op.OperationMode
		params[i] = opParams(op)
		files[i], toolIDs[i], hits[i] = op.FilePath, op.ToolID, op.CacheHit
		orig[i], actual[i], prevented[i], rt[i], at[i] = op.TokensOriginal, op.TokensActual, op.TokensPrevented, op.ResponseTimeMs, op.CreatedAt.UTC()
	}
	return []any{ids, sessions, tools, modes, params, files, orig, actual, prevented, rt, toolIDs, at, hits}
}

// opRow fills row with op's values in opColumns order, as pgx's COPY
// encodes them fastest (ids as arrays of 16 bytes; see uuidArray).
func opRow(row []any, op *tsdb.Operation) {
	row[0], row[1], row[2], row[3], row[4], row[5] = [16]byte(op.ID), [16]byte(op.SessionID), op.ToolName, op.OperationMode, opParams(op), op.FilePath
	row[6], row[7], row[8], row[9] = op.TokensOriginal, op.TokensActual, op.TokensPrevented, op.ResponseTimeMs
	row[10], row[11], row[12] = op.ToolID, op.CreatedAt.UTC(), op.CacheHit
}

// opParams answers op's parameters as stored: "{}" when it has none.
func opParams(op *tsdb.Operation) string {
	if len(op.Parameters) == 0 {
		return "{}"
	}
	return string(op.Parameters)
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
	months := opMonths(ops)
	return s.wrap("write operations", s.retried(func() error {
		if err := s.ensureMonths(ctx, months); err != nil {
			return fmt.Errorf("create partitions: %w", err)
		}
		return s.writeOnce(ctx, ops)
	}))
}

// opMonths answers the months (first instants, UTC) of the operations'
// created_at.
func opMonths(ops []tsdb.Operation) []time.Time {
	var months []time.Time
	for i := range ops {
		if m := monthStart(ops[i].CreatedAt); !slices.ContainsFunc(months, m.Equal) {
			months = append(months, m)
		}
	}
	return months
}

// retried runs write, a transaction that stores operations, up to
// writeAttempts times while PostgreSQL aborts it to break a deadlock or a
// serialization conflict, or because it lacks a month's partition that
// this process knew: retention (of any replica) dropped it, and an
// operation sent that late needs it again, so the known months are
// forgotten for write's ensureMonths to create it.
func (s *Store) retried(write func() error) error {
	for attempt := 1; ; attempt++ {
		err := write()
		var pgErr *pgconn.PgError
		if err == nil || attempt == writeAttempts || !errors.As(err, &pgErr) {
			return err
		}
		switch pgErr.Code {
		case codeNoPartition:
			s.months.Clear()
		case "40P01", "40001":
		default:
			return err
		}
		s.logger.Warn("write retried", "attempt", attempt, "error", err)
	}
}

func (s *Store) writeOnce(ctx context.Context, ops []tsdb.Operation) error {
	// Within ops, the second copy of an id is a duplicate.
	seen := make(map[uuid.UUID]struct{}, len(ops))
	ids := make([][16]byte, 0, len(ops))
	for i := range ops {
		_, dup := seen[ops[i].ID]
		ops[i].Duplicate = dup
		if !dup {
			seen[ops[i].ID] = struct{}{}
			ids = append(ids, ops[i].ID)
		}
	}
	// Claimed in id order, so two batches sharing ids cannot deadlock.
	slices.SortFunc(ids, func(a, b [16]byte) int { return bytes.Compare(a[:], b[:]) })

	err := s.writeNew(ctx, ops, ids)
	if !isIDConflict(err) {
		return err
	}
	// Some id is stored already (a retry): claim them, learning which.
	return s.writeClaimed(ctx, ops, ids)
}

// writeNew stores ops on the guess that none of ids is stored yet (the
// common case, and the cheapest: the ids are inserted plainly, not claimed
// with ON CONFLICT). When one is, the insert fails with a unique violation
// (see isIDConflict) before any operation is copied, and nothing is
// stored; one claimed concurrently makes the insert wait for that
// transaction's outcome. A batch of stageMax operations or fewer is staged
// (see stage), in one round trip: its ids and operations go as one
// pipelined statement batch without BEGIN or COMMIT, which PostgreSQL runs
// as one implicit transaction, committed (and flushed, with
// synchronous_commit on) at the batch's end or rolled back whole at its
// first error.
func (s *Store) writeNew(ctx context.Context, ops []tsdb.Operation, ids [][16]byte) error {
	store := ops
	if len(ids) < len(ops) {
		store = slices.DeleteFunc(slices.Clone(ops), func(op tsdb.Operation) bool { return op.Duplicate })
	}
	if len(store) <= stageMax {
		return s.stage(ctx, store, ids)
	}
	var b pgx.Batch

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit this is a no-op
	if _, err := tx.Exec(ctx, insertNewIDsSQL, ids); err != nil {
		return fmt.Errorf("store ids: %w", err)
	}
	return s.storeRows(ctx, tx, store, &b, s.announce)
}

// isIDConflict reports whether err is writeNew's unique violation on
// operation_ids.
func isIDConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.TableName == "operation_ids"
}

// writeClaimed stores the operations of ops whose ids it claims (ids,
// sorted) and marks the others Duplicate.
func (s *Store) writeClaimed(ctx context.Context, ops []tsdb.Operation, ids [][16]byte) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit this is a no-op

	rows, err := tx.Query(ctx, insertIDsSQL, ids)
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
	return s.storeRows(ctx, tx, store, &pgx.Batch{}, s.announce)
}

// storeRows stores ops in tool_operations (copied, or queued in b when
// fewer than copyMin), adds them to the rollups and sessions in the round
// trip of b (what the caller queued), announces them when announce, and
// commits tx.
func (s *Store) storeRows(ctx context.Context, tx pgx.Tx, ops []tsdb.Operation, b *pgx.Batch, announce bool) error {
	copied := len(ops) >= copyMin
	if copied {
		row := make([]any, len(opColumns)) // COPY encodes a row before asking for the next
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"tool_operations"}, opColumns,
			pgx.CopyFromSlice(len(ops), func(i int) ([]any, error) { opRow(row, &ops[i]); return row, nil })); err != nil {
			return err
		}
	}
	s.queueRows(b, ops, !copied, announce)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// queueRows queues in b the insert of ops into tool_operations (when
// insert), their rollups, their sessions and, when announce, their
// notification.
func (s *Store) queueRows(b *pgx.Batch, ops []tsdb.Operation, insert, announce bool) {
	if insert {
		b.Queue(insertOpsSQLTable, opArrays(ops)...)
	}
	b.Queue(upsertHourlySQL, rollupArgs(ops, tsdb.MicrosPerHour, sqlq.ByTool)...)
	b.Queue(upsertDailySQL, rollupArgs(ops, tsdb.MicrosPerDay, sqlq.ByTool)...)
	b.Queue(upsertFileDailySQL, rollupArgs(ops, tsdb.MicrosPerDay, sqlq.ByFile)...)
	b.Queue(upsertSessionDailySQL, rollupArgs(ops, tsdb.MicrosPerDay, sqlq.BySession)...)
	b.Queue(upsertSessionsSQL, sessionArgs(ops)...)
	if announce {
		b.Queue(announceSQL, announcePayloads(s.origin, ops)) // delivered on commit only
	}
}

// QueryOperations answers one page of the operations matching f, newest
// first (ties by id, descending), and the count of all matches, both from
// one snapshot.
func (s *Store) QueryOperations(ctx context.Context, f tsdb.OperationFilter) (tsdb.OperationPage, error) {
	if f.Limit <= 0 {
		return tsdb.OperationPage{}, fmt.Errorf("query operations: limit %d must be positive", f.Limit)
	}
	if f.Offset < 0 {
		return tsdb.OperationPage{}, fmt.Errorf("query operations: offset %d must not be negative", f.Offset)
	}
	ctx, cancel, err := s.startRead(ctx)
	defer cancel()
	if err != nil {
		return tsdb.OperationPage{}, err
	}
	var page tsdb.OperationPage
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		horizon, err := sqlq.ReadHorizon(ctx, queryIn(tx))
		if err != nil {
			return err
		}
		s.horizon.Saw(horizon)
		if page.Total, err = countOperations(ctx, tx, f, horizon); err != nil {
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
// its index (a session holds few), any other filter from the rollups and,
// before the raw horizon, the raw rows that remain (see
// sqlq.Dialect.CountOperations).
func countOperations(ctx context.Context, tx pgx.Tx, f tsdb.OperationFilter, horizon int64) (int64, error) {
	if f.SessionID == nil {
		return dialect.CountOperations(ctx, queryIn(tx), f, horizon)
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
// (all tools when empty), or the start of its hour when that lies before the
// raw horizon (see sqlq.Dialect.FirstOperationTime), from the time indexes
// of the partitions and rollups.
func (s *Store) FirstOperationTime(ctx context.Context, toolID string) (time.Time, bool, error) {
	ctx, cancel, err := s.startRead(ctx)
	defer cancel()
	if err != nil {
		return time.Time{}, false, err
	}
	first, ok, err := dialect.FirstOperationTime(ctx, queryIn(s.pool), &s.horizon, toolID)
	return first, ok, s.wrap("first operation time", err)
}
