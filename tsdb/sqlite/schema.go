package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// migrations is the ordered list of schema changes; migrations[i] brings the
// database to version i+1. Append only: a released migration never changes,
// because databases in the field already ran it.
//
// Times are INTEGER unix microseconds (UTC), the precision the service keeps.
var migrations = []string{
	// 1: operations, sessions, hourly rollups.
	`
CREATE TABLE tool_operations (
	id               TEXT    NOT NULL PRIMARY KEY, -- lower-case hyphenated UUID
	session_id       TEXT    NOT NULL,
	tool_name        TEXT    NOT NULL,
	operation_mode   TEXT    NOT NULL,
	parameters       TEXT    NOT NULL DEFAULT '{}', -- JSON object as sent
	file_path        TEXT,
	tokens_original  INTEGER NOT NULL,
	tokens_actual    INTEGER NOT NULL,
	tokens_prevented INTEGER NOT NULL,
	response_time_ms REAL    NOT NULL,
	tool_id          TEXT    NOT NULL,
	created_at       INTEGER NOT NULL -- unix microseconds, UTC
);

-- The specification asks for indexes on session_id, tool_name,
-- operation_mode, created_at, (session_id, created_at) and
-- (tool_name, operation_mode). Single-column indexes whose column leads a
-- composite below are left out, since the composite serves every lookup the
-- single column would (and each index costs every insert):
--   session_id -> idx_ops_session_time (session_id, created_at, id)
--   tool_name  -> idx_ops_tool_mode    (tool_name, operation_mode)
--   created_at -> idx_ops_time         (created_at, id)
-- The trailing id columns let "ORDER BY created_at DESC, id DESC" (the paging
-- order) walk an index instead of sorting.
CREATE INDEX idx_ops_time         ON tool_operations (created_at, id);
CREATE INDEX idx_ops_session_time ON tool_operations (session_id, created_at, id);
CREATE INDEX idx_ops_tool_mode    ON tool_operations (tool_name, operation_mode);
CREATE INDEX idx_ops_mode         ON tool_operations (operation_mode);
-- tool_id filters (list, partial hours of aggregates, first operation time).
CREATE INDEX idx_ops_toolid_time  ON tool_operations (tool_id, created_at, id);

CREATE TABLE tool_sessions (
	session_id         TEXT    NOT NULL PRIMARY KEY, -- lower-case hyphenated UUID
	tool_id            TEXT    NOT NULL,
	tool_version       TEXT,
	process_id         INTEGER,
	instance_id        TEXT,
	project_id         TEXT,
	workspace_path     TEXT,
	started_at         INTEGER NOT NULL, -- unix microseconds, UTC
	ended_at           INTEGER,
	last_activity      INTEGER NOT NULL,
	-- Running totals of the session's operations, kept in the transaction
	-- that stores the operations (a per-session rollup).
	total_operations   INTEGER NOT NULL DEFAULT 0,
	tokens_saved       INTEGER NOT NULL DEFAULT 0,
	total_compressions INTEGER NOT NULL DEFAULT 0,
	total_embeddings   INTEGER NOT NULL DEFAULT 0
);

-- get_or_create and /sessions/active only ever look at open sessions.
CREATE INDEX idx_sessions_instance ON tool_sessions (instance_id, started_at) WHERE ended_at IS NULL;
CREATE INDEX idx_sessions_process  ON tool_sessions (tool_id, process_id, started_at) WHERE ended_at IS NULL;
CREATE INDEX idx_sessions_activity ON tool_sessions (last_activity) WHERE ended_at IS NULL;

-- One row per (UTC hour, tool_id, tool_name, operation_mode) that holds at
-- least one operation, upserted in the same transaction as the raw rows, so
-- aggregates over whole hours read O(hours) rows instead of O(operations).
CREATE TABLE op_rollup_hourly (
	hour              INTEGER NOT NULL, -- unix microseconds of the UTC hour start
	tool_id           TEXT    NOT NULL,
	tool_name         TEXT    NOT NULL,
	operation_mode    TEXT    NOT NULL,
	count             INTEGER NOT NULL,
	tokens_original   INTEGER NOT NULL,
	tokens_actual     INTEGER NOT NULL,
	tokens_prevented  INTEGER NOT NULL,
	response_time_sum REAL    NOT NULL,
	PRIMARY KEY (hour, tool_id, tool_name, operation_mode)
) WITHOUT ROWID;

CREATE INDEX idx_rollup_toolid_hour ON op_rollup_hourly (tool_id, hour);

-- The same per UTC day, kept alongside: a 30-day breakdown or daily trend
-- reads about 30 day rows per key, plus hour rows for partial days.
CREATE TABLE op_rollup_daily (
	day               INTEGER NOT NULL, -- unix microseconds of the UTC day start
	tool_id           TEXT    NOT NULL,
	tool_name         TEXT    NOT NULL,
	operation_mode    TEXT    NOT NULL,
	count             INTEGER NOT NULL,
	tokens_original   INTEGER NOT NULL,
	tokens_actual     INTEGER NOT NULL,
	tokens_prevented  INTEGER NOT NULL,
	response_time_sum REAL    NOT NULL,
	PRIMARY KEY (day, tool_id, tool_name, operation_mode)
) WITHOUT ROWID;

CREATE INDEX idx_rollup_toolid_day ON op_rollup_daily (tool_id, day);
`,

	// 2: operation and session ids of tool_operations as their 16 bytes
	// (BLOB) instead of 36-character text. Every index that carries an id
	// shrinks (the primary key, (created_at, id), (session_id, created_at,
	// id), (tool_id, created_at, id)), and comparing ids is a memcmp: batch
	// inserts run about 1.2 times faster. Byte order is the order of the
	// lower-case text, so "ties by id" is unchanged. The table is rebuilt in
	// rowid order and its indexes are created after the copy (a sort each,
	// not a b-tree insert per row). tool_sessions keeps text ids: it is small
	// and never joined with operations. Also: op_rollup_hourly_all.
	`
CREATE TABLE tool_operations_v2 (
	id               BLOB    NOT NULL PRIMARY KEY, -- the UUID's 16 bytes
	session_id       BLOB    NOT NULL,             -- the UUID's 16 bytes
	tool_name        TEXT    NOT NULL,
	operation_mode   TEXT    NOT NULL,
	parameters       TEXT    NOT NULL DEFAULT '{}', -- JSON object as sent
	file_path        TEXT,
	tokens_original  INTEGER NOT NULL,
	tokens_actual    INTEGER NOT NULL,
	tokens_prevented INTEGER NOT NULL,
	response_time_ms REAL    NOT NULL,
	tool_id          TEXT    NOT NULL,
	created_at       INTEGER NOT NULL -- unix microseconds, UTC
);

INSERT INTO tool_operations_v2 (id, session_id, tool_name, operation_mode, parameters, file_path,
	tokens_original, tokens_actual, tokens_prevented, response_time_ms, tool_id, created_at)
SELECT unhex(replace(id, '-', '')), unhex(replace(session_id, '-', '')), tool_name, operation_mode,
	parameters, file_path, tokens_original, tokens_actual, tokens_prevented, response_time_ms, tool_id, created_at
FROM tool_operations ORDER BY rowid;

DROP TABLE tool_operations;
ALTER TABLE tool_operations_v2 RENAME TO tool_operations;

-- The indexes of migration 1, unchanged (see there).
CREATE INDEX idx_ops_time         ON tool_operations (created_at, id);
CREATE INDEX idx_ops_session_time ON tool_operations (session_id, created_at, id);
CREATE INDEX idx_ops_tool_mode    ON tool_operations (tool_name, operation_mode);
CREATE INDEX idx_ops_mode         ON tool_operations (operation_mode);
CREATE INDEX idx_ops_toolid_time  ON tool_operations (tool_id, created_at, id);

-- The totals of every UTC hour over all keys, kept with the other rollups:
-- an hourly trend of all tools reads one row per hour instead of one per
-- (hour, tool_id, tool_name, operation_mode), 30 times fewer.
CREATE TABLE op_rollup_hourly_all (
	hour              INTEGER NOT NULL PRIMARY KEY, -- unix microseconds of the UTC hour start
	count             INTEGER NOT NULL,
	tokens_original   INTEGER NOT NULL,
	tokens_actual     INTEGER NOT NULL,
	tokens_prevented  INTEGER NOT NULL,
	response_time_sum REAL    NOT NULL
);
INSERT INTO op_rollup_hourly_all
SELECT hour, sum(count), sum(tokens_original), sum(tokens_actual), sum(tokens_prevented), sum(response_time_sum)
FROM op_rollup_hourly GROUP BY hour;
`,

	// 3: sessions remember whether an operation created them (implicit), so
	// that an implicit session starts at its earliest operation, with that
	// operation's tool_id, whatever order its operations arrive in. Existing
	// sessions without any attribute of an explicit start count as implicit.
	`
ALTER TABLE tool_sessions ADD COLUMN implicit INTEGER NOT NULL DEFAULT 0;
UPDATE tool_sessions SET implicit = 1
WHERE tool_version IS NULL AND process_id IS NULL AND instance_id IS NULL
  AND project_id IS NULL AND workspace_path IS NULL;
`,

	// 4: the indexes on tool_name/operation_mode alone go. No query uses
	// them: a list walks idx_ops_time (or the session or tool_id one) in
	// time order and filters the rest, which is cheaper than reading every
	// operation of a mode, as 2 of 6 modes hold a third of all rows; and
	// aggregates read rollups. Each cost every insert a b-tree descent and
	// a page in every commit's write-ahead log.
	`
DROP INDEX IF EXISTS idx_ops_tool_mode;
DROP INDEX IF EXISTS idx_ops_mode;
`,

	// 5: what the AI tools spent (their own OTLP metrics), one row per
	// point, with hourly and daily rollups per (tool_id, model) kept in the
	// transaction that stores the points.
	`
CREATE TABLE spend_points (
	id                    BLOB    NOT NULL PRIMARY KEY, -- 16 bytes
	tool_id               TEXT    NOT NULL,
	model                 TEXT    NOT NULL,
	session_id            BLOB,                         -- 16 bytes, or NULL
	at                    INTEGER NOT NULL,             -- unix microseconds
	cost_usd              REAL    NOT NULL,
	tokens_input          INTEGER NOT NULL,
	tokens_output         INTEGER NOT NULL,
	tokens_cache_read     INTEGER NOT NULL,
	tokens_cache_creation INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX idx_spend_time        ON spend_points (at);
CREATE INDEX idx_spend_toolid_time ON spend_points (tool_id, at);

CREATE TABLE spend_rollup_hourly (
	hour                  INTEGER NOT NULL,
	tool_id               TEXT    NOT NULL,
	model                 TEXT    NOT NULL,
	points                INTEGER NOT NULL,
	cost_usd              REAL    NOT NULL,
	tokens_input          INTEGER NOT NULL,
	tokens_output         INTEGER NOT NULL,
	tokens_cache_read     INTEGER NOT NULL,
	tokens_cache_creation INTEGER NOT NULL,
	PRIMARY KEY (hour, tool_id, model)
) WITHOUT ROWID;
CREATE INDEX idx_spend_rollup_toolid_hour ON spend_rollup_hourly (tool_id, hour);

CREATE TABLE spend_rollup_daily (
	day                   INTEGER NOT NULL,
	tool_id               TEXT    NOT NULL,
	model                 TEXT    NOT NULL,
	points                INTEGER NOT NULL,
	cost_usd              REAL    NOT NULL,
	tokens_input          INTEGER NOT NULL,
	tokens_output         INTEGER NOT NULL,
	tokens_cache_read     INTEGER NOT NULL,
	tokens_cache_creation INTEGER NOT NULL,
	PRIMARY KEY (day, tool_id, model)
) WITHOUT ROWID;
CREATE INDEX idx_spend_rollup_toolid_day ON spend_rollup_daily (tool_id, day);
`,

	// 6: named values of the store itself: the raw horizon of retention
	// (unix microseconds before which raw operations and spend points may
	// have been deleted), so that aggregates planned after a restart, or
	// by another process on the file, read the rollups for those hours.
	`
CREATE TABLE store_meta (
	name  TEXT    NOT NULL PRIMARY KEY,
	value INTEGER NOT NULL
) WITHOUT ROWID;
`,

	// 7: whether a tool answered from its cache: NULL when the client did
	// not say, 0 a miss, 1 a hit. The rollups count the operations whose
	// cache_hit is known (cache_lookups) and the hits among them, so that
	// aggregates from rollups carry the hit rate; rows written before count
	// none (their operations' cache_hit is unknown). Adding a column with a
	// constant default rewrites no table.
	`
ALTER TABLE tool_operations ADD COLUMN cache_hit INTEGER;
ALTER TABLE op_rollup_hourly ADD COLUMN cache_lookups INTEGER NOT NULL DEFAULT 0;
ALTER TABLE op_rollup_hourly ADD COLUMN cache_hits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE op_rollup_daily ADD COLUMN cache_lookups INTEGER NOT NULL DEFAULT 0;
ALTER TABLE op_rollup_daily ADD COLUMN cache_hits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE op_rollup_hourly_all ADD COLUMN cache_lookups INTEGER NOT NULL DEFAULT 0;
ALTER TABLE op_rollup_hourly_all ADD COLUMN cache_hits INTEGER NOT NULL DEFAULT 0;
`,

	// 8: the totals of every (UTC day, file path) and of every (UTC day,
	// session), kept with the other rollups, so that GET
	// /metrics/aggregate's groupings by file, by session or by project (and
	// day) read a row per key and day, not every operation: a 30-day top of
	// files at 2,000,000 operations sorts some 75,000 rows instead of
	// 2,000,000 (SQLite groups by sorting). Each is keyed by its dimension
	// alone: tool ids, tools and modes would multiply the rows of the many
	// files read a few times a day. An operation without a file path counts
	// under file_null = 1 (its file_path ''), since a primary key holds no
	// NULL. Both are filled from the operations stored so far.
	`
CREATE TABLE op_rollup_file_daily (
	day               INTEGER NOT NULL, -- unix microseconds of the UTC day start
	file_null         INTEGER NOT NULL, -- 1: no file path (file_path is '')
	file_path         TEXT    NOT NULL,
	count             INTEGER NOT NULL,
	tokens_original   INTEGER NOT NULL,
	tokens_actual     INTEGER NOT NULL,
	tokens_prevented  INTEGER NOT NULL,
	response_time_sum REAL    NOT NULL,
	cache_lookups     INTEGER NOT NULL,
	cache_hits        INTEGER NOT NULL,
	PRIMARY KEY (day, file_null, file_path)
) WITHOUT ROWID;
INSERT INTO op_rollup_file_daily
SELECT created_at - ((created_at % 86400000000) + 86400000000) % 86400000000, file_path IS NULL, coalesce(file_path, ''),
	count(*), sum(tokens_original), sum(tokens_actual), sum(tokens_prevented), sum(response_time_ms),
	count(cache_hit), coalesce(sum(cache_hit), 0)
FROM tool_operations GROUP BY 1, 2, 3;

CREATE TABLE op_rollup_session_daily (
	day               INTEGER NOT NULL, -- unix microseconds of the UTC day start
	session_id        BLOB    NOT NULL, -- the UUID's 16 bytes
	count             INTEGER NOT NULL,
	tokens_original   INTEGER NOT NULL,
	tokens_actual     INTEGER NOT NULL,
	tokens_prevented  INTEGER NOT NULL,
	response_time_sum REAL    NOT NULL,
	cache_lookups     INTEGER NOT NULL,
	cache_hits        INTEGER NOT NULL,
	PRIMARY KEY (day, session_id)
) WITHOUT ROWID;
INSERT INTO op_rollup_session_daily
SELECT created_at - ((created_at % 86400000000) + 86400000000) % 86400000000, session_id,
	count(*), sum(tokens_original), sum(tokens_actual), sum(tokens_prevented), sum(response_time_ms),
	count(cache_hit), coalesce(sum(cache_hit), 0)
FROM tool_operations GROUP BY 1, 2;
`,

	// 9: operations acknowledged but not yet in tool_operations. A commit of
	// a few operations (single-operation requests, gathered by the group
	// commit) lands here first: their own columns under their id, one
	// b-tree, no index, rollup or session, in the same durable transaction
	// any write has. Batches of them move on into tool_operations, the
	// rollups and the sessions (see pending.go).
	`
CREATE TABLE pending_operations (
	id               BLOB    NOT NULL PRIMARY KEY,
	session_id       BLOB    NOT NULL,
	tool_name        TEXT    NOT NULL,
	operation_mode   TEXT    NOT NULL,
	parameters       TEXT    NOT NULL,
	file_path        TEXT,
	tokens_original  INTEGER NOT NULL,
	tokens_actual    INTEGER NOT NULL,
	tokens_prevented INTEGER NOT NULL,
	response_time_ms REAL    NOT NULL,
	tool_id          TEXT    NOT NULL,
	created_at       INTEGER NOT NULL,
	cache_hit        INTEGER
) WITHOUT ROWID;
`,
}

// migrate brings the database to version len(migrations). Each missing migration runs
// in its own write transaction together with its schema_migrations row, so a
// crash leaves the database at a whole version. A database newer than the
// code is refused rather than misread.
func migrate(ctx context.Context, db *sql.DB) (from, to int, err error) {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	applied_at TEXT NOT NULL
)`); err != nil {
		return 0, 0, fmt.Errorf("create schema_migrations: %w", err)
	}
	from = -1
	for {
		before, after, err := migrateOne(ctx, db)
		if err != nil {
			return from, before, err
		}
		if from < 0 {
			from = before
		}
		if after == before {
			return from, after, nil
		}
	}
}

// migrateOne applies the next missing migration, if any. It reads the
// current version inside the (immediate) write transaction, so two processes
// opening the same file never apply a migration twice.
func migrateOne(ctx context.Context, db *sql.DB) (before, after int, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("begin migration: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&before); err != nil {
		return 0, 0, fmt.Errorf("read schema version: %w", err)
	}
	if before > len(migrations) {
		return before, before, fmt.Errorf("%w: database schema version %d is newer than this program supports (%d); upgrade omnimemory-metrics or use another database file", ErrSchemaTooNew, before, len(migrations))
	}
	if before == len(migrations) {
		return before, before, nil
	}
	if _, err := tx.ExecContext(ctx, migrations[before]); err != nil {
		return before, before, fmt.Errorf("apply schema migration %d: %w", before+1, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
		before+1, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
		return before, before, fmt.Errorf("record schema migration %d: %w", before+1, err)
	}
	if err := tx.Commit(); err != nil {
		return before, before, fmt.Errorf("commit schema migration %d: %w", before+1, err)
	}
	return before, before + 1, nil
}
