package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/internal/sqlq"
	"github.com/omnimemory/omnimemory-metrics/tsdb/storetest"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func openTemp(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "metrics.db"), testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) tsdb.Store { return openTemp(t) })
	storetest.RunSpend(t, func(t *testing.T) tsdb.SpendStore { return openTemp(t) })
	storetest.RunRetention(t, func(t *testing.T) storetest.RetentionStore { return openTemp(t) })
}

// TestTotalsAtTheBounds: sums past an int64 neither fail a write, a move
// nor a read (see storetest.RunTotalsAtTheBounds).
func TestTotalsAtTheBounds(t *testing.T) {
	storetest.RunTotalsAtTheBounds(t, func(t *testing.T) tsdb.Store { return openTemp(t) })
}

var day0 = time.Date(2025, 1, 14, 0, 0, 0, 0, time.UTC)

// genOps makes n operations spread over span from start, across a few
// sessions, tools, modes and tool ids.
// genOps answers n operations of random fields and times in [start,
// start+span), from r (see storetest.Scale.Batch).
func genOps(r *rand.Rand, n int, start time.Time, span time.Duration) []tsdb.Operation {
	return storetest.ScaleOf(r).Batch(n, start, span)
}

func TestRestartKeepsEverything(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "dir", "metrics.db") // folders created by Open
	s, err := Open(ctx, path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(1))
	ops := genOps(r, 2000, day0, 72*time.Hour)
	for i := 0; i < len(ops); i += 500 {
		if err := s.WriteOperations(ctx, ops[i:i+500]); err != nil {
			t.Fatal(err)
		}
	}
	sess := tsdb.Session{SessionID: uuid.New(), ToolID: "cursor", ProcessID: new(int64), StartedAt: day0, LastActivity: day0}
	if err := s.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EndSession(ctx, sess.SessionID, day0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	snapshot := func(s *Store) string {
		t.Helper()
		var b strings.Builder
		page, err := s.QueryOperations(ctx, tsdb.OperationFilter{Limit: 1000, Offset: 500})
		if err != nil {
			t.Fatal(err)
		}
		js := func(v any) string {
			out, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			return string(out)
		}
		fmt.Fprintf(&b, "total=%d page=%s\n", page.Total, js(page.Operations))
		end := day0.Add(100 * time.Hour)
		bd, err := s.Breakdown(ctx, tsdb.Window{Start: ptr(day0.Add(90 * time.Minute)), End: end})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "breakdown=%s\n", js(bd))
		tr, err := s.Trend(ctx, tsdb.Window{End: end}, tsdb.Hourly)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "trend=%v\n", tr)
		for _, id := range []uuid.UUID{sess.SessionID, ops[0].SessionID} {
			st, err := s.GetSession(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "session=%s\n", js(st))
		}
		var hourly, daily int
		if err := s.reader.QueryRow(`SELECT (SELECT count(*) FROM op_rollup_hourly), (SELECT count(*) FROM op_rollup_daily)`).Scan(&hourly, &daily); err != nil {
			t.Fatal(err)
		}
		if hourly == 0 || daily == 0 {
			t.Fatalf("rollup rows: %d hourly, %d daily", hourly, daily)
		}
		fmt.Fprintf(&b, "rollups=%d/%d\n", hourly, daily)
		return b.String()
	}
	before := snapshot(s)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, tsdb.ErrUnavailable) {
		t.Errorf("Ping after Close = %v, want ErrUnavailable", err)
	}
	if err := s.WriteOperations(ctx, ops[:1]); !errors.Is(err, tsdb.ErrUnavailable) {
		t.Errorf("WriteOperations after Close = %v, want ErrUnavailable", err)
	}
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() != 0 {
		t.Errorf("after Close the WAL holds %d bytes, want a checkpointed (empty) log", fi.Size())
	}

	s2, err := Open(ctx, path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if after := snapshot(s2); after != before {
		t.Errorf("after restart:\n%s\nbefore:\n%s", after, before)
	}
	checkRollupsMatchRaw(t, s2)
}

func ptr[T any](v T) *T { return &v }

func TestOpenExpandsHome(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	s, err := Open(context.Background(), "~/.omnimemory/metrics.db", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := filepath.Join(home, ".omnimemory", "metrics.db")
	if s.Path() != want {
		t.Errorf("Path() = %q, want %q", s.Path(), want)
	}
	fi, err := os.Stat(filepath.Dir(want))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("folder mode %v, want 0700", fi.Mode().Perm())
	}
}

func TestOpenOddPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a ?b#c%20d", "metrics.db")
	s, err := Open(context.Background(), path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at %q: %v", path, err)
	}
}

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "metrics.db")
	versions := func() []int {
		t.Helper()
		s, err := Open(ctx, path, testLogger(t))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close()
		rows, err := s.reader.Query(`SELECT version FROM schema_migrations ORDER BY version`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var vs []int
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			vs = append(vs, v)
		}
		return vs
	}
	first := versions()
	if len(first) != len(migrations) || first[len(first)-1] != len(migrations) {
		t.Fatalf("schema_migrations = %v, want 1..%d", first, len(migrations))
	}
	if second := versions(); fmt.Sprint(second) != fmt.Sprint(first) {
		t.Fatalf("second Open changed schema_migrations: %v -> %v", first, second)
	}

	// A newer program wrote version n+1: this one must refuse the file.
	s, err := Open(ctx, path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.writer.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, 'future')`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(ctx, path, testLogger(t))
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open of a newer schema: err = %v, want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("version %d", len(migrations)+1)) {
		t.Errorf("error %q does not name the version", err)
	}
}

func TestMigrationAppliesMissing(t *testing.T) {
	// A database at version 0 (only schema_migrations) gets every migration.
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "metrics.db")
	migrations = saved[:1]
	s, err := Open(ctx, path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	migrations = append(saved[:1:1], `CREATE TABLE extra (x INTEGER)`)
	s, err = Open(ctx, path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n int
	if err := s.reader.QueryRow(`SELECT count(*) FROM extra`).Scan(&n); err != nil {
		t.Fatalf("migration 2 not applied: %v", err)
	}
	if err := s.reader.QueryRow(`SELECT max(version) FROM schema_migrations`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("schema version %d (%v), want 2", n, err)
	}
}

// TestConcurrentWritesAndReads hammers the store from many goroutines: no
// write or read may fail (in particular with SQLITE_BUSY), and every
// operation must be counted once.
func TestConcurrentWritesAndReads(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	const writers, batches, perBatch = 8, 20, 25
	var wg sync.WaitGroup
	errc := make(chan error, writers*batches+1000)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(w)))
			for range batches {
				if err := s.WriteOperations(ctx, genOps(r, perBatch, day0, 48*time.Hour)); err != nil {
					errc <- fmt.Errorf("write: %w", err)
				}
			}
		}()
	}
	// Session calls go through the writer too.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 50 {
			id := uuid.New()
			if err := s.CreateSession(ctx, tsdb.Session{SessionID: id, ToolID: "t", StartedAt: day0, LastActivity: day0}); err != nil {
				errc <- err
			}
			if _, err := s.TouchSession(ctx, id, day0.Add(time.Duration(i)*time.Second)); err != nil {
				errc <- err
			}
		}
	}()
	stop := make(chan struct{})
	var rg sync.WaitGroup
	for range 4 {
		rg.Add(1)
		go func() {
			defer rg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				end := day0.Add(48 * time.Hour)
				if _, err := s.Breakdown(ctx, tsdb.Window{Start: ptr(day0.Add(7 * time.Minute)), End: end}); err != nil {
					errc <- fmt.Errorf("breakdown: %w", err)
				}
				if _, err := s.Trend(ctx, tsdb.Window{End: end}, tsdb.Hourly); err != nil {
					errc <- fmt.Errorf("trend: %w", err)
				}
				if _, err := s.QueryOperations(ctx, tsdb.OperationFilter{Limit: 50, ToolID: "cursor"}); err != nil {
					errc <- fmt.Errorf("query: %w", err)
				}
				if _, err := s.ActiveSessions(ctx, "", day0); err != nil {
					errc <- fmt.Errorf("active sessions: %w", err)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	rg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	page, err := s.QueryOperations(ctx, tsdb.OperationFilter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != writers*batches*perBatch {
		t.Errorf("Total %d, want %d", page.Total, writers*batches*perBatch)
	}
	checkRollupsMatchRaw(t, s)
}

// checkRollupsMatchRaw compares the rollup table row by row with a GROUP BY
// over the raw operations.
func checkRollupsMatchRaw(t *testing.T, s *Store) {
	t.Helper()
	// The tables are read beside the store, one query each: staged
	// operations are moved first, so that no move (the background one
	// included) lands between two of the queries.
	if err := s.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	read := func(q string) map[string]string {
		rows, err := s.reader.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		m := map[string]string{}
		for rows.Next() {
			var (
				hour, n, o, a, p, cl, ch int64
				toolID, tool, md         string
				rt                       float64
			)
			if err := rows.Scan(&hour, &toolID, &tool, &md, &n, &o, &a, &p, &rt, &cl, &ch); err != nil {
				t.Fatal(err)
			}
			m[fmt.Sprint(hour, toolID, tool, md)] = fmt.Sprintf("n=%d o=%d a=%d p=%d rt=%.6f cache=%d/%d", n, o, a, p, rt, ch, cl)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, tc := range []struct {
		table, col string
		width      int64
	}{{"op_rollup_hourly", "hour", tsdb.MicrosPerHour}, {"op_rollup_daily", "day", tsdb.MicrosPerDay}} {
		rollup := read(`SELECT ` + tc.col + `, tool_id, tool_name, operation_mode, count, tokens_original,
			tokens_actual, tokens_prevented, response_time_sum, cache_lookups, cache_hits FROM ` + tc.table)
		raw := read(fmt.Sprintf(`SELECT created_at / %[1]d * %[1]d, tool_id, tool_name, operation_mode, count(*),
			sum(tokens_original), sum(tokens_actual), sum(tokens_prevented), sum(response_time_ms),
			count(cache_hit), coalesce(sum(cache_hit), 0)
			FROM tool_operations GROUP BY 1, 2, 3, 4`, tc.width))
		if len(rollup) != len(raw) {
			t.Errorf("%s: %d rows, raw GROUP BY has %d", tc.table, len(rollup), len(raw))
		}
		for k, v := range raw {
			if rollup[k] != v {
				t.Errorf("%s %s = %q, raw %q", tc.table, k, rollup[k], v)
			}
		}
	}
	all := read(`SELECT hour, '', '', '', count, tokens_original, tokens_actual, tokens_prevented, response_time_sum,
		cache_lookups, cache_hits FROM op_rollup_hourly_all`)
	raw := read(fmt.Sprintf(`SELECT created_at / %[1]d * %[1]d, '', '', '', count(*),
		sum(tokens_original), sum(tokens_actual), sum(tokens_prevented), sum(response_time_ms),
		count(cache_hit), coalesce(sum(cache_hit), 0)
		FROM tool_operations GROUP BY 1`, tsdb.MicrosPerHour))
	if len(all) != len(raw) {
		t.Errorf("op_rollup_hourly_all: %d rows, raw GROUP BY has %d", len(all), len(raw))
	}
	for k, v := range raw {
		if all[k] != v {
			t.Errorf("op_rollup_hourly_all %s = %q, raw %q", k, all[k], v)
		}
	}
	files := read(`SELECT day, file_null, file_path, '', count, tokens_original, tokens_actual, tokens_prevented,
		response_time_sum, cache_lookups, cache_hits FROM op_rollup_file_daily`)
	raw = read(fmt.Sprintf(`SELECT created_at / %[1]d * %[1]d, file_path IS NULL, coalesce(file_path, ''), '', count(*),
		sum(tokens_original), sum(tokens_actual), sum(tokens_prevented), sum(response_time_ms),
		count(cache_hit), coalesce(sum(cache_hit), 0)
		FROM tool_operations GROUP BY 1, 2, 3`, tsdb.MicrosPerDay))
	if len(files) != len(raw) {
		t.Errorf("op_rollup_file_daily: %d rows, raw GROUP BY has %d", len(files), len(raw))
	}
	for k, v := range raw {
		if files[k] != v {
			t.Errorf("op_rollup_file_daily %s = %q, raw %q", k, files[k], v)
		}
	}
	sessions := read(`SELECT day, hex(session_id), '', '', count, tokens_original, tokens_actual, tokens_prevented,
		response_time_sum, cache_lookups, cache_hits FROM op_rollup_session_daily`)
	raw = read(fmt.Sprintf(`SELECT created_at / %[1]d * %[1]d, hex(session_id), '', '', count(*),
		sum(tokens_original), sum(tokens_actual), sum(tokens_prevented), sum(response_time_ms),
		count(cache_hit), coalesce(sum(cache_hit), 0)
		FROM tool_operations GROUP BY 1, 2`, tsdb.MicrosPerDay))
	if len(sessions) != len(raw) {
		t.Errorf("op_rollup_session_daily: %d rows, raw GROUP BY has %d", len(sessions), len(raw))
	}
	for k, v := range raw {
		if sessions[k] != v {
			t.Errorf("op_rollup_session_daily %s = %q, raw %q", k, sessions[k], v)
		}
	}
}

func TestRollupsMatchRaw(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	r := rand.New(rand.NewSource(7))
	ops := genOps(r, 5000, day0, 10*24*time.Hour)
	for i := 0; i < len(ops); {
		n := 1 + r.Intn(700)
		if err := s.WriteOperations(ctx, ops[i:min(i+n, len(ops))]); err != nil {
			t.Fatal(err)
		}
		i += n
	}
	checkRollupsMatchRaw(t, s)
}

func TestFailedBatchLeavesNothing(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	r := rand.New(rand.NewSource(8))
	ops := genOps(r, 150, day0, time.Hour)
	if err := s.WriteOperations(ctx, ops[:1]); err != nil {
		t.Fatal(err)
	}
	// ops[0] again (duplicate id) at the end of a batch: the whole batch fails.
	bad := append(append([]tsdb.Operation{}, ops[1:]...), ops[0])
	if err := s.WriteOperations(ctx, bad); err == nil {
		t.Fatal("WriteOperations with a duplicate id succeeded")
	} else if errors.Is(err, tsdb.ErrUnavailable) {
		t.Errorf("a constraint violation is not unavailability: %v", err)
	}
	page, err := s.QueryOperations(ctx, tsdb.OperationFilter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 1 {
		t.Errorf("Total %d after the failed batch, want 1", page.Total)
	}
	st, err := s.GetSession(ctx, ops[0].SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalOperations != 1 {
		t.Errorf("session counts %d operations, want 1", st.TotalOperations)
	}
	checkRollupsMatchRaw(t, s)
}

// TestAggregatesUseIndexes checks the query plans of aggregates: no full
// scan, and raw rows always found through a created_at range.
func TestAggregatesUseIndexes(t *testing.T) {
	s := openTemp(t)
	for _, f := range []sqlq.Filter{{}, {ToolID: "cursor"}, {ToolName: api.ToolRead}, {ToolName: api.ToolRead, Mode: "full"},
		{ToolID: "cursor", Mode: "semantic"}} {
		for _, start := range []*time.Time{nil, ptr(day0.Add(17 * time.Minute))} {
			w := tsdb.Window{ToolID: f.ToolID, Start: start, End: day0.Add(30*24*time.Hour + 5*time.Minute)}
			for _, width := range []int64{0, tsdb.MicrosPerHour, tsdb.MicrosPerDay} {
				q, args := dialect.Aggregate(sqlq.Operations, tsdb.PlanWindow(w, tsdb.PlanOptions{Daily: width != tsdb.MicrosPerHour}), f, width)
				plan := queryPlan(t, s.reader, q, args...)
				for _, d := range plan {
					bad := strings.HasPrefix(d, "SCAN ") && d != "SCAN parts" ||
						strings.Contains(d, "tool_operations") && !strings.Contains(d, "created_at>")
					if bad {
						t.Errorf("filter %+v start %v width %d: %q in plan:\n%s", f, start != nil, width, d, strings.Join(plan, "\n"))
					}
				}
			}
		}
	}
}

// TestListUsesTimeOrder checks that a page of a dense tool-name filter walks
// an index in time order instead of sorting every match.
func TestListUsesTimeOrder(t *testing.T) {
	s := openTemp(t)
	for _, f := range []tsdb.OperationFilter{
		{ToolName: api.ToolRead},
		{ToolName: api.ToolRead, OperationMode: "full", Start: ptr(day0), End: ptr(day0.Add(time.Hour))},
		{OperationMode: "full", ToolID: "cursor"},
		{ToolName: api.ToolSearch, SessionID: ptr(uuid.New())},
	} {
		q := dialect.NewQuery()
		plan := queryPlan(t, s.reader, "SELECT "+opColumnList+" FROM tool_operations"+q.OperationWhere(f, true)+
			" ORDER BY created_at DESC, id DESC LIMIT 100", q.Args...)
		joined := strings.Join(plan, "\n")
		if strings.Contains(joined, "TEMP B-TREE") || strings.Contains(joined, "idx_ops_tool_mode") || strings.Contains(joined, "idx_ops_mode") {
			t.Errorf("filter %+v: plan\n%s", f, joined)
		}
	}
}

// TestMigrationUpgradesVersion1 makes a database with migration 1 only
// (text ids), fills it the way version 1 wrote operations, rollups and
// sessions, and opens it with every migration: the operations come back
// byte for byte, in the same order, with the same aggregates, and new
// writes land beside them.
func TestMigrationUpgradesVersion1(t *testing.T) {
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "metrics.db")
	r := rand.New(rand.NewSource(21))
	ops := genOps(r, 3000, day0, 50*time.Hour)
	// Ties: several operations at one instant, ordered by id.
	for i := 1; i < 40; i++ {
		ops[i].CreatedAt = ops[0].CreatedAt
	}
	ops[7].FilePath = nil
	for i := range ops { // version 1 kept no cache_hit
		ops[i].CacheHit = nil
	}

	migrations = saved[:1]
	s, err := Open(ctx, path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	writeVersion1(t, s, ops)
	s.Close()

	migrations = saved
	s = openAt(t, path)
	var version int
	if err := s.reader.QueryRow(`SELECT max(version) FROM schema_migrations`).Scan(&version); err != nil || version != len(migrations) {
		t.Fatalf("schema version %d (%v), want %d", version, err, len(migrations))
	}
	var idType string
	if err := s.reader.QueryRow(`SELECT typeof(id) || '/' || typeof(session_id) FROM tool_operations LIMIT 1`).Scan(&idType); err != nil || idType != "blob/blob" {
		t.Fatalf("ids stored as %q (%v), want blob/blob", idType, err)
	}
	check := func(all []tsdb.Operation) {
		t.Helper()
		want := append([]tsdb.Operation(nil), all...)
		slices.SortFunc(want, func(a, b tsdb.Operation) int {
			if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
				return c
			}
			return bytes.Compare(b.ID[:], a.ID[:])
		})
		page, err := s.QueryOperations(ctx, tsdb.OperationFilter{Limit: len(want) + 1})
		if err != nil {
			t.Fatal(err)
		}
		if page.Total != int64(len(want)) || len(page.Operations) != len(want) {
			t.Fatalf("Total %d, %d operations; want %d", page.Total, len(page.Operations), len(want))
		}
		for i := range want {
			got, w := page.Operations[i], want[i]
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(w)
			if string(gj) != string(wj) {
				t.Fatalf("operation %d:\ngot  %s\nwant %s", i, gj, wj)
			}
		}
		sess := want[0].SessionID
		sp, err := s.QueryOperations(ctx, tsdb.OperationFilter{SessionID: &sess, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, op := range want {
			if op.SessionID == sess {
				n++
			}
		}
		if sp.Total != int64(n) || len(sp.Operations) != min(n, 1000) {
			t.Errorf("session filter: Total %d, %d operations; want %d", sp.Total, len(sp.Operations), n)
		}
		checkRollupsMatchRaw(t, s)
	}
	check(ops)
	st, err := s.GetSession(ctx, ops[0].SessionID)
	if err != nil || st.TotalOperations == 0 {
		t.Fatalf("session after upgrade: %+v, %v", st, err)
	}
	more := genOps(r, 500, day0.Add(10*time.Hour), 5*time.Hour)
	for i := range more {
		more[i].ID = uuid.Must(uuid.NewV7())
	}
	if err := s.WriteOperations(ctx, more); err != nil {
		t.Fatal(err)
	}
	check(append(ops, more...))
	// A duplicate of a migrated id is still refused.
	if err := s.WriteOperations(ctx, ops[5:6]); err == nil {
		t.Error("writing a migrated operation's id again succeeded")
	}
}

// queryPlan answers the steps of SQLite's plan of q (EXPLAIN QUERY PLAN).
func queryPlan(t *testing.T, db *sql.DB, q string, args ...any) []string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatalf("plan of %s: %v", q, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}

func openAt(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// writeVersion1 stores ops as schema version 1 did: text ids, rollups and
// session totals.
func writeVersion1(t *testing.T, s *Store, ops []tsdb.Operation) {
	t.Helper()
	tx, err := s.writer.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, op := range ops {
		var file any
		if op.FilePath != nil {
			file = *op.FilePath
		}
		if _, err := tx.Exec(`INSERT INTO tool_operations (`+opColumnListVersion1+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
			op.ID.String(), op.SessionID.String(), op.ToolName, op.OperationMode, string(op.Parameters), file,
			op.TokensOriginal, op.TokensActual, op.TokensPrevented, op.ResponseTimeMs, op.ToolID, op.CreatedAt.UnixMicro()); err != nil {
			t.Fatal(err)
		}
		at := op.CreatedAt.UnixMicro()
		for _, r := range []struct {
			q     string
			start int64
		}{{upsertRollupSQLVersion1("op_rollup_hourly", "hour"), tsdb.FloorTo(at, tsdb.MicrosPerHour)},
			{upsertRollupSQLVersion1("op_rollup_daily", "day"), tsdb.FloorTo(at, tsdb.MicrosPerDay)}} {
			if _, err := tx.Exec(r.q, r.start, op.ToolID, op.ToolName, op.OperationMode, 1,
				op.TokensOriginal, op.TokensActual, op.TokensPrevented, op.ResponseTimeMs); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tx.Exec(upsertSessionSQLVersion1, op.SessionID.String(), op.ToolID, at, at, 1, op.TokensPrevented, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// opColumnListVersion1 are the columns of tool_operations in schema
// version 1.
const opColumnListVersion1 = `id, session_id, tool_name, operation_mode, parameters, file_path,
	tokens_original, tokens_actual, tokens_prevented, response_time_ms, tool_id, created_at`

// upsertRollupSQLVersion1 is the rollup upsert of schema version 1 (no
// cache counts yet).
func upsertRollupSQLVersion1(table, col string) string {
	return `INSERT INTO ` + table + `
	(` + col + `, tool_id, tool_name, operation_mode, count, tokens_original, tokens_actual, tokens_prevented, response_time_sum)
VALUES (?,?,?,?,?,?,?,?,?)
ON CONFLICT (` + col + `, tool_id, tool_name, operation_mode) DO UPDATE SET
	count             = count + excluded.count,
	tokens_original   = tokens_original + excluded.tokens_original,
	tokens_actual     = tokens_actual + excluded.tokens_actual,
	tokens_prevented  = tokens_prevented + excluded.tokens_prevented,
	response_time_sum = response_time_sum + excluded.response_time_sum`
}

// upsertSessionSQLVersion1 is the session upsert of schema version 1 (no
// implicit column yet).
const upsertSessionSQLVersion1 = `INSERT INTO tool_sessions
	(session_id, tool_id, started_at, last_activity, total_operations, tokens_saved, total_compressions, total_embeddings)
VALUES (?,?,?,?,?,?,?,?)
ON CONFLICT (session_id) DO UPDATE SET
	last_activity      = max(last_activity, excluded.last_activity),
	total_operations   = total_operations + excluded.total_operations,
	tokens_saved       = tokens_saved + excluded.tokens_saved,
	total_compressions = total_compressions + excluded.total_compressions,
	total_embeddings   = total_embeddings + excluded.total_embeddings`
