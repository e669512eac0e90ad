package sqlite

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/internal/sqlq"
)

var _ tsdb.Expirer = (*Store)(nil)

// expireOpsSQL deletes, oldest first, at most its second argument of the
// operations older than its first: rowids found through the created_at
// index, so that a batch reads no more of the table than it deletes.
const expireOpsSQL = `DELETE FROM tool_operations WHERE rowid IN
	(SELECT rowid FROM tool_operations WHERE created_at < ? ORDER BY created_at LIMIT ?)`

// expireSpendSQL deletes, oldest first, at most its second argument of the
// spend points older than its first, found through their time index.
const expireSpendSQL = `DELETE FROM spend_points WHERE id IN
	(SELECT id FROM spend_points WHERE at < ? ORDER BY at LIMIT ?)`

// Giving free pages back (auto_vacuum=INCREMENTAL files only): once more
// than 1/vacuumShare of the file's pages are free, ExpireBefore gives back
// up to vacuumStep pages per call (4 MiB, one short write). Below that the
// free pages stay for new rows to reuse: under a steady load, what one
// pass deletes the next hours write again, and giving it back would only
// grow the file again.
const (
	vacuumShare = 4
	vacuumStep  = 1024
)

// openRetention reads whether the file gives free pages back, when the
// store opens. (The raw horizon is read by the first read that plans with
// it: see sqlq.Horizon.)
func (s *Store) openRetention(ctx context.Context) error {
	var mode int
	if err := s.writer.QueryRowContext(ctx, `PRAGMA auto_vacuum`).Scan(&mode); err != nil {
		return fmt.Errorf("read auto_vacuum: %w", err)
	}
	s.autoVacuum = mode == 2 // INCREMENTAL
	return nil
}

// ExpireBefore moves the raw horizon to cutoff's hour (never back) and
// deletes at most batch of the operations, then spend points, older than
// that hour, oldest first, all in one short write transaction on the
// writer connection: ingest commits wait for one batch at most. The
// horizon and the deletes commit together, so a reader sees both or
// neither. The rollups, and sessions' running totals, are kept.
//
// On a file created with auto_vacuum=INCREMENTAL, once the deletes have
// caught up and more than a quarter of the file is free, each call gives
// up to 4 MiB of free pages back to the file system; an older file reuses
// its free pages for new rows instead (it stops growing, but does not
// shrink until a VACUUM).
func (s *Store) ExpireBefore(ctx context.Context, cutoff time.Time, batch int) (tsdb.Expiry, error) {
	if err := s.startRead(ctx); err != nil {
		return tsdb.Expiry{}, err
	}
	hour, err := sqlq.ExpiryHour(cutoff, batch)
	if err != nil {
		return tsdb.Expiry{}, err
	}
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return tsdb.Expiry{}, s.wrap("begin expiry", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op
	var horizon int64
	if err := tx.QueryRowContext(ctx, dialect.AdvanceHorizonSQL(), hour).Scan(&horizon); err != nil {
		return tsdb.Expiry{}, s.wrap("move the raw horizon", err)
	}
	ex := tsdb.Expiry{Horizon: fromMicros(horizon)}
	for _, d := range []struct {
		sql string
		n   *int
	}{{expireOpsSQL, &ex.Operations}, {expireSpendSQL, &ex.SpendPoints}} {
		left := batch - ex.Operations - ex.SpendPoints
		if left == 0 {
			break
		}
		res, err := tx.ExecContext(ctx, d.sql, hour, left)
		if err != nil {
			return tsdb.Expiry{}, s.wrap("expire", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return tsdb.Expiry{}, s.wrap("expire", err)
		}
		*d.n = int(n)
	}
	if err := tx.Commit(); err != nil {
		return tsdb.Expiry{}, s.wrap("commit expiry", err)
	}
	s.horizon.Saw(horizon)
	s.committed()
	deleted := ex.Operations + ex.SpendPoints
	ex.More = deleted == batch
	switch {
	case ex.More:
	case s.autoVacuum:
		vacuumed, err := s.giveBack(ctx)
		if err != nil {
			return ex, s.wrap("give free pages back", err)
		}
		ex.More = vacuumed
	case deleted > 0:
		s.noVacuumLogged.Do(func() {
			s.logger.Info("retention deleted rows: the database file reuses their space for new rows but does not shrink; "+
				"it was created before auto_vacuum was enabled, and a one-time VACUUM with the service stopped lets it shrink "+
				"(see docs/operations.md, Retention)", "path", s.path)
		})
	}
	return ex, nil
}

// giveBack gives up to vacuumStep free pages back to the file system when
// more than 1/vacuumShare of the file is free (for auto_vacuum=INCREMENTAL
// files), and answers whether it gave any.
func (s *Store) giveBack(ctx context.Context) (bool, error) {
	var free, pages int
	if err := s.writer.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&free); err != nil {
		return false, err
	}
	if err := s.writer.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		return false, err
	}
	if free*vacuumShare <= pages {
		return false, nil
	}
	// incremental_vacuum answers a row per page it frees: read them all,
	// or it stops after the first.
	rows, err := s.writer.QueryContext(ctx, fmt.Sprintf(`PRAGMA incremental_vacuum(%d)`, vacuumStep))
	if err != nil {
		return false, err
	}
	for rows.Next() {
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return false, err
	}
	s.committed()
	return true, nil
}
