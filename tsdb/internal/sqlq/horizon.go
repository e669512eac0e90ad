package sqlq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// horizonName is the store_meta row of the raw horizon: unix microseconds
// (UTC, on an hour boundary) before which raw operations and spend points
// may have been deleted by retention; absent until retention first runs.
const horizonName = "raw_horizon"

// readHorizonSQL reads the raw horizon (no row: none).
const readHorizonSQL = `SELECT value FROM store_meta WHERE name = '` + horizonName + `'`

// AdvanceHorizonSQL moves the raw horizon to its one argument unless it is
// there or later already, and answers the horizon stored.
func (d *Dialect) AdvanceHorizonSQL() string {
	return `INSERT INTO store_meta (name, value) VALUES ('` + horizonName + `', ` + d.Param(1) + `)
ON CONFLICT (name) DO UPDATE SET value = ` + d.Greatest + `(store_meta.value, excluded.value) RETURNING value`
}

// ReadHorizon reads the raw horizon stored, 0 when there is none.
func ReadHorizon(ctx context.Context, query QueryFunc) (int64, error) {
	rows, done, err := query(ctx, readHorizonSQL)
	if err != nil {
		return 0, fmt.Errorf("read raw horizon: %w", err)
	}
	defer done()
	var h int64
	if rows.Next() {
		if err := rows.Scan(&h); err != nil {
			return 0, fmt.Errorf("read raw horizon: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read raw horizon: %w", err)
	}
	return h, nil
}

// Horizon is a store's raw horizon as this process last saw it (unix
// microseconds; 0: none). The horizon only moves forward, and retention
// moves it (a committed write) before deleting any raw row behind it.
type Horizon struct{ v atomic.Int64 }

// Load answers the horizon last seen.
func (h *Horizon) Load() int64 { return h.v.Load() }

// Saw records a horizon read from the store (or just stored); an older one
// than the last seen changes nothing.
func (h *Horizon) Saw(v int64) {
	for {
		cur := h.v.Load()
		if v <= cur || h.v.CompareAndSwap(cur, v) {
			return
		}
	}
}

// horizonAttempts bounds how often Consistent re-plans a read while the
// horizon keeps moving under it (it moves once an hour at most).
const horizonAttempts = 4

// errHorizonMoving: the horizon moved under every attempt of a read.
var errHorizonMoving = errors.New("the raw horizon moved during every attempt of the read")

// Consistent runs fn, a read planned with the horizon it is given, then
// reads the stored horizon again: when it moved meanwhile (another replica,
// or this one's retention), fn may have read raw rows deleted behind the new
// horizon, and it runs again with that one. Retention commits a new horizon
// before it deletes behind it, so a read whose snapshot saw the deletes
// started after the new horizon was committed, and the horizon read after
// it sees the new value: whatever fn answered last was planned with a
// horizon no older than its snapshot's.
func (h *Horizon) Consistent(ctx context.Context, query QueryFunc, fn func(horizon int64) error) error {
	for range horizonAttempts {
		planned := h.Load()
		if err := fn(planned); err != nil {
			return err
		}
		stored, err := ReadHorizon(ctx, query)
		if err != nil {
			return err
		}
		h.Saw(stored)
		if stored <= planned {
			return nil
		}
	}
	return errHorizonMoving
}

// FirstOperationTime answers the created_at of the oldest operation of
// toolID (all tools when empty), or, when it falls before the raw horizon
// hz, where its raw row may be gone, the start of its hour from the hourly
// rollup; ok is false when there is none.
func (d *Dialect) FirstOperationTime(ctx context.Context, query QueryFunc, hz *Horizon, toolID string) (first time.Time, ok bool, err error) {
	err = hz.Consistent(ctx, query, func(horizon int64) error {
		if horizon != 0 {
			q := d.NewQuery()
			before := "hour < " + q.Arg(d.Time(time.UnixMicro(horizon)))
			if first, ok, err = d.minTime(ctx, query, q, Operations.Hourly, "hour", toolID, before); err != nil || ok {
				return err
			}
		}
		first, ok, err = d.minTime(ctx, query, d.NewQuery(), Operations.Raw, Operations.Time, toolID)
		return err
	})
	return first, ok, err
}

// minTime answers the least value of col (a time) in table among the rows
// of toolID (any when empty) that meet every condition of where (written
// in q); ok is false when there is none.
func (d *Dialect) minTime(ctx context.Context, query QueryFunc, q *Query, table, col, toolID string, where ...string) (time.Time, bool, error) {
	if toolID != "" {
		where = append(where, "tool_id = "+q.Arg(toolID))
	}
	sql := "SELECT " + d.Micros("min("+col+")") + " FROM " + table
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	rows, done, err := query(ctx, sql, q.Args...)
	if err != nil {
		return time.Time{}, false, err
	}
	defer done()
	var first *int64
	if rows.Next() {
		if err := rows.Scan(&first); err != nil {
			return time.Time{}, false, err
		}
	}
	if err := rows.Err(); err != nil || first == nil {
		return time.Time{}, false, err
	}
	return time.UnixMicro(*first).UTC(), true, nil
}

// ExpiryHour answers the raw horizon that ExpireBefore(cutoff, batch) moves
// to, the UTC hour that holds cutoff, in unix microseconds; an error when
// batch is not positive.
func ExpiryHour(cutoff time.Time, batch int) (int64, error) {
	if batch <= 0 {
		return 0, fmt.Errorf("expire: batch %d must be positive", batch)
	}
	return tsdb.FloorTo(cutoff.UnixMicro(), tsdb.MicrosPerHour), nil
}
