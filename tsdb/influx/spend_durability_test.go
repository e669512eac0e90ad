package influx_test

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx"
)

// mkSpend answers n spend points of tool claude-code, one second apart from
// start, over two models; every other one has a session.
func mkSpend(n int, start time.Time) []tsdb.SpendPoint {
	sess := uuid.New()
	points := make([]tsdb.SpendPoint, n)
	for i := range points {
		points[i] = tsdb.SpendPoint{
			ID: uuid.New(), ToolID: "claude-code", Model: []string{"claude-sonnet-4", ""}[i%2],
			Time: start.Add(time.Duration(i) * time.Second), CostUSD: float64(i) / 64,
			Tokens: tsdb.Tokens{Input: int64(1000 + i), Output: 10, CacheRead: int64(i), CacheCreation: 1},
		}
		if i%2 == 0 {
			points[i].SessionID = &sess
		}
	}
	return points
}

// spendOf answers the totals per model of points, as SpendBreakdown would.
func spendOf(points []tsdb.SpendPoint) []tsdb.SpendTotals {
	m := map[string]*tsdb.SpendTotals{}
	for _, p := range points {
		if m[p.Model] == nil {
			m[p.Model] = &tsdb.SpendTotals{ToolID: p.ToolID, Model: p.Model}
		}
		m[p.Model].Points++
		m[p.Model].CostUSD += p.CostUSD
		m[p.Model].Tokens.Add(p.Tokens)
	}
	var out []tsdb.SpendTotals
	for _, t := range m {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b tsdb.SpendTotals) int { return strings.Compare(a.Model, b.Model) })
	return out
}

// checkSpendOnce checks that the store holds exactly points, each once:
// their count and sums per model (costs are multiples of 1/64, exact).
func checkSpendOnce(t *testing.T, s *influx.Store, points []tsdb.SpendPoint) {
	t.Helper()
	got, err := s.SpendBreakdown(context.Background(), tsdb.Window{End: t0.Add(24 * time.Hour)})
	if err != nil {
		t.Fatalf("SpendBreakdown: %v", err)
	}
	slices.SortFunc(got, func(a, b tsdb.SpendTotals) int { return strings.Compare(a.Model, b.Model) })
	if want := spendOf(points); !slices.Equal(got, want) {
		t.Errorf("stored spend:\n got %+v\nwant %+v", got, want)
	}
}

// TestSpendSurvivesACrashWithBacklog: spend points acknowledged while
// InfluxDB is down live only in the outbox. The outbox folder as a crash
// would leave it (copied from the live store: acknowledged records are
// fsynced) is delivered by the next store opened on it; a second crash
// after delivery but before the outbox learnt of it (the same copy opened
// again) delivers them again, harmlessly: exactly once. A retried export
// after the restart is still known to the idempotency ledger.
func TestSpendSurvivesACrashWithBacklog(t *testing.T) {
	srv := realtools.NewInfluxd(t)
	cfg := config(t, srv)
	s1 := open(t, cfg)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	points := mkSpend(40, t0)
	for i := 0; i < 40; i += 10 {
		if err := s1.WriteSpend(context.Background(), points[i:i+10]); err != nil {
			t.Fatalf("WriteSpend: %v", err)
		}
	}
	if n := s1.Stats().OutboxRecords; n != 4 {
		t.Fatalf("outbox holds %d records, want 4", n)
	}
	crashed := t.TempDir() + "/outbox-at-crash"
	if out, err := exec.Command("cp", "-a", cfg.OutboxDir, crashed).CombinedOutput(); err != nil {
		t.Fatalf("copy outbox: %v: %s", err, out)
	}
	again := t.TempDir() + "/outbox-at-crash-2"
	if out, err := exec.Command("cp", "-a", crashed, again).CombinedOutput(); err != nil {
		t.Fatalf("copy outbox: %v: %s", err, out)
	}
	if err := s1.Close(); err != nil { // the crashed process: its folder is not used again
		t.Fatal(err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}

	cfg.OutboxDir, cfg.DeadLetterPath = crashed, ""
	s2 := open(t, cfg)
	waitDrained(t, s2, 30*time.Second)
	checkSpendOnce(t, s2, points)
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}

	cfg.OutboxDir = again
	s3 := open(t, cfg)
	if n := s3.Stats().OutboxRecords; n != 4 {
		t.Fatalf("the second copy holds %d records, want 4", n)
	}
	waitDrained(t, s3, 30*time.Second)
	checkSpendOnce(t, s3, points)

	retry := slices.Clone(points[5:15])
	if err := s3.WriteSpend(context.Background(), retry); err != nil {
		t.Fatal(err)
	}
	for i, p := range retry {
		if !p.Duplicate {
			t.Errorf("retried point %d not marked Duplicate after the restart", i)
		}
	}
	checkSpendOnce(t, s3, points)
}

// TestSpendRetryOnAnotherReplica: a retried export that reaches another
// replica (its own outbox and ledger, the same database) is not caught by
// a ledger, but lands on the same point key, which the spend point's id
// chose, and overwrites the first copy: stored once.
func TestSpendRetryOnAnotherReplica(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	cfg := config(t, srv)
	a := open(t, cfg)
	points := mkSpend(30, t0)
	if err := a.WriteSpend(context.Background(), points); err != nil {
		t.Fatal(err)
	}
	cfg.OutboxDir, cfg.DeadLetterPath = t.TempDir()+"/replica-b", ""
	b := open(t, cfg)
	retry := slices.Clone(points)
	if err := b.WriteSpend(context.Background(), retry); err != nil {
		t.Fatal(err)
	}
	if retry[0].Duplicate {
		t.Fatal("replica b's ledger cannot know replica a's points")
	}
	checkSpendOnce(t, a, points)
}
