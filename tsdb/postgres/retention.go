package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/internal/sqlq"
)

var _ tsdb.Expirer = (*Store)(nil)

// lockExpire is the session-level advisory lock that one replica at a time
// holds while it expires.
const lockExpire int64 = 0x6f6d6e696d656d03

// codeNoPartition is the SQLSTATE of an insert whose month has no
// partition (check_violation).
const codeNoPartition = "23514"

// dropLockTimeout bounds how long detaching or dropping a partition waits
// for a lock: a query still reading the month delays it to the next call,
// instead of queueing other sessions behind the wait.
const dropLockTimeout = "2s"

// partitionName matches the names ensureMonths gives the partitions.
var partitionName = regexp.MustCompile(`^tool_operations_p(\d{4})(\d{2})$`)

// partitionsSQL lists the month tables of tool_operations: its partitions,
// a partition whose detach was interrupted (pending), and a month table
// already detached whose drop failed (no longer a partition).
const partitionsSQL = `SELECT c.relname, c.relispartition, coalesce(i.inhdetachpending, false)
FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
WHERE c.relkind = 'r' AND c.relname ~ '^tool_operations_p[0-9]{6}$'
	AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'tool_operations'::regclass)`

// The statements below find their rows through an index and delete them
// by "= ANY(ARRAY(...))": as "IN (subquery)" the planner may hash-join
// with a scan of the whole table, a cost that grows with the table, not
// with the batch.

// walkIDsSQL deletes the operation_ids of the next batch of a month
// partition's rows after a (created_at, id) position, and answers how many
// rows the batch holds and the last one's position (none when empty).
// %s is the partition. (An operation sent so late that it lands in the
// month behind the walk keeps its id row after the month is dropped: it
// only keeps that id from being stored again.)
const walkIDsSQL = `WITH b AS (
	SELECT created_at, id FROM %s WHERE (created_at, id) > ($1, $2) ORDER BY created_at, id LIMIT $3
), d AS (
	DELETE FROM operation_ids WHERE id = ANY(ARRAY(SELECT id FROM b))
)
SELECT (SELECT count(*) FROM b), l.created_at, l.id
FROM (SELECT created_at, id FROM b ORDER BY created_at DESC, id DESC LIMIT 1) AS l`

// expireOpsSQL deletes, oldest first, at most $2 of the operations of a
// month partition older than $1 (found through its created_at index, and
// deleted by their tuple ids), and their ids, and answers how many. %[1]s
// is the partition.
const expireOpsSQL = `WITH d AS (
	DELETE FROM %[1]s WHERE ctid = ANY(ARRAY(SELECT ctid FROM %[1]s WHERE created_at < $1 ORDER BY created_at LIMIT $2))
	RETURNING id
), i AS (
	DELETE FROM operation_ids WHERE id = ANY(ARRAY(SELECT id FROM d))
)
SELECT count(*) FROM d`

// expireSpendSQL deletes, oldest first, at most $2 of the spend points
// older than $1, found through their time index and deleted by their tuple
// ids.
const expireSpendSQL = `DELETE FROM spend_points
WHERE ctid = ANY(ARRAY(SELECT ctid FROM spend_points WHERE at < $1 ORDER BY at LIMIT $2))`

// partitionWalk is how far ExpireBefore has walked a wholly expired
// partition's rows, deleting their operation_ids before the partition is
// dropped.
type partitionWalk struct {
	name string
	at   time.Time
	id   uuid.UUID
}

// monthTable is a month table of tool_operations.
type monthTable struct {
	name      string
	month     time.Time
	partition bool // attached (or pending detach)
	pending   bool // a detach was interrupted
}

// ExpireBefore moves the raw horizon to cutoff's hour (never back;
// committed first, so that every replica plans its reads with it before a
// row behind it goes), then takes one step of expiry:
//
//   - while a month partition lies wholly before the horizon: deletes the
//     operation_ids of the next batch of its rows (the ids keep retries
//     from being stored twice, and go with their operations), and once
//     they are all gone detaches the partition (CONCURRENTLY: ingest and
//     reads go on) and drops it, without deleting its rows one by one;
//   - then: deletes at most batch of the remaining operations (with their
//     ids), then spend points, older than the horizon, oldest first, in one
//     short transaction.
//
// One replica at a time expires (a session-level advisory lock); the
// others' calls change nothing but the horizon and answer no more. The
// rollups and sessions are kept.
func (s *Store) ExpireBefore(ctx context.Context, cutoff time.Time, batch int) (tsdb.Expiry, error) {
	if s.closed.Load() {
		return tsdb.Expiry{}, errClosed
	}
	hour, err := sqlq.ExpiryHour(cutoff, batch)
	if err != nil {
		return tsdb.Expiry{}, err
	}
	// Pending operations are moved first, so that those behind the
	// horizon go with their ids as any other.
	fctx, cancel := s.bound(ctx)
	err = s.flush(fctx)
	cancel()
	if err != nil {
		return tsdb.Expiry{}, err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return tsdb.Expiry{}, s.wrap("expire", err)
	}
	defer conn.Release()
	var horizon int64
	if err := conn.QueryRow(ctx, dialect.AdvanceHorizonSQL(), hour).Scan(&horizon); err != nil {
		return tsdb.Expiry{}, s.wrap("move the raw horizon", err)
	}
	s.horizon.Saw(horizon)
	ex := tsdb.Expiry{Horizon: fromMicros(horizon)}
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, lockExpire).Scan(&locked); err != nil {
		return ex, s.wrap("expire", err)
	}
	if !locked {
		return ex, nil // another replica is expiring
	}
	defer func() {
		if _, err := conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, lockExpire); err != nil {
			conn.Conn().Close(context.Background()) //nolint:errcheck // closing the session releases the lock too
		}
	}()

	tables, err := s.monthTables(ctx, conn)
	if err != nil {
		return ex, s.wrap("list partitions", err)
	}
	// Every month before the horizon's goes whole; rows before the
	// horizon remain only in the month that holds its last instant.
	partial := monthStart(fromMicros(hour - 1))
	var inPartial *monthTable
	for _, m := range tables {
		if m.month.AddDate(0, 1, 0).UnixMicro() <= hour {
			n, err := s.expirePartition(ctx, conn, m, batch)
			ex.Operations, ex.More = n, true
			return ex, s.wrap("expire partition "+m.name, err)
		}
		if m.month.Equal(partial) && m.partition {
			inPartial = &m
		}
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if inPartial != nil {
			q := fmt.Sprintf(expireOpsSQL, pgx.Identifier{inPartial.name}.Sanitize())
			if err := tx.QueryRow(ctx, q, fromMicros(hour), batch).Scan(&ex.Operations); err != nil {
				return err
			}
		}
		if left := batch - ex.Operations; left > 0 {
			tag, err := tx.Exec(ctx, expireSpendSQL, fromMicros(hour), left)
			if err != nil {
				return err
			}
			ex.SpendPoints = int(tag.RowsAffected())
		}
		return nil
	})
	if err != nil {
		return tsdb.Expiry{Horizon: ex.Horizon}, s.wrap("expire", err)
	}
	ex.More = ex.Operations+ex.SpendPoints == batch
	return ex, nil
}

// monthTables lists the month tables of tool_operations, oldest first.
func (s *Store) monthTables(ctx context.Context, conn *pgxpool.Conn) ([]monthTable, error) {
	rows, err := conn.Query(ctx, partitionsSQL)
	if err != nil {
		return nil, err
	}
	var out []monthTable
	for rows.Next() {
		var m monthTable
		if err := rows.Scan(&m.name, &m.partition, &m.pending); err != nil {
			rows.Close()
			return nil, err
		}
		sub := partitionName.FindStringSubmatch(m.name)
		if sub == nil {
			continue
		}
		year, _ := strconv.Atoi(sub[1])
		month, _ := strconv.Atoi(sub[2])
		m.month = time.Date(year, time.Month(month), 1, 0, 0, 0, 0, time.UTC)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b monthTable) int { return a.month.Compare(b.month) })
	return out, nil
}

// expirePartition takes one step of expiring a month wholly before the
// horizon: the operation_ids of the next batch of its rows (answering how
// many rows the batch held), or, once they are all gone, the partition
// detached and dropped.
func (s *Store) expirePartition(ctx context.Context, conn *pgxpool.Conn, m monthTable, batch int) (int, error) {
	if m.partition && !m.pending {
		s.walkMu.Lock()
		w := s.walk
		if w.name != m.name {
			w = partitionWalk{name: m.name}
		}
		s.walkMu.Unlock()
		var n int
		err := conn.QueryRow(ctx, fmt.Sprintf(walkIDsSQL, pgx.Identifier{m.name}.Sanitize()), w.at, w.id, batch).Scan(&n, &w.at, &w.id)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return 0, err
		}
		if n == batch {
			s.walkMu.Lock()
			s.walk = w
			s.walkMu.Unlock()
			return n, nil
		}
		s.months.Delete(m.month.UnixMicro())
		return n, s.dropPartition(ctx, conn, m)
	}
	s.months.Delete(m.month.UnixMicro())
	return 0, s.dropPartition(ctx, conn, m)
}

// dropPartition detaches m (finishing an interrupted detach) and drops it,
// each step waiting dropLockTimeout at most for its locks.
func (s *Store) dropPartition(ctx context.Context, conn *pgxpool.Conn, m monthTable) error {
	if _, err := conn.Exec(ctx, `SET lock_timeout = '`+dropLockTimeout+`'`); err != nil {
		return err
	}
	defer conn.Exec(context.Background(), `RESET lock_timeout`) //nolint:errcheck // the next step sets it again
	name := pgx.Identifier{m.name}.Sanitize()
	switch {
	case m.pending:
		if _, err := conn.Exec(ctx, `ALTER TABLE tool_operations DETACH PARTITION `+name+` FINALIZE`); err != nil {
			return fmt.Errorf("finish detaching: %w", err)
		}
	case m.partition:
		if _, err := conn.Exec(ctx, `ALTER TABLE tool_operations DETACH PARTITION `+name+` CONCURRENTLY`); err != nil {
			return fmt.Errorf("detach: %w", err)
		}
	}
	if _, err := conn.Exec(ctx, `DROP TABLE `+name); err != nil {
		return fmt.Errorf("drop: %w", err)
	}
	s.walkMu.Lock()
	s.walk = partitionWalk{} // a month made again later is walked from its start
	s.walkMu.Unlock()
	s.logger.Info("retention dropped a month's partition", "partition", m.name)
	return nil
}
