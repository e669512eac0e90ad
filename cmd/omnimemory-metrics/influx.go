package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// openInflux is replaced when tsdb/influx lands (temporary, not committed).
func openInflux(ctx context.Context, cfg config, reg prometheus.Registerer, logger *slog.Logger) (tsdb.Store, error) {
	return nil, errors.New("influxdb store not built yet")
}
