package exporter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/internal/metricname"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// Defaults of StreamOptions.
const (
	// DefaultStreamRing is how many of the latest operations the stream
	// keeps for subscribers to resume from, and so how far behind the
	// newest one a subscriber may fall before it is dropped.
	DefaultStreamRing = api.StreamReplayOperations
	// DefaultStreamRingBytes bounds the memory of those operations (their
	// estimated size): large parameters keep fewer of them.
	DefaultStreamRingBytes = 64 << 20
	// DefaultStreamMaxSubscribers bounds the subscribers at once.
	DefaultStreamMaxSubscribers = 1000
	// DefaultStreamHeartbeat is how long a subscriber waits without an
	// event before Next answers a heartbeat.
	DefaultStreamHeartbeat = 15 * time.Second
)

// Errors of the stream.
var (
	// ErrStreamFull: StreamOptions.MaxSubscribers subscribe already; the
	// subscription was refused and may be tried again later.
	ErrStreamFull = errors.New("too many stream subscribers")
	// ErrStreamLagging: the subscriber fell a whole ring behind the
	// newest operation, so that operations it had not read yet were
	// dropped from the ring: it was disconnected rather than let skip
	// them silently.
	ErrStreamLagging = errors.New("stream subscriber fell too far behind")
	// ErrStreamWriteTimeout: the subscriber's client did not take an
	// event within the write timeout (Drop with DropWriteTimeout).
	ErrStreamWriteTimeout = errors.New("stream subscriber did not take an event in time")
	// ErrStreamClosed: the service is shutting down.
	ErrStreamClosed = errors.New("stream closed")
)

// The reasons a subscriber is dropped: the label values of
// omnimemory_stream_subscribers_dropped_total.
const (
	DropLagging      = "lagging"
	DropWriteTimeout = "write_timeout"
)

// The sources of published operations: the label values of
// omnimemory_stream_operations_published_total.
const (
	sourceLocal   = "local"   // acknowledged by this replica
	sourceReplica = "replica" // acknowledged by another, through the store's feed
)

// StreamOptions tune the live stream. Zero values take the defaults.
type StreamOptions struct {
	// RingSize bounds the operations kept to resume from (default
	// DefaultStreamRing).
	RingSize int
	// RingBytes bounds their estimated size (default
	// DefaultStreamRingBytes); the oldest go first when either bound is
	// reached.
	RingBytes int64
	// MaxSubscribers bounds the subscribers at once (default
	// DefaultStreamMaxSubscribers); past it Subscribe answers
	// ErrStreamFull.
	MaxSubscribers int
	// Heartbeat is how long Next waits without an event before it answers
	// a heartbeat (default DefaultStreamHeartbeat).
	Heartbeat time.Duration
}

func (o StreamOptions) withDefaults() StreamOptions {
	if o.RingSize <= 0 {
		o.RingSize = DefaultStreamRing
	}
	if o.RingBytes <= 0 {
		o.RingBytes = DefaultStreamRingBytes
	}
	if o.MaxSubscribers <= 0 {
		o.MaxSubscribers = DefaultStreamMaxSubscribers
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultStreamHeartbeat
	}
	return o
}

// StreamFilter selects the operations a subscriber receives: those of
// GET /metrics/tool-operations's filters without its window and paging.
// Zero fields do not filter.
type StreamFilter struct {
	SessionID     *uuid.UUID
	ToolName      string
	OperationMode string
	ToolID        string
}

// matches reports whether op passes f.
func (f *StreamFilter) matches(op *tsdb.Operation) bool {
	return (f.SessionID == nil || *f.SessionID == op.SessionID) &&
		(f.ToolName == "" || f.ToolName == op.ToolName) &&
		(f.OperationMode == "" || f.OperationMode == op.OperationMode) &&
		(f.ToolID == "" || f.ToolID == op.ToolID)
}

// StreamEvent is one event of the stream, shared by every subscriber that
// receives it: an accepted operation, or a reset telling that operations
// may have been missed.
type StreamEvent struct {
	// Operation is the operation the event carries; nil for a reset.
	Operation *tsdb.Operation
	// Reset is set on a reset.
	Reset *api.StreamReset

	size int64 // estimated bytes held, for the ring's bound
	once sync.Once
	data []byte
	err  error
}

// Data answers the event's JSON: the operation as a line of the export
// carries it (APIExportedOperation: the list's item and cache_hit), or the
// api.StreamReset. It is encoded once, by whichever subscriber asks first.
func (e *StreamEvent) Data() ([]byte, error) {
	e.once.Do(func() {
		var v any = e.Reset
		if e.Operation != nil {
			v = APIExportedOperation(e.Operation)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // as every other answer of the service
		if e.err = enc.Encode(v); e.err == nil {
			e.data = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		}
	})
	return e.data, e.err
}

// eventOverhead is the estimated size of an event beyond its variable
// fields.
const eventOverhead = 512

func resetEvent(reason, detail string) *StreamEvent {
	return &StreamEvent{Reset: &api.StreamReset{Reason: reason, Detail: detail}, size: eventOverhead}
}

// Stream is the live stream of accepted operations: every operation this
// replica acknowledges (Publish, after its commit) and, on a store that is
// a tsdb.OperationFeed, every one the other replicas acknowledge, fanned
// out to subscribers with their filters. It keeps the latest operations in
// a ring bounded in count and bytes, from which a subscriber resumes after
// the last one it received, and which is also every subscriber's buffer:
// a subscriber that falls a whole ring behind is dropped (ErrStreamLagging)
// and counted, so that a slow reader never slows the publisher, which
// never waits for a subscriber.
type Stream struct {
	opts    StreamOptions
	metrics *streamMetrics
	logger  *slog.Logger

	mu     sync.RWMutex
	ring   []*StreamEvent // event seq is at ring[seq % len(ring)]
	head   int64          // seq of the next event
	tail   int64          // seq of the oldest event kept
	bytes  int64          // estimated size of the events kept
	subs   map[*Subscription]struct{}
	closed bool
}

type streamMetrics struct {
	subscribers  prometheus.Gauge
	capacity     prometheus.Gauge
	dropped      *prometheus.CounterVec
	published    *prometheus.CounterVec
	feedLost     prometheus.Counter
	ringEvents   prometheus.Gauge
	ringCapacity prometheus.Gauge
}

// NewStream makes the stream, its metrics registered on reg.
func NewStream(reg prometheus.Registerer, o StreamOptions, logger *slog.Logger) *Stream {
	o = o.withDefaults()
	f := promauto.With(reg)
	m := &streamMetrics{
		subscribers: f.NewGauge(prometheus.GaugeOpts{
			Name: metricname.StreamSubscribers,
			Help: "Subscribers of the live stream of operations (Server-Sent Events and WebSocket) now.",
		}),
		capacity: f.NewGauge(prometheus.GaugeOpts{
			Name: metricname.StreamSubscribersCapacity,
			Help: "Subscribers the live stream takes at once; past it a subscription is answered 503.",
		}),
		dropped: f.NewCounterVec(prometheus.CounterOpts{
			Name: metricname.StreamSubscribersDroppedTotal,
			Help: "Subscribers disconnected by the service for being too slow: lagging (a whole ring behind) or write_timeout (an event not taken within the write timeout).",
		}, []string{"reason"}),
		published: f.NewCounterVec(prometheus.CounterOpts{
			Name: metricname.StreamOperationsPublishedTotal,
			Help: "Operations published to the live stream: local (acknowledged by this replica) or replica (by another, through the store's feed).",
		}, []string{"source"}),
		feedLost: f.NewCounter(prometheus.CounterOpts{
			Name: metricname.StreamReplicaFeedLostTotal,
			Help: "Times the feed of the other replicas' operations was interrupted (operations they stored meanwhile were not streamed here).",
		}),
		ringEvents: f.NewGauge(prometheus.GaugeOpts{
			Name: metricname.StreamRingEvents,
			Help: "Events the live stream keeps for subscribers to resume from.",
		}),
		ringCapacity: f.NewGauge(prometheus.GaugeOpts{
			Name: metricname.StreamRingCapacityEvents,
			Help: "Events the live stream keeps at most (fewer when their size reaches its byte bound).",
		}),
	}
	for _, r := range []string{DropLagging, DropWriteTimeout} {
		m.dropped.WithLabelValues(r)
	}
	for _, s := range []string{sourceLocal, sourceReplica} {
		m.published.WithLabelValues(s)
	}
	m.capacity.Set(float64(o.MaxSubscribers))
	m.ringCapacity.Set(float64(o.RingSize))
	return &Stream{
		opts:    o,
		metrics: m,
		logger:  logger.With("component", "stream"),
		ring:    make([]*StreamEvent, o.RingSize),
		subs:    map[*Subscription]struct{}{},
	}
}

// Publish streams the operations this replica acknowledged; ops marked
// Duplicate (retries of stored ones) were streamed when first stored and
// are left out. It never waits for a subscriber, and does not keep ops.
func (s *Stream) Publish(ops []tsdb.Operation) { s.publish(sourceLocal, ops) }

// publishReplica streams operations another replica acknowledged.
func (s *Stream) publishReplica(ops []tsdb.Operation) { s.publish(sourceReplica, ops) }

// replicaFeedLost tells every subscriber, in order, that operations of
// other replicas may have been missed.
func (s *Stream) replicaFeedLost(err error) {
	s.metrics.feedLost.Inc()
	s.logger.Warn("the feed of the other replicas' operations was interrupted; their operations stored meanwhile are not streamed", "err", err)
	s.append([]*StreamEvent{resetEvent(api.ResetReplicaFeedLost,
		"The feed of the other replicas' operations was interrupted; operations they stored meanwhile were not streamed.")})
}

func (s *Stream) publish(source string, ops []tsdb.Operation) {
	n, paramBytes := 0, 0
	for i := range ops {
		if !ops[i].Duplicate {
			n++
			paramBytes += len(ops[i].Parameters)
		}
	}
	if n == 0 {
		return
	}
	// One allocation for the events, one for the operations and one for
	// their parameters (copied: ops belong to the caller).
	events := make([]StreamEvent, 0, n)
	kept := make([]tsdb.Operation, 0, n)
	params := make([]byte, 0, paramBytes)
	ptrs := make([]*StreamEvent, 0, n)
	for i := range ops {
		if ops[i].Duplicate {
			continue
		}
		kept = append(kept, ops[i])
		op := &kept[len(kept)-1]
		start := len(params)
		params = append(params, op.Parameters...)
		op.Parameters = params[start:len(params):len(params)]
		size := int64(eventOverhead + len(op.Parameters) + len(op.ToolID))
		if op.FilePath != nil {
			size += int64(len(*op.FilePath))
		}
		events = append(events, StreamEvent{Operation: op, size: size})
		ptrs = append(ptrs, &events[len(events)-1])
	}
	s.append(ptrs)
	s.metrics.published.WithLabelValues(source).Add(float64(n))
}

// append puts events in the ring, drops the subscribers the ring left
// behind and wakes the others.
func (s *Stream) append(events []*StreamEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	size := int64(len(s.ring))
	for _, e := range events {
		if s.head-s.tail == size {
			s.evictLocked()
		}
		s.ring[s.head%size] = e
		s.head++
		s.bytes += e.size
		for s.bytes > s.opts.RingBytes && s.head-s.tail > 1 {
			s.evictLocked()
		}
	}
	s.metrics.ringEvents.Set(float64(s.head - s.tail))
	for sub := range s.subs {
		if sub.cursor.Load() < s.tail {
			s.endLocked(sub, ErrStreamLagging)
			s.metrics.dropped.WithLabelValues(DropLagging).Inc()
			continue
		}
		select {
		case sub.wake <- struct{}{}:
		default: // already woken
		}
	}
}

func (s *Stream) evictLocked() {
	i := s.tail % int64(len(s.ring))
	s.bytes -= s.ring[i].size
	s.ring[i] = nil
	s.tail++
}

// Subscribe starts a subscription to the operations f selects: from now
// on, or, when after is not nil, from the operation after the one with
// that id among those the ring keeps. When the ring does not keep it (too
// old, or never streamed by this replica), the subscription opens with a
// reset event that says so, then goes on from now. It answers
// ErrStreamFull when MaxSubscribers subscribe already, and ErrStreamClosed
// once the stream is closed. Close the subscription when done.
func (s *Stream) Subscribe(f StreamFilter, after *uuid.UUID) (*Subscription, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrStreamClosed
	}
	if len(s.subs) >= s.opts.MaxSubscribers {
		return nil, fmt.Errorf("%w (at most %d)", ErrStreamFull, s.opts.MaxSubscribers)
	}
	sub := &Subscription{stream: s, filter: f, wake: make(chan struct{}, 1), done: make(chan struct{}),
		timer: time.NewTimer(s.opts.Heartbeat)}
	sub.cursor.Store(s.head)
	if after != nil {
		if seq, ok := s.findLocked(*after); ok {
			sub.cursor.Store(seq + 1)
		} else {
			sub.first = resetEvent(api.ResetLastEventUnknown, fmt.Sprintf(
				"Operation %s is not among the latest %d operations this replica keeps to resume from (it is older, or was not streamed here); the stream goes on from now.",
				after, s.head-s.tail))
		}
	}
	s.subs[sub] = struct{}{}
	s.metrics.subscribers.Set(float64(len(s.subs)))
	return sub, nil
}

// findLocked answers the seq of the kept operation with id, newest first.
func (s *Stream) findLocked(id uuid.UUID) (int64, bool) {
	size := int64(len(s.ring))
	for seq := s.head - 1; seq >= s.tail; seq-- {
		if op := s.ring[seq%size].Operation; op != nil && op.ID == id {
			return seq, true
		}
	}
	return 0, false
}

// endLocked removes sub with the error its Next answers from then on.
func (s *Stream) endLocked(sub *Subscription, err error) {
	if _, ok := s.subs[sub]; !ok {
		return
	}
	delete(s.subs, sub)
	s.metrics.subscribers.Set(float64(len(s.subs)))
	sub.err = err
	close(sub.done)
}

// Close ends every subscription (their Next answers ErrStreamClosed) and
// refuses new ones: the first step of a shutdown, so that streams do not
// keep the HTTP server from finishing.
func (s *Stream) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for sub := range s.subs {
		s.endLocked(sub, ErrStreamClosed)
	}
}

// follow publishes the operations other replicas acknowledge, read from
// feed, until ctx ends.
func (s *Stream) follow(ctx context.Context, feed tsdb.OperationFeed) {
	err := feed.FollowOperations(ctx, s.publishReplica, s.replicaFeedLost)
	if err != nil && ctx.Err() == nil {
		s.logger.Error("the feed of the other replicas' operations stopped", "err", err)
	}
}

// Subscription is one subscriber of the stream. Its methods are for one
// goroutine (Next's), but Drop, Done and Close may be called from any.
type Subscription struct {
	stream *Stream
	filter StreamFilter
	cursor atomic.Int64  // seq of the next event to read
	wake   chan struct{} // a new event may be there
	done   chan struct{} // closed when the subscription ends; err says why
	err    error
	first  *StreamEvent // a reset to send before anything else
	timer  *time.Timer
}

// Next answers the next events for the subscriber, appended to buf[:0]:
// the operations its filter selects (or resets), in the order they were
// published. After the stream's Heartbeat without one it answers none and
// no error: time for a heartbeat. It answers the reason once the
// subscription has ended (ErrStreamLagging, ErrStreamWriteTimeout,
// ErrStreamClosed), or ctx's error.
func (sub *Subscription) Next(ctx context.Context, buf []*StreamEvent) ([]*StreamEvent, error) {
	buf = buf[:0]
	if sub.first != nil {
		buf = append(buf, sub.first)
		sub.first = nil
		return buf, nil
	}
	sub.timer.Reset(sub.stream.opts.Heartbeat)
	for {
		select {
		case <-sub.done:
			return nil, sub.err
		default:
		}
		if buf = sub.collect(buf); len(buf) > 0 {
			return buf, nil
		}
		select {
		case <-sub.wake:
		case <-sub.done:
		case <-sub.timer.C:
			return buf, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// collect appends the events from the cursor on that the filter selects,
// and moves the cursor past them, under the stream's read lock, so that a
// publisher sees the cursor and the ring in step.
func (sub *Subscription) collect(buf []*StreamEvent) []*StreamEvent {
	s := sub.stream
	s.mu.RLock()
	defer s.mu.RUnlock()
	size := int64(len(s.ring))
	seq := sub.cursor.Load()
	if seq < s.tail {
		return buf // dropped (done is closed): nothing after the gap
	}
	for ; seq < s.head; seq++ {
		e := s.ring[seq%size]
		if e.Operation == nil || sub.filter.matches(e.Operation) {
			buf = append(buf, e)
		}
	}
	sub.cursor.Store(seq)
	return buf
}

// Done is closed when the subscription has ended: dropped, closed, or the
// stream closed.
func (sub *Subscription) Done() <-chan struct{} { return sub.done }

// Err answers why the subscription ended once Done is closed
// (ErrStreamLagging, ErrStreamWriteTimeout, ErrStreamClosed), and nil
// before.
func (sub *Subscription) Err() error {
	select {
	case <-sub.done:
		return sub.err
	default:
		return nil
	}
}

// Drop ends the subscription of a subscriber that is too slow: its client
// did not take an event within the write timeout. It is counted under
// DropWriteTimeout.
func (sub *Subscription) Drop() {
	s := sub.stream
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.subs[sub]; ok {
		s.endLocked(sub, ErrStreamWriteTimeout)
		s.metrics.dropped.WithLabelValues(DropWriteTimeout).Inc()
	}
}

// Close ends the subscription: the subscriber has left.
func (sub *Subscription) Close() {
	s := sub.stream
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked(sub, ErrStreamClosed)
	sub.timer.Stop()
}
