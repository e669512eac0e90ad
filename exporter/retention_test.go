package exporter_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

// retentionDay is when the retention tests' data starts.
var retentionDay = time.Date(2025, 1, 14, 0, 0, 0, 0, time.UTC)

// retentionStore answers a real SQLite store holding one operation and one
// spend point at 00:30, 01:30, ..., 09:30 of retentionDay.
func retentionStore(t *testing.T) *sqlite.Store {
	t.Helper()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	for h := range 10 {
		at := retentionDay.Add(time.Duration(h)*time.Hour + 30*time.Minute)
		if err := store.WriteOperations(context.Background(), []tsdb.Operation{operation(at, "cursor", "read", "full", 100, 10)}); err != nil {
			t.Fatal(err)
		}
		if err := store.WriteSpend(context.Background(), []tsdb.SpendPoint{spendPoint(at, "cursor", "m", 0.5, tsdb.Tokens{Input: 10})}); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

// countingExpirer is a store's Expirer that counts the calls made to it.
type countingExpirer struct {
	tsdb.Expirer
	calls atomic.Int64
}

func (c *countingExpirer) ExpireBefore(ctx context.Context, cutoff time.Time, batch int) (tsdb.Expiry, error) {
	c.calls.Add(1)
	return c.Expirer.ExpireBefore(ctx, cutoff, batch)
}

// TestRetentionPass: one pass, at a clock ten hours into the data with a
// retention of four hours, deletes in batches what lies before 06:00 (the
// cutoff's hour), and says so in the metrics and the log.
func TestRetentionPass(t *testing.T) {
	store := retentionStore(t)
	counted := &countingExpirer{Expirer: store}
	reg := prometheus.NewRegistry()
	var log bytes.Buffer
	r, err := exporter.NewRetention(counted, exporter.RetentionOptions{
		Retention: 4 * time.Hour, Batch: 4, Pause: time.Millisecond, Registerer: reg,
		Now:    func() time.Time { return retentionDay.Add(10*time.Hour + 20*time.Minute) },
		Logger: slog.New(slog.NewTextHandler(&log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	// 6 operations and 6 spend points before 06:00, 4 rows a batch: 3 full
	// batches and a last, empty one.
	if n := counted.calls.Load(); n != 4 {
		t.Errorf("%d store calls, want 4 batches", n)
	}
	want := `
# HELP omnimemory_retention_deleted_total Raw rows deleted for being older than the retention, by kind (operations, spend_points); their rollups are kept.
# TYPE omnimemory_retention_deleted_total counter
omnimemory_retention_deleted_total{kind="operations"} 6
omnimemory_retention_deleted_total{kind="spend_points"} 6
# HELP omnimemory_retention_errors_total Retention passes that failed (the next pass tries again).
# TYPE omnimemory_retention_errors_total counter
omnimemory_retention_errors_total 0
# HELP omnimemory_retention_period_seconds The configured retention of raw rows.
# TYPE omnimemory_retention_period_seconds gauge
omnimemory_retention_period_seconds 14400
# HELP omnimemory_retention_raw_horizon_timestamp_seconds Unix time of the raw horizon: raw rows before it are deleted (or being deleted), and aggregates read the rollups for the hours before it.
# TYPE omnimemory_retention_raw_horizon_timestamp_seconds gauge
omnimemory_retention_raw_horizon_timestamp_seconds 1.7368344e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if time.Unix(1736834400, 0).UTC() != retentionDay.Add(6*time.Hour) {
		t.Fatal("the horizon in the expected exposition is not 06:00")
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
	if l := log.String(); !strings.Contains(l, "retention pass") || !strings.Contains(l, "operations_deleted=6") ||
		!strings.Contains(l, "spend_points_deleted=6") || !strings.Contains(l, "raw_horizon=2025-01-14T06:00:00Z") {
		t.Errorf("log %q does not report the pass", l)
	}
	page, err := store.QueryOperations(context.Background(), tsdb.OperationFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 4 || len(page.Operations) != 4 || page.Operations[3].CreatedAt.Before(retentionDay.Add(6*time.Hour)) {
		t.Errorf("after the pass %d operations listed (total %d), want the 4 from 06:00", len(page.Operations), page.Total)
	}
	// The savings of the whole day still count all ten.
	bd, err := store.Breakdown(context.Background(), tsdb.Window{Start: &retentionDay, End: retentionDay.Add(24*time.Hour - 1)})
	if err != nil || len(bd) != 1 || bd[0].Count != 10 {
		t.Errorf("breakdown of the day after the pass: %+v, %v; want the 10 operations", bd, err)
	}
}

// TestRetentionInTheBackground: started, passes run as the clock moves on
// (each expires what the hour passed leaves behind); a failing pass is
// counted and logged and the next one runs; closed, no pass runs again.
func TestRetentionInTheBackground(t *testing.T) {
	store := retentionStore(t)
	counted := &countingExpirer{Expirer: store}
	reg := prometheus.NewRegistry()
	logPath := filepath.Join(t.TempDir(), "log") // a file: safe for the passes' writes
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	log := func() string {
		b, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	var now atomic.Int64
	now.Store(retentionDay.Add(5 * time.Hour).UnixNano())
	r, err := exporter.NewRetention(counted, exporter.RetentionOptions{
		Retention: 4 * time.Hour, Interval: 5 * time.Millisecond, Pause: time.Millisecond, Registerer: reg,
		Now:    func() time.Time { return time.Unix(0, now.Load()).UTC() },
		Logger: slog.New(slog.NewTextHandler(logFile, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	deleted := func() float64 {
		return counterValue(t, reg, "omnimemory_retention_deleted_total", "operations")
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("still waiting for %s; log:\n%s", what, log())
			}
		}
	}
	r.Start()
	waitFor("the first pass (01:00: one operation)", func() bool { return deleted() == 1 })
	now.Store(retentionDay.Add(9*time.Hour + 10*time.Minute).UnixNano())
	waitFor("a pass at 09:10 (05:00: five operations in all)", func() bool { return deleted() == 5 })

	before := counted.calls.Load()
	store.Close() // every call fails from now on
	waitFor("two failed passes", func() bool {
		return counterValue(t, reg, "omnimemory_retention_errors_total", "") >= 2
	})
	if !strings.Contains(log(), "retention pass failed; the next pass tries again") {
		t.Errorf("log %q does not report the failure", log())
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	after := counted.calls.Load()
	if after <= before {
		t.Fatalf("no call after the store closed")
	}
	time.Sleep(50 * time.Millisecond) // ten intervals
	if n := counted.calls.Load(); n != after {
		t.Errorf("%d store calls after Close, want none", n-after)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// counterValue answers the value of the counter name in reg (of the
// series with that kind, when not empty).
func counterValue(t *testing.T, reg *prometheus.Registry, name, kind string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == name && (kind == "" || m.GetLabel()[0].GetValue() == kind) {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{kind=%q} in the registry", name, kind)
	return 0
}

func TestNewRetentionRefusesBadOptions(t *testing.T) {
	store := retentionStore(t)
	for _, o := range []exporter.RetentionOptions{
		{Retention: 0, Registerer: prometheus.NewRegistry()},
		{Retention: -time.Hour, Registerer: prometheus.NewRegistry()},
		{Retention: time.Hour},
	} {
		if _, err := exporter.NewRetention(store, o); err == nil {
			t.Errorf("NewRetention(%+v) succeeded", o)
		}
	}
}
