package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"slices"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/internal/sqlq"
)

// Staging. A commit of single-operation requests carries a dozen operations
// or so; writing them into tool_operations, its indexes, five rollups and
// the sessions costs every commit the same few dozen pages (the right edge
// of each index, a rollup row per key, a session row per session), and the
// writer's time per operation is several times that of a batch. So such a
// commit (stageMax operations at most) only inserts the operations'
// columns into pending_operations, one b-tree keyed by id, in the same
// BEGIN IMMEDIATE, synchronous=FULL transaction as any write: once it
// returns, the operations are as durable as after the full write. drain
// then moves what is pending into tool_operations, the rollups and the
// sessions in one transaction of many operations, at batch cost:
//
//   - after a stage that leaves drainAt or more pending, on the writer's
//     turn (the next commit waits for it, which bounds the table);
//   - drainAfter after a stage, in the background, when writes pause;
//   - before every read of this store (flush), so that a read sees every
//     operation acknowledged before it began, as if written in full;
//   - when the store closes, and when it opens on a file left with pending
//     operations (a crash after the acknowledgement: nothing is lost).
//
// A drain moves the copies this process kept of the operations it staged
// (pendingOps) rather than reading the rows back (about a fifth of a
// move's CPU time), unless the table holds rows it did not stage.
//
// Dedup sees both tables (skipDuplicates), in the write transaction, so a
// retry finds its first copy wherever it is, also from another process on
// the file. Reads of another process see a process's staged operations once
// they are drained: drainAfter at most after its writes pause.
const (
	stageMax = 256
	drainAt  = 1024
	// stagedMax bounds the copies of staged operations kept for the
	// drain (Store.staged): past it, when drains keep failing, they are
	// dropped and the drain reads pending_operations instead.
	stagedMax = 4 * drainAt
)

// drainAfter is how long the background drain waits after a stage (a
// variable: tests make it longer).
var drainAfter = 100 * time.Millisecond

// storedSQL counts the operations of tool_operations whose id is one of a
// JSON array of ids in hex.
const storedSQL = `SELECT count(*) FROM tool_operations WHERE id IN (SELECT unhex(value) FROM json_each(?))`

// storedInSQL counts the operations of tool_operations whose id is between
// two ids: one seek of its id index, and a step per id found.
const storedInSQL = `SELECT count(*) FROM tool_operations WHERE id BETWEEN ? AND ?`

// anyStored answers whether the id of an operation of ops is in
// tool_operations: pending_operations' own key cannot tell, and such an
// operation must fail as it would in the full write, not wait there. The
// Keyed ones were looked up by skipDuplicates already. The others carry
// ids this service drew just now (UUIDv7: time first), so that the span
// between the least and the greatest of them holds no stored id, as a
// count of it answers in one seek; should it hold one (an id drawn as
// long ago as a moved one, or a client's id that falls in it), each id is
// looked up.
func anyStored(w writeTx, stmts *writeStmts, ops []tsdb.Operation) (bool, error) {
	var lo, hi []byte
	for i := range ops {
		if ops[i].Keyed {
			continue
		}
		id := ops[i].ID[:]
		if lo == nil || bytes.Compare(id, lo) < 0 {
			lo = id
		}
		if hi == nil || bytes.Compare(id, hi) > 0 {
			hi = id
		}
	}
	if lo == nil {
		return false, nil
	}
	var n int
	if err := w.tx.StmtContext(w.stmtCtx, stmts.storedIn).QueryRowContext(w.stmtCtx, lo, hi).Scan(&n); err != nil || n == 0 {
		return false, err
	}
	ids := make([]byte, 0, len(ops)*35+2)
	ids = append(ids, '[')
	for i := range ops {
		if ops[i].Keyed {
			continue
		}
		if len(ids) > 1 {
			ids = append(ids, ',')
		}
		ids = append(ids, '"')
		ids = hex.AppendEncode(ids, ops[i].ID[:])
		ids = append(ids, '"')
	}
	ids = append(ids, ']')
	err := w.tx.StmtContext(w.stmtCtx, stmts.stored).QueryRowContext(w.stmtCtx, string(ids)).Scan(&n)
	return n > 0, err
}

// stage inserts ops into pending_operations and commits w.
func (s *Store) stage(w writeTx, stmts *writeStmts, ops []tsdb.Operation) error {
	args, release := pooledArgs()
	defer release()
	var err error
	if *args, err = stmts.stage.exec(w, len(ops), *args, func(buf []any, i, j int) []any {
		return appendOpArgs(buf, ops[i:j])
	}); err != nil {
		return s.wrap("stage operations", err)
	}
	if err := w.tx.Commit(); err != nil {
		return s.wrap("commit write", err)
	}
	s.committed()
	if s.staged != nil || s.pending.Load() == 0 {
		if len(s.staged)+len(ops) <= stagedMax {
			s.staged = append(s.staged, ops...)
		} else {
			s.staged = nil
		}
	}
	if s.pending.Add(int64(len(ops))) >= drainAt {
		// ops are durable whatever this answers: a failed drain is
		// retried by the next one.
		if err := s.drainLocked(w.stmtCtx, stmts, true); err != nil {
			s.logger.Warn("moving pending operations failed; they stay pending", "err", err)
		}
		return nil
	}
	s.mover.Wake()
	return nil
}

// startRead checks that the store is open and flushes, so that the read
// that follows sees every operation this process acknowledged.
func (s *Store) startRead(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	return s.flush(ctx)
}

// flush drains the operations this process staged, so that a read that
// follows sees them; it costs nothing when none is pending.
func (s *Store) flush(ctx context.Context) error { return s.drain(ctx, false) }

// drain takes writeMu and drains (see drainLocked).
func (s *Store) drain(ctx context.Context, checkpoint bool) error {
	if s.pending.Load() == 0 {
		return nil
	}
	stmts, unlock, err := s.lockWriter(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return s.drainLocked(ctx, stmts, checkpoint)
}

// drainLocked moves every pending operation into tool_operations, the
// rollups and the sessions, in one transaction that also deletes them
// from pending_operations, and then, with checkpoint, checkpoints the
// log. The caller holds writeMu.
func (s *Store) drainLocked(ctx context.Context, stmts *writeStmts, checkpoint bool) error {
	if s.pending.Load() == 0 {
		return nil
	}
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap("begin write", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op
	ops, copies, err := s.pendingOps(ctx, tx)
	if err != nil {
		return err
	}
	if len(ops) > 0 {
		w := newWriteTx(ctx, tx)
		if err := s.writeRows(w, stmts, ops); err != nil {
			if copies {
				// Copies that another process moved already fail on
				// their ids: the table is read instead.
				s.staged = nil
				tx.Rollback() //nolint:errcheck // the drain starts over
				return s.drainLocked(ctx, stmts, checkpoint)
			}
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM pending_operations"); err != nil {
			return s.wrap("delete pending operations", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return s.wrap("commit pending operations", err)
	}
	s.pending.Store(0)
	clear(s.staged)
	s.staged = s.staged[:0]
	s.committed()
	if checkpoint {
		// Nothing else writes while writeMu is held: this checkpoint
		// copies the whole log, so that the next commit starts the log
		// over (overwriting it costs an fsync about half what growing
		// it does; under continuous single-operation ingest the
		// background checkpoint would never catch up and the log would
		// grow to walFallbackPages). A read's drain leaves this to the
		// background checkpoint: it is small, and the read waits.
		var busy, logPages, done int
		if err := s.writer.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logPages, &done); err != nil {
			s.logger.Warn("checkpoint after moving pending operations failed", "err", err)
		}
	}
	return nil
}

// pendingOps answers the rows of pending_operations in tx, in the order
// of their ids. When they are as many as the copies this process kept of
// the operations it staged (Store.staged), they are those, and copies is
// true: a drain is all that takes rows out, and where a drain of another
// process took this one's, writeRows fails on their ids and the caller
// reads the table instead. A count of the table then replaces reading and
// decoding every row.
func (s *Store) pendingOps(ctx context.Context, tx *sql.Tx) (ops []tsdb.Operation, copies bool, err error) {
	if len(s.staged) > 0 {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pending_operations`).Scan(&n); err != nil {
			return nil, false, s.wrap("count pending operations", err)
		}
		if n == len(s.staged) {
			slices.SortFunc(s.staged, func(a, b tsdb.Operation) int { return bytes.Compare(a.ID[:], b.ID[:]) })
			return s.staged, true, nil
		}
		s.staged = nil
	}
	rows, err := tx.QueryContext(ctx, "SELECT "+opColumnList+" FROM pending_operations")
	if err != nil {
		return nil, false, s.wrap("read pending operations", err)
	}
	defer rows.Close()
	for rows.Next() {
		op, err := scanOperation(rows)
		if err != nil {
			return nil, false, s.wrap("read pending operation", err)
		}
		ops = append(ops, op)
	}
	if err := rows.Err(); err != nil {
		return nil, false, s.wrap("read pending operations", err)
	}
	return ops, false, nil
}

// startMover starts the mover of s: drainAfter after a stage, so that
// staged operations do not wait for a read or the next drainAt.
func (s *Store) startMover() {
	s.mover = sqlq.StartMover(drainAfter, func() {
		if err := s.drain(context.Background(), true); err != nil && !s.closed.Load() {
			s.logger.Warn("moving pending operations failed; they stay pending", "err", err)
		}
	})
}
