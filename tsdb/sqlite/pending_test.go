package sqlite

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/internal/textfmt"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/storetest"
)

// rowCounts answers how many rows pending_operations and tool_operations
// hold, read beside the store (no flush).
func rowCounts(t *testing.T, s *Store) (pending, stored int) {
	t.Helper()
	if err := s.reader.QueryRow(`SELECT (SELECT count(*) FROM pending_operations), (SELECT count(*) FROM tool_operations)`).
		Scan(&pending, &stored); err != nil {
		t.Fatal(err)
	}
	return pending, stored
}

// openStaging opens a store at path whose background drain waits an
// hour, so that only the test's reads, the bound and Close move pending
// operations.
func openStaging(t *testing.T, path string, logger *slog.Logger) *Store {
	t.Helper()
	saved := drainAfter
	drainAfter = time.Hour // read by the store's drain loop, started by Open
	t.Cleanup(func() { drainAfter = saved })
	s, err := Open(context.Background(), path, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestSmallWritesAreStagedAndReadsSeeThem: a commit of a few operations
// lands in pending_operations only; the next read moves them into
// tool_operations and the rollups and answers with them, and every read
// kind agrees with a store written in one batch.
func TestSmallWritesAreStagedAndReadsSeeThem(t *testing.T) {
	ctx := context.Background()
	s := openStaging(t, filepath.Join(t.TempDir(), "metrics.db"), testLogger(t))
	whole := openTemp(t)
	ops := genOps(rand.New(rand.NewSource(3)), 300, day0, 30*time.Hour)
	if err := whole.WriteOperations(ctx, ops); err != nil {
		t.Fatal(err)
	}
	storetest.WriteEach(t, s, ops, 7)
	if pending, stored := rowCounts(t, s); pending != len(ops) || stored != 0 {
		t.Fatalf("after commits of 7: %d pending, %d stored; want %d pending, 0 stored", pending, stored, len(ops))
	}

	start := day0
	checkSameBreakdown(t, s, whole, tsdb.Window{Start: &start, End: day0.Add(30 * time.Hour)}, "of staged operations")
	if pending, stored := rowCounts(t, s); pending != 0 || stored != len(ops) {
		t.Fatalf("after a read: %d pending, %d stored; want 0 and %d", pending, stored, len(ops))
	}
	sess, err := s.GetSession(ctx, ops[0].SessionID)
	if err != nil {
		t.Fatal(err)
	}
	wantSess, err := whole.GetSession(ctx, ops[0].SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if sess != wantSess {
		t.Errorf("session of staged operations %+v, want %+v", sess, wantSess)
	}

	// A commit over stageMax goes into the tables at once.
	big := genOps(rand.New(rand.NewSource(4)), stageMax+1, day0, time.Hour)
	if err := s.WriteOperations(ctx, big); err != nil {
		t.Fatal(err)
	}
	if pending, stored := rowCounts(t, s); pending != 0 || stored != len(ops)+len(big) {
		t.Fatalf("after a commit of %d: %d pending, %d stored; want 0 and %d", len(big), pending, stored, len(ops)+len(big))
	}
}

// TestPendingBound: without reads, pending operations move once drainAt
// are pending, so the table stays under it.
func TestPendingBound(t *testing.T) {
	s := openStaging(t, filepath.Join(t.TempDir(), "metrics.db"), testLogger(t))
	ops := genOps(rand.New(rand.NewSource(5)), drainAt+100, day0, time.Hour)
	storetest.WriteEach(t, s, ops, 50)
	pending, stored := rowCounts(t, s)
	if pending >= drainAt || pending+stored != len(ops) || stored < drainAt {
		t.Fatalf("%d pending, %d stored of %d; want fewer than %d pending", pending, stored, len(ops), drainAt)
	}
}

// TestDrainsOfTwoProcesses: two stores on one file, as two processes
// open it, stage operations in turn. Each drain moves every pending row
// once: its own copies, rows the other staged beside them, or, when the
// other moved its copies already and staged as many, the other's rows.
// The rollups then agree with a store written in one batch.
func TestDrainsOfTwoProcesses(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "metrics.db")
	a := openStaging(t, path, testLogger(t))
	b := openStaging(t, path, testLogger(t))
	r := rand.New(rand.NewSource(12))
	var all []tsdb.Operation
	write := func(s *Store, n int) {
		ops := genOps(r, n, day0, 10*time.Hour)
		storetest.WriteEach(t, s, ops, 5)
		all = append(all, ops...)
	}
	flush := func(s *Store, step string) {
		if err := s.flush(ctx); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if pending, stored := rowCounts(t, s); pending != 0 || stored != len(all) {
			t.Fatalf("%s: %d pending, %d stored; want 0 and %d", step, pending, stored, len(all))
		}
	}
	write(a, 40)
	write(b, 30)
	flush(a, "a's drain beside b's rows")
	write(a, 30) // as many rows as b's copies, which a moved
	flush(b, "b's drain after a moved its copies")
	flush(a, "a's drain after b moved its rows")
	write(a, 20)
	flush(a, "a's drain of its own copies")

	whole := openTemp(t)
	if err := whole.WriteOperations(ctx, all); err != nil {
		t.Fatal(err)
	}
	checkSameBreakdown(t, a, whole, tsdb.Window{End: day0.Add(24 * time.Hour)}, "after the two stores' drains")
}

// checkSameBreakdown fails t unless s answers the breakdown of w as whole
// does (a store written in one batch), rows of the same totals but for the
// response-time sums, which may add in another order.
func checkSameBreakdown(t *testing.T, s, whole *Store, w tsdb.Window, what string) {
	t.Helper()
	ctx := context.Background()
	got, err := s.Breakdown(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	want, err := whole.Breakdown(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || len(got) != len(want) {
		t.Fatalf("breakdown %s:\n%+v\nwant\n%+v", what, got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		g.ResponseTimeSumMs, w.ResponseTimeSumMs = 0, 0
		if g != w {
			t.Errorf("breakdown row %d %s %+v, want %+v", i, what, got[i], want[i])
		}
	}
}

// TestPendingSurvivesACrash: the files as a crash (or power loss) right
// after staged commits leaves them, opened again: nothing acknowledged
// is lost, the store says it found pending operations, and reads answer
// with them.
func TestPendingSurvivesACrash(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStaging(t, filepath.Join(dir, "metrics.db"), testLogger(t))
	ops := genOps(rand.New(rand.NewSource(6)), 200, day0, 5*time.Hour)
	storetest.WriteEach(t, s, ops, 9)
	if pending, _ := rowCounts(t, s); pending != len(ops) {
		t.Fatalf("%d pending, want %d", pending, len(ops))
	}
	// The store is still open: its file and log are what a crash leaves.
	image := filepath.Join(t.TempDir(), "metrics.db")
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, "metrics.db"+suffix))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(image+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	after := openStaging(t, image, testLogger(t))
	if n := after.pending.Load(); n != int64(len(ops)) {
		t.Errorf("the reopened store found %d pending operations, want %d", n, len(ops))
	}
	page, err := after.QueryOperations(ctx, tsdb.OperationFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != int64(len(ops)) || len(page.Operations) != len(ops) {
		t.Fatalf("after the crash: %d operations (total %d), want %d", len(page.Operations), page.Total, len(ops))
	}
	if pending, stored := rowCounts(t, after); pending != 0 || stored != len(ops) {
		t.Fatalf("after a read: %d pending, %d stored", pending, stored)
	}
}

// TestDuplicatesWhilePending: a keyed retry of a pending operation is a
// duplicate, and an unkeyed id already stored fails as it does in the
// tables, leaving nothing pending.
func TestDuplicatesWhilePending(t *testing.T) {
	ctx := context.Background()
	s := openStaging(t, filepath.Join(t.TempDir(), "metrics.db"), testLogger(t))
	ops := genOps(rand.New(rand.NewSource(7)), 3, day0, time.Hour)
	for i := range ops {
		ops[i].Keyed = true
	}
	if err := s.WriteOperations(ctx, ops); err != nil {
		t.Fatal(err)
	}
	retry := []tsdb.Operation{ops[1]}
	if err := s.WriteOperations(ctx, retry); err != nil {
		t.Fatal(err)
	}
	if !retry[0].Duplicate {
		t.Error("a keyed retry of a pending operation was not marked a duplicate")
	}
	if pending, stored := rowCounts(t, s); pending != 3 || stored != 0 {
		t.Fatalf("%d pending, %d stored; want 3 and 0", pending, stored)
	}
	if err := s.flush(ctx); err != nil {
		t.Fatal(err)
	}
	again := []tsdb.Operation{ops[2]}
	again[0].Keyed = false
	if err := s.WriteOperations(ctx, again); err == nil {
		t.Error("an unkeyed operation with a stored id was accepted")
	}
	fresh := genOps(rand.New(rand.NewSource(8)), 1, day0, time.Hour)
	fresh[0].ID = uuid.Must(uuid.NewV7())
	if err := s.WriteOperations(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if pending, stored := rowCounts(t, s); pending != 1 || stored != 3 {
		t.Fatalf("%d pending, %d stored; want 1 and 3", pending, stored)
	}
}

// TestStagedIDsAreLookedUpBySpanThenOneByOne: a commit of unkeyed
// operations is checked against tool_operations by the span of its ids,
// then, when the span holds a stored id, id by id: a stored id inside the
// span that none of them carries stages them all; one of them stored
// fails the commit and stages none.
func TestStagedIDsAreLookedUpBySpanThenOneByOne(t *testing.T) {
	ctx := context.Background()
	s := openStaging(t, filepath.Join(t.TempDir(), "metrics.db"), testLogger(t))
	ops := genOps(rand.New(rand.NewSource(9)), 7, day0, time.Hour)
	for i := range ops {
		ops[i].ID = uuid.Must(uuid.NewV7())
	}
	// ops[3], between the others, is stored first.
	if err := s.WriteOperations(ctx, ops[3:4]); err != nil {
		t.Fatal(err)
	}
	if err := s.flush(ctx); err != nil {
		t.Fatal(err)
	}
	around := append(append([]tsdb.Operation{}, ops[:3]...), ops[4:]...)
	if err := s.WriteOperations(ctx, around); err != nil {
		t.Fatalf("operations whose span holds a stored id none of them carries: %v", err)
	}
	if pending, stored := rowCounts(t, s); pending != 6 || stored != 1 {
		t.Fatalf("%d pending, %d stored; want 6 and 1", pending, stored)
	}
	more := genOps(rand.New(rand.NewSource(10)), 4, day0, time.Hour)
	for i := range more {
		more[i].ID = uuid.Must(uuid.NewV7())
	}
	more[2].ID = ops[3].ID
	if err := s.WriteOperations(ctx, more); err == nil {
		t.Error("a commit with an unkeyed operation whose id is stored was accepted")
	}
	if pending, stored := rowCounts(t, s); pending != 6 || stored != 1 {
		t.Fatalf("after the failed commit %d pending, %d stored; want 6 and 1", pending, stored)
	}
}

// TestCloseMovesPending: Close leaves no operation pending, so that the
// file holds them where any reader of it looks.
func TestCloseMovesPending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.db")
	s := openStaging(t, path, testLogger(t))
	storetest.WriteEach(t, s, genOps(rand.New(rand.NewSource(9)), 40, day0, time.Hour), 4)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	after := openAt(t, path)
	if pending, stored := rowCounts(t, after); pending != 0 || stored != 40 {
		t.Fatalf("after Close: %d pending, %d stored; want 0 and 40", pending, stored)
	}
}

// TestDocsQuoteTheStaging: the figures docs/architecture.md quotes by hand
// are this package's.
func TestDocsQuoteTheStaging(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Join(strings.Fields(string(b)), " ")
	want := fmt.Sprintf("(a commit of up to %d operations is staged in `pending_operations` in such a transaction instead, and moved into the tables in batches of up to %s,",
		stageMax, textfmt.Thousands(drainAt))
	if !strings.Contains(doc, want) {
		t.Errorf("docs/architecture.md does not say %q", want)
	}
}
