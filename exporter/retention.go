package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/omnimemory/omnimemory-metrics/internal/metricname"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// Defaults of RetentionOptions.
const (
	DefaultRetentionInterval = 5 * time.Minute
	DefaultRetentionBatch    = 1000
	DefaultRetentionPause    = 100 * time.Millisecond
)

// RetentionOptions configure the expiry of raw rows. Zero values take the
// defaults, but for Retention and Registerer.
type RetentionOptions struct {
	// Retention is how long raw operations and spend points are kept
	// (> 0). Their hourly and daily rollups are kept for good.
	Retention time.Duration
	// Interval is the time from the end of one pass to the start of the
	// next (DefaultRetentionInterval). The horizon moves by whole hours,
	// so passes more often than hourly mostly find nothing to delete.
	Interval time.Duration
	// Batch bounds the rows one store call deletes, in one short
	// transaction (DefaultRetentionBatch).
	Batch int
	// Pause is the rest between two batches of a pass, so that expiring a
	// long backlog leaves the store to ingest (DefaultRetentionPause).
	Pause time.Duration
	// Now is the clock that the cutoff (now - Retention) is taken from
	// (time.Now when nil).
	Now func() time.Time
	// Registerer takes the metrics (a registry of the caller's). Required.
	Registerer prometheus.Registerer
	// Logger logs each pass that deleted anything and each failure
	// (discarded when nil).
	Logger *slog.Logger
}

// Retention deletes raw operations and spend points older than the
// retention in the background, in passes of small batches, through a
// store that can (tsdb.Expirer), and reports its progress in Prometheus
// and the log. Start it once; Close stops it.
type Retention struct {
	store tsdb.Expirer
	o     RetentionOptions
	log   *slog.Logger

	deleted *prometheus.CounterVec
	horizon prometheus.Gauge
	errors  prometheus.Counter

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// The kinds of raw rows retention deletes (the kind label).
const (
	kindOperations  = "operations"
	kindSpendPoints = "spend_points"
)

// NewRetention makes the expiry of store's raw rows with o; it runs from
// Start.
func NewRetention(store tsdb.Expirer, o RetentionOptions) (*Retention, error) {
	if o.Retention <= 0 {
		return nil, fmt.Errorf("retention: %v is not a positive duration", o.Retention)
	}
	if o.Registerer == nil {
		return nil, errors.New("retention: a Registerer is required")
	}
	if o.Interval <= 0 {
		o.Interval = DefaultRetentionInterval
	}
	if o.Batch <= 0 {
		o.Batch = DefaultRetentionBatch
	}
	if o.Pause <= 0 {
		o.Pause = DefaultRetentionPause
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	f := promauto.With(o.Registerer)
	r := &Retention{
		store: store,
		o:     o,
		log:   o.Logger.With("component", "retention"),
		deleted: f.NewCounterVec(prometheus.CounterOpts{
			Name: metricname.RetentionDeletedTotal,
			Help: "Raw rows deleted for being older than the retention, by kind (operations, spend_points); their rollups are kept.",
		}, []string{"kind"}),
		horizon: f.NewGauge(prometheus.GaugeOpts{
			Name: metricname.RetentionRawHorizonTimestampSeconds,
			Help: "Unix time of the raw horizon: raw rows before it are deleted (or being deleted), and aggregates read the rollups for the hours before it.",
		}),
		errors: f.NewCounter(prometheus.CounterOpts{
			Name: metricname.RetentionErrorsTotal,
			Help: "Retention passes that failed (the next pass tries again).",
		}),
		done: make(chan struct{}),
	}
	f.NewGauge(prometheus.GaugeOpts{
		Name: metricname.RetentionPeriodSeconds,
		Help: "The configured retention of raw rows.",
	}).Set(o.Retention.Seconds())
	for _, k := range []string{kindOperations, kindSpendPoints} {
		r.deleted.WithLabelValues(k)
	}
	return r, nil
}

// Start runs passes in the background: one at once, then one Interval
// after the end of each, until Close.
func (r *Retention) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.log.Info("retention started", "retention", r.o.Retention, "interval", r.o.Interval, "batch", r.o.Batch)
	go func() {
		defer close(r.done)
		for {
			if err := r.Pass(ctx); err != nil && ctx.Err() == nil {
				r.errors.Inc()
				r.log.Warn("retention pass failed; the next pass tries again", "err", err, "next_in", r.o.Interval)
			}
			if !sleep(ctx, r.o.Interval) {
				return
			}
		}
	}()
}

// Close stops the passes, waiting for the store call in flight (one short
// batch), and is idempotent. It answers nil: a pass stopped halfway is
// taken up again by the next run.
func (r *Retention) Close() error {
	r.once.Do(func() {
		if r.cancel == nil { // never started
			close(r.done)
			return
		}
		r.cancel()
	})
	<-r.done
	return nil
}

// Pass expires what is older than the retention now: batch after batch,
// with a pause between them, until the store has no more. It logs what it
// deleted, when anything.
func (r *Retention) Pass(ctx context.Context) error {
	start := time.Now()
	cutoff := r.o.Now().Add(-r.o.Retention)
	var ops, points, batches int
	var horizon time.Time
	defer func() {
		if ops+points > 0 {
			r.log.Info("retention pass", "operations_deleted", ops, "spend_points_deleted", points,
				"raw_horizon", horizon.Format(time.RFC3339), "batches", batches, "took", time.Since(start).Round(time.Millisecond))
		}
	}()
	for {
		ex, err := r.store.ExpireBefore(ctx, cutoff, r.o.Batch)
		if err != nil {
			return fmt.Errorf("expire before %s: %w", cutoff.UTC().Format(time.RFC3339), err)
		}
		batches++
		ops += ex.Operations
		points += ex.SpendPoints
		horizon = ex.Horizon
		// The horizon first: a scrape that sees the deletions sees the
		// horizon that covers them.
		r.horizon.Set(float64(ex.Horizon.UnixMicro()) / 1e6)
		r.deleted.WithLabelValues(kindOperations).Add(float64(ex.Operations))
		r.deleted.WithLabelValues(kindSpendPoints).Add(float64(ex.SpendPoints))
		if !ex.More {
			return nil
		}
		if !sleep(ctx, r.o.Pause) {
			return ctx.Err()
		}
	}
}

// sleep waits d, and answers false when ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
