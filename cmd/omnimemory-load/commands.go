package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"
)

// ingestCommand posts operations to a running service.
func ingestCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rawURL := fs.String("url", "http://127.0.0.1:8003", "the service's base URL (loopback only)")
	conns := fs.Int("connections", 32, "concurrent connections")
	ops := fs.Int64("ops", 100_000, "operations to send")
	batch := fs.Int("batch", 0, fmt.Sprintf("operations per request to POST %s (1..%d); 0: one per request to POST %s", api.PathTrackOperations, api.MaxBatchOperations, api.PathTrackOperation))
	duration := fs.Duration("duration", 10*time.Minute, "time bound")
	spread := fs.Duration("spread", 30*24*time.Hour, "batches: created_at is uniform over this span before now")
	scatter := fs.Bool("scatter", false, "batches: spread every batch over the whole span instead of sending the span in time order, oldest first")
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()), "seed of the generated operations")
	if err := fs.Parse(args); err != nil {
		return err
	}
	base, err := checkURL(*rawURL)
	if err != nil {
		return err
	}
	switch {
	case *conns < 1 || *conns > 1024:
		return usagef("--connections must be 1..1024")
	case *ops < 1 || *ops > 100_000_000:
		return usagef("--ops must be 1..100000000")
	case *batch < 0 || *batch > api.MaxBatchOperations:
		return usagef("--batch must be 0..%d", api.MaxBatchOperations)
	case *duration <= 0 || *duration > 24*time.Hour:
		return usagef("--duration must be positive and at most 24h")
	case *spread <= 0:
		return usagef("--spread must be positive")
	}
	var res ingestResult
	if *batch == 0 {
		c := newClient(*conns, 30*time.Second)
		defer c.CloseIdleConnections()
		res = runLoad(ctx, loadSpec{
			name: "single ops", conns: *conns, maxRequests: *ops, maxTime: *duration, opsPerReq: 1,
			maxErrors: 1000, progress: stderr, spinner: *ops > 1_000_000, send: singleSender(c, base, singleBodies(*seed, 4096)),
		})
	} else {
		n := *batch
		c := newClient(*conns, 2*time.Minute)
		defer c.CloseIdleConnections()
		gen := newGenerator(*seed, time.Now(), *spread)
		if !*scatter {
			gen.slices = (*ops + int64(n) - 1) / int64(n)
		}
		sizeOf := func(seq int64) int { return int(min(int64(n), *ops-seq*int64(n))) }
		build := func(b []byte, seq int64, k int) []byte { return gen.appendBatchJSON(b, *seed, seq, k) }
		res = runLoad(ctx, loadSpec{
			name: "batches", conns: *conns, maxRequests: (*ops + int64(n) - 1) / int64(n), maxTime: *duration, opsPerReq: n,
			maxErrors: 20, progress: stderr, send: batchSender(c, base+"/track/tool-operations", "application/json", http.StatusOK, sizeOf, build),
		})
	}
	fmt.Fprintf(stdout, "| figure | value |\n|---|---|\n")
	fmt.Fprintf(stdout, "| operations | %s in %s requests |\n", thousands(res.Operations), thousands(res.Requests))
	fmt.Fprintf(stdout, "| rate | %s over %.1f s |\n", fmtRate(res.OpsPerSec), res.Seconds)
	fmt.Fprintf(stdout, "| latency per request | p50 %s · p95 %s · p99 %s · max %s |\n", fmtMs(res.Latency.P50Ms), fmtMs(res.Latency.P95Ms), fmtMs(res.Latency.P99Ms), fmtMs(res.Latency.MaxMs))
	fmt.Fprintf(stdout, "| failed requests | %s |\n| ended by | %s |\n", thousands(res.Errors), res.Stopped)
	if res.FirstError != "" {
		fmt.Fprintf(stdout, "\nfirst error: %s\n", res.FirstError)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if res.Errors > 0 {
		return fmt.Errorf("%d requests failed", res.Errors)
	}
	return nil
}

// queryCommand times the aggregate endpoints of a running service.
func queryCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rawURL := fs.String("url", "http://127.0.0.1:8003", "the service's base URL (loopback only)")
	requests := fs.Int("requests", 100, "requests per range of each endpoint")
	budget := fs.Duration("budget", 30*time.Second, "time bound per range of each endpoint")
	if err := fs.Parse(args); err != nil {
		return err
	}
	base, err := checkURL(*rawURL)
	if err != nil {
		return err
	}
	if *requests < 1 || *requests > 100_000 {
		return usagef("--requests must be 1..100000")
	}
	if *budget <= 0 {
		return usagef("--budget must be positive")
	}
	res, err := runQueries(ctx, base, querySpec{requests: *requests, budget: *budget, progress: stderr, label: "queries"})
	fmt.Fprintf(stdout, "| endpoint | range | requests | p50 | p95 | p99 | max | errors |\n|---|---|---|---|---|---|---|---|\n")
	failed := 0
	for _, q := range res {
		capped := ""
		if q.Capped {
			capped = " (capped)"
		}
		fmt.Fprintf(stdout, "| %s | %s | %d%s | %s | %s | %s | %s | %d |\n", q.Endpoint, q.Range, q.Latency.Count, capped,
			fmtMs(q.Latency.P50Ms), fmtMs(q.Latency.P95Ms), fmtMs(q.Latency.P99Ms), fmtMs(q.Latency.MaxMs), q.Errors)
		failed += q.Errors
		if q.FirstError != "" {
			fmt.Fprintf(stderr, "%s: %s\n", q, strings.TrimSpace(q.FirstError))
		}
	}
	if err != nil {
		return err
	}
	if failed > 0 {
		return errors.New("some queries failed")
	}
	return nil
}
