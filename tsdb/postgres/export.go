package postgres

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// ExportOperations hands fn every operation matching f, oldest first (ties
// by id), in keyset pages of s.exportPage operations: each page is one
// query walking a (created_at, id) index from where the last one stopped, so
// memory stays bounded whatever the number of rows, and no connection is
// held while fn runs. Operations committed during an export with times past
// its position are included; the pages never repeat or skip one.
func (s *Store) ExportOperations(ctx context.Context, f tsdb.OperationFilter, fn func(*tsdb.Operation) error) error {
	_, cancel, err := s.startRead(ctx) // each page is bounded on its own
	cancel()
	if err != nil {
		return err
	}
	f.Limit, f.Offset = 0, 0
	page := make([]tsdb.Operation, 0, s.exportPage)
	var (
		lastAt time.Time
		lastID uuid.UUID
		more   bool // a page was read before: continue after (lastAt, lastID)
	)
	for {
		q := dialect.NewQuery()
		where := q.OperationWhere(f, false)
		if more {
			cond := "(created_at, id) > (" + q.Arg(lastAt) + ", " + q.Arg(lastID) + ")"
			if where == "" {
				where = " WHERE " + cond
			} else {
				where += " AND " + cond
			}
		}
		sql := "SELECT " + opColumnList + " FROM tool_operations" + where +
			" ORDER BY created_at, id LIMIT " + q.Arg(s.exportPage)
		var err error
		if page, err = s.readPage(ctx, page[:0], sql, q.Args); err != nil {
			return err
		}
		if len(page) > 0 { // taken before fn may touch the page
			lastAt, lastID, more = page[len(page)-1].CreatedAt, page[len(page)-1].ID, true
		}
		for i := range page {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(&page[i]); err != nil {
				return err
			}
		}
		if len(page) < s.exportPage {
			return nil
		}
	}
}

// readPage appends the operations sql reads to page, within the query
// timeout.
func (s *Store) readPage(ctx context.Context, page []tsdb.Operation, sql string, args []any) ([]tsdb.Operation, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, s.wrap("export operations", err)
	}
	defer rows.Close()
	for rows.Next() {
		op, err := scanOperation(rows)
		if err != nil {
			return nil, s.wrap("read operation", err)
		}
		page = append(page, op)
	}
	return page, s.wrap("export operations", rows.Err())
}
