package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// Options configure the service layer. Zero values take the defaults.
type Options struct {
	// Pricing prices every cost figure.
	Pricing Pricing
	// MaxToolIDLabels bounds the distinct tool_id label values
	// (DefaultMaxToolIDLabels when 0).
	MaxToolIDLabels int
	// Tracker tunes the writer (its TracerProvider is set from
	// TracerProvider).
	Tracker TrackerOptions
	// Spend tunes the intake of the tools' OTLP metrics (its WriteTimeout
	// defaults to the Tracker's).
	Spend SpendOptions
	// Stream tunes the live stream of operations.
	Stream StreamOptions
	// ReadyTimeout bounds the store check of Ready (default 2s).
	ReadyTimeout time.Duration
	// Registerer takes the metrics (a registry of the caller's; never the
	// default one). Required.
	Registerer prometheus.Registerer
	// TracerProvider makes the commit spans (no-op when nil).
	TracerProvider trace.TracerProvider
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Logger logs (discarded when nil).
	Logger *slog.Logger
}

// Service is the service layer over one store: ingest (Tracker), the
// tools' own spend (SpendIntake), reports (Reporter), sessions (Sessions), reads
// and exports of operations (Operations), the live stream of operations
// (Subscribe), and readiness. Close stops it.
type Service struct {
	*Tracker
	*SpendIntake
	*Reporter
	*Sessions
	*Operations

	stream    *Stream
	stopFeed  context.CancelFunc
	feedDone  chan struct{}
	store     tsdb.Pinger
	now       func() time.Time
	readyWait time.Duration
}

// New starts the service layer over store: the writer runs until Close.
func New(store tsdb.Store, o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 2 * time.Second
	}
	o.Tracker.TracerProvider = o.TracerProvider
	metrics := NewMetrics(o.Registerer, o.Pricing.PerThousandUSD, o.MaxToolIDLabels)
	if o.Spend.WriteTimeout <= 0 {
		o.Spend.WriteTimeout = o.Tracker.WriteTimeout
	}
	stream := NewStream(o.Registerer, o.Stream, o.Logger)
	o.Tracker.Publish = stream.Publish
	s := &Service{
		Tracker:     NewTracker(store, metrics, o.Tracker, o.Logger),
		SpendIntake: NewSpend(store, metrics, o.Spend, o.Now(), o.Now, o.Logger),
		Reporter:    NewReporter(store, o.Pricing, o.Now),
		Sessions:    NewSessions(store, o.Now),
		Operations:  NewOperations(store),
		stream:      stream,
		feedDone:    make(chan struct{}),
		store:       store,
		now:         o.Now,
		readyWait:   o.ReadyTimeout,
	}
	// On a store shared by replicas, the stream carries theirs too.
	ctx, cancel := context.WithCancel(context.Background())
	s.stopFeed = cancel
	go func() {
		defer close(s.feedDone)
		if feed, ok := store.(tsdb.OperationFeed); ok {
			stream.follow(ctx, feed)
		}
	}()
	return s
}

// Subscribe subscribes to the live stream of operations (see
// Stream.Subscribe).
func (s *Service) Subscribe(f StreamFilter, after *uuid.UUID) (*Subscription, error) {
	return s.stream.Subscribe(f, after)
}

// EndStreams ends every subscription to the live stream and refuses new
// ones: the first step of a shutdown, before the HTTP server waits for
// its requests to finish.
func (s *Service) EndStreams() { s.stream.Close() }

// Now answers the service's clock: the now that operations' created_at is
// checked against.
func (s *Service) Now() time.Time { return s.now() }

// Ready answers nil when the store can serve, within the ready timeout.
func (s *Service) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.readyWait)
	defer cancel()
	return s.store.Ping(ctx)
}

// Close stops taking operations and commits those already queued, ends
// the live stream and stops following the other replicas' operations,
// waiting at most until ctx ends. The store is the caller's to close
// afterwards.
func (s *Service) Close(ctx context.Context) error {
	err := s.Tracker.Close(ctx)
	s.stream.Close()
	s.stopFeed()
	select {
	case <-s.feedDone:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("stream: waiting for the replica feed to stop: %w", ctx.Err()))
	}
	return err
}
