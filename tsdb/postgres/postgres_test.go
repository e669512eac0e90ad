package postgres_test

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/postgres"
	"github.com/omnimemory/omnimemory-metrics/tsdb/storetest"
)

func TestMain(m *testing.M) { os.Exit(realtools.RunMain(m)) }

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func open(t testing.TB, cfg postgres.Config) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), cfg, testLogger(t))
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

// newDatabase answers the URL of a fresh database on the shared server.
func newDatabase(t testing.TB) string {
	t.Helper()
	return realtools.SharedPostgres(t).NewDatabase(t)
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) tsdb.Store {
		return open(t, postgres.Config{URL: newDatabase(t)})
	})
	storetest.RunSpend(t, func(t *testing.T) tsdb.SpendStore {
		return open(t, postgres.Config{URL: newDatabase(t)})
	})
	storetest.RunRetention(t, func(t *testing.T) storetest.RetentionStore {
		return open(t, postgres.Config{URL: newDatabase(t)})
	})
}

// TestTotalsAtTheBounds: sums past an int64 neither fail a write, a move
// nor a read (see storetest.RunTotalsAtTheBounds).
func TestTotalsAtTheBounds(t *testing.T) {
	storetest.RunTotalsAtTheBounds(t, func(t *testing.T) tsdb.Store { return open(t, postgres.Config{URL: newDatabase(t)}) })
}

// TestExportSmallPages: exports cross many keyset page boundaries.
func TestExportSmallPages(t *testing.T) {
	storetest.RunExport(t, func(t *testing.T) tsdb.Store {
		return open(t, postgres.Config{URL: newDatabase(t), ExportPage: 3})
	})
}

// TestLargeBatchRetry: a batch large enough to be copied in, holding
// operations stored before and a repeated id, stores only its new
// operations, once, and marks the others Duplicate.
func TestLargeBatchRetry(t *testing.T) {
	s := open(t, postgres.Config{URL: newDatabase(t)})
	ctx := context.Background()
	session := uuid.New()
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	first := make([]tsdb.Operation, 100)
	for i := range first {
		first[i] = mkOp(session, t0.Add(time.Duration(i)*time.Second), 10)
	}
	if err := s.WriteOperations(ctx, slices.Clone(first)); err != nil {
		t.Fatal(err)
	}
	batch := slices.Clone(first[50:]) // 50 stored before
	for i := range 50 {
		batch = append(batch, mkOp(session, t0.Add(time.Duration(100+i)*time.Second), 10))
	}
	batch = append(batch, batch[len(batch)-1]) // a repeat within the batch
	if err := s.WriteOperations(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for i, op := range batch {
		if want := i < 50 || i == len(batch)-1; op.Duplicate != want {
			t.Errorf("operation %d marked Duplicate %v, want %v", i, op.Duplicate, want)
		}
	}
	page, err := s.QueryOperations(ctx, tsdb.OperationFilter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 150 {
		t.Errorf("%d operations stored, want 150", page.Total)
	}
	st, err := s.GetSession(ctx, session)
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalOperations != 150 {
		t.Errorf("session counts %d operations, want 150", st.TotalOperations)
	}
}
