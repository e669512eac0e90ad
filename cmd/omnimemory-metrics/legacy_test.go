package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/internal/importer"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// legacySchema is the original service's database on SQLite, as its
// SQLAlchemy models (ToolSession of Phase 1, ToolOperation of Phase 2)
// create it through Base.metadata.create_all: String columns as VARCHAR,
// JSON as JSON, Float as FLOAT, DateTime as DATETIME, the spec's indexes.
const legacySchema = `
CREATE TABLE tool_sessions (
	id INTEGER NOT NULL, 
	session_id VARCHAR NOT NULL, 
	tool_id VARCHAR NOT NULL, 
	tool_version VARCHAR, 
	process_id INTEGER, 
	instance_id VARCHAR, 
	project_id VARCHAR, 
	workspace_path VARCHAR, 
	started_at DATETIME, 
	ended_at DATETIME, 
	last_activity DATETIME, 
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
	created_at DATETIME, 
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

// sqlalchemyTime is how SQLAlchemy's DateTime writes a naive UTC datetime
// (datetime.utcnow()) into SQLite.
const sqlalchemyTime = "2006-01-02 15:04:05.000000"

// legacyDB is a generated database of the original service and what an
// import of it must give.
type legacyDB struct {
	path string
	now  time.Time // the generation's clock: every time lies before it
	// ops are the operations to be imported, in source order.
	ops []tsdb.Operation
	// sessions are the valid tool_sessions rows, as the store must hold
	// them (LastActivity includes their operations).
	sessions []tsdb.Session
	// skipped and sessSkipped count the rows to be skipped, by reason.
	skipped, sessSkipped map[string]int64
	opRows, sessRows     int64
}

// buildLegacyDB writes a database of the original service with about n
// valid operations spread over the last 34 days, sessions open and ended,
// and bad rows of every kind among them.
func buildLegacyDB(t testing.TB, dir string, n int) *legacyDB {
	t.Helper()
	rng := rand.New(rand.NewPCG(20250114, 8003))
	newID := func() uuid.UUID {
		var u uuid.UUID
		for i := range u {
			u[i] = byte(rng.UintN(256))
		}
		u[6] = u[6]&0x0f | 0x40
		u[8] = u[8]&0x3f | 0x80
		return u
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	db := &legacyDB{path: filepath.Join(dir, "omnimemory.db"), now: now,
		skipped: map[string]int64{}, sessSkipped: map[string]int64{}}
	src, err := sql.Open("sqlite", "file:"+db.path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.Exec(legacySchema); err != nil {
		t.Fatal(err)
	}
	tx, err := src.Begin()
	if err != nil {
		t.Fatal(err)
	}
	insSess, err := tx.Prepare(`INSERT INTO tool_sessions (session_id, tool_id, tool_version, process_id, instance_id, project_id,
		workspace_path, started_at, ended_at, last_activity, total_operations, tokens_saved, total_compressions, total_embeddings)
		VALUES (?,?,?,?,?,?,?,?,?,?,0,0,0,0)`)
	if err != nil {
		t.Fatal(err)
	}
	insOp, err := tx.Prepare(`INSERT INTO tool_operations (id, session_id, tool_name, operation_mode, parameters, file_path,
		tokens_original, tokens_actual, tokens_prevented, response_time_ms, tool_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		t.Fatal(err)
	}

	// Sessions: ended and open, some with the optional attributes, one
	// without last_activity.
	tools := []string{"claude-code", "cursor", "windsurf"}
	type span struct {
		id          uuid.UUID
		tool        string
		start, last time.Time
	}
	var spans []span
	sessIndex := map[uuid.UUID]int{}
	for i := range 40 {
		s := tsdb.Session{SessionID: newID(), ToolID: tools[i%3]}
		s.StartedAt = now.Add(-time.Duration(2+rng.IntN(34*24)) * time.Hour).Add(-time.Duration(rng.IntN(3600)) * time.Second).Truncate(time.Microsecond)
		if i < 3 { // sessions of the last hour
			s.StartedAt = now.Add(-time.Duration(40+5*i) * time.Minute)
		}
		s.LastActivity = s.StartedAt.Add(time.Duration(10+rng.IntN(600)) * time.Minute)
		if s.LastActivity.After(now.Add(-2 * time.Minute)) {
			s.LastActivity = now.Add(-2 * time.Minute)
		}
		last := any(s.LastActivity.Format(sqlalchemyTime))
		if i == 7 {
			last = nil // never touched: last activity is the start
		}
		var ended any
		if i%2 == 0 {
			e := s.LastActivity.Add(30 * time.Second)
			s.EndedAt = &e
			ended = e.Format(sqlalchemyTime)
		}
		var version, pid, instance, project, workspace any
		if i%3 != 2 {
			v := fmt.Sprintf("1.%d.0", i)
			s.ToolVersion, version = &v, v
		}
		if i%4 == 1 {
			p := int64(4000 + i)
			inst, proj, ws := fmt.Sprintf("inst-%d", i), "proj-a", "/home/dev/proj-a"
			s.ProcessID, s.InstanceID, s.ProjectID, s.WorkspacePath = &p, &inst, &proj, &ws
			pid, instance, project, workspace = p, inst, proj, ws
		}
		if _, err := insSess.Exec(s.SessionID.String(), s.ToolID, version, pid, instance, project, workspace,
			s.StartedAt.Format(sqlalchemyTime), ended, last); err != nil {
			t.Fatal(err)
		}
		db.sessRows++
		stored := s
		if i == 7 {
			stored.LastActivity = s.StartedAt
		}
		sessIndex[s.SessionID] = len(db.sessions)
		db.sessions = append(db.sessions, stored)
		spans = append(spans, span{s.SessionID, s.ToolID, s.StartedAt, s.LastActivity})
	}
	// Bad sessions, each of one kind; their ids may still carry
	// operations, which then create their sessions implicitly.
	badStart := newID()
	for _, b := range []struct {
		reason string
		values []any
	}{
		{importer.ReasonBadSessionID, []any{"sess-bad", "cursor", nil, nil, nil, nil, nil, now.Add(-time.Hour).Format(sqlalchemyTime), nil, nil}},
		{importer.ReasonBadTime, []any{badStart.String(), "cursor", nil, nil, nil, nil, nil, "last tuesday", nil, nil}},
		{importer.ReasonInconsistentTimes, []any{newID().String(), "cursor", nil, nil, nil, nil, nil,
			now.Add(-time.Hour).Format(sqlalchemyTime), now.Add(-2 * time.Hour).Format(sqlalchemyTime), nil}},
		{importer.ReasonBadToolID, []any{newID().String(), "", nil, nil, nil, nil, nil, now.Add(-time.Hour).Format(sqlalchemyTime), nil, nil}},
		{importer.ReasonBadAttributes, []any{newID().String(), "cursor", nil, "pid-12", nil, nil, nil, now.Add(-time.Hour).Format(sqlalchemyTime), nil, nil}},
		{importer.ReasonTimeOutOfRange, []any{newID().String(), "cursor", nil, nil, nil, nil, nil, "1969-07-20 20:17:40.000000", nil, nil}},
	} {
		if _, err := insSess.Exec(b.values...); err != nil {
			t.Fatal(err)
		}
		db.sessRows++
		db.sessSkipped[b.reason]++
	}
	// Sessions known only from their operations.
	for range 3 {
		start := now.Add(-time.Duration(2+rng.IntN(20*24)) * time.Hour)
		spans = append(spans, span{newID(), tools[rng.IntN(3)], start, start.Add(3 * time.Hour)})
	}
	spans = append(spans, span{badStart, "cursor", now.Add(-50 * time.Hour), now.Add(-49 * time.Hour)})

	modes := map[string][]string{"read": {"full", "overview", "symbol", "references"}, "search": {"semantic", "tri_index"}}
	// valid makes the values of a valid operation and what the store must
	// hold of it.
	valid := func(k int) ([]any, tsdb.Operation) {
		sp := spans[rng.IntN(len(spans))]
		tool := tsdb.ToolNames[rng.IntN(2)]
		mode := modes[tool][rng.IntN(len(modes[tool]))]
		if k%97 == 0 {
			mode = "semantic" // any tool may pair with any mode
		}
		created := sp.start.Add(time.Duration(rng.Int64N(int64(sp.last.Sub(sp.start)) + 1))).Truncate(time.Microsecond)
		op := tsdb.Operation{ID: newID(), SessionID: sp.id, ToolName: tool, OperationMode: mode, ToolID: sp.tool, Keyed: true}
		vals := make([]any, 12)
		switch k % 10 {
		case 0:
			vals[0] = strings.ReplaceAll(op.ID.String(), "-", "") // Uuid / GUID: CHAR(32)
		case 1:
			vals[0] = strings.ToUpper(op.ID.String())
		default:
			vals[0] = op.ID.String()
		}
		vals[1], vals[2], vals[3], vals[10] = sp.id.String(), tool, mode, sp.tool
		switch {
		case k%20 == 3:
			vals[4], op.Parameters = nil, json.RawMessage(`{}`)
		case k%20 == 4:
			vals[4], op.Parameters = "null", json.RawMessage(`{}`) // JSON None
		case tool == "read":
			vals[4] = fmt.Sprintf(`{"compress": true, "symbol": "auth_%d"}`, k)
			op.Parameters = json.RawMessage(fmt.Sprintf(`{"compress":true,"symbol":"auth_%d"}`, k))
		default:
			vals[4] = fmt.Sprintf(`{"query": "find \"user\" %d", "limit": 5}`, k)
			op.Parameters = json.RawMessage(fmt.Sprintf(`{"query":"find \"user\" %d","limit":5}`, k))
		}
		if tool == "read" {
			fp := fmt.Sprintf("src/module_%d.py", k%50)
			vals[5], op.FilePath = fp, &fp
		}
		op.TokensOriginal = int64(100 + rng.IntN(50000))
		op.TokensActual = int64(rng.IntN(int(op.TokensOriginal)))
		op.TokensPrevented = op.TokensOriginal - op.TokensActual
		vals[8] = op.TokensPrevented
		switch k % 25 {
		case 5: // the tool cost more than its baseline, sent as the difference
			op.TokensActual = op.TokensOriginal + 50
			op.TokensPrevented = -50
			vals[8] = int64(-50)
		case 6: // the same, sent clamped at 0
			op.TokensActual = op.TokensOriginal + 70
			op.TokensPrevented = 0
			vals[8] = int64(0)
		case 7: // left out: max(0, original - actual)
			vals[8] = nil
		}
		vals[6], vals[7] = op.TokensOriginal, op.TokensActual
		op.ResponseTimeMs = float64(rng.IntN(50000)) / 100
		vals[9] = op.ResponseTimeMs
		switch k % 6 {
		case 0: // SQLite's CURRENT_TIMESTAMP (a server_default)
			created = created.Truncate(time.Second)
			vals[11] = created.Format("2006-01-02 15:04:05")
		case 1: // ISO 8601 with Z
			vals[11] = created.Format("2006-01-02T15:04:05.999999Z07:00")
		case 2: // str() of an aware datetime, another zone
			vals[11] = created.In(time.FixedZone("CEST", 2*3600)).Format("2006-01-02 15:04:05.000000-07:00")
		case 3: // isoformat() of a naive datetime
			vals[11] = created.Format("2006-01-02T15:04:05.000000")
		default:
			vals[11] = created.Format(sqlalchemyTime)
		}
		op.CreatedAt = created
		return vals, op
	}

	type badKind struct {
		reason string
		col    int
		value  any
	}
	deep := strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)
	bads := []badKind{
		{importer.ReasonBadID, 0, "not-a-uuid"},
		{importer.ReasonBadID, 0, "12345678-1234-1234-1234-12345678901"}, // 35 characters
		{importer.ReasonBadID, 0, strings.Repeat("g", 32)},
		{importer.ReasonBadSessionID, 1, "session-1"},
		{importer.ReasonBadSessionID, 1, "123e4567e89b12d3a456"},
		{importer.ReasonUnknownToolName, 2, "write"},
		{importer.ReasonUnknownToolName, 2, "READ"},
		{importer.ReasonUnknownOperationMode, 3, "fast"},
		{importer.ReasonUnknownOperationMode, 3, "Full"},
		{importer.ReasonBadParameters, 4, "[1, 2]"},
		{importer.ReasonBadParameters, 4, "{broken"},
		{importer.ReasonBadParameters, 4, `"text"`},
		{importer.ReasonBadParameters, 4, deep},
		{importer.ReasonBadFilePath, 5, []byte{0, 0xff}},
		{importer.ReasonBadTokens, 6, "many"},
		{importer.ReasonBadTokens, 7, 12.5},
		{importer.ReasonBadTokens, 8, "x"},
		{importer.ReasonNegativeTokens, 7, int64(-5)},
		{importer.ReasonNegativeTokens, 6, int64(-1)},
		{importer.ReasonInconsistentTokens, 8, int64(999_999_999)},
		{importer.ReasonBadResponseTime, 9, -1.0},
		{importer.ReasonBadResponseTime, 9, "slow"},
		{importer.ReasonBadResponseTime, 9, math.Inf(1)},
		{importer.ReasonBadToolID, 10, ""},
		{importer.ReasonBadToolID, 10, strings.Repeat("t", 101)},
		{importer.ReasonBadTime, 11, "yesterday"},
		{importer.ReasonBadTime, 11, "14/01/2025 10:30"},
		{importer.ReasonBadTime, 11, nil},
		{importer.ReasonTimeOutOfRange, 11, "1969-12-31 23:59:59.000000"},
		{importer.ReasonTimeOutOfRange, 11, now.Add(24 * time.Hour).Format(sqlalchemyTime)},
	}
	insert := func(vals []any) {
		if _, err := insOp.Exec(vals...); err != nil {
			t.Fatalf("insert %v: %v", vals, err)
		}
		db.opRows++
	}
	badEvery := max(n/(3*len(bads)), 1)
	nextBad, dups := 0, 0
	for k := 0; k < n; k++ {
		vals, op := valid(k)
		insert(vals)
		db.ops = append(db.ops, op)
		if k%badEvery == badEvery-1 {
			// A bad row of the next kind: a valid one with one value spoilt.
			b := bads[nextBad%len(bads)]
			nextBad++
			bv, _ := valid(k)
			bv[b.col] = b.value
			if b.col == 0 { // ids are unique in the table: vary the bad ones
				bv[0] = fmt.Sprintf("%s%d", b.value, nextBad)[len(fmt.Sprint(nextBad)):]
			}
			insert(bv)
			db.skipped[b.reason]++
		}
		if k%200 == 150 && len(db.ops) > 10 {
			// The id of an earlier operation, written in another form.
			dv, _ := valid(k)
			dv[0] = strings.ToUpper(strings.ReplaceAll(db.ops[len(db.ops)-1-rng.IntN(10)].ID.String(), "-", ""))
			insert(dv)
			db.skipped[importer.ReasonDuplicateID]++
			dups++
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if nextBad < len(bads) {
		t.Fatalf("only %d of %d bad kinds written: raise n", nextBad, len(bads))
	}
	// The stored sessions' last activity includes their operations.
	for _, op := range db.ops {
		if i, ok := sessIndex[op.SessionID]; ok && op.CreatedAt.After(db.sessions[i].LastActivity) {
			db.sessions[i].LastActivity = op.CreatedAt
		}
	}
	return db
}

// want answers the totals that the imported operations give in [start, end]
// (no lower bound when start is nil), for toolID (all when empty).
func (db *legacyDB) want(start *time.Time, end time.Time, toolID string) (all tsdb.Totals, byTool, byMode map[string]tsdb.Totals) {
	byTool, byMode = map[string]tsdb.Totals{}, map[string]tsdb.Totals{}
	for _, op := range db.ops {
		if (start != nil && op.CreatedAt.Before(*start)) || op.CreatedAt.After(end) || (toolID != "" && op.ToolID != toolID) {
			continue
		}
		t := tsdb.Totals{Count: 1, TokensOriginal: op.TokensOriginal, TokensActual: op.TokensActual,
			TokensPrevented: op.TokensPrevented, ResponseTimeSumMs: op.ResponseTimeMs}
		all.Add(t)
		bt := byTool[op.ToolName]
		bt.Add(t)
		byTool[op.ToolName] = bt
		bm := byMode[op.OperationMode]
		bm.Add(t)
		byMode[op.OperationMode] = bm
	}
	return all, byTool, byMode
}

func (db *legacyDB) skippedTotal() int64 {
	var n int64
	for _, v := range db.skipped {
		n += v
	}
	return n
}

// hasOlder reports whether an imported operation of toolID (any when
// empty) was made before t.
func (db *legacyDB) hasOlder(toolID string, t time.Time) bool {
	for _, op := range db.ops {
		if (toolID == "" || op.ToolID == toolID) && op.CreatedAt.Before(t) {
			return true
		}
	}
	return false
}
