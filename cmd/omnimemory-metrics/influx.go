package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx"
)

// openInflux opens the InfluxDB store. It does not need InfluxDB to be up:
// writes wait in the outbox and /ready says 503 until it answers.
func openInflux(ctx context.Context, cfg config, reg prometheus.Registerer, logger *slog.Logger) (tsdb.Store, error) {
	ttl := cfg.CacheTTL
	if ttl == 0 {
		ttl = influx.CacheNoExpiry
	}
	s, err := influx.Open(ctx, influx.Config{
		CacheTTL:       ttl,
		URL:            cfg.InfluxURL,
		Token:          cfg.InfluxToken,
		Org:            cfg.InfluxOrg,
		Bucket:         cfg.InfluxBucket,
		OutboxDir:      cfg.OutboxDir,
		OutboxMaxBytes: cfg.OutboxMaxBytes,
		WriteTimeout:   cfg.WriteTimeout,
		QueryTimeout:   cfg.QueryTimeout,
		Registerer:     reg,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("opening the InfluxDB store at %s (bucket %s, outbox %s): %w", cfg.InfluxURL, cfg.InfluxBucket, cfg.OutboxDir, err)
	}
	return s, nil
}
