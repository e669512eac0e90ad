package influx_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx"
	"github.com/omnimemory/omnimemory-metrics/tsdb/storetest"
)

func TestMain(m *testing.M) { os.Exit(realtools.RunMain(m)) }

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// config answers a Config for a fresh database on srv and a fresh outbox.
func config(t testing.TB, srv *realtools.Influxd) influx.Config {
	return influx.Config{
		URL:          srv.URL,
		Bucket:       srv.NewBucket(t),
		OutboxDir:    t.TempDir() + "/outbox",
		WriteTimeout: 5 * time.Second,
		RetryMin:     20 * time.Millisecond,
		RetryMax:     500 * time.Millisecond,
	}
}

func open(t testing.TB, cfg influx.Config) *influx.Store { return openWith(t, cfg, influx.Open) }

// openFluxOnly opens a store on cfg that reads with Flux alone on InfluxDB
// 1.x too (the path of 2.x), closed when t ends.
func openFluxOnly(t testing.TB, cfg influx.Config) *influx.Store {
	return openWith(t, cfg, influx.OpenAlwaysFlux)
}

// openWith opens a store on cfg with opener, closed when t ends.
func openWith(t testing.TB, cfg influx.Config, opener func(context.Context, influx.Config, *slog.Logger) (*influx.Store, error)) *influx.Store {
	t.Helper()
	s, err := opener(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	storetest.Run(t, func(t *testing.T) tsdb.Store {
		return open(t, config(t, srv))
	})
}

func TestSpendConformance(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	storetest.RunSpend(t, func(t *testing.T) tsdb.SpendStore {
		return open(t, config(t, srv))
	})
}

// TestSpendFluxOnly: the spend cases with Flux alone, the path of 2.x (on
// 1.x the store sums spend with InfluxQL).
func TestSpendFluxOnly(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	storetest.RunSpend(t, func(t *testing.T) tsdb.SpendStore {
		return openFluxOnly(t, config(t, srv))
	})
}

// TestOperationsFluxOnly: on InfluxDB 1.x the store lists operations with
// InfluxQL (but pages deeper than it can skip); the same operation cases
// hold with Flux alone, the path of 2.x.
func TestOperationsFluxOnly(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	storetest.RunOperations(t, func(t *testing.T) tsdb.Store {
		return openFluxOnly(t, config(t, srv))
	})
}

// TestAggregatesFluxOnly: on InfluxDB 1.x the store reads hourly totals
// with InfluxQL; the same aggregate cases hold with Flux alone, the path of
// 2.x.
func TestAggregatesFluxOnly(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	storetest.RunAggregates(t, func(t *testing.T) tsdb.Store {
		return openFluxOnly(t, config(t, srv))
	})
}
