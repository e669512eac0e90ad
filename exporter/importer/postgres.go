package importer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/omnimemory/omnimemory-metrics/internal/pgurl"
)

// Bounds of every call to a PostgreSQL source: connecting, and each query
// (on the server as statement_timeout, and on the client a little later
// in case the network holds the answer).
const (
	pgConnectTimeout   = 10 * time.Second
	pgStatementTimeout = 2 * time.Minute
	pgCallTimeout      = pgStatementTimeout + 15*time.Second
)

// pgIDKey is tool_operations' id in its key: as text, in byte order, so
// that the order is the same whatever the column's type and collation,
// and the same as position.before's.
const pgIDKey = `(id::text) COLLATE "C"`

// pgSource is the original service's database on PostgreSQL (its
// SQLAlchemy models created by Base.metadata.create_all, or a schema made
// by hand with uuid, timestamptz and jsonb columns), read on one
// connection whose transactions are read-only.
type pgSource struct {
	conn *pgx.Conn
	url  string // to scrub from errors, should a driver's quote its password
	name string
	ops  *pgTable
	sess *pgTable // nil: no tool_sessions table
}

// pgTable is how a table is read.
type pgTable struct {
	// selectList: the key (created_at and the id for tool_operations, the
	// integer id for tool_sessions), then the columns in the order of
	// operationColumns or sessionColumns.
	selectList string
	// naive marks the values that are times without a zone (timestamp).
	naive []bool
	// timeType is the type of tool_operations.created_at (timestamp or
	// timestamptz), idUUID whether its id is of type uuid.
	timeType string
	idUUID   bool
}

type pgColumn struct {
	name, typ string // typ: pg_type.typname
}

// openPostgres connects to rawURL and checks its tables.
func openPostgres(ctx context.Context, rawURL string) (*pgSource, error) {
	s := &pgSource{url: rawURL, name: pgurl.Redact(rawURL)}
	cfg, err := parsePostgresURL(rawURL)
	if err != nil {
		return nil, err
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = pgConnectTimeout
	}
	for k, v := range map[string]string{
		"default_transaction_read_only": "on",
		"statement_timeout":             strconv.FormatInt(pgStatementTimeout.Milliseconds(), 10),
		"timezone":                      "UTC",
		"application_name":              "omnimemory-metrics import",
	} {
		if _, set := cfg.RuntimeParams[k]; !set || k == "default_transaction_read_only" {
			cfg.RuntimeParams[k] = v
		}
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout+5*time.Second)
	defer cancel()
	s.conn, err = pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, s.fail(err)
	}
	if err := s.inspect(ctx); err != nil {
		s.Close()
		return nil, s.fail(err)
	}
	return s, nil
}

// parsePostgresURL parses a source URL; its error never holds the
// password (pgx's quotes the URL parser's, which holds it).
func parsePostgresURL(rawURL string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("source database %s: %s", pgurl.Redact(rawURL), pgurl.Scrub(rawURL, err.Error()))
	}
	return cfg, nil
}

// fail names the source in err, and makes sure its password is not there.
func (s *pgSource) fail(err error) error {
	if msg := err.Error(); pgurl.Scrub(s.url, msg) != msg {
		return fmt.Errorf("source database %s: %s", s.name, pgurl.Scrub(s.url, msg))
	}
	return fmt.Errorf("source database %s: %w", s.name, err)
}

func (s *pgSource) inspect(ctx context.Context) error {
	own, err := s.columns(ctx, "op_rollup_hourly")
	if err != nil {
		return err
	}
	if own != nil {
		return errOwnStore
	}
	opCols, err := s.columns(ctx, operationsTable)
	if err != nil {
		return err
	}
	if opCols == nil {
		return errNoOperations
	}
	if s.ops, err = pgSelect(operationsTable, operationColumns, opCols); err != nil {
		return err
	}
	created := opCols["created_at"].typ
	if created != "timestamp" && created != "timestamptz" {
		return fmt.Errorf("%s.created_at is of type %s: the import reads the table in created_at order and needs a timestamp or timestamptz", operationsTable, created)
	}
	s.ops.timeType, s.ops.idUUID = created, opCols["id"].typ == "uuid"
	s.ops.selectList = `created_at, ` + pgIDKey + `, ` + s.ops.selectList

	sessCols, err := s.columns(ctx, sessionsTable)
	if err != nil || sessCols == nil {
		return err
	}
	if s.sess, err = pgSelect(sessionsTable, sessionColumns, sessCols); err != nil {
		return err
	}
	switch sessCols["id"].typ {
	case "int2", "int4", "int8":
	default:
		return fmt.Errorf("%s has no integer id column (the serial primary key of the original schema): the import reads the table in id order", sessionsTable)
	}
	// The zero position is the start: ids below 1 (a serial never gives
	// them) could not be told from it.
	var low bool
	if err := s.queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+sessionsTable+` WHERE id < 1)`, &low); err != nil {
		return err
	}
	if low {
		return fmt.Errorf("%s has ids below 1: the import reads the table in id order from 1", sessionsTable)
	}
	s.sess.selectList = `id, ` + s.sess.selectList
	return nil
}

// columns answers the columns of table (by lower-case name), nil when it
// does not exist on the search path.
func (s *pgSource) columns(ctx context.Context, table string) (map[string]pgColumn, error) {
	ctx, cancel := context.WithTimeout(ctx, pgCallTimeout)
	defer cancel()
	rows, err := s.conn.Query(ctx, `SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`, table)
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %w", table, err)
	}
	var cols map[string]pgColumn
	defer rows.Close()
	for rows.Next() {
		var c pgColumn
		if err := rows.Scan(&c.name, &c.typ); err != nil {
			return nil, err
		}
		if cols == nil {
			cols = map[string]pgColumn{}
		}
		cols[strings.ToLower(c.name)] = c
	}
	return cols, rows.Err()
}

// pgSelect builds the select list of table's columns: JSON as its text
// (json keeps the text as written; decoding it would lose the order of
// keys), every other type as pgx gives it, for pgValue to convert.
func pgSelect(table string, want []column, have map[string]pgColumn) (*pgTable, error) {
	t := &pgTable{}
	var exprs []string
	for _, c := range want {
		col, ok := have[c.name]
		switch {
		case !ok && c.required:
			return nil, fmt.Errorf("table %s has no column %s", table, c.name)
		case !ok:
			exprs = append(exprs, "NULL")
		case col.typ == "json" || col.typ == "jsonb":
			exprs = append(exprs, pgx.Identifier{col.name}.Sanitize()+"::text")
		default:
			exprs = append(exprs, pgx.Identifier{col.name}.Sanitize())
		}
		t.naive = append(t.naive, ok && col.typ == "timestamp")
	}
	t.selectList = strings.Join(exprs, ", ")
	return t, nil
}

// pgValue converts a value as pgx gives it into one the rowConverter
// reads: integers as int64, floating point as float64, a uuid as its
// hyphenated text, a time as text (with its offset unless naive: then
// the converter applies --source-time-zone, as to SQLite's naive times).
func pgValue(v any, naive bool) any {
	switch x := v.(type) {
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case float32:
		return float64(x)
	case pgtype.Numeric:
		if i, err := x.Int64Value(); err == nil && i.Valid && x.Exp >= 0 {
			return i.Int64
		}
		if f, err := x.Float64Value(); err == nil && f.Valid {
			return f.Float64
		}
		return x
	case [16]byte:
		return uuid.UUID(x).String()
	case time.Time:
		if naive {
			return x.Format("2006-01-02 15:04:05.999999")
		}
		return x.UTC().Format(time.RFC3339Nano)
	case pgtype.InfinityModifier:
		return x.String()
	}
	return v
}

func (s *pgSource) Name() string      { return s.name }
func (s *pgSource) HasSessions() bool { return s.sess != nil }

func (s *pgSource) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.conn.Close(ctx)
}

func (s *pgSource) queryRow(ctx context.Context, sql string, dest any, args ...any) error {
	ctx, cancel := context.WithTimeout(ctx, pgCallTimeout)
	defer cancel()
	return s.conn.QueryRow(ctx, sql, args...).Scan(dest)
}

// opsAfter is the condition of the tool_operations rows after pos, its
// arguments numbered from $n: the rows without created_at first, by id,
// then the others by (created_at, id).
func (s *pgSource) opsAfter(pos position, n int) (string, []any) {
	arg := func(i int) string { return "$" + strconv.Itoa(n+i) }
	switch {
	case pos.isStart():
		return "TRUE", nil
	case pos.Time == nil:
		return `((created_at IS NULL AND ` + pgIDKey + ` > ` + arg(0) + `) OR created_at IS NOT NULL)`, []any{*pos.ID}
	}
	t := `CAST(` + arg(0) + `::text AS ` + s.ops.timeType + `)`
	return `created_at >= ` + t + ` AND (created_at > ` + t + ` OR ` + pgIDKey + ` > ` + arg(1) + `)`, []any{*pos.Time, *pos.ID}
}

// Read reads tool_operations in two parts, each in the order of an index
// the original schema has (created_at's, and the primary key): the rows
// without created_at, then the others.
func (s *pgSource) Read(ctx context.Context, table string, after position, limit int) ([]rawRow, error) {
	lim := " LIMIT " + strconv.Itoa(limit)
	if table == sessionsTable {
		return s.read(ctx, s.sess, `SELECT `+s.sess.selectList+` FROM `+sessionsTable+` WHERE id > $1 ORDER BY id`+lim, after.Rowid)
	}
	var out []rawRow
	sel := `SELECT ` + s.ops.selectList + ` FROM ` + operationsTable + ` WHERE `
	if after.Time == nil {
		where, args := `created_at IS NULL`, []any{}
		if after.ID != nil {
			where, args = where+` AND `+pgIDKey+` > $1`, append(args, *after.ID)
		}
		rows, err := s.read(ctx, s.ops, sel+where+` ORDER BY `+pgIDKey+lim, args...)
		if err != nil || len(rows) == limit {
			return rows, err
		}
		out = rows
		lim = " LIMIT " + strconv.Itoa(limit-len(rows))
		after = position{} // the timed rows from their first
	}
	where, args := `created_at IS NOT NULL`, []any(nil)
	if !after.isStart() {
		where, args = s.opsAfter(after, 1)
	}
	rows, err := s.read(ctx, s.ops, sel+where+` ORDER BY created_at, `+pgIDKey+lim, args...)
	return append(out, rows...), err
}

func (s *pgSource) read(ctx context.Context, t *pgTable, sql string, args ...any) ([]rawRow, error) {
	ctx, cancel := context.WithTimeout(ctx, pgCallTimeout)
	defer cancel()
	rows, err := s.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("reading the source: %w", err)
	}
	defer rows.Close()
	var out []rawRow
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, fmt.Errorf("reading the source: %w", err)
		}
		var r rawRow
		if t == s.sess {
			id, _ := pgValue(vals[0], false).(int64)
			r.pos, vals = position{Rowid: id}, vals[1:]
		} else {
			r.pos, vals = opsPosition(vals[0], vals[1]), vals[2:]
		}
		for i := range vals {
			vals[i] = pgValue(vals[i], t.naive[i])
		}
		r.values = vals
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the source: %w", err)
	}
	return out, nil
}

// opsPosition is the position of the tool_operations row of this
// created_at and id (as text).
func opsPosition(created, id any) position {
	idText, _ := id.(string)
	p := position{ID: &idText}
	var key string
	switch t := created.(type) {
	case nil:
		return p
	case time.Time:
		key = t.UTC().Format(timeKeyLayout)
	case pgtype.InfinityModifier:
		key = t.String()
	default:
		key = fmt.Sprint(t)
	}
	p.Time = &key
	return p
}

func (s *pgSource) Count(ctx context.Context, table string, after position) (int64, error) {
	where, args := "id > $1", []any{after.Rowid}
	if table == operationsTable {
		where, args = s.opsAfter(after, 1)
	}
	var n int64
	if err := s.queryRow(ctx, `SELECT count(*) FROM `+table+` WHERE `+where, &n, args...); err != nil {
		return 0, fmt.Errorf("counting the rows of %s: %w", table, err)
	}
	return n, nil
}

// HasEarlier looks the id up through the primary key: a uuid column
// holds one form; a text one any of the four text forms.
func (s *pgSource) HasEarlier(ctx context.Context, before position, id uuid.UUID) (bool, error) {
	if before.ID == nil {
		return false, errors.New("looking up an id in the source: no position")
	}
	hyph := id.String()
	plain := strings.ReplaceAll(hyph, "-", "")
	match, args := `(id::text) IN ($1, $2, $3, $4)`, []any{hyph, strings.ToUpper(hyph), plain, strings.ToUpper(plain)}
	if s.ops.idUUID {
		match, args = `id = $1::text::uuid`, []any{hyph}
	}
	n := len(args) + 1
	earlier := `created_at IS NULL AND ` + pgIDKey + ` < $` + strconv.Itoa(n)
	if before.Time == nil {
		args = append(args, *before.ID)
	} else {
		t := `CAST($` + strconv.Itoa(n) + `::text AS ` + s.ops.timeType + `)`
		earlier = `created_at IS NULL OR created_at < ` + t + ` OR (created_at = ` + t + ` AND ` + pgIDKey + ` < $` + strconv.Itoa(n+1) + `)`
		args = append(args, *before.Time, *before.ID)
	}
	var found bool
	err := s.queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+operationsTable+` WHERE `+match+` AND (`+earlier+`))`, &found, args...)
	if err != nil {
		return false, fmt.Errorf("looking up id %s in the source: %w", id, err)
	}
	return found, nil
}
