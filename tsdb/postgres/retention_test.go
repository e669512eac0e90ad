package postgres_test

import (
	"context"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/postgres"
	"github.com/omnimemory/omnimemory-metrics/tsdb/storetest"
)

// count answers a count(*) query's answer.
func count(t *testing.T, db *pgx.Conn, sql string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestRetentionAcrossReplicas: one replica expires while another, which
// planned its reads before and knows every month's partition, keeps
// answering what the first answers; while a replica holds the expiry lock
// another only moves the horizon; whole months go as dropped partitions
// with their operation ids; and a late operation into a dropped month is
// stored (its partition made again) and expired again.
func TestRetentionAcrossReplicas(t *testing.T) {
	url := newDatabase(t)
	a, b := open(t, postgres.Config{URL: url}), open(t, postgres.Config{URL: url})
	ctx := context.Background()
	db, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })

	r := rand.New(rand.NewSource(3))
	from := time.Date(2024, 11, 20, 0, 0, 0, 0, time.UTC)
	span := int64(50 * 24 * time.Hour)
	sessions := []uuid.UUID{uuid.New(), uuid.New()}
	ops := make([]tsdb.Operation, 3000)
	for i := range ops {
		ops[i] = mkOp(sessions[i%2], from.Add(time.Duration(r.Int63n(span))).Truncate(time.Microsecond), r.Int63n(5000))
	}
	for i := 0; i < len(ops); i += 500 {
		if err := b.WriteOperations(ctx, ops[i:i+500]); err != nil {
			t.Fatal(err)
		}
	}
	cutoff := time.Date(2025, 1, 3, 7, 45, 0, 0, time.UTC)
	windows := []tsdb.Window{
		{Start: ptr(time.Date(2024, 12, 30, 23, 40, 0, 0, time.UTC)), End: time.Date(2025, 1, 8, 10, 20, 0, 0, time.UTC)},
		{Start: ptr(time.Date(2025, 1, 3, 6, 50, 0, 0, time.UTC)), End: time.Date(2025, 1, 3, 8, 10, 0, 0, time.UTC), ToolID: "cursor"},
		{End: time.Date(2024, 12, 1, 0, 30, 0, 0, time.UTC)},
	}
	before := storetest.Answers(t, b, windows) // b plans with no horizon

	// Another replica holds the lock: the horizon moves, nothing goes.
	if _, err := db.Exec(ctx, `SELECT pg_advisory_lock($1)`, postgres.LockExpire); err != nil {
		t.Fatal(err)
	}
	ex, err := a.ExpireBefore(ctx, cutoff, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !ex.Horizon.Equal(cutoff.Truncate(time.Hour)) || ex.Operations != 0 || ex.More {
		t.Errorf("ExpireBefore while another replica expires = %+v; want the horizon moved, nothing deleted, no more", ex)
	}
	if n := count(t, db, `SELECT count(*) FROM tool_operations`); n != len(ops) {
		t.Errorf("%d operations stored, want all %d", n, len(ops))
	}
	if _, err := db.Exec(ctx, `SELECT pg_advisory_unlock($1)`, postgres.LockExpire); err != nil {
		t.Fatal(err)
	}

	deleted := storetest.ExpireAll(t, a, cutoff, 200).Operations
	want := storetest.Answers(t, a, windows)
	if want == before {
		t.Fatal("the windows answer the same before and after expiry: they test nothing")
	}
	if got := storetest.Answers(t, b, windows); got != want {
		t.Errorf("the replica that planned before expiry answers\n%s\nthe one that expired answers\n%s", got, want)
	}
	if n := count(t, db, `SELECT count(*) FROM tool_operations`); n != len(ops)-deleted {
		t.Errorf("%d operations stored after deleting %d of %d", n, deleted, len(ops))
	}
	if ids, rows := count(t, db, `SELECT count(*) FROM operation_ids`), count(t, db, `SELECT count(*) FROM tool_operations`); ids != rows {
		t.Errorf("%d operation ids for %d operations: expired ids must go with their operations", ids, rows)
	}
	if n := count(t, db, `SELECT count(*) FROM pg_class WHERE relname IN ('tool_operations_p202411', 'tool_operations_p202412')`); n != 0 {
		t.Errorf("%d of the partitions of November and December 2024 remain, want them dropped", n)
	}

	// b still believes December has its partition.
	late := mkOp(sessions[0], time.Date(2024, 12, 24, 12, 0, 0, 0, time.UTC), 77)
	if err := b.WriteOperations(ctx, []tsdb.Operation{late}); err != nil {
		t.Fatalf("a late operation into a dropped month: %v", err)
	}
	page, err := a.QueryOperations(ctx, tsdb.OperationFilter{End: ptr(cutoff.Truncate(time.Hour).Add(-time.Microsecond)), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 1 || len(page.Operations) != 1 || page.Operations[0].ID != late.ID {
		t.Errorf("before the horizon the list holds %+v (total %d), want the late operation", page.Operations, page.Total)
	}
	if n := storetest.ExpireAll(t, a, cutoff, 200).Operations; n != 1 {
		t.Errorf("expiring again deleted %d operations, want the late one", n)
	}
	if n := count(t, db, `SELECT count(*) FROM pg_class WHERE relname = 'tool_operations_p202412'`); n != 0 {
		t.Errorf("December's partition made for the late operation remains")
	}
}

func ptr[T any](v T) *T { return &v }

// TestExpiryPlansReadOnlyTheBatch: on tables of some size, every statement
// of an expiry step finds its rows through an index (or by tuple id): no
// scan of a whole table, no hash of one, so that a batch costs what it
// deletes however large the tables grow.
func TestExpiryPlansReadOnlyTheBatch(t *testing.T) {
	url := newDatabase(t)
	s := open(t, postgres.Config{URL: url})
	ctx := context.Background()
	start := time.Date(2025, 1, 15, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 30000; i += 5000 {
		ops := make([]tsdb.Operation, 5000)
		points := make([]tsdb.SpendPoint, 5000)
		for j := range ops {
			at := start.Add(time.Duration(i+j) * 5 * time.Second)
			ops[j] = mkOp(uuid.New(), at, 1000)
			points[j] = tsdb.SpendPoint{ID: uuid.New(), ToolID: "cursor", Model: "m", Time: at, CostUSD: 1}
		}
		if err := s.WriteOperations(ctx, ops); err != nil {
			t.Fatal(err)
		}
		if err := s.WriteSpend(ctx, points); err != nil {
			t.Fatal(err)
		}
	}
	db, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	if _, err := db.Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	for name, st := range postgres.ExpirySQL {
		rows, err := db.Query(ctx, "EXPLAIN "+st.SQL, st.Args...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, line)
		}
		rows.Close()
		text := strings.Join(plan, "\n")
		if strings.Contains(text, "Seq Scan") || strings.Contains(text, "Hash") {
			t.Errorf("%s: a scan or hash of a whole table in its plan:\n%s", name, text)
		}
	}
}
