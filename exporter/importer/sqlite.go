package importer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
	_ "modernc.org/sqlite" // the database/sql driver "sqlite"
)

// sqliteSource is the original service's SQLite file, read in rowid order.
type sqliteSource struct {
	db   *sql.DB
	path string
	// selects read one batch of a table: rows with rowid > ?, in rowid
	// order, at most ? of them. It has no tool_sessions entry when the file
	// has no such table.
	selects map[string]string
}

func absPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("source database: %w", err)
	}
	return abs, nil
}

// openSQLite opens path read-only (mode=ro: the file is never written, and
// the original service may keep running on it) and checks its tables.
func openSQLite(ctx context.Context, path string) (*sqliteSource, error) {
	abs, err := absPath(path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("source database: %w", err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("source database %s is a folder", abs)
	}
	u := url.URL{Path: filepath.ToSlash(abs)}
	db, err := sql.Open("sqlite", "file:"+u.EscapedPath()+"?mode=ro&_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		return nil, fmt.Errorf("source database %s: %w", abs, err)
	}
	db.SetMaxOpenConns(1)
	s := &sqliteSource{db: db, path: abs, selects: map[string]string{}}
	// This service's own embedded store has tables of the same names, with
	// times as integers: importing it would skip every row.
	own, err := s.columns(ctx, "op_rollup_hourly")
	if err == nil && own != nil {
		err = errOwnStore
	}
	var opCols map[string]bool
	if err == nil {
		opCols, err = s.columns(ctx, operationsTable)
	}
	if err == nil && opCols == nil {
		err = errNoOperations
	}
	if err == nil {
		s.selects[operationsTable], err = sqliteSelect(operationsTable, operationColumns, opCols)
	}
	var sessCols map[string]bool
	if err == nil {
		sessCols, err = s.columns(ctx, sessionsTable)
	}
	if err == nil && sessCols != nil {
		s.selects[sessionsTable], err = sqliteSelect(sessionsTable, sessionColumns, sessCols)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("source database %s: %w", abs, err)
	}
	return s, nil
}

var (
	errOwnStore     = errors.New("this is a store of omnimemory-metrics itself, not a database of the original service")
	errNoOperations = fmt.Errorf("no %s table: not a database of the original omnimemory-metrics service", operationsTable)
)

func (s *sqliteSource) Name() string      { return s.path }
func (s *sqliteSource) HasSessions() bool { return s.selects[sessionsTable] != "" }
func (s *sqliteSource) Close() error      { return s.db.Close() }

// columns answers the column names of table, nil when it does not exist.
func (s *sqliteSource) columns(ctx context.Context, table string) (map[string]bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM pragma_table_info(?)`, table)
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %w", table, err)
	}
	defer rows.Close()
	var cols map[string]bool
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		if cols == nil {
			cols = map[string]bool{}
		}
		cols[strings.ToLower(name)] = true
	}
	return cols, rows.Err()
}

// sqliteSelect reads times as text (CAST AS TEXT), so that the driver does
// not turn DATETIME columns into time.Time values with its own rules.
func sqliteSelect(table string, want []column, have map[string]bool) (string, error) {
	exprs := []string{"rowid"}
	for _, c := range want {
		switch {
		case !have[c.name] && c.required:
			return "", fmt.Errorf("table %s has no column %s", table, c.name)
		case !have[c.name]:
			exprs = append(exprs, "NULL")
		case c.time:
			exprs = append(exprs, "CAST("+c.name+" AS TEXT)")
		default:
			exprs = append(exprs, c.name)
		}
	}
	return "SELECT " + strings.Join(exprs, ", ") + " FROM " + table + " WHERE rowid > ? ORDER BY rowid LIMIT ?", nil
}

// Read answers up to limit rows of table after rowid, with the values as
// SQLite holds them (nil, int64, float64, string or []byte).
func (s *sqliteSource) Read(ctx context.Context, table string, after position, limit int) ([]rawRow, error) {
	rows, err := s.db.QueryContext(ctx, s.selects[table], after.Rowid, limit)
	if err != nil {
		return nil, fmt.Errorf("reading the source: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []rawRow
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("reading the source: %w", err)
		}
		rowid, ok := vals[0].(int64)
		if !ok {
			return nil, fmt.Errorf("reading the source: rowid %v is not an integer", vals[0])
		}
		out = append(out, rawRow{pos: position{Rowid: rowid}, values: vals[1:]})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the source: %w", err)
	}
	return out, nil
}

// HasEarlier looks the id up in every form, raw bytes included.
func (s *sqliteSource) HasEarlier(ctx context.Context, before position, id uuid.UUID) (bool, error) {
	hyph := id.String()
	plain := strings.ReplaceAll(hyph, "-", "")
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM `+operationsTable+` WHERE rowid < ? AND id IN (?, ?, ?, ?, ?)`,
		before.Rowid, hyph, strings.ToUpper(hyph), plain, strings.ToUpper(plain), id[:]).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("looking up id %s in the source: %w", id, err)
	}
	return n > 0, nil
}

func (s *sqliteSource) Count(ctx context.Context, table string, after position) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM `+table+` WHERE rowid > ?`, after.Rowid).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting the rows of %s: %w", table, err)
	}
	return n, nil
}
