// Command omnimemory-metrics serves the omnimemory-metrics API: it stores AI
// coding tools' operations in a time-series store (embedded SQLite or
// InfluxDB), answers savings queries, and exposes Prometheus metrics.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/handlers"
	"github.com/omnimemory/omnimemory-metrics/internal/tracing"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/postgres"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], proc{getenv: os.Getenv, stdout: os.Stdout, stderr: os.Stderr, now: time.Now}, nil)
	stop()
	os.Exit(code)
}

// proc is what a run of the program takes from its process: the
// environment, the standard streams and the clock. main passes the real
// ones; tests pass their own.
type proc struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	now            func() time.Time
}

// run serves until ctx ends and answers the exit code: 0 after a clean
// shutdown, 2 for a bad setting, 1 for any other failure. When ready is not
// nil it receives the address served on, once the listener is open. When
// args name a subcommand (see commands.go), run runs it instead.
func run(ctx context.Context, args []string, p proc, ready chan<- string) int {
	if code, ok := runCommand(ctx, args, p); ok {
		return code
	}
	cfg, err := loadConfig(args, p.getenv, p.stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(p.stderr, "omnimemory-metrics: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(p.stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if err := serve(ctx, cfg, p, logger, ready); err != nil {
		logger.Error("omnimemory-metrics stopped", "err", err)
		return 1
	}
	return 0
}

// writeDeadline is how long a POST waits for its commit, its time in the
// writer's queue included. On PostgreSQL it is the write timeout: a server
// that stops or stalls costs a client that long, then a 503. The embedded
// store's disk may pause for longer without being at fault, and InfluxDB's
// store write ends in the outbox within the write timeout by itself.
func writeDeadline(cfg config) time.Duration {
	if cfg.DBType == dbTypePostgres {
		return cfg.WriteTimeout
	}
	return max(cfg.WriteTimeout*2, 30*time.Second)
}

// serve wires tracing, the store, the tracker and the HTTP server, serves
// until ctx ends, then shuts down in order: stop accepting and finish
// in-flight requests, commit what the writer holds, close the store, flush
// the traces.
func serve(ctx context.Context, cfg config, p proc, logger *slog.Logger, ready chan<- string) (err error) {
	gc := tuneGC(cfg, p.getenv, logger)
	tp, stopTracing, err := tracing.Setup(ctx, p.getenv, version, logger)
	if err != nil {
		return err
	}
	defer func() {
		flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = errors.Join(err, stopTracing(flushCtx))
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	raw, err := openStore(ctx, cfg, reg, logger, true)
	if err != nil {
		return err
	}
	store := tsdb.Traced(raw, cfg.DBType, tp)
	svc := exporter.New(store, exporter.Options{
		Pricing:         exporter.Pricing{PerThousandUSD: cfg.CostPer1K},
		MaxToolIDLabels: cfg.MaxToolIDs,
		Tracker:         exporter.TrackerOptions{QueueSize: cfg.QueueSize, WriteTimeout: writeDeadline(cfg), BulkWriters: bulkWriters(cfg.DBType)},
		Stream:          exporter.StreamOptions{MaxSubscribers: cfg.StreamMaxSubscribers},
		Registerer:      reg,
		TracerProvider:  tp,
		Now:             p.now,
		Logger:          logger,
	})
	handler := handlers.New(svc, handlers.Options{
		TracerProvider: tp, Gatherer: reg, Registerer: reg, CORSOrigins: cfg.CORSOrigins, Logger: logger,
		APIToken: cfg.APIToken, MetricsPublic: cfg.MetricsPublic,
	})
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	var retention *exporter.Retention // nil: raw rows are kept for good
	// Streams never end by themselves: Shutdown ends them first, or it
	// would wait for them until its deadline.
	srv.RegisterOnShutdown(svc.EndStreams)
	defer func() {
		// Shutdown order: the server is already stopped; stop expiring
		// (the batch in flight ends), commit what the writer holds, then
		// close the store.
		closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var stopRetention error
		if retention != nil {
			stopRetention = retention.Close()
		}
		err = errors.Join(err, stopRetention, svc.Close(closeCtx), store.Close())
	}()
	if cfg.Retention > 0 {
		if retention, err = startRetention(raw, cfg, reg, p, logger); err != nil {
			return err
		}
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	logger.Info("serving", "addr", ln.Addr().String(), "store", cfg.DBType, "cost_per_1k_tokens", cfg.CostPer1K,
		"retention", cfg.Retention, "gc", gc.logValue(), "version", version)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("finishing in-flight requests: %w", err)
	}
	return nil
}

// startRetention starts expiring the raw rows of store older than the
// configured retention, in the background.
func startRetention(store tsdb.Store, cfg config, reg prometheus.Registerer, p proc, logger *slog.Logger) (*exporter.Retention, error) {
	exp, ok := store.(tsdb.Expirer)
	if !ok {
		return nil, fmt.Errorf("OMNIMEMORY_RETENTION: the %s store does not expire raw rows", cfg.DBType)
	}
	r, err := exporter.NewRetention(exp, exporter.RetentionOptions{Retention: cfg.Retention, Now: p.now, Registerer: reg, Logger: logger})
	if err != nil {
		return nil, err
	}
	r.Start()
	return r, nil
}

// bulkWriters answers how many batch requests the store commits at once
// beside the writer of single operations (see
// exporter.TrackerOptions.BulkWriters): two on PostgreSQL, which takes
// concurrent transactions (its pool keeps a connection free for reads);
// none on SQLite, which has one writer connection, nor on InfluxDB, whose
// writes go through one outbox in order.
func bulkWriters(dbType string) int {
	if dbType == dbTypePostgres {
		return 2
	}
	return 0
}

// openStore opens the configured store. A store of the service announces
// its writes to the other replicas' live streams (PostgreSQL); one of a
// subcommand does not.
func openStore(ctx context.Context, cfg config, reg prometheus.Registerer, logger *slog.Logger, announce bool) (tsdb.Store, error) {
	switch cfg.DBType {
	case dbTypeInflux:
		return openInflux(ctx, cfg, reg, logger)
	case dbTypePostgres:
		s, err := postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, QueryTimeout: cfg.QueryTimeout, Announce: announce}, logger)
		if err != nil {
			return nil, fmt.Errorf("opening the PostgreSQL store: %w", err)
		}
		return s, nil
	default:
		if fi, err := os.Stat(cfg.SQLitePath + "-wal"); err == nil && fi.Size() > 0 {
			logger.Warn("the embedded store was not closed cleanly: recovering committed writes from its write-ahead log (a torn tail is discarded)",
				"component", "sqlite", "path", cfg.SQLitePath, "wal_bytes", fi.Size())
		}
		s, err := sqlite.Open(ctx, cfg.SQLitePath, logger)
		if err != nil {
			return nil, fmt.Errorf("opening the embedded store %s: %w", cfg.SQLitePath, err)
		}
		return s, nil
	}
}
