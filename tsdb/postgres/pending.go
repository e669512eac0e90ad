package postgres

import (
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/internal/sqlq"
)

// Staging. A commit of single-operation requests carries a dozen operations
// or so; storing them in full costs every commit seven statements (the ids,
// the operations into their partition and its three indexes, four rollups,
// the sessions), whose rows every such commit shares (the current hour's
// rollup rows), so that commits cannot overlap. So a commit of stageMax
// operations or fewer claims the ids in operation_ids (the dedup of every
// write, whichever replica takes it) and inserts the operations' columns
// into pending_operations, a plain table without indexes, in one implicit
// transaction with their announcement: once it returns, they are committed
// as after the full write. A mover then moves what is pending, in a
// transaction of its own that deletes it from pending_operations, into
// tool_operations, the rollups and the sessions at batch cost, on a
// connection of its own, beside the writer's next commits:
//
//   - drainAfter after a stage, in the background, or at once when drainAt
//     or more are pending;
//   - on the writer's turn when stageBound or more are pending (the mover
//     falls behind: the writer waits for it, which bounds the table);
//   - before every read of any replica (flush), so that a read sees every
//     operation acknowledged, by whichever replica, before it began, as if
//     written in full;
//   - when the store closes, and when it opens on a database left with
//     pending operations (a crash after the acknowledgement, or a replica
//     gone: nothing is lost).
//
// Movers of several replicas, or of one, may run at once: the rows of a
// move are locked by its DELETE, so another move waits for it and then
// skips them, and each is moved once. The replica feed reads announced
// operations from both tables in one statement (see fetchAnnouncedSQL).
const (
	stageMax   = 256
	drainAt    = 1024
	stageBound = 16 * drainAt
)

// drainAfter is how long the background move waits after a stage (a
// variable: tests make it longer).
var drainAfter = 100 * time.Millisecond

// movePendingSQL takes every pending operation; rows another move deletes
// make it wait for that one, then skip them.
var movePendingSQL = `DELETE FROM pending_operations RETURNING ` + opColumnList

// anyPendingSQL answers whether a flush has anything to move.
const anyPendingSQL = `SELECT EXISTS (SELECT 1 FROM pending_operations)`

// stage stores ops (their ids given, sorted) in pending_operations, in one
// round trip, and tells the mover.
func (s *Store) stage(ctx context.Context, ops []tsdb.Operation, ids [][16]byte) error {
	var b pgx.Batch
	b.Queue(insertNewIDsSQL, ids)
	b.Queue(insertOpsSQLPending, opArrays(ops)...)
	if s.announce {
		b.Queue(announceSQL, announcePayloads(s.origin, ops)) // delivered on commit only
	}
	if err := s.pool.SendBatch(ctx, &b).Close(); err != nil {
		return err
	}
	switch n := s.pending.Add(int64(len(ops))); {
	case n >= stageBound:
		// ops are committed whatever this answers: a failed move is
		// retried by the next one.
		if err := s.drain(ctx); err != nil {
			s.logger.Warn("moving pending operations failed; they stay pending", "err", err)
		}
	case n >= drainAt:
		s.mover.Now()
	default:
		s.mover.Wake()
	}
	return nil
}

// flush moves every pending operation, of any replica, so that a read that
// follows sees them; it costs one round trip when none is pending.
func (s *Store) flush(ctx context.Context) error {
	var some bool
	if err := s.pool.QueryRow(ctx, anyPendingSQL).Scan(&some); err != nil {
		return s.wrap("look for pending operations", err)
	}
	if !some {
		return nil
	}
	return s.drain(ctx)
}

// drain moves every pending operation into tool_operations, the rollups
// and the sessions (one move of this store at a time).
func (s *Store) drain(ctx context.Context) error {
	s.drainMu.Lock()
	defer s.drainMu.Unlock()
	counted := s.pending.Load()
	if err := s.retried(func() error { return s.move(ctx) }); err != nil {
		return s.wrap("move pending operations", err)
	}
	s.pending.Add(-counted)
	return nil
}

// move is one transaction of drain: it deletes the pending operations and
// stores them in full, or, failing, leaves them pending.
func (s *Store) move(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit this is a no-op
	rows, err := tx.Query(ctx, movePendingSQL)
	if err != nil {
		return err
	}
	var ops []tsdb.Operation
	for rows.Next() {
		op, err := scanOperation(rows)
		if err != nil {
			rows.Close()
			return err
		}
		ops = append(ops, op)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(ops) == 0 {
		return tx.Commit(ctx)
	}
	// Time order: a move then appends to the partitions' indexes, as a
	// batch of the service does.
	slices.SortFunc(ops, func(a, b tsdb.Operation) int { return a.CreatedAt.Compare(b.CreatedAt) })
	if err := s.ensureMonths(ctx, opMonths(ops)); err != nil {
		return err
	}
	return s.storeRows(ctx, tx, ops, &pgx.Batch{}, false) // announced when staged
}

// startMover starts the mover of s: drainAfter after a stage, at once
// when drainAt are pending (see stage).
func (s *Store) startMover() {
	s.mover = sqlq.StartMover(drainAfter, func() {
		ctx, cancel := s.bound(context.Background())
		defer cancel()
		if err := s.drain(ctx); err != nil && !s.closed.Load() {
			s.logger.Warn("moving pending operations failed; they stay pending", "err", err)
		}
	})
}
