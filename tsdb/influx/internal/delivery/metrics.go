package delivery

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/omnimemory/omnimemory-metrics/internal/metricname"
)

// Kinds of write errors, the values of the "kind" label of
// omnimemory_store_write_errors_total.
const (
	kindNetwork     = "network"      // no answer: refused, reset, timeout
	kindServer      = "server"       // 5xx: retried
	kindThrottled   = "throttled"    // 429: retried after Retry-After
	kindTooLarge    = "too_large"    // 413: the batch is split
	kindRejected    = "rejected"     // 400, 422, other 4xx: dead-lettered
	kindAuth        = "auth"         // 401, 403: retried (a configuration fault)
	kindNotFound    = "not_found"    // 404: bucket missing; retried
	kindBacklogFull = "backlog_full" // the outbox is at its bound
	kindOutbox      = "outbox"       // the local outbox failed
)

var errorKinds = []string{kindNetwork, kindServer, kindThrottled, kindTooLarge, kindRejected,
	kindAuth, kindNotFound, kindBacklogFull, kindOutbox}

// metrics are the store's own: write latency, batch size, outbox depth and
// write errors by kind.
type metrics struct {
	writeDuration prometheus.Histogram
	batchSize     prometheus.Histogram
	writeErrors   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, depth func() float64, bytes func() float64) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		writeDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name: metricname.StoreWriteDurationSeconds,
			Help: "Time a write to the store took, from the call until the batch was in InfluxDB or, " +
				"past the write timeout or during an outage, durable in the local outbox.",
			Buckets:                        []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
			NativeHistogramBucketFactor:    1.1,
			NativeHistogramMaxBucketNumber: 100,
		}),
		batchSize: f.NewHistogram(prometheus.HistogramOpts{
			Name:    metricname.StoreBatchSize,
			Help:    "Points per write request the store sent to InfluxDB.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
		writeErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: metricname.StoreWriteErrorsTotal,
			Help: "Failed writes to InfluxDB or to the local outbox, by kind.",
		}, []string{"kind"}),
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: metricname.StoreOutboxDepth,
		Help: "Batches in the local outbox that InfluxDB has not yet taken.",
	}, depth)
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: metricname.StoreOutboxBytes,
		Help: "Bytes in the local outbox that InfluxDB has not yet taken.",
	}, bytes)
	for _, k := range errorKinds {
		m.writeErrors.WithLabelValues(k)
	}
	return m
}
