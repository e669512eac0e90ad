package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/internal/textfmt"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/storetest"
)

// openStaging opens a store of url whose background move waits an hour
// after a stage, so that only the test's reads, drainAt and Close move
// pending operations.
func openStaging(t *testing.T, url string, announce bool) *Store {
	t.Helper()
	saved := drainAfter
	drainAfter = time.Hour // read by Open, which starts the mover
	defer func() { drainAfter = saved }()
	s, err := Open(context.Background(), Config{URL: url, Announce: announce}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rowCounts answers how many rows pending_operations and tool_operations
// hold, read beside the store (no flush).
func rowCounts(t *testing.T, s *Store) (pending, stored int) {
	t.Helper()
	if err := s.pool.QueryRow(context.Background(),
		`SELECT (SELECT count(*) FROM pending_operations), (SELECT count(*) FROM tool_operations)`).Scan(&pending, &stored); err != nil {
		t.Fatal(err)
	}
	return pending, stored
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSmallWritesAreStagedAndReadsSeeThem: a commit of a few operations
// lands in pending_operations only (its ids claimed, so that a retry is a
// duplicate); the next read moves them into tool_operations, the rollups
// and the sessions, and every read agrees with a store written in one
// batch.
func TestSmallWritesAreStagedAndReadsSeeThem(t *testing.T) {
	ctx := context.Background()
	pg := realtools.SharedPostgres(t)
	s := openStaging(t, pg.NewDatabase(t), false)
	whole := openStaging(t, pg.NewDatabase(t), false)
	from := time.Date(2025, 1, 31, 20, 0, 0, 0, time.UTC) // across two months' partitions
	ops := storetest.NewScale(5).Batch(600, from, 30*time.Hour)
	if err := whole.WriteOperations(ctx, slices.Clone(ops)); err != nil {
		t.Fatal(err)
	}
	storetest.WriteEach(t, s, slices.Clone(ops), 7)
	if pending, stored := rowCounts(t, s); pending != len(ops) || stored != 0 {
		t.Fatalf("after commits of 7: %d pending, %d stored; want %d pending, 0 stored", pending, stored, len(ops))
	}
	retry := slices.Clone(ops[:5])
	if err := s.WriteOperations(ctx, retry); err != nil {
		t.Fatal(err)
	}
	for _, op := range retry {
		if !op.Duplicate {
			t.Fatalf("a retry of pending operation %s was not a duplicate", op.ID)
		}
	}

	windows := []tsdb.Window{
		{Start: &from, End: from.Add(30 * time.Hour)},
		{Start: new(from.Add(90 * time.Minute)), End: from.Add(20*time.Hour + 10*time.Minute), ToolID: ops[0].ToolID},
	}
	got := storetest.Answers(t, s, windows)
	if pending, stored := rowCounts(t, s); pending != 0 || stored != len(ops) {
		t.Fatalf("after a read: %d pending, %d stored; want 0 pending, %d stored", pending, stored, len(ops))
	}
	if want := storetest.Answers(t, whole, windows); got != want {
		t.Errorf("staged, then moved, the store answers\n%s\nwritten whole, it answers\n%s", got, want)
	}
	byFile := tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimFilePath}, Filter: tsdb.OperationFilter{Start: &from}, Limit: 1000}
	if got, want := aggregate(t, s, byFile), aggregate(t, whole, byFile); got != want {
		t.Errorf("by file path, staged:\n%s\nwritten whole:\n%s", got, want)
	}
	for _, id := range []uuid.UUID{ops[0].SessionID, ops[len(ops)-1].SessionID} {
		g, err := s.GetSession(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		w, err := whole.GetSession(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if g != w {
			t.Errorf("session %s: staged %+v, written whole %+v", id, g, w)
		}
	}
}

func aggregate(t *testing.T, s *Store, q tsdb.AggregateQuery) string {
	t.Helper()
	r, err := s.Aggregate(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%+v", r)
}

// TestAnotherReplicaSeesStagedOperations: operations one replica staged
// are in another's reads and on its feed, while still pending.
func TestAnotherReplicaSeesStagedOperations(t *testing.T) {
	ctx := context.Background()
	url := realtools.SharedPostgres(t).NewDatabase(t)
	a, b := openStaging(t, url, true), openStaging(t, url, true)
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fed := make(chan []tsdb.Operation, 16)
	go b.FollowOperations(fctx, func(ops []tsdb.Operation) { fed <- ops }, func(err error) { t.Errorf("feed lost: %v", err) })
	waitFor(t, "b listens", func() bool {
		var n int
		_ = a.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, feedApplication).Scan(&n)
		return n == 1
	})

	ops := storetest.NewScale(6).Batch(20, time.Now().Add(-time.Hour), time.Hour)
	storetest.WriteEach(t, a, ops, 10)
	if pending, _ := rowCounts(t, a); pending != len(ops) {
		t.Fatalf("%d pending, want %d", pending, len(ops))
	}
	var got []uuid.UUID
	for len(got) < len(ops) {
		select {
		case batch := <-fed:
			for _, op := range batch {
				got = append(got, op.ID)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("the feed delivered %d of %d staged operations", len(got), len(ops))
		}
	}
	for i := range ops {
		if got[i] != ops[i].ID {
			t.Fatalf("feed operation %d: %s, want %s", i, got[i], ops[i].ID)
		}
	}
	if pending, _ := rowCounts(t, a); pending != len(ops) {
		t.Fatalf("%d pending after the feed, want %d: the feed read them from pending_operations", pending, len(ops))
	}
	page, err := b.QueryOperations(ctx, tsdb.OperationFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != int64(len(ops)) || len(page.Operations) != len(ops) {
		t.Fatalf("the other replica lists %d of %d operations (total %d)", len(page.Operations), len(ops), page.Total)
	}
}

// TestMoverKeepsUp: once drainAt operations are pending the mover moves
// them without waiting drainAfter.
func TestMoverKeepsUp(t *testing.T) {
	s := openStaging(t, realtools.SharedPostgres(t).NewDatabase(t), false)
	ops := storetest.NewScale(7).Batch(drainAt+50, time.Now().Add(-time.Hour), time.Hour)
	storetest.WriteEach(t, s, ops, 50)
	waitFor(t, "the mover moved what was pending", func() bool {
		pending, stored := rowCounts(t, s)
		return pending == 0 && stored == len(ops)
	})
}

// TestMovesOfTwoReplicas: a replica's move takes what another staged too,
// and the other's next move takes only what is pending then: every
// operation is stored once, and both replicas answer as a store written in
// one batch.
func TestMovesOfTwoReplicas(t *testing.T) {
	ctx := context.Background()
	pg := realtools.SharedPostgres(t)
	url := pg.NewDatabase(t)
	a, b := openStaging(t, url, false), openStaging(t, url, false)
	whole := openStaging(t, pg.NewDatabase(t), false)
	from := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	ops := storetest.NewScale(9).Batch(300, from, 10*time.Hour)
	if err := whole.WriteOperations(ctx, slices.Clone(ops)); err != nil {
		t.Fatal(err)
	}

	storetest.WriteEach(t, a, slices.Clone(ops[:100]), 10)    // a keeps copies of these
	storetest.WriteEach(t, b, slices.Clone(ops[100:150]), 10) // b of these
	if err := b.drain(ctx); err != nil {                      // b moves a's rows too, read back
		t.Fatal(err)
	}
	if pending, stored := rowCounts(t, a); pending != 0 || stored != 150 {
		t.Fatalf("after b's move: %d pending, %d stored; want 0, 150", pending, stored)
	}
	storetest.WriteEach(t, a, slices.Clone(ops[150:250]), 10)
	storetest.WriteEach(t, b, slices.Clone(ops[250:]), 10)
	if err := a.drain(ctx); err != nil { // ops[:100] are moved already
		t.Fatal(err)
	}
	if pending, stored := rowCounts(t, a); pending != 0 || stored != len(ops) {
		t.Fatalf("after a's move: %d pending, %d stored; want 0, %d", pending, stored, len(ops))
	}

	windows := []tsdb.Window{{Start: &from, End: from.Add(10 * time.Hour)}}
	want := storetest.Answers(t, whole, windows)
	for name, s := range map[string]*Store{"a": a, "b": b} {
		if got := storetest.Answers(t, s, windows); got != want {
			t.Errorf("replica %s answers\n%s\nwritten whole:\n%s", name, got, want)
		}
	}
	byFile := tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimFilePath}, Filter: tsdb.OperationFilter{Start: &from}, Limit: 1000}
	if got, want := aggregate(t, a, byFile), aggregate(t, whole, byFile); got != want {
		t.Errorf("by file path, two replicas:\n%s\nwritten whole:\n%s", got, want)
	}
}

// crash stops s as a killed process would: no move, no Close.
func crash(s *Store) {
	s.closed.Store(true)
	s.mover.Stop()
	s.pool.Close()
}

// TestPendingOperationsSurviveAndMove: what Close moves is stored, and
// operations left pending (a replica killed after its acknowledgement)
// are moved by the next store to open the database, without a read.
func TestPendingOperationsSurviveAndMove(t *testing.T) {
	url := realtools.SharedPostgres(t).NewDatabase(t)
	s := openStaging(t, url, false)
	ops := storetest.NewScale(8).Batch(30, time.Now().Add(-time.Hour), time.Hour)
	storetest.WriteEach(t, s, ops[:20], 10)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	other := openStaging(t, url, false)
	if pending, stored := rowCounts(t, other); pending != 0 || stored != 20 {
		t.Fatalf("after Close: %d pending, %d stored; want 0, 20", pending, stored)
	}

	storetest.WriteEach(t, other, ops[20:], 10)
	crash(other)
	third := openStaging(t, url, false)
	waitFor(t, "the store opened moved the operations left pending", func() bool {
		pending, stored := rowCounts(t, third)
		return pending == 0 && stored == len(ops)
	})
}

// TestDocsQuoteTheStaging: the figures docs/postgresql.md and
// docs/architecture.md quote by hand are this package's.
func TestDocsQuoteTheStaging(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("..", "..", "docs", name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(strings.Fields(string(b)), " ")
	}
	pg, arch := read("postgresql.md"), read("architecture.md")
	for _, want := range []string{
		fmt.Sprintf("A commit of up to %d operations", stageMax),
		fmt.Sprintf("%d ms after a stage, at once when %s are pending (the writer waits for the move when %s are)",
			drainAfter.Milliseconds(), textfmt.Thousands(drainAt), textfmt.Thousands(stageBound)),
		fmt.Sprintf("the pool keeps %d connections", defaultMaxConns),
	} {
		if !strings.Contains(pg, want) {
			t.Errorf("docs/postgresql.md does not say %q", want)
		}
	}
	if want := fmt.Sprintf("on PostgreSQL the same in one transaction (a commit of up to %d is staged", stageMax); !strings.Contains(arch, want) {
		t.Errorf("docs/architecture.md does not say %q", want)
	}
}
