package legacytest

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/omnimemory/omnimemory-metrics/exporter/importer"
)

// PostgresSchema is the original service's database on PostgreSQL, as its
// SQLAlchemy models create it there through Base.metadata.create_all:
// String as VARCHAR, JSON as JSON, Float as FLOAT (double precision),
// DateTime as TIMESTAMP WITHOUT TIME ZONE, the integer primary key of
// tool_sessions as SERIAL, and the foreign key PostgreSQL enforces.
const PostgresSchema = `
CREATE TABLE tool_sessions (
	id SERIAL NOT NULL, 
	session_id VARCHAR NOT NULL, 
	tool_id VARCHAR NOT NULL, 
	tool_version VARCHAR, 
	process_id INTEGER, 
	instance_id VARCHAR, 
	project_id VARCHAR, 
	workspace_path VARCHAR, 
	started_at TIMESTAMP WITHOUT TIME ZONE, 
	ended_at TIMESTAMP WITHOUT TIME ZONE, 
	last_activity TIMESTAMP WITHOUT TIME ZONE, 
	total_operations INTEGER, 
	tokens_saved INTEGER, 
	total_compressions INTEGER, 
	total_embeddings INTEGER, 
	PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ix_tool_sessions_session_id ON tool_sessions (session_id);
CREATE INDEX ix_tool_sessions_tool_id ON tool_sessions (tool_id);
CREATE TABLE tool_operations (
	id VARCHAR NOT NULL, 
	session_id VARCHAR NOT NULL, 
	tool_name VARCHAR(50) NOT NULL, 
	operation_mode VARCHAR(50) NOT NULL, 
	parameters JSON, 
	file_path VARCHAR, 
	tokens_original INTEGER NOT NULL, 
	tokens_actual INTEGER NOT NULL, 
	tokens_prevented INTEGER, 
	response_time_ms FLOAT NOT NULL, 
	tool_id VARCHAR(100) NOT NULL, 
	created_at TIMESTAMP WITHOUT TIME ZONE, 
	PRIMARY KEY (id), 
	FOREIGN KEY(session_id) REFERENCES tool_sessions (session_id)
);
CREATE INDEX ix_tool_operations_session_id ON tool_operations (session_id);
CREATE INDEX ix_tool_operations_tool_name ON tool_operations (tool_name);
CREATE INDEX ix_tool_operations_operation_mode ON tool_operations (operation_mode);
CREATE INDEX ix_tool_operations_created_at ON tool_operations (created_at);
CREATE INDEX idx_session_created ON tool_operations (session_id, created_at);
CREATE INDEX idx_tool_mode ON tool_operations (tool_name, operation_mode);
`

// NativeSchema is the same database made by hand with PostgreSQL's own
// types: uuid ids, timestamptz times, jsonb parameters, bigint counts.
const NativeSchema = `
CREATE TABLE tool_sessions (
	id bigserial PRIMARY KEY,
	session_id uuid NOT NULL UNIQUE,
	tool_id text NOT NULL,
	tool_version text,
	process_id bigint,
	instance_id text,
	project_id text,
	workspace_path text,
	started_at timestamptz,
	ended_at timestamptz,
	last_activity timestamptz
);
CREATE TABLE tool_operations (
	id uuid PRIMARY KEY,
	session_id uuid NOT NULL REFERENCES tool_sessions (session_id),
	tool_name varchar(50) NOT NULL,
	operation_mode varchar(50) NOT NULL,
	parameters jsonb,
	file_path text,
	tokens_original bigint NOT NULL,
	tokens_actual bigint NOT NULL,
	tokens_prevented bigint,
	response_time_ms double precision NOT NULL,
	tool_id varchar(100) NOT NULL,
	created_at timestamptz
);
CREATE INDEX ix_tool_operations_created_at ON tool_operations (created_at);
`

// pgKind is what a column can hold.
type pgKind int

const (
	pgText pgKind = iota
	pgUUID
	pgJSON
	pgInt32
	pgInt64
	pgFloat
	pgTime
)

type pgCol struct {
	kind    pgKind
	max     int // characters, for VARCHAR(n)
	notNull bool
}

// BuildPostgres writes the database Build writes into the empty
// PostgreSQL database at url, with PostgresSchema, or NativeSchema when
// native is set; DB.Path is url. Rows the schema cannot hold are left out
// (see the package comment). On jsonb, the parameters to expect are the
// JSON as jsonb gives it back (keys in its own order).
func BuildPostgres(t testing.TB, url string, n int, native bool) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	schema, id, big := PostgresSchema, pgText, pgInt32
	if native {
		schema, id, big = NativeSchema, pgUUID, pgInt64
	}
	if _, err := conn.Exec(ctx, schema); err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	sessCols := []pgCol{{kind: id, notNull: true}, {kind: pgText, notNull: true}, {kind: pgText}, {kind: big}, {kind: pgText},
		{kind: pgText}, {kind: pgText}, {kind: pgTime}, {kind: pgTime}, {kind: pgTime}}
	opCols := []pgCol{{kind: id, notNull: true}, {kind: id, notNull: true}, {kind: pgText, max: 50, notNull: true},
		{kind: pgText, max: 50, notNull: true}, {kind: pgJSON}, {kind: pgText}, {kind: big, notNull: true},
		{kind: big, notNull: true}, {kind: big}, {kind: pgFloat, notNull: true}, {kind: pgText, max: 100, notNull: true}, {kind: pgTime}}
	sessions, opIDs := map[any]bool{}, map[any]bool{}
	write := func(sql string, cols []pgCol, vals []any) bool {
		args := make([]any, len(vals))
		for i, v := range vals {
			a, ok := pgHold(cols[i], v)
			if !ok {
				return false
			}
			args[i] = a
		}
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("insert %v: %v", vals, err)
		}
		return true
	}
	session := func(vals []any) bool {
		key, ok := pgHold(sessCols[0], vals[0])
		if !ok || sessions[key] { // unique
			return false
		}
		if !write(`INSERT INTO tool_sessions (session_id, tool_id, tool_version, process_id, instance_id, project_id,
			workspace_path, started_at, ended_at, last_activity) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)`, sessCols, vals) {
			return false
		}
		sessions[key] = true
		return true
	}
	operation := func(vals []any) bool {
		key, ok := pgHold(opCols[0], vals[0])
		sess, sessOK := pgHold(opCols[1], vals[1])
		if !ok || opIDs[key] || !sessOK || !sessions[sess] { // primary key, foreign key
			return false
		}
		if !write(`INSERT INTO tool_operations (id, session_id, tool_name, operation_mode, parameters, file_path,
			tokens_original, tokens_actual, tokens_prevented, response_time_ms, tool_id, created_at)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)`, opCols, vals) {
			return false
		}
		opIDs[key] = true
		return true
	}
	db := generate(t, n, session, operation)
	if native {
		params := map[uuid.UUID]json.RawMessage{}
		rows, err := tx.Query(ctx, `SELECT id::text, COALESCE(parameters::text, '{}') FROM tool_operations`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id, p string
			if err := rows.Scan(&id, &p); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if p == "null" {
				p = "{}"
			}
			if json.Compact(&buf, []byte(p)) == nil {
				params[uuid.MustParse(id)] = buf.Bytes()
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		for i := range db.Ops {
			db.Ops[i].Parameters = params[db.Ops[i].ID]
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	db.Path = url
	return db
}

// pgHold answers the argument that writes v into a column of col, or false
// when the column cannot hold v.
func pgHold(col pgCol, v any) (any, bool) {
	if v == nil {
		return nil, !col.notNull
	}
	switch col.kind {
	case pgText:
		s, ok := v.(string)
		return s, ok && utf8.ValidString(s) && !strings.ContainsRune(s, 0) && (col.max == 0 || utf8.RuneCountInString(s) <= col.max)
	case pgUUID:
		s, ok := v.(string)
		if !ok || (len(s) != 36 && len(s) != 32) {
			return nil, false
		}
		u, err := uuid.Parse(s)
		return u.String(), err == nil
	case pgJSON:
		s, ok := v.(string)
		return s, ok && json.Valid([]byte(s))
	case pgInt32, pgInt64:
		i, ok := v.(int64)
		return i, ok && (col.kind == pgInt64 || (i >= math.MinInt32 && i <= math.MaxInt32))
	case pgFloat:
		f, ok := v.(float64)
		return f, ok
	case pgTime:
		s, ok := v.(string)
		if !ok {
			return nil, false
		}
		t, ok := importer.ParseSourceTime(s, time.UTC)
		return t, ok
	}
	return nil, false
}
