package sqlite

import (
	"context"
	"database/sql"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// ExportOperations hands fn every operation matching f, oldest first (ties
// by id), from one read transaction: the export is a consistent snapshot,
// and rows are read as SQLite produces them, never collected. The query
// walks an index already in (created_at, id) order (see exportSQL), so
// SQLite does not sort either: memory stays constant whatever the number of
// rows. While it runs the export holds one reader connection, and the
// write-ahead log cannot be folded back past its snapshot.
func (s *Store) ExportOperations(ctx context.Context, f tsdb.OperationFilter, fn func(*tsdb.Operation) error) error {
	if err := s.startRead(ctx); err != nil {
		return err
	}
	tx, err := s.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return s.wrap("begin read", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only

	q, args := exportSQL(f)
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return s.wrap("export operations", err)
	}
	defer rows.Close()
	for rows.Next() {
		op, err := scanOperation(rows)
		if err != nil {
			return s.wrap("read operation", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(&op); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.wrap("export operations", err)
	}
	return nil
}

// exportSQL is the query of ExportOperations. It names the index to walk,
// each in (created_at, id) order after its equality columns: the session's
// (a session holds few operations), else the tool id's, else the time
// index. tool_name and operation_mode are checked on the rows the walk
// meets: their indexes would hand rows out of time order, and sorting the
// matches would hold them all.
func exportSQL(f tsdb.OperationFilter) (string, []any) {
	index := "idx_ops_time"
	switch {
	case f.SessionID != nil:
		index = "idx_ops_session_time"
	case f.ToolID != "":
		index = "idx_ops_toolid_time"
	}
	f.Limit, f.Offset = 0, 0
	q := dialect.NewQuery()
	return "SELECT " + opColumnList + " FROM tool_operations INDEXED BY " + index + q.OperationWhere(f, true) +
		" ORDER BY created_at, id", q.Args
}
