package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/internal/sqlq"
)

const (
	// insertChunk is how many operations one multi-row INSERT carries:
	// fewer statement executions per batch, well below SQLite's limit of
	// 32766 bound parameters (13 per row).
	insertChunk = 64
	opColumns   = 13
)

const opColumnList = `id, session_id, tool_name, operation_mode, parameters, file_path,
	tokens_original, tokens_actual, tokens_prevented, response_time_ms, tool_id, created_at, cache_hit`

// insertOpsSQL returns an INSERT of n operations. OR ROLLBACK: a
// constraint violation (a duplicate id) rolls back the whole transaction,
// which WriteOperations does on any error anyway; unlike the default (ABORT:
// undo this statement only) it needs no statement journal, a copy of every
// page a multi-row statement touches (about a tenth of the cost of a batch).
func insertOpsSQL(n int) string {
	return "INSERT OR ROLLBACK INTO tool_operations (" + opColumnList + ") VALUES " + valueRows(n, opColumns)
}

// stageOpsSQL returns the same INSERT into pending_operations.
func stageOpsSQL(n int) string {
	return "INSERT OR ROLLBACK INTO pending_operations (" + opColumnList + ") VALUES " + valueRows(n, opColumns)
}

// valueRows writes n rows of cols placeholders each, for a VALUES list.
func valueRows(n, cols int) string {
	row := "(?" + strings.Repeat(",?", cols-1) + ")"
	return row + strings.Repeat(","+row, n-1)
}

// chunked are the statements of one multi-row statement prepared for 1, 2,
// 4, ..., insertChunk rows: a batch goes in by the largest first, at most six
// short statements for a remainder, and nothing is parsed.
type chunked [7]*sql.Stmt

func (c *chunked) prepare(ctx context.Context, db *sql.DB, sqlFor func(n int) string) error {
	for k := range c {
		var err error
		if c[k], err = db.PrepareContext(ctx, sqlFor(1<<k)); err != nil {
			return err
		}
	}
	return nil
}

// writeTx is a write transaction with the context of the write, whose
// deadline ends it, and that context without its end, which the
// statements run under: the driver watches a context that can end with a
// goroutine of its own for every statement, and a commit of single
// operations runs about fifteen short ones. The deadline still ends the
// write between two statements (database/sql rolls the transaction back
// once ctx ends), and exec then answers ctx's error, as a statement given
// ctx would have.
type writeTx struct {
	tx           *sql.Tx
	ctx, stmtCtx context.Context
}

func newWriteTx(ctx context.Context, tx *sql.Tx) writeTx {
	return writeTx{tx: tx, ctx: ctx, stmtCtx: context.WithoutCancel(ctx)}
}

// exec runs the statements in w over n rows; args appends the arguments
// of rows [i, j) to buf. It answers buf for reuse.
func (c *chunked) exec(w writeTx, n int, buf []any, args func(buf []any, i, j int) []any) ([]any, error) {
	done := 0
	for k := len(c) - 1; k >= 0 && done < n; k-- {
		size := 1 << k
		if n-done < size {
			continue
		}
		stmt := w.tx.StmtContext(w.stmtCtx, c[k])
		for n-done >= size {
			if err := w.ctx.Err(); err != nil {
				return buf, err
			}
			buf = args(buf[:0], done, done+size)
			if _, err := stmt.ExecContext(w.stmtCtx, buf...); err != nil {
				if ctxErr := w.ctx.Err(); ctxErr != nil {
					err = ctxErr
				}
				return buf, err
			}
			done += size
		}
	}
	return buf, nil
}

// writeStmts are the statements of WriteOperations, prepared once on the
// writer connection when the store opens: parsing them on every commit cost
// about a fifth of the writer's time under single-operation ingest, where a
// commit carries a dozen operations.
type writeStmts struct {
	insert                               chunked
	stage                                chunked   // into pending_operations
	stored, storedIn                     *sql.Stmt // see anyStored
	hourly, daily, hourlyAll, file, sess chunked   // the rollups' upserts
	session                              chunked   // the sessions' upsert
}

func prepareWriteStmts(ctx context.Context, db *sql.DB) (*writeStmts, error) {
	var ws writeStmts
	var err error
	for _, c := range []struct {
		dst    *chunked
		sqlFor func(n int) string
	}{{&ws.insert, insertOpsSQL}, {&ws.stage, stageOpsSQL}, {&ws.hourly, upsertHourlySQL}, {&ws.daily, upsertDailySQL},
		{&ws.hourlyAll, upsertHourlyAllSQL}, {&ws.file, upsertFileDailySQL}, {&ws.sess, upsertSessionDailySQL},
		{&ws.session, upsertSessionSQL}} {
		if err = c.dst.prepare(ctx, db, c.sqlFor); err != nil {
			break
		}
	}
	if err == nil {
		ws.stored, err = db.PrepareContext(ctx, storedSQL)
	}
	if err == nil {
		ws.storedIn, err = db.PrepareContext(ctx, storedInSQL)
	}
	if err != nil {
		ws.close()
		return nil, err
	}
	return &ws, nil
}

// lockWriter answers the writer's prepared statements and holds writeMu
// until unlock is called.
func (s *Store) lockWriter(ctx context.Context) (stmts *writeStmts, unlock func(), err error) {
	if stmts, err = s.writeStmts(ctx); err != nil {
		return nil, nil, s.wrap("prepare write", err)
	}
	s.writeMu.Lock()
	return stmts, s.writeMu.Unlock, nil
}

// writeStmts answers the prepared statements of WriteOperations, preparing
// them on first use (also by Close, for the operations left pending; a
// write that races Close fails on the closed writer).
func (s *Store) writeStmts(ctx context.Context) (*writeStmts, error) {
	s.stmtsMu.Lock()
	defer s.stmtsMu.Unlock()
	if s.stmts == nil {
		ws, err := prepareWriteStmts(ctx, s.writer)
		if err != nil {
			return nil, err
		}
		s.stmts = ws
	}
	return s.stmts, nil
}

func (ws *writeStmts) close() {
	var stmts []*sql.Stmt
	for _, c := range []*chunked{&ws.insert, &ws.stage, &ws.hourly, &ws.daily, &ws.hourlyAll, &ws.file, &ws.sess, &ws.session} {
		stmts = append(stmts, c[:]...)
	}
	for _, st := range append(stmts, ws.stored, ws.storedIn) {
		if st != nil {
			st.Close()
		}
	}
}

// rollupSums are the summed columns of every operation rollup table, and
// rollupSumsSet their upsert.
const (
	rollupSums       = `count, tokens_original, tokens_actual, tokens_prevented, response_time_sum, cache_lookups, cache_hits`
	rollupSumColumns = 7
)

var rollupSumsSet = sqlq.RollupSumsSet("")

// upsertRollupSQL answers the statement that adds a batch's sums for n
// distinct keys (keys, the key's columns after the bucket column col) to a
// rollup table.
func upsertRollupSQL(table, col string, keys ...string) func(n int) string {
	key := strings.Join(append([]string{col}, keys...), ", ")
	return func(n int) string {
		return "INSERT INTO " + table + " (" + key + ", " + rollupSums + ") VALUES " + valueRows(n, 1+len(keys)+rollupSumColumns) +
			" ON CONFLICT (" + key + ") DO UPDATE SET" + rollupSumsSet
	}
}

var (
	upsertHourlySQL       = upsertRollupSQL("op_rollup_hourly", "hour", "tool_id", "tool_name", "operation_mode")
	upsertDailySQL        = upsertRollupSQL("op_rollup_daily", "day", "tool_id", "tool_name", "operation_mode")
	upsertHourlyAllSQL    = upsertRollupSQL("op_rollup_hourly_all", "hour")
	upsertFileDailySQL    = upsertRollupSQL("op_rollup_file_daily", "day", "file_null", "file_path")
	upsertSessionDailySQL = upsertRollupSQL("op_rollup_session_daily", "day", "session_id")
)

// upsertSessionSQL answers the statement that upserts n distinct sessions:
// it creates a missing session the way tsdb.Store documents (tool_id of its
// first operation, started and last active at it, no process id) or moves
// last_activity forward; ended_at is never touched, so an ended session
// stays ended. The running totals grow either way. One statement of many
// rows, as for the rollups: a commit of single operations carries a dozen
// sessions, and each statement execution costs more than its rows.
func upsertSessionSQL(n int) string {
	return `INSERT INTO tool_sessions
	(session_id, tool_id, started_at, last_activity, total_operations, tokens_saved, total_compressions, total_embeddings, implicit)
VALUES (?,?,?,?,?,?,?,?,1)` + strings.Repeat(",(?,?,?,?,?,?,?,?,1)", n-1) + `
ON CONFLICT (session_id) DO UPDATE SET
	started_at         = CASE WHEN implicit = 1 AND excluded.started_at < started_at THEN excluded.started_at ELSE started_at END,
	tool_id            = CASE WHEN implicit = 1 AND excluded.started_at < started_at THEN excluded.tool_id ELSE tool_id END,
	last_activity      = max(last_activity, excluded.last_activity),
	total_operations   = total_operations + excluded.total_operations,
	tokens_saved       = ` + sqlq.AddSat("tokens_saved", "excluded.tokens_saved") + `,
	total_compressions = total_compressions + excluded.total_compressions,
	total_embeddings   = total_embeddings + excluded.total_embeddings`
}

// argsPool holds the argument slices of WriteOperations' statements, room
// for the largest (insertChunk rows): a commit of a dozen single
// operations would otherwise allocate 13 KB for them.
var argsPool = sync.Pool{New: func() any {
	args := make([]any, 0, insertChunk*opColumns)
	return &args
}}

// pooledArgs answers an argument slice of argsPool and the func that
// clears it (it holds nothing of the commit while pooled) and puts it back.
func pooledArgs() (*[]any, func()) {
	args := argsPool.Get().(*[]any)
	return args, func() {
		clear((*args)[:cap(*args)])
		argsPool.Put(args)
	}
}

type sessionAgg struct {
	toolID      string
	first, last int64
	ops, saved  int64
	reads       int64
	searches    int64
}

// WriteOperations stores ops durably (synchronous=FULL) when it returns nil,
// and none of them when it fails. A commit of up to stageMax operations (a
// group commit of single-operation requests) is staged in
// pending_operations; a larger one goes into tool_operations, its rollups
// and sessions in one transaction. Either way every read of this store
// answers with them from then on (see pending.go).
func (s *Store) WriteOperations(ctx context.Context, ops []tsdb.Operation) error {
	if s.closed.Load() {
		return errClosed
	}
	if len(ops) == 0 {
		return nil
	}

	stmts, unlock, err := s.lockWriter(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap("begin write", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op
	if ops, err = skipDuplicates(ctx, tx, ops); err != nil {
		return s.wrap("look up keyed operations", err)
	}
	if len(ops) == 0 {
		return nil // all were retries
	}
	w := newWriteTx(ctx, tx)
	if len(ops) <= stageMax {
		stored, err := anyStored(w, stmts, ops)
		if err != nil {
			return s.wrap("look up operation ids", err)
		}
		if !stored {
			return s.stage(w, stmts, ops)
		}
		// An id of ops is stored already (not a keyed retry, which
		// skipDuplicates took out): writeRows answers the constraint
		// error any write of it answers.
	}
	if err := s.writeRows(w, stmts, ops); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return s.wrap("commit write", err)
	}
	s.committed()
	return nil
}

// writeRows adds ops to tool_operations, their hourly and daily rollups
// and their sessions in w.
func (s *Store) writeRows(w writeTx, stmts *writeStmts, ops []tsdb.Operation) error {
	var err error
	// Aggregate in Go first: one upsert per distinct rollup key and session.
	hourly := sqlq.OpRollups(ops, tsdb.MicrosPerHour, sqlq.ByTool)
	daily := sqlq.OpRollups(ops, tsdb.MicrosPerDay, sqlq.ByTool)
	hourlyAll := sqlq.OpRollups(ops, tsdb.MicrosPerHour, sqlq.ByBucket)
	files := sqlq.OpRollups(ops, tsdb.MicrosPerDay, sqlq.ByFile)
	sessionDays := sqlq.OpRollups(ops, tsdb.MicrosPerDay, sqlq.BySession)
	sessions := make(map[uuid.UUID]*sessionAgg)
	sessionOrder := make([]uuid.UUID, 0, 4)
	for i := range ops {
		op := &ops[i]
		at := op.CreatedAt.UnixMicro()
		sa := sessions[op.SessionID]
		if sa == nil {
			sa = &sessionAgg{toolID: op.ToolID, first: at, last: at}
			sessions[op.SessionID] = sa
			sessionOrder = append(sessionOrder, op.SessionID)
		}
		if at < sa.first {
			sa.first, sa.toolID = at, op.ToolID
		}
		sa.last = max(sa.last, at)
		sa.ops++
		sa.saved = tsdb.AddSat(sa.saved, op.TokensPrevented)
		switch op.ToolName {
		case api.ToolRead:
			sa.reads++
		case api.ToolSearch:
			sa.searches++
		}
	}

	// Rows go in by the prepared multi-row INSERTs of 64, 32, ..., 1 rows,
	// rollup rows by the upserts of as many.
	args, release := pooledArgs()
	defer release()
	if *args, err = stmts.insert.exec(w, len(ops), *args, func(buf []any, i, j int) []any {
		return appendOpArgs(buf, ops[i:j])
	}); err != nil {
		return s.wrap("insert operations", err)
	}
	for _, r := range []struct {
		stmts *chunked
		rows  []sqlq.OpRollup
		key   sqlq.RollupKey
	}{{&stmts.hourly, hourly, sqlq.ByTool}, {&stmts.daily, daily, sqlq.ByTool}, {&stmts.hourlyAll, hourlyAll, sqlq.ByBucket},
		{&stmts.file, files, sqlq.ByFile}, {&stmts.sess, sessionDays, sqlq.BySession}} {
		if *args, err = r.stmts.exec(w, len(r.rows), *args, func(buf []any, i, j int) []any {
			for _, row := range r.rows[i:j] {
				buf = append(buf, row.Start)
				switch r.key {
				case sqlq.ByTool:
					buf = append(buf, row.ToolID, row.ToolName, row.Mode)
				case sqlq.ByFile:
					buf = append(buf, boolInt(row.FileNull), row.FilePath)
				case sqlq.BySession:
					buf = append(buf, row.SessionID[:])
				}
				buf = append(buf, row.Count, row.TokensOriginal, row.TokensActual, row.TokensPrevented,
					row.ResponseTimeSumMs, row.Cache.Lookups, row.Cache.Hits)
			}
			return buf
		}); err != nil {
			return s.wrap("upsert rollup", err)
		}
	}

	if *args, err = stmts.session.exec(w, len(sessionOrder), *args, func(buf []any, i, j int) []any {
		for _, id := range sessionOrder[i:j] {
			sa := sessions[id]
			buf = append(buf, id.String(), sa.toolID, sa.first, sa.last, sa.ops, sa.saved, sa.reads, sa.searches)
		}
		return buf
	}); err != nil {
		return s.wrap("upsert session", err)
	}

	return nil
}

func appendOpArgs(args []any, ops []tsdb.Operation) []any {
	for i := range ops {
		op := &ops[i]
		params := string(op.Parameters)
		if params == "" {
			params = "{}"
		}
		var file, cacheHit any
		if op.FilePath != nil {
			file = *op.FilePath
		}
		if op.CacheHit != nil {
			cacheHit = boolInt(*op.CacheHit)
		}
		args = append(args, op.ID[:], op.SessionID[:], op.ToolName, op.OperationMode,
			params, file, op.TokensOriginal, op.TokensActual, op.TokensPrevented,
			op.ResponseTimeMs, op.ToolID, op.CreatedAt.UnixMicro(), cacheHit)
	}
	return args
}

// boolInt is b as SQLite keeps a boolean: 1 or 0.
func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// QueryOperations answers one page of the operations matching f, newest
// first (ties by id, descending), and the count of all matches. The count and
// the page come from one read transaction, so they agree.
func (s *Store) QueryOperations(ctx context.Context, f tsdb.OperationFilter) (tsdb.OperationPage, error) {
	if f.Limit <= 0 {
		return tsdb.OperationPage{}, fmt.Errorf("query operations: limit %d must be positive", f.Limit)
	}
	if f.Offset < 0 {
		return tsdb.OperationPage{}, fmt.Errorf("query operations: offset %d must not be negative", f.Offset)
	}
	if err := s.startRead(ctx); err != nil {
		return tsdb.OperationPage{}, err
	}
	tx, err := s.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return tsdb.OperationPage{}, s.wrap("begin read", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only

	var page tsdb.OperationPage
	horizon, err := sqlq.ReadHorizon(ctx, queryIn(tx))
	if err != nil {
		return tsdb.OperationPage{}, s.wrap("count operations", err)
	}
	s.horizon.Saw(horizon)
	if page.Total, err = s.countOperations(ctx, tx, f, horizon); err != nil {
		return tsdb.OperationPage{}, s.wrap("count operations", err)
	}
	if int64(f.Offset) >= page.Total {
		page.Operations = []tsdb.Operation{}
		return page, nil
	}

	// Choosing the index. tool_name and operation_mode have a handful of
	// values each; when the matches are dense in the time range, walking an
	// index already in (created_at, id) order (the session's, the tool id's
	// or the time index) and stopping after offset+limit matches beats
	// reading every match through the (tool_name, operation_mode) or
	// operation_mode index and sorting them. A unary + keeps the planner off
	// those two indexes.
	walkTime := f.SessionID != nil
	if !walkTime && (f.ToolName != "" || f.OperationMode != "") {
		inRange := f
		inRange.ToolName, inRange.OperationMode = "", ""
		n, err := s.countOperations(ctx, tx, inRange, horizon)
		if err != nil {
			return tsdb.OperationPage{}, s.wrap("count operations", err)
		}
		walkTime = page.Total*denseMatches >= n
	}
	q := dialect.NewQuery()
	rows, err := tx.QueryContext(ctx, "SELECT "+opColumnList+" FROM tool_operations"+q.OperationWhere(f, walkTime)+
		" ORDER BY created_at DESC, id DESC LIMIT "+q.Arg(f.Limit)+" OFFSET "+q.Arg(f.Offset), q.Args...)
	if err != nil {
		return tsdb.OperationPage{}, s.wrap("query operations", err)
	}
	defer rows.Close()
	page.Operations = make([]tsdb.Operation, 0, min(int64(f.Limit), page.Total-int64(f.Offset)))
	for rows.Next() {
		op, err := scanOperation(rows)
		if err != nil {
			return tsdb.OperationPage{}, s.wrap("read operation", err)
		}
		page.Operations = append(page.Operations, op)
	}
	if err := rows.Err(); err != nil {
		return tsdb.OperationPage{}, s.wrap("query operations", err)
	}
	return page, nil
}

// denseMatches: when at least 1 in denseMatches operations of the time range
// matches the tool name and mode filters, a page walks the time order.
const denseMatches = 50

// countOperations answers how many operations match f. A session's
// operations are counted through the session index (a session holds few),
// all operations with count(*); any other filter is counted from the rollups for the whole days and hours
// of its time range and from raw rows only at the edges, so that the total of
// an unfiltered list of millions of operations costs no full index scan.
// Before the raw horizon it counts the raw rows that remain.
func (s *Store) countOperations(ctx context.Context, tx *sql.Tx, f tsdb.OperationFilter, horizon int64) (int64, error) {
	var n int64
	if f.SessionID != nil || f == (tsdb.OperationFilter{Limit: f.Limit, Offset: f.Offset}) {
		// No filter at all: SQLite counts a b-tree's entries from its
		// pages without decoding them, which beats summing rollups.
		q := dialect.NewQuery()
		err := tx.QueryRowContext(ctx, "SELECT count(*) FROM tool_operations"+q.OperationWhere(f, false), q.Args...).Scan(&n)
		return n, err
	}
	return dialect.CountOperations(ctx, queryIn(tx), f, horizon)
}

func scanOperation(rows *sql.Rows) (tsdb.Operation, error) {
	var (
		op          tsdb.Operation
		id, session []byte
		params      string
		file        sql.NullString
		createdAt   int64
		cacheHit    sql.NullInt64
	)
	if err := rows.Scan(&id, &session, &op.ToolName, &op.OperationMode, &params, &file,
		&op.TokensOriginal, &op.TokensActual, &op.TokensPrevented, &op.ResponseTimeMs,
		&op.ToolID, &createdAt, &cacheHit); err != nil {
		return op, err
	}
	var err error
	if op.ID, err = uuid.FromBytes(id); err != nil {
		return op, fmt.Errorf("operation id %x: %w", id, err)
	}
	if op.SessionID, err = uuid.FromBytes(session); err != nil {
		return op, fmt.Errorf("operation %s session id %x: %w", op.ID, session, err)
	}
	op.Parameters = json.RawMessage(params)
	if file.Valid {
		op.FilePath = &file.String
	}
	op.CreatedAt = fromMicros(createdAt)
	if cacheHit.Valid {
		hit := cacheHit.Int64 != 0
		op.CacheHit = &hit
	}
	return op, nil
}

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// FirstOperationTime answers the created_at of the oldest operation of toolID
// (all tools when empty), or the start of its hour when that lies before the
// raw horizon (see sqlq.Dialect.FirstOperationTime); indexes answer it
// without a scan.
func (s *Store) FirstOperationTime(ctx context.Context, toolID string) (time.Time, bool, error) {
	if err := s.startRead(ctx); err != nil {
		return time.Time{}, false, err
	}
	first, ok, err := dialect.FirstOperationTime(ctx, queryIn(s.reader), &s.horizon, toolID)
	return first, ok, s.wrap("first operation time", err)
}

// skipDuplicates marks Duplicate every keyed operation of ops whose id is
// stored already (in tool_operations or pending_operations) or carried by
// an earlier operation of ops (a client's retry), and answers the
// operations to store: ops itself when none is a duplicate. Only keyed ids are looked up: the others are new by making.
func skipDuplicates(ctx context.Context, tx *sql.Tx, ops []tsdb.Operation) ([]tsdb.Operation, error) {
	var keyed []int
	for i := range ops {
		if ops[i].Keyed {
			keyed = append(keyed, i)
		}
	}
	if len(keyed) == 0 {
		return ops, nil
	}
	stored := map[uuid.UUID]bool{}
	const chunk = 500
	for start := 0; start < len(keyed); start += chunk {
		part := keyed[start:min(start+chunk, len(keyed))]
		args := make([]any, len(part))
		for j, i := range part {
			args[j] = ops[i].ID[:]
		}
		in := "id IN (?" + strings.Repeat(",?", len(part)-1) + ")"
		rows, err := tx.QueryContext(ctx, "SELECT id FROM tool_operations WHERE "+in+
			" UNION ALL SELECT id FROM pending_operations WHERE "+in, append(args, args...)...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var raw []byte
			if err := rows.Scan(&raw); err != nil {
				rows.Close()
				return nil, err
			}
			if id, err := uuid.FromBytes(raw); err == nil {
				stored[id] = true
			}
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	dups := 0
	for _, i := range keyed {
		if stored[ops[i].ID] {
			ops[i].Duplicate = true
			dups++
			continue
		}
		stored[ops[i].ID] = true // a second copy within ops is a duplicate
	}
	if dups == 0 {
		return ops, nil
	}
	fresh := make([]tsdb.Operation, 0, len(ops)-dups)
	for i := range ops {
		if !ops[i].Duplicate {
			fresh = append(fresh, ops[i])
		}
	}
	return fresh, nil
}
