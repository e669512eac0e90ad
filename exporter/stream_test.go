package exporter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

func newTestStream(t *testing.T, o StreamOptions) (*Stream, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s := NewStream(reg, o, slog.New(slog.DiscardHandler))
	t.Cleanup(s.Close)
	return s, reg
}

// streamOp is an operation of the given session, tool, mode and client.
func streamOp(session uuid.UUID, tool, mode, client string) tsdb.Operation {
	return tsdb.Operation{ID: uuid.New(), SessionID: session, ToolName: tool, OperationMode: mode,
		Parameters: json.RawMessage(`{"q":"<x>"}`), TokensOriginal: 100, TokensActual: 10, TokensPrevented: 90,
		ResponseTimeMs: 1.5, ToolID: client, CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
}

func subscribe(t *testing.T, s *Stream, f StreamFilter, after *uuid.UUID) *Subscription {
	t.Helper()
	sub, err := s.Subscribe(f, after)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Close)
	return sub
}

// next answers the subscriber's next events, failing on an error or a
// heartbeat.
func next(t *testing.T, sub *Subscription) []*StreamEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, err := sub.Next(ctx, nil)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	if len(evs) == 0 {
		t.Fatal("Next answered a heartbeat, want events")
	}
	return evs
}

func ids(evs []*StreamEvent) []uuid.UUID {
	out := make([]uuid.UUID, len(evs))
	for i, e := range evs {
		if e.Operation != nil {
			out[i] = e.Operation.ID
		}
	}
	return out
}

func opIDs(ops []tsdb.Operation) []uuid.UUID {
	out := make([]uuid.UUID, len(ops))
	for i := range ops {
		out[i] = ops[i].ID
	}
	return out
}

func TestStreamFiltersAsTheList(t *testing.T) {
	s, _ := newTestStream(t, StreamOptions{})
	a, b := uuid.New(), uuid.New()
	ops := []tsdb.Operation{
		streamOp(a, api.ToolRead, api.ModeFull, "claude-code"),
		streamOp(b, api.ToolSearch, api.ModeSemantic, "cursor"),
		streamOp(a, api.ToolSearch, api.ModeTriIndex, "cursor"),
		streamOp(b, api.ToolRead, api.ModeSymbol, "claude-code"),
	}
	cases := []struct {
		name string
		f    StreamFilter
		want []tsdb.Operation
	}{
		{"none", StreamFilter{}, ops},
		{"session_id", StreamFilter{SessionID: &a}, []tsdb.Operation{ops[0], ops[2]}},
		{"tool_name", StreamFilter{ToolName: api.ToolSearch}, []tsdb.Operation{ops[1], ops[2]}},
		{"operation_mode", StreamFilter{OperationMode: api.ModeSymbol}, []tsdb.Operation{ops[3]}},
		{"tool_id", StreamFilter{ToolID: "claude-code"}, []tsdb.Operation{ops[0], ops[3]}},
		{"all four", StreamFilter{SessionID: &b, ToolName: api.ToolSearch, OperationMode: api.ModeSemantic, ToolID: "cursor"}, []tsdb.Operation{ops[1]}},
	}
	subs := make([]*Subscription, len(cases))
	for i, tc := range cases {
		subs[i] = subscribe(t, s, tc.f, nil)
	}
	s.Publish(ops)
	for i, tc := range cases {
		if got, want := ids(next(t, subs[i])), opIDs(tc.want); !reflect.DeepEqual(got, want) {
			t.Errorf("filter %s: got %v, want %v", tc.name, got, want)
		}
	}
}

func TestStreamLeavesOutRetriesAndKeepsNoneOfTheCallersMemory(t *testing.T) {
	s, _ := newTestStream(t, StreamOptions{})
	sub := subscribe(t, s, StreamFilter{}, nil)
	ops := []tsdb.Operation{streamOp(uuid.New(), api.ToolRead, api.ModeFull, "x"), streamOp(uuid.New(), api.ToolRead, api.ModeFull, "x")}
	ops[0].Duplicate = true
	hit := true
	ops[1].CacheHit = &hit
	s.Publish(ops)
	ops[1].Parameters[2] = 'Z' // the caller reuses its memory
	evs := next(t, sub)
	if len(evs) != 1 || evs[0].Operation.ID != ops[1].ID {
		t.Fatalf("got %v, want only the operation not marked Duplicate", ids(evs))
	}
	data, err := evs[0].Data()
	if err != nil {
		t.Fatal(err)
	}
	var got api.ExportedOperation
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	want := APIExportedOperation(&ops[1])
	want.Parameters = json.RawMessage(`{"q":"<x>"}`)
	if want.CacheHit == nil || !*want.CacheHit || !bytes.Contains(data, []byte(`"cache_hit":true`)) {
		t.Errorf("event data %s does not carry cache_hit true", data)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("event data %s\nwant the export line %+v", data, want)
	}
	if bytes.Contains(data, []byte(`\u003c`)) {
		t.Errorf("event data %s escapes HTML, as no other answer does", data)
	}
	if got := testutil.ToFloat64(s.metrics.published.WithLabelValues(sourceLocal)); got != 1 {
		t.Errorf("published counter %v, want 1", got)
	}
}

func TestStreamResumesAfterTheLastEventOrSaysItCannot(t *testing.T) {
	s, _ := newTestStream(t, StreamOptions{RingSize: 5})
	var ops []tsdb.Operation
	for range 4 {
		ops = append(ops, streamOp(uuid.New(), api.ToolRead, api.ModeFull, "x"))
	}
	s.Publish(ops)

	// Resuming after the second: the third and the fourth, then live.
	sub := subscribe(t, s, StreamFilter{}, &ops[1].ID)
	if got := ids(next(t, sub)); !reflect.DeepEqual(got, opIDs(ops[2:])) {
		t.Errorf("resumed after the second: %v, want %v", got, opIDs(ops[2:]))
	}
	live := streamOp(uuid.New(), api.ToolRead, api.ModeFull, "x")
	s.Publish([]tsdb.Operation{live})
	if got := ids(next(t, sub)); !reflect.DeepEqual(got, []uuid.UUID{live.ID}) {
		t.Errorf("then live: %v", got)
	}

	// Resuming after the newest: nothing until the next one.
	sub = subscribe(t, s, StreamFilter{}, &live.ID)
	later := streamOp(uuid.New(), api.ToolRead, api.ModeFull, "x")
	s.Publish([]tsdb.Operation{later}) // the ring of 5 now drops ops[0]
	if got := ids(next(t, sub)); !reflect.DeepEqual(got, []uuid.UUID{later.ID}) {
		t.Errorf("resumed after the newest: %v", got)
	}

	// An id the ring no longer keeps, and one it never had: a reset, then
	// live.
	for _, id := range []uuid.UUID{ops[0].ID, uuid.New()} {
		sub = subscribe(t, s, StreamFilter{}, &id)
		evs := next(t, sub)
		if len(evs) != 1 || evs[0].Reset == nil || evs[0].Reset.Reason != api.ResetLastEventUnknown {
			t.Fatalf("resuming after %s: %+v, want one reset", id, evs)
		}
		data, _ := evs[0].Data()
		var reset api.StreamReset
		if err := json.Unmarshal(data, &reset); err != nil || reset.Detail == "" {
			t.Errorf("reset data %s: %v", data, err)
		}
		last := streamOp(uuid.New(), api.ToolRead, api.ModeFull, "x")
		s.Publish([]tsdb.Operation{last})
		if got := ids(next(t, sub)); !reflect.DeepEqual(got, []uuid.UUID{last.ID}) {
			t.Errorf("after the reset: %v", got)
		}
	}
}

func TestStreamRingIsBoundedInBytes(t *testing.T) {
	s, _ := newTestStream(t, StreamOptions{RingSize: 100, RingBytes: 5 * (eventOverhead + 1000) / 2})
	big := func() tsdb.Operation {
		op := streamOp(uuid.New(), api.ToolRead, api.ModeFull, "")
		op.Parameters = json.RawMessage(`{"q":"` + strings.Repeat("a", 990) + `"}`)
		return op
	}
	ops := []tsdb.Operation{big(), big(), big(), big(), big()}
	s.Publish(ops)
	if n := s.head - s.tail; n != 2 {
		t.Errorf("the ring keeps %d events of about 1,500 bytes under a bound of %d bytes, want 2", n, s.opts.RingBytes)
	}
	if s.bytes > s.opts.RingBytes {
		t.Errorf("the ring holds %d bytes, over its bound %d", s.bytes, s.opts.RingBytes)
	}
}

func TestStreamDropsASubscriberThatFallsARingBehind(t *testing.T) {
	s, _ := newTestStream(t, StreamOptions{RingSize: 10})
	stalled := subscribe(t, s, StreamFilter{}, nil)
	reader := subscribe(t, s, StreamFilter{}, nil)
	publish := func(n int) []tsdb.Operation {
		ops := make([]tsdb.Operation, n)
		for i := range ops {
			ops[i] = streamOp(uuid.New(), api.ToolRead, api.ModeFull, "x")
		}
		s.Publish(ops)
		return ops
	}
	// The stalled subscriber reads part of the ring, then stops.
	publish(4)
	next(t, stalled)
	for range 3 {
		ops := publish(4)
		if got := ids(next(t, reader)); !reflect.DeepEqual(got, opIDs(ops)) && len(got) < 4 {
			t.Fatalf("reader: %v", got)
		}
	}
	// 12 operations since it last read, in a ring of 10: dropped, with
	// none of the operations after the gap.
	evs, err := stalled.Next(context.Background(), nil)
	if !errors.Is(err, ErrStreamLagging) || len(evs) != 0 {
		t.Fatalf("stalled subscriber: %d events, %v; want ErrStreamLagging and none", len(evs), err)
	}
	select {
	case <-stalled.Done():
	default:
		t.Error("Done is not closed")
	}
	if got := testutil.ToFloat64(s.metrics.dropped.WithLabelValues(DropLagging)); got != 1 {
		t.Errorf("dropped{lagging} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(s.metrics.subscribers); got != 1 {
		t.Errorf("subscribers = %v, want 1 (the reader)", got)
	}
	ops := publish(2)
	if got := ids(next(t, reader)); !reflect.DeepEqual(got, opIDs(ops)) {
		t.Errorf("the reader goes on: %v", got)
	}

	reader.Drop()
	if _, err := reader.Next(context.Background(), nil); !errors.Is(err, ErrStreamWriteTimeout) {
		t.Errorf("after Drop: %v", err)
	}
	if got := testutil.ToFloat64(s.metrics.dropped.WithLabelValues(DropWriteTimeout)); got != 1 {
		t.Errorf("dropped{write_timeout} = %v, want 1", got)
	}
}

func TestStreamBoundsItsSubscribers(t *testing.T) {
	s, _ := newTestStream(t, StreamOptions{MaxSubscribers: 2})
	first := subscribe(t, s, StreamFilter{}, nil)
	subscribe(t, s, StreamFilter{}, nil)
	if _, err := s.Subscribe(StreamFilter{}, nil); !errors.Is(err, ErrStreamFull) {
		t.Fatalf("a third subscriber: %v, want ErrStreamFull", err)
	}
	if got := testutil.ToFloat64(s.metrics.capacity); got != 2 {
		t.Errorf("capacity gauge %v", got)
	}
	first.Close()
	first.Close() // twice is fine
	subscribe(t, s, StreamFilter{}, nil)
	if got := testutil.ToFloat64(s.metrics.subscribers); got != 2 {
		t.Errorf("subscribers gauge %v, want 2", got)
	}
}

func TestStreamHeartbeatAndClose(t *testing.T) {
	s, _ := newTestStream(t, StreamOptions{Heartbeat: 20 * time.Millisecond})
	sub := subscribe(t, s, StreamFilter{}, nil)
	for range 3 {
		evs, err := sub.Next(context.Background(), nil)
		if err != nil || len(evs) != 0 {
			t.Fatalf("idle Next: %d events, %v; want a heartbeat", len(evs), err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := sub.Next(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Next with an ended context: %v", err)
	}
	s.Close()
	if _, err := sub.Next(context.Background(), nil); !errors.Is(err, ErrStreamClosed) {
		t.Errorf("Next after Close: %v", err)
	}
	if _, err := s.Subscribe(StreamFilter{}, nil); !errors.Is(err, ErrStreamClosed) {
		t.Errorf("Subscribe after Close: %v", err)
	}
	if got := testutil.ToFloat64(s.metrics.subscribers); got != 0 {
		t.Errorf("subscribers gauge %v after Close", got)
	}
}

func TestStreamTellsOfALostReplicaFeedInOrder(t *testing.T) {
	s, _ := newTestStream(t, StreamOptions{})
	sub := subscribe(t, s, StreamFilter{ToolID: "x"}, nil)
	before, after := streamOp(uuid.New(), api.ToolRead, api.ModeFull, "x"), streamOp(uuid.New(), api.ToolRead, api.ModeFull, "x")
	s.publishReplica([]tsdb.Operation{before})
	s.replicaFeedLost(errors.New("connection reset"))
	s.publishReplica([]tsdb.Operation{after})
	evs := next(t, sub)
	if len(evs) != 3 || evs[0].Operation.ID != before.ID || evs[1].Reset == nil ||
		evs[1].Reset.Reason != api.ResetReplicaFeedLost || evs[2].Operation.ID != after.ID {
		t.Fatalf("got %+v, want the operation, the reset (whatever the filter), the operation", evs)
	}
	if got := testutil.ToFloat64(s.metrics.published.WithLabelValues(sourceReplica)); got != 2 {
		t.Errorf("published{replica} = %v", got)
	}
	if got := testutil.ToFloat64(s.metrics.feedLost); got != 1 {
		t.Errorf("replica_feed_lost_total = %v", got)
	}
}

// TestTrackerPublishesOnlyWhatItStored: the stream gets an operation only
// once its commit is durable (a read of the store finds it); a retry is
// published once; a failed write publishes nothing.
func TestTrackerPublishesOnlyWhatItStored(t *testing.T) {
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	published := make(chan []uuid.UUID, 4)
	publish := func(ops []tsdb.Operation) {
		var out []uuid.UUID
		for _, op := range ops {
			if op.Duplicate {
				continue
			}
			page, err := store.QueryOperations(context.Background(), tsdb.OperationFilter{SessionID: &op.SessionID, Limit: 10})
			if err != nil || page.Total != 1 {
				t.Errorf("published %s before a read finds it: %d stored, %v", op.ID, page.Total, err)
			}
			out = append(out, op.ID)
		}
		published <- out
	}
	tr := NewTracker(store, NewMetrics(prometheus.NewRegistry(), 0, 10), TrackerOptions{Publish: publish}, slog.New(slog.DiscardHandler))
	defer tr.Close(context.Background())
	op := streamOp(uuid.New(), api.ToolRead, api.ModeFull, "x")
	op.Keyed = true
	for attempt := range 2 {
		if err := tr.Track(context.Background(), op); err != nil {
			t.Fatal(err)
		}
		want := []uuid.UUID{op.ID}
		if attempt == 1 {
			want = nil // the retry was stored before
		}
		select {
		case got := <-published:
			if !reflect.DeepEqual(got, want) {
				t.Errorf("attempt %d published %v, want %v", attempt, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no commit handed to Publish")
		}
	}

	failing := &stallingWriter{stall: time.Millisecond, written: map[uuid.UUID]bool{}}
	tr2 := NewTracker(failing, NewMetrics(prometheus.NewRegistry(), 0, 10), TrackerOptions{Publish: publish}, slog.New(slog.DiscardHandler))
	if err := tr2.Track(context.Background(), streamOp(uuid.New(), api.ToolRead, api.ModeFull, "x")); err == nil {
		t.Fatal("a failing store write answered nil")
	}
	_ = tr2.Close(context.Background())
	select {
	case got := <-published:
		t.Errorf("a failed write published %v", got)
	default:
	}
}

// BenchmarkStreamPublish measures publishing a commit of 1,000 operations
// (what the writer does after each commit) with no subscriber, with 1,000
// that never read (each a whole ring behind soon, then dropped and
// replaced), and with 1,000 that read everything: the publisher's cost
// must not depend on how fast subscribers read.
func BenchmarkStreamPublish(b *testing.B) {
	ops := make([]tsdb.Operation, 1000)
	for i := range ops {
		ops[i] = streamOp(uuid.New(), api.ToolRead, api.ModeFull, "x")
	}
	for _, mode := range []string{"none", "stalled", "reading"} {
		b.Run(mode, func(b *testing.B) {
			s := NewStream(prometheus.NewRegistry(), StreamOptions{}, slog.New(slog.DiscardHandler))
			defer s.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			subs := 0
			if mode != "none" {
				subs = 1000
			}
			refill := func() {
				for len(s.subs) < subs {
					sub, err := s.Subscribe(StreamFilter{}, nil)
					if err != nil {
						b.Fatal(err)
					}
					if mode == "reading" {
						go func() {
							var buf []*StreamEvent
							for {
								var err error
								if buf, err = sub.Next(ctx, buf); err != nil {
									return
								}
							}
						}()
					}
				}
			}
			refill()
			for b.Loop() {
				s.Publish(ops)
				if mode == "stalled" {
					b.StopTimer()
					s.mu.RLock()
					short := len(s.subs) < subs
					s.mu.RUnlock()
					if short {
						refill()
					}
					b.StartTimer()
				}
			}
			b.ReportMetric(float64(b.N*len(ops))/b.Elapsed().Seconds(), "ops/s")
		})
	}
}
