package tsdb

import (
	"context"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Traced wraps s so that every call is a span of tp named "store.<Method>",
// with the store's name ("sqlite", "influxdb") as the db.system.name
// attribute and any error recorded on the span. A store that is an
// OperationFeed stays one (its long-running FollowOperations is no span).
func Traced(s Store, system string, tp trace.TracerProvider) Store {
	t := &tracedStore{next: s, system: system, tracer: tp.Tracer("github.com/omnimemory/omnimemory-metrics/tsdb")}
	if feed, ok := s.(OperationFeed); ok {
		return tracedFeed{tracedStore: t, OperationFeed: feed}
	}
	return t
}

// tracedFeed is a traced store that is also an OperationFeed.
type tracedFeed struct {
	*tracedStore
	OperationFeed
}

type tracedStore struct {
	next   Store
	system string
	tracer trace.Tracer
}

func (t *tracedStore) start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	attrs = append(attrs, attribute.String("db.system.name", t.system))
	return t.tracer.Start(ctx, "store."+name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

func end(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

func (t *tracedStore) WriteOperations(ctx context.Context, ops []Operation) (err error) {
	ctx, span := t.start(ctx, "WriteOperations", attribute.Int("omnimemory.batch.size", len(ops)))
	defer func() { end(span, err) }()
	return t.next.WriteOperations(ctx, ops)
}

func (t *tracedStore) QueryOperations(ctx context.Context, f OperationFilter) (p OperationPage, err error) {
	ctx, span := t.start(ctx, "QueryOperations", attribute.Int("omnimemory.limit", f.Limit), attribute.Int("omnimemory.offset", f.Offset))
	defer func() { end(span, err) }()
	return t.next.QueryOperations(ctx, f)
}

// ExportOperations is one span for the whole export, with the number of
// operations handed to fn.
func (t *tracedStore) ExportOperations(ctx context.Context, f OperationFilter, fn func(*Operation) error) (err error) {
	ctx, span := t.start(ctx, "ExportOperations")
	n := 0
	defer func() {
		span.SetAttributes(attribute.Int("omnimemory.export.operations", n))
		end(span, err)
	}()
	return t.next.ExportOperations(ctx, f, func(op *Operation) error {
		n++
		return fn(op)
	})
}

func (t *tracedStore) Breakdown(ctx context.Context, w Window) (m []ModeTotals, err error) {
	ctx, span := t.start(ctx, "Breakdown")
	defer func() { end(span, err) }()
	return t.next.Breakdown(ctx, w)
}

func (t *tracedStore) Trend(ctx context.Context, w Window, step Step) (b []Bucket, err error) {
	ctx, span := t.start(ctx, "Trend")
	defer func() { end(span, err) }()
	return t.next.Trend(ctx, w, step)
}

func (t *tracedStore) Aggregate(ctx context.Context, q AggregateQuery) (r AggregateResult, err error) {
	ctx, span := t.start(ctx, "Aggregate", attribute.Int("omnimemory.group_by", len(q.GroupBy)), attribute.Int("omnimemory.limit", q.Limit))
	defer func() { end(span, err) }()
	return t.next.Aggregate(ctx, q)
}

func (t *tracedStore) WriteSpend(ctx context.Context, points []SpendPoint) (err error) {
	ctx, span := t.start(ctx, "WriteSpend", attribute.Int("omnimemory.points", len(points)))
	defer func() { end(span, err) }()
	return t.next.WriteSpend(ctx, points)
}

func (t *tracedStore) SpendBreakdown(ctx context.Context, w Window) (s []SpendTotals, err error) {
	ctx, span := t.start(ctx, "SpendBreakdown")
	defer func() { end(span, err) }()
	return t.next.SpendBreakdown(ctx, w)
}

func (t *tracedStore) SpendTrend(ctx context.Context, w Window, step Step) (b []SpendBucket, err error) {
	ctx, span := t.start(ctx, "SpendTrend")
	defer func() { end(span, err) }()
	return t.next.SpendTrend(ctx, w, step)
}

func (t *tracedStore) FirstOperationTime(ctx context.Context, toolID string) (ts time.Time, ok bool, err error) {
	ctx, span := t.start(ctx, "FirstOperationTime")
	defer func() { end(span, err) }()
	return t.next.FirstOperationTime(ctx, toolID)
}

func (t *tracedStore) CreateSession(ctx context.Context, s Session) (err error) {
	ctx, span := t.start(ctx, "CreateSession")
	defer func() { end(span, err) }()
	return t.next.CreateSession(ctx, s)
}

func (t *tracedStore) FindOpenSession(ctx context.Context, m SessionMatch) (s Session, err error) {
	ctx, span := t.start(ctx, "FindOpenSession")
	defer func() { end(span, err) }()
	return t.next.FindOpenSession(ctx, m)
}

func (t *tracedStore) TouchSession(ctx context.Context, id uuid.UUID, at time.Time) (s Session, err error) {
	ctx, span := t.start(ctx, "TouchSession")
	defer func() { end(span, err) }()
	return t.next.TouchSession(ctx, id, at)
}

func (t *tracedStore) EndSession(ctx context.Context, id uuid.UUID, at time.Time) (s SessionStats, err error) {
	ctx, span := t.start(ctx, "EndSession")
	defer func() { end(span, err) }()
	return t.next.EndSession(ctx, id, at)
}

func (t *tracedStore) GetSession(ctx context.Context, id uuid.UUID) (s SessionStats, err error) {
	ctx, span := t.start(ctx, "GetSession")
	defer func() { end(span, err) }()
	return t.next.GetSession(ctx, id)
}

func (t *tracedStore) ActiveSessions(ctx context.Context, toolID string, since time.Time) (s []SessionStats, err error) {
	ctx, span := t.start(ctx, "ActiveSessions")
	defer func() { end(span, err) }()
	return t.next.ActiveSessions(ctx, toolID, since)
}

func (t *tracedStore) Ping(ctx context.Context) (err error) {
	ctx, span := t.start(ctx, "Ping")
	defer func() { end(span, err) }()
	return t.next.Ping(ctx)
}

func (t *tracedStore) Close() error { return t.next.Close() }
