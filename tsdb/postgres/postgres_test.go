package postgres_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"

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

// TestExportSmallPages: exports cross many keyset page boundaries.
func TestExportSmallPages(t *testing.T) {
	storetest.RunExport(t, func(t *testing.T) tsdb.Store {
		return open(t, postgres.Config{URL: newDatabase(t), ExportPage: 3})
	})
}
