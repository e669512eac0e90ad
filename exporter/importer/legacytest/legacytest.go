// Package legacytest builds databases of the original omnimemory-metrics
// service (its SQLAlchemy schema, on SQLite or on PostgreSQL) for the tests
// of the import: valid operations and sessions spread over weeks, bad rows
// of every kind among them, and what an import must give of them. Both
// databases get the same rows, less those PostgreSQL cannot hold (text in
// an INTEGER column, an operation of a session its foreign key does not
// find, ...): the expected figures are those of the rows written.
package legacytest

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/exporter"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/exporter/importer"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// Schema is the original service's database on SQLite, as its
// SQLAlchemy models (ToolSession of Phase 1, ToolOperation of Phase 2)
// create it through Base.metadata.create_all: String columns as VARCHAR,
// JSON as JSON, Float as FLOAT, DateTime as DATETIME, the spec's indexes.
const Schema = `
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

// SQLAlchemyTime is how SQLAlchemy's DateTime writes a naive UTC datetime
// (datetime.utcnow()) into SQLite.
const SQLAlchemyTime = "2006-01-02 15:04:05.000000"

// DB is a generated database of the original service and what an import of
// it must give.
type DB struct {
	// Path is the source to import: the SQLite file, or the URL of the
	// PostgreSQL database.
	Path string
	Now  time.Time // the generation's clock: every time lies before it
	// Ops are the operations to be imported, in source order.
	Ops []tsdb.Operation
	// Sessions are the valid tool_sessions rows, as the store must hold
	// them (LastActivity includes their operations).
	Sessions []tsdb.Session
	// Skipped and SessSkipped count the rows to be skipped, by reason.
	Skipped, SessSkipped map[string]int64
	OpRows, SessRows     int64
}

// Build writes, as dir/omnimemory.db, a database of the original service
// with about n valid operations spread over the last 34 days, sessions open
// and ended, and bad rows of every kind among them.
func Build(t testing.TB, dir string, n int) *DB {
	t.Helper()
	path := filepath.Join(dir, "omnimemory.db")
	src, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.Exec(Schema); err != nil {
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
	exec := func(st *sql.Stmt) func([]any) bool {
		return func(vals []any) bool {
			if _, err := st.Exec(vals...); err != nil {
				t.Fatalf("insert %v: %v", vals, err)
			}
			return true
		}
	}
	db := generate(t, n, exec(insSess), exec(insOp))
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	db.Path = path
	return db
}

// generate makes the rows of a database, handing each to session or
// operation (values in the column order of the INSERTs in Build), which
// write it and answer whether the database holds it: the figures are those
// of the rows held.
func generate(t testing.TB, n int, session, operation func([]any) bool) *DB {
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
	db := &DB{Now: now, Skipped: map[string]int64{}, SessSkipped: map[string]int64{}}

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
		last := any(s.LastActivity.Format(SQLAlchemyTime))
		if i == 7 {
			last = nil // never touched: last activity is the start
		}
		var ended any
		if i%2 == 0 {
			e := s.LastActivity.Add(30 * time.Second)
			s.EndedAt = &e
			ended = e.Format(SQLAlchemyTime)
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
		if !session([]any{s.SessionID.String(), s.ToolID, version, pid, instance, project, workspace,
			s.StartedAt.Format(SQLAlchemyTime), ended, last}) {
			t.Fatalf("valid session %s not written", s.SessionID)
		}
		db.SessRows++
		stored := s
		if i == 7 {
			stored.LastActivity = s.StartedAt
		}
		sessIndex[s.SessionID] = len(db.Sessions)
		db.Sessions = append(db.Sessions, stored)
		spans = append(spans, span{s.SessionID, s.ToolID, s.StartedAt, s.LastActivity})
	}
	// Bad sessions, each of one kind; their ids may still carry
	// operations, which then create their sessions implicitly.
	badStart := newID()
	for _, b := range []struct {
		reason string
		values []any
	}{
		{importer.ReasonBadSessionID, []any{"sess-bad", "cursor", nil, nil, nil, nil, nil, now.Add(-time.Hour).Format(SQLAlchemyTime), nil, nil}},
		{importer.ReasonBadTime, []any{badStart.String(), "cursor", nil, nil, nil, nil, nil, "last tuesday", nil, nil}},
		{importer.ReasonInconsistentTimes, []any{newID().String(), "cursor", nil, nil, nil, nil, nil,
			now.Add(-time.Hour).Format(SQLAlchemyTime), now.Add(-2 * time.Hour).Format(SQLAlchemyTime), nil}},
		{importer.ReasonBadToolID, []any{newID().String(), "", nil, nil, nil, nil, nil, now.Add(-time.Hour).Format(SQLAlchemyTime), nil, nil}},
		{importer.ReasonBadAttributes, []any{newID().String(), "cursor", nil, "pid-12", nil, nil, nil, now.Add(-time.Hour).Format(SQLAlchemyTime), nil, nil}},
		{importer.ReasonTimeOutOfRange, []any{newID().String(), "cursor", nil, nil, nil, nil, nil, "1969-07-20 20:17:40.000000", nil, nil}},
	} {
		if session(b.values) {
			db.SessRows++
			db.SessSkipped[b.reason]++
		}
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
		tool := api.ToolNames[rng.IntN(2)]
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
			vals[11] = created.Format(SQLAlchemyTime)
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
		{importer.ReasonBadSessionID, 1, "sess-bad"}, // the bad session's, which a foreign key finds
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
		{importer.ReasonTimeOutOfRange, 11, now.Add(24 * time.Hour).Format(SQLAlchemyTime)},
	}
	insert := func(vals []any) bool {
		if !operation(vals) {
			return false
		}
		db.OpRows++
		return true
	}
	badEvery := max(n/(3*len(bads)), 1)
	nextBad := 0
	for k := 0; k < n; k++ {
		vals, op := valid(k)
		if insert(vals) {
			db.Ops = append(db.Ops, op)
		}
		if k%badEvery == badEvery-1 {
			// A bad row of the next kind: a valid one with one value spoilt.
			b := bads[nextBad%len(bads)]
			nextBad++
			bv, _ := valid(k)
			bv[b.col] = b.value
			if b.col == 0 { // ids are unique in the table: vary the bad ones
				bv[0] = fmt.Sprintf("%s%d", b.value, nextBad)[len(fmt.Sprint(nextBad)):]
			}
			if insert(bv) {
				db.Skipped[b.reason]++
			}
		}
		if k%200 == 150 && len(db.Ops) > 10 {
			// The id of an earlier operation, written in another form, and
			// made later: it comes after the first in the order of either
			// source (rowid, or created_at on PostgreSQL).
			dv, _ := valid(k)
			first := db.Ops[len(db.Ops)-1-rng.IntN(10)]
			dv[0] = strings.ToUpper(strings.ReplaceAll(first.ID.String(), "-", ""))
			dv[11] = first.CreatedAt.Add(time.Millisecond).Format(SQLAlchemyTime)
			if insert(dv) {
				db.Skipped[importer.ReasonDuplicateID]++
			}
		}
	}
	if nextBad < len(bads) {
		t.Fatalf("only %d of %d bad kinds written: raise n", nextBad, len(bads))
	}
	// The stored sessions' last activity includes their operations.
	for _, op := range db.Ops {
		if i, ok := sessIndex[op.SessionID]; ok && op.CreatedAt.After(db.Sessions[i].LastActivity) {
			db.Sessions[i].LastActivity = op.CreatedAt
		}
	}
	return db
}

// Want answers the totals that the imported operations give in [start, end]
// (no lower bound when start is nil), for toolID (all when empty).
func (db *DB) Want(start *time.Time, end time.Time, toolID string) (all tsdb.Totals, byTool, byMode map[string]tsdb.Totals) {
	byTool, byMode = map[string]tsdb.Totals{}, map[string]tsdb.Totals{}
	for _, op := range db.Ops {
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

// SkippedTotal counts the operation rows to be skipped.
func (db *DB) SkippedTotal() int64 {
	var n int64
	for _, v := range db.Skipped {
		n += v
	}
	return n
}

// HasOlder reports whether an imported operation of toolID (any when
// empty) was made before t.
func (db *DB) HasOlder(toolID string, t time.Time) bool {
	for _, op := range db.Ops {
		if (toolID == "" || op.ToolID == toolID) && op.CreatedAt.Before(t) {
			return true
		}
	}
	return false
}

// Check checks every figure of store against db, as an import of db must
// have left it: each operation field by field, the aggregate answers of
// every range (as the API gives them, through exporter.Reporter), and the
// sessions.
func (db *DB) Check(t testing.TB, store tsdb.Store) {
	t.Helper()
	ctx := context.Background()
	want := map[uuid.UUID]tsdb.Operation{}
	for _, op := range db.Ops {
		want[op.ID] = op
	}
	got := map[uuid.UUID]tsdb.Operation{}
	for offset := 0; ; offset += 1000 {
		page, err := store.QueryOperations(ctx, tsdb.OperationFilter{Limit: 1000, Offset: offset})
		if err != nil {
			t.Fatal(err)
		}
		if page.Total != int64(len(db.Ops)) {
			t.Fatalf("%d operations stored, want %d", page.Total, len(db.Ops))
		}
		for _, op := range page.Operations {
			if _, dup := got[op.ID]; dup {
				t.Errorf("operation %s stored twice", op.ID)
			}
			got[op.ID] = op
		}
		if len(page.Operations) < 1000 {
			break
		}
	}
	bad := 0
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			t.Errorf("operation %s missing", id)
			continue
		}
		if g.SessionID != w.SessionID || g.ToolName != w.ToolName || g.OperationMode != w.OperationMode ||
			string(g.Parameters) != string(w.Parameters) || !reflect.DeepEqual(g.FilePath, w.FilePath) ||
			g.TokensOriginal != w.TokensOriginal || g.TokensActual != w.TokensActual || g.TokensPrevented != w.TokensPrevented ||
			g.ResponseTimeMs != w.ResponseTimeMs || g.ToolID != w.ToolID || !g.CreatedAt.Equal(w.CreatedAt) {
			if bad++; bad <= 5 {
				t.Errorf("operation %s\n got %+v\nwant %+v", id, g, w)
			}
		}
	}

	pricing := exporter.Pricing{PerThousandUSD: 0.015}
	rep := exporter.NewReporter(store, pricing, func() time.Time { return db.Now })
	for _, r := range exporter.SavingsRanges {
		for _, toolID := range []string{"", "cursor"} {
			var start *time.Time
			if r.Duration > 0 {
				s := db.Now.Add(-r.Duration)
				start = &s
			}
			all, byTool, byMode := db.Want(start, db.Now, toolID)
			name := string(r.Name) + "/" + toolID
			sv, err := rep.APISavings(ctx, r, toolID)
			if err != nil {
				t.Fatal(err)
			}
			pct := 0.0
			if all.TokensOriginal > 0 {
				pct = math.Round(float64(all.TokensPrevented)/float64(all.TokensOriginal)*100*100) / 100
			}
			if sv.TotalOperations != all.Count || sv.TotalTokensProcessed != all.TokensOriginal || sv.TotalTokensPrevented != all.TokensPrevented ||
				sv.APICostBaseline != pricing.Cost(all.TokensOriginal) || sv.APICostActual != pricing.Cost(all.TokensActual) ||
				sv.TotalCostSaved != pricing.Cost(all.TokensPrevented) || sv.SavingsPercentage != pct {
				t.Errorf("%s: savings %+v, want totals %+v", name, sv, all)
			}
			if all.Count == 0 {
				t.Errorf("%s: no operations in the window: the test data do not cover it", name)
			}
			for tool, s := range map[string]api.Savings{"read": sv.BreakdownByTool.Read, "search": sv.BreakdownByTool.Search} {
				w := byTool[tool]
				if s.Operations != w.Count || s.TokensPrevented != w.TokensPrevented || s.CostSaved != pricing.Cost(w.TokensPrevented) {
					t.Errorf("%s: %s %+v, want %+v", name, tool, s, w)
				}
			}
			if len(sv.BreakdownByMode) != len(byMode) {
				t.Errorf("%s: modes %v, want %v", name, sv.BreakdownByMode, byMode)
			}
			for mode, w := range byMode {
				if s := sv.BreakdownByMode[mode]; s.Operations != w.Count || s.TokensPrevented != w.TokensPrevented {
					t.Errorf("%s: mode %s %+v, want %+v", name, mode, s, w)
				}
			}
			var trendOps, trendPrevented int64
			for _, p := range sv.Trends {
				trendOps += p.Operations
				trendPrevented += p.TokensPrevented
			}
			if trendOps != all.Count || trendPrevented != all.TokensPrevented {
				t.Errorf("%s: trend sums to %d / %d, want %d / %d", name, trendOps, trendPrevented, all.Count, all.TokensPrevented)
			}
			bd, err := rep.ToolBreakdown(ctx, r, toolID)
			if err != nil {
				t.Fatal(err)
			}
			for tool, s := range map[string]api.ToolStats{"read": bd.Read, "search": bd.Search} {
				w := byTool[tool]
				if s.TotalOperations != w.Count || s.TotalTokensOriginal != w.TokensOriginal || s.TotalTokensActual != w.TokensActual ||
					s.TotalTokensPrevented != w.TokensPrevented || math.Abs(s.AvgResponseTimeMs*float64(w.Count)-w.ResponseTimeSumMs) > 1e-3 {
					t.Errorf("%s: breakdown %s %+v, want %+v", name, tool, s, w)
				}
			}
		}
	}

	perSession := map[uuid.UUID]int64{}
	for _, op := range db.Ops {
		perSession[op.SessionID]++
	}
	for _, w := range db.Sessions {
		g, err := store.GetSession(ctx, w.SessionID)
		if err != nil {
			t.Errorf("session %s: %v", w.SessionID, err)
			continue
		}
		ended := (g.EndedAt == nil) == (w.EndedAt == nil) && (g.EndedAt == nil || g.EndedAt.Equal(*w.EndedAt))
		if !ended || !g.StartedAt.Equal(w.StartedAt) || !g.LastActivity.Equal(w.LastActivity) || g.ToolID != w.ToolID ||
			!reflect.DeepEqual(g.ToolVersion, w.ToolVersion) || !reflect.DeepEqual(g.ProcessID, w.ProcessID) ||
			!reflect.DeepEqual(g.InstanceID, w.InstanceID) || !reflect.DeepEqual(g.ProjectID, w.ProjectID) ||
			g.TotalOperations != perSession[w.SessionID] {
			t.Errorf("session %s\n got %+v (ended %v)\nwant %+v (ended %v), %d operations", w.SessionID, g.Session, g.EndedAt, w, w.EndedAt, perSession[w.SessionID])
		}
	}
}
