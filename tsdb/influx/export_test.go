package influx

import (
	"context"
	"log/slog"
)

// OpenAlwaysFlux opens a Store that reads hourly totals with Flux on
// InfluxDB 1.x too, instead of InfluxQL: the path of 2.x, on the test
// server.
func OpenAlwaysFlux(ctx context.Context, cfg Config, logger *slog.Logger) (*Store, error) {
	return open(ctx, cfg, logger, true)
}
