package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// migrations is the ordered list of schema changes; migrations[i] brings the
// database to version i+1. Append only: a released migration never changes.
var migrations = []string{
	// 1: operations (partitioned by month), their ids, sessions, rollups.
	`
CREATE TABLE tool_operations (
	id               uuid             NOT NULL,
	session_id       uuid             NOT NULL,
	tool_name        text             NOT NULL,
	operation_mode   text             NOT NULL,
	parameters       text             NOT NULL DEFAULT '{}', -- the JSON object as sent
	file_path        text,
	tokens_original  bigint           NOT NULL,
	tokens_actual    bigint           NOT NULL,
	tokens_prevented bigint           NOT NULL,
	response_time_ms double precision NOT NULL,
	tool_id          text             NOT NULL,
	created_at       timestamptz      NOT NULL
) PARTITION BY RANGE (created_at);

-- Each partition gets these (see ensureMonths). The trailing id lets
-- "ORDER BY created_at DESC, id DESC" (the paging order) and the export's
-- keyset walk an index in order, merged across partitions.
CREATE INDEX idx_ops_time         ON tool_operations (created_at, id);
CREATE INDEX idx_ops_session_time ON tool_operations (session_id, created_at, id);
CREATE INDEX idx_ops_toolid_time  ON tool_operations (tool_id, created_at, id);

-- A unique constraint on a partitioned table must hold the partition key,
-- which would let a retry with another created_at in: the ids are kept
-- unique here instead, in the transaction that stores the operations.
CREATE TABLE operation_ids (
	id uuid NOT NULL PRIMARY KEY
);

CREATE TABLE tool_sessions (
	session_id         uuid        NOT NULL PRIMARY KEY,
	tool_id            text        NOT NULL,
	tool_version       text,
	process_id         bigint,
	instance_id        text,
	project_id         text,
	workspace_path     text,
	started_at         timestamptz NOT NULL,
	ended_at           timestamptz,
	last_activity      timestamptz NOT NULL,
	-- created by its operations rather than by a client's start
	implicit           boolean     NOT NULL DEFAULT false,
	-- running totals of the session's operations, kept in the transaction
	-- that stores them
	total_operations   bigint      NOT NULL DEFAULT 0,
	tokens_saved       bigint      NOT NULL DEFAULT 0,
	total_compressions bigint      NOT NULL DEFAULT 0,
	total_embeddings   bigint      NOT NULL DEFAULT 0
);

CREATE INDEX idx_sessions_instance ON tool_sessions (instance_id, started_at) WHERE ended_at IS NULL;
CREATE INDEX idx_sessions_process  ON tool_sessions (tool_id, process_id, started_at) WHERE ended_at IS NULL;
CREATE INDEX idx_sessions_activity ON tool_sessions (last_activity) WHERE ended_at IS NULL;

-- One row per (UTC hour, tool_id, tool_name, operation_mode) holding at least
-- one operation, upserted in the transaction that stores the operations.
CREATE TABLE op_rollup_hourly (
	hour              timestamptz      NOT NULL,
	tool_id           text             NOT NULL,
	tool_name         text             NOT NULL,
	operation_mode    text             NOT NULL,
	count             bigint           NOT NULL,
	tokens_original   bigint           NOT NULL,
	tokens_actual     bigint           NOT NULL,
	tokens_prevented  bigint           NOT NULL,
	response_time_sum double precision NOT NULL,
	PRIMARY KEY (hour, tool_id, tool_name, operation_mode)
);
CREATE INDEX idx_rollup_toolid_hour ON op_rollup_hourly (tool_id, hour);

-- The same per UTC day.
CREATE TABLE op_rollup_daily (
	day               timestamptz      NOT NULL,
	tool_id           text             NOT NULL,
	tool_name         text             NOT NULL,
	operation_mode    text             NOT NULL,
	count             bigint           NOT NULL,
	tokens_original   bigint           NOT NULL,
	tokens_actual     bigint           NOT NULL,
	tokens_prevented  bigint           NOT NULL,
	response_time_sum double precision NOT NULL,
	PRIMARY KEY (day, tool_id, tool_name, operation_mode)
);
CREATE INDEX idx_rollup_toolid_day ON op_rollup_daily (tool_id, day);
`,

	// 2: what the AI tools spent (their own OTLP metrics), one row per point
	// (a few per tool and minute: not partitioned), with hourly and daily
	// rollups per (tool_id, model) upserted in the transaction that stores
	// the points.
	`
CREATE TABLE spend_points (
	id                    uuid             NOT NULL PRIMARY KEY,
	tool_id               text             NOT NULL,
	model                 text             NOT NULL,
	session_id            uuid,
	at                    timestamptz      NOT NULL,
	cost_usd              double precision NOT NULL,
	tokens_input          bigint           NOT NULL,
	tokens_output         bigint           NOT NULL,
	tokens_cache_read     bigint           NOT NULL,
	tokens_cache_creation bigint           NOT NULL
);
CREATE INDEX idx_spend_time        ON spend_points (at);
CREATE INDEX idx_spend_toolid_time ON spend_points (tool_id, at);

CREATE TABLE spend_rollup_hourly (
	hour                  timestamptz      NOT NULL,
	tool_id               text             NOT NULL,
	model                 text             NOT NULL,
	points                bigint           NOT NULL,
	cost_usd              double precision NOT NULL,
	tokens_input          bigint           NOT NULL,
	tokens_output         bigint           NOT NULL,
	tokens_cache_read     bigint           NOT NULL,
	tokens_cache_creation bigint           NOT NULL,
	PRIMARY KEY (hour, tool_id, model)
);
CREATE INDEX idx_spend_rollup_toolid_hour ON spend_rollup_hourly (tool_id, hour);

CREATE TABLE spend_rollup_daily (
	day                   timestamptz      NOT NULL,
	tool_id               text             NOT NULL,
	model                 text             NOT NULL,
	points                bigint           NOT NULL,
	cost_usd              double precision NOT NULL,
	tokens_input          bigint           NOT NULL,
	tokens_output         bigint           NOT NULL,
	tokens_cache_read     bigint           NOT NULL,
	tokens_cache_creation bigint           NOT NULL,
	PRIMARY KEY (day, tool_id, model)
);
CREATE INDEX idx_spend_rollup_toolid_day ON spend_rollup_daily (tool_id, day);
`,

	// 3: named values of the store itself: the raw horizon of retention
	// (unix microseconds before which raw operations and spend points may
	// have been deleted), which every replica plans its aggregates with.
	`
CREATE TABLE store_meta (
	name  text   NOT NULL PRIMARY KEY,
	value bigint NOT NULL
);
`,

	// 4: whether a tool answered from its cache (NULL when the client did
	// not say), and in the rollups the operations whose cache_hit is known
	// (cache_lookups) and the hits among them, so that aggregates from
	// rollups carry the hit rate; rows written before count none. Adding a
	// nullable column, or one with a constant default, rewrites no table.
	`
ALTER TABLE tool_operations ADD COLUMN cache_hit boolean;
ALTER TABLE op_rollup_hourly
	ADD COLUMN cache_lookups bigint NOT NULL DEFAULT 0,
	ADD COLUMN cache_hits    bigint NOT NULL DEFAULT 0;
ALTER TABLE op_rollup_daily
	ADD COLUMN cache_lookups bigint NOT NULL DEFAULT 0,
	ADD COLUMN cache_hits    bigint NOT NULL DEFAULT 0;
`,

	// 5: the totals of every (UTC day, file path) and of every (UTC day,
	// session), upserted in the transaction that stores the operations, so
	// that GET /metrics/aggregate's groupings by file, by session or by
	// project (and day) read a row per key and day, not every operation.
	// Each is keyed by its dimension alone (see the embedded store's
	// migration 7). An operation without a file path counts under
	// file_null = 1 (its file_path ''); file rows are found by the SHA-256
	// of the path, since a B-tree entry holds at most about 2.7 kB and a
	// path has no bound. Both are filled from the operations stored so far.
	`
CREATE TABLE op_rollup_file_daily (
	day               timestamptz      NOT NULL,
	file_null         smallint         NOT NULL, -- 1: no file path (file_path is '')
	file_hash         bytea            NOT NULL, -- sha256 of file_path
	file_path         text             NOT NULL,
	count             bigint           NOT NULL,
	tokens_original   bigint           NOT NULL,
	tokens_actual     bigint           NOT NULL,
	tokens_prevented  bigint           NOT NULL,
	response_time_sum double precision NOT NULL,
	cache_lookups     bigint           NOT NULL,
	cache_hits        bigint           NOT NULL,
	PRIMARY KEY (day, file_null, file_hash)
);
INSERT INTO op_rollup_file_daily
SELECT date_bin('1 day', created_at, 'epoch'), (file_path IS NULL)::int::smallint, sha256(convert_to(coalesce(file_path, ''), 'UTF8')),
	coalesce(file_path, ''), count(*), sum(tokens_original), sum(tokens_actual), sum(tokens_prevented), sum(response_time_ms),
	count(cache_hit), count(*) FILTER (WHERE cache_hit)
FROM tool_operations GROUP BY 1, 2, 4;

CREATE TABLE op_rollup_session_daily (
	day               timestamptz      NOT NULL,
	session_id        uuid             NOT NULL,
	count             bigint           NOT NULL,
	tokens_original   bigint           NOT NULL,
	tokens_actual     bigint           NOT NULL,
	tokens_prevented  bigint           NOT NULL,
	response_time_sum double precision NOT NULL,
	cache_lookups     bigint           NOT NULL,
	cache_hits        bigint           NOT NULL,
	PRIMARY KEY (day, session_id)
);
INSERT INTO op_rollup_session_daily
SELECT date_bin('1 day', created_at, 'epoch'), session_id, count(*), sum(tokens_original), sum(tokens_actual),
	sum(tokens_prevented), sum(response_time_ms), count(cache_hit), count(*) FILTER (WHERE cache_hit)
FROM tool_operations GROUP BY 1, 2;
`,

	// 6: operations committed by small writes and not yet moved into
	// tool_operations, the rollups and the sessions (see pending.go): the
	// columns of tool_operations, without indexes (a move takes them all;
	// their ids are unique through operation_ids, claimed when they were
	// staged).
	`
CREATE TABLE pending_operations (
	id               uuid             NOT NULL,
	session_id       uuid             NOT NULL,
	tool_name        text             NOT NULL,
	operation_mode   text             NOT NULL,
	parameters       text             NOT NULL DEFAULT '{}',
	file_path        text,
	tokens_original  bigint           NOT NULL,
	tokens_actual    bigint           NOT NULL,
	tokens_prevented bigint           NOT NULL,
	response_time_ms double precision NOT NULL,
	tool_id          text             NOT NULL,
	created_at       timestamptz      NOT NULL,
	cache_hit        boolean
);
`,
}

// Advisory lock keys (pg_advisory_xact_lock): one for migrations, one for
// creating partitions. Arbitrary, fixed constants.
const (
	lockMigrate    int64 = 0x6f6d6e696d656d01 // "omnimem" 1
	lockPartitions int64 = 0x6f6d6e696d656d02
)

// migrate brings the database to version len(migrations). Each migration
// runs in a transaction of its own together with its schema_version row,
// under a transaction-scoped advisory lock, so that replicas starting at
// once apply each migration exactly once. A database newer than the code is
// refused rather than misread.
func (s *Store) migrate(ctx context.Context) (from, to int, err error) {
	from = -1
	for {
		before, after, err := s.migrateOne(ctx)
		if err != nil {
			return max(from, before), before, err
		}
		if from < 0 {
			from = before
		}
		if after == before {
			return from, after, nil
		}
	}
}

func (s *Store) migrateOne(ctx context.Context) (before, after int, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockMigrate); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
	version    integer     NOT NULL PRIMARY KEY,
	applied_at timestamptz NOT NULL
)`); err != nil {
			return fmt.Errorf("create schema_version: %w", err)
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_version`).Scan(&before); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		after = before
		if before > len(migrations) {
			return fmt.Errorf("%w: database schema version %d is newer than this program supports (%d); upgrade omnimemory-metrics or use another database",
				ErrSchemaTooNew, before, len(migrations))
		}
		if before == len(migrations) {
			return nil
		}
		if _, err := tx.Exec(ctx, migrations[before]); err != nil {
			return fmt.Errorf("apply schema migration %d: %w", before+1, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)`,
			before+1, time.Now().UTC()); err != nil {
			return fmt.Errorf("record schema migration %d: %w", before+1, err)
		}
		after = before + 1
		return nil
	})
	if err != nil {
		return before, before, err
	}
	return before, after, nil
}

// monthStart answers the first instant (UTC) of t's month.
func monthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// ensureMonths creates the partitions of tool_operations for the months
// (first instants, UTC) not known to exist yet, in one short transaction
// under an advisory lock (two replicas creating one partition at once would
// otherwise collide in the catalog). It runs before, not inside, the write
// transaction: creating a partition locks the parent table, and an empty
// partition is harmless should the write then fail.
func (s *Store) ensureMonths(ctx context.Context, months []time.Time) error {
	var missing []time.Time
	for _, m := range months {
		if _, ok := s.months.Load(m.UnixMicro()); !ok {
			missing = append(missing, m)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockPartitions); err != nil {
			return err
		}
		for _, m := range missing {
			name := fmt.Sprintf("tool_operations_p%04d%02d", m.Year(), int(m.Month()))
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&exists); err != nil {
				return err
			}
			if exists {
				continue
			}
			next := m.AddDate(0, 1, 0)
			q := fmt.Sprintf(`CREATE TABLE %s PARTITION OF tool_operations FOR VALUES FROM ('%s') TO ('%s')`,
				name, m.Format("2006-01-02 15:04:05Z07:00"), next.Format("2006-01-02 15:04:05Z07:00"))
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("create partition %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, m := range missing {
		s.months.Store(m.UnixMicro(), true)
	}
	return nil
}
