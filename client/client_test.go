package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client"
)

// sampleOp is a valid operation of session: 5,000 tokens down to 500.
func sampleOp(session uuid.UUID, toolID string) client.Operation {
	return client.Operation{
		SessionID:      session,
		ToolName:       client.ToolRead,
		OperationMode:  client.ModeOverview,
		Parameters:     map[string]any{"compress": true},
		FilePath:       "src/main.go",
		TokensOriginal: 5000,
		TokensActual:   500,
		ResponseTimeMs: 12.5,
		ToolID:         toolID,
	}
}

func TestNewRejectsBadSettings(t *testing.T) {
	for _, tc := range []struct {
		url  string
		opts []client.Option
	}{
		{"localhost:8003", nil},
		{"ftp://host", nil},
		{"http://", nil},
		{"http://host?x=1", nil},
		{"http://host", []client.Option{client.WithTimeout(-time.Second)}},
		{"http://host", []client.Option{client.WithToken("a\nb")}},
	} {
		if _, err := client.New(tc.url, tc.opts...); err == nil {
			t.Errorf("New(%q) accepted", tc.url)
		}
	}
	if _, err := client.New("https://metrics.example/prefix/"); err != nil {
		t.Errorf("a base URL with a path prefix: %v", err)
	}
}

// TestRetryAfterLostAnswerStoredOnce: the service stores an operation but
// its answer is lost; the client's retry carries the same operation_id, so
// the operation is stored, and counted in the savings, exactly once.
func TestRetryAfterLostAnswerStoredOnce(t *testing.T) {
	svc := newService(t, "")
	p := newProxy(t, svc.URL, func(n int, r *http.Request) verdict {
		return verdict{drop: n == 1 && strings.HasPrefix(r.URL.Path, "/track/")}
	})
	c := newClient(t, p.URL)
	ctx := ctxFor(t, 30*time.Second)
	session := uuid.New()

	res, err := c.TrackOperation(ctx, sampleOp(session, "lost-answer"))
	if err != nil {
		t.Fatalf("TrackOperation: %v", err)
	}
	if p.count("/track/tool-operation") != 2 || p.dropped() != 1 {
		t.Fatalf("proxy saw %d requests and dropped %d answers, want 2 and 1", p.count("/track/tool-operation"), p.dropped())
	}
	if !res.Replayed || res.Status != "success" || res.OperationID == uuid.Nil {
		t.Errorf("answer after the retry: %+v, want a replayed success", res)
	}

	batch := []client.Operation{sampleOp(session, "lost-answer"), sampleOp(session, "lost-answer"), sampleOp(session, "lost-answer")}
	br, err := c.TrackOperations(ctx, batch)
	if err != nil {
		t.Fatalf("TrackOperations: %v", err)
	}
	if p.count("/track/tool-operations") != 2 || !br.Replayed || br.Count != 3 || len(br.OperationIDs) != 3 {
		t.Errorf("batch: %d requests, answer %+v", p.count("/track/tool-operations"), br)
	}
	for _, op := range batch {
		if op.OperationID != uuid.Nil {
			t.Errorf("TrackOperations modified the caller's slice")
		}
	}

	page, err := c.QueryOperations(ctx, client.OperationQuery{SessionID: session})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 4 {
		t.Errorf("%d operations stored, want 4", page.Total)
	}
	sv, err := c.APISavings(ctx, client.SavingsQuery{TimeRange: client.Range1h, ToolID: "lost-answer"})
	if err != nil {
		t.Fatal(err)
	}
	if sv.TotalOperations != 4 || sv.TotalTokensPrevented != 4*4500 || sv.TotalCostSaved != 0.27 {
		t.Errorf("savings count %d operations, %d tokens, $%v; want 4, 18000, $0.27",
			sv.TotalOperations, sv.TotalTokensPrevented, sv.TotalCostSaved)
	}
}

// TestRetryAfterHonoured: a 503 with Retry-After: 1 is waited out in full
// before the retry.
func TestRetryAfterHonoured(t *testing.T) {
	svc := newService(t, "")
	p := newProxy(t, svc.URL, func(n int, r *http.Request) verdict {
		if n == 1 && (r.URL.Path == "/track/tool-operation" || r.URL.Path == "/sessions/start") {
			return verdict{status: http.StatusServiceUnavailable, retryAfter: "1"}
		}
		return verdict{}
	})
	c := newClient(t, p.URL)
	ctx := ctxFor(t, 30*time.Second)
	session := uuid.New()

	start := time.Now()
	if _, err := c.TrackOperation(ctx, sampleOp(session, "retry-after")); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("retried after %s, before the Retry-After of 1s", waited)
	}
	// A session start is retried after a 503 too: the service did not act.
	if _, err := c.StartSession(ctx, client.SessionRequest{ToolID: "retry-after"}); err != nil {
		t.Fatal(err)
	}
	if p.count("/track/tool-operation") != 2 || p.count("/sessions/start") != 2 {
		t.Errorf("requests: %d and %d, want 2 of each", p.count("/track/tool-operation"), p.count("/sessions/start"))
	}
	page, err := c.QueryOperations(ctx, client.OperationQuery{SessionID: session})
	if err != nil || page.Total != 1 {
		t.Errorf("stored %v operations (%v), want 1", page, err)
	}
	active, err := c.ActiveSessions(ctx, "retry-after")
	if err != nil || active.Count != 2 { // the operation's session and the started one
		t.Errorf("active sessions: %+v (%v), want 2", active, err)
	}
}

// TestRetryAfterTooLong: a Retry-After beyond MaxRetryAfter ends the call
// at once with the *APIError carrying it.
func TestRetryAfterTooLong(t *testing.T) {
	svc := newService(t, "")
	p := newProxy(t, svc.URL, func(int, *http.Request) verdict {
		return verdict{status: http.StatusTooManyRequests, retryAfter: "3600"}
	})
	c := newClient(t, p.URL)
	start := time.Now()
	_, err := c.ToolBreakdown(ctxFor(t, 10*time.Second), client.BreakdownQuery{})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusTooManyRequests || ae.RetryAfter != time.Hour {
		t.Fatalf("error %v, want a 429 with a Retry-After of 1h", err)
	}
	if !client.IsRetryable(err) || time.Since(start) > 2*time.Second || p.count("/metrics/tool-breakdown") != 1 {
		t.Errorf("retryable %v, took %s, %d requests", client.IsRetryable(err), time.Since(start), p.count("/metrics/tool-breakdown"))
	}
}

// TestValidationErrors: a 422 is parsed into its fields and never retried;
// other statuses keep their detail.
func TestValidationErrors(t *testing.T) {
	svc := newService(t, "")
	p := newProxy(t, svc.URL, nil)
	c := newClient(t, p.URL)
	ctx := ctxFor(t, 30*time.Second)

	bad := sampleOp(uuid.New(), "validation")
	bad.ToolName = "write"
	bad.ResponseTimeMs = -1
	_, err := c.TrackOperation(ctx, bad)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("error %v, want a 422 *APIError", err)
	}
	if len(ae.Fields) != 2 || ae.Fields[0].Field() != "body.tool_name" || ae.Fields[0].Type != "enum" ||
		ae.Fields[1].Field() != "body.response_time_ms" || ae.Fields[1].Type != "greater_than_equal" {
		t.Errorf("fields %+v", ae.Fields)
	}
	if !strings.Contains(ae.Error(), "422 Unprocessable Entity: body.tool_name: Input should be 'read' or 'search'") {
		t.Errorf("message %q", ae.Error())
	}
	if client.IsRetryable(err) || p.count("/track/tool-operation") != 1 {
		t.Errorf("a 422 was retried (%d requests) or called retryable", p.count("/track/tool-operation"))
	}

	_, err = c.TrackOperations(ctx, []client.Operation{sampleOp(uuid.New(), "validation"), bad})
	if !errors.As(err, &ae) || len(ae.Fields) != 2 || ae.Fields[0].Loc[2] != 1 || ae.Fields[0].Field() != "body.operations.1.tool_name" {
		t.Errorf("batch error %v, fields %+v: want item 1 located by an int index", err, ae.Fields)
	}

	unknown := uuid.New()
	_, err = c.GetSession(ctx, unknown)
	if !client.IsNotFound(err) || !errors.As(err, &ae) || ae.Detail != "Session "+unknown.String()+" not found" {
		t.Errorf("unknown session: %v", err)
	}
	_, err = c.ToolBreakdown(ctx, client.BreakdownQuery{TimeRange: "2h"})
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || !strings.Contains(ae.Detail, "1h, 24h, 7d, 30d") {
		t.Errorf("bad time range: %v", err)
	}
	_, err = c.APISavings(ctx, client.SavingsQuery{TimeRange: client.RangeAll, Compare: client.ComparePrevious})
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest {
		t.Errorf("comparing an unbounded range: %v", err)
	}
	if _, err := c.TrackOperation(ctx, client.Operation{ToolID: "x"}); err == nil {
		t.Errorf("an operation without a session was sent")
	}
}

// TestTimeoutEnforced: every attempt is bounded by the client's timeout,
// also when the caller's context has no deadline.
func TestTimeoutEnforced(t *testing.T) {
	var hits atomic.Int32
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body) // so that the server notices the client leaving
		<-r.Context().Done()               // never answers
	}))
	defer hang.Close()
	c, err := client.New(hang.URL, client.WithTimeout(100*time.Millisecond),
		client.WithRetry(client.RetryPolicy{MaxAttempts: 2, InitialBackoff: 10 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	_, err = c.ToolBreakdown(context.Background(), client.BreakdownQuery{})
	if !errors.Is(err, client.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || !client.IsRetryable(err) {
		t.Errorf("error %v, want ErrTimeout", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > 3*time.Second || hits.Load() != 2 {
		t.Errorf("took %s over %d attempts, want 2 attempts of 100ms", took, hits.Load())
	}

	// A session start that timed out may have been acted on: not retried.
	hits.Store(0)
	if _, err := c.StartSession(context.Background(), client.SessionRequest{ToolID: "t"}); !errors.Is(err, client.ErrTimeout) || hits.Load() != 1 {
		t.Errorf("StartSession: %v after %d attempts, want one timed-out attempt", err, hits.Load())
	}

	// The caller's own deadline is not a timeout of the client's, and ends
	// the retries.
	hits.Store(0)
	c, _ = client.New(hang.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err = c.ToolBreakdown(ctx, client.BreakdownQuery{})
	if errors.Is(err, client.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || client.IsRetryable(err) || hits.Load() != 1 {
		t.Errorf("caller's deadline: %v after %d attempts", err, hits.Load())
	}
}

// TestSessionRetries: a start whose answer is lost is not repeated (it
// would open a second session); get_or_create with an instance id is, and
// finds the session the lost attempt opened.
func TestSessionRetries(t *testing.T) {
	svc := newService(t, "")
	p := newProxy(t, svc.URL, func(n int, r *http.Request) verdict {
		return verdict{drop: n == 1 && r.URL.Path != "/sessions/active"}
	})
	c := newClient(t, p.URL)
	ctx := ctxFor(t, 30*time.Second)

	if _, err := c.StartSession(ctx, client.SessionRequest{ToolID: "start-tool"}); err == nil || !client.IsRetryable(err) {
		t.Errorf("StartSession with its answer lost: %v, want a retryable error", err)
	}
	if p.count("/sessions/start") != 1 {
		t.Errorf("StartSession sent %d times, want once", p.count("/sessions/start"))
	}

	h, err := c.GetOrCreateSession(ctx, client.SessionRequest{ToolID: "goc-tool", InstanceID: "instance-1"})
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != "existing" || p.count("/sessions/get_or_create") != 2 {
		t.Errorf("get_or_create after a lost answer: %+v over %d requests, want the session of the lost attempt", h, p.count("/sessions/get_or_create"))
	}
	active, err := c.ActiveSessions(ctx, "goc-tool")
	if err != nil || active.Count != 1 || active.Sessions[0].SessionID != h.SessionID {
		t.Errorf("active sessions %+v (%v), want only %s", active, err, h.SessionID)
	}

	// Heartbeat and end are idempotent: retried through lost answers.
	hb, err := c.Heartbeat(ctx, h.SessionID)
	if err != nil || hb.Status != "active" {
		t.Errorf("heartbeat: %+v %v", hb, err)
	}
	end, err := c.EndSession(ctx, h.SessionID)
	if err != nil || end.Status != "ended" || end.Summary.EndedAt == nil {
		t.Errorf("end: %+v %v", end, err)
	}
}

func TestSessionLifecycle(t *testing.T) {
	c := newClient(t, newService(t, "").URL)
	ctx := ctxFor(t, 30*time.Second)
	req := client.SessionRequest{ToolID: "life", ToolVersion: "1.2.3", ProcessID: 4242, ProjectID: "proj", WorkspacePath: "/w"}

	first, err := c.GetOrCreateSession(ctx, req)
	if err != nil || first.Status != "created" || first.ToolID != "life" {
		t.Fatalf("first get_or_create: %+v %v", first, err)
	}
	again, err := c.GetOrCreateSession(ctx, req)
	if err != nil || again.Status != "existing" || again.SessionID != first.SessionID {
		t.Fatalf("second get_or_create: %+v %v", again, err)
	}
	for range 2 {
		op := sampleOp(first.SessionID, "life")
		op.ToolName = client.ToolSearch
		op.OperationMode = client.ModeSemantic
		if _, err := c.TrackOperation(ctx, op); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.TrackOperation(ctx, sampleOp(first.SessionID, "life")); err != nil {
		t.Fatal(err)
	}
	s, err := c.GetSession(ctx, first.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if s.TotalOperations != 3 || s.TokensSaved != 13500 || s.TotalCompressions != 1 || s.TotalEmbeddings != 2 ||
		s.ProcessID == nil || *s.ProcessID != 4242 || s.ToolVersion == nil || *s.ToolVersion != "1.2.3" ||
		s.EndedAt != nil || s.StartedAt.IsZero() || s.LastActivity.Before(s.StartedAt) {
		t.Errorf("session %+v", s)
	}
	started, err := c.StartSession(ctx, client.SessionRequest{ToolID: "life", InstanceID: "ignored"})
	if err != nil || started.Status != "started" || started.SessionID == first.SessionID {
		t.Errorf("start: %+v %v", started, err)
	}
	all, err := c.ActiveSessions(ctx, "")
	if err != nil || all.Count != 2 || all.ToolID != nil {
		t.Errorf("active sessions of every tool: %+v %v", all, err)
	}
	end, err := c.EndSession(ctx, first.SessionID)
	if err != nil || end.Summary.TotalOperations != 3 || end.Summary.EndedAt == nil {
		t.Fatalf("end: %+v %v", end, err)
	}
	hb, err := c.Heartbeat(ctx, first.SessionID)
	if err != nil || hb.Status != "ended" {
		t.Errorf("heartbeat of an ended session: %+v %v", hb, err)
	}
	if err := c.Health(ctx); err != nil {
		t.Errorf("health: %v", err)
	}
	if err := c.Ready(ctx); err != nil {
		t.Errorf("ready: %v", err)
	}
}

func TestQueryOperations(t *testing.T) {
	c := newClient(t, newService(t, "").URL)
	ctx := ctxFor(t, 30*time.Second)
	session := uuid.New()
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Microsecond)
	var ids []uuid.UUID
	for i := range 5 {
		op := sampleOp(session, "query")
		op.CreatedAt = base.Add(time.Duration(i) * time.Minute)
		if i == 4 {
			op.FilePath, op.Parameters = "", nil
			op.OperationMode = client.ModeFull
			op.TokensActual = 6000
			prevented := int64(-1000)
			op.TokensPrevented = &prevented
		}
		res, err := c.TrackOperation(ctx, op)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.OperationID)
	}
	page, err := c.QueryOperations(ctx, client.OperationQuery{SessionID: session, Limit: 2, Offset: 0})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 5 || page.Limit != 2 || page.Offset != 0 || len(page.Operations) != 2 {
		t.Fatalf("page %+v", page)
	}
	newest := page.Operations[0]
	if newest.ID != ids[4] || newest.FilePath != nil || string(newest.Parameters) != "{}" || newest.TokensPrevented != -1000 ||
		!newest.CreatedAt.Equal(base.Add(4*time.Minute)) || newest.SessionID != session {
		t.Errorf("newest operation %+v", newest)
	}
	older := page.Operations[1]
	if older.ID != ids[3] || older.FilePath == nil || *older.FilePath != "src/main.go" || string(older.Parameters) != `{"compress":true}` ||
		older.TokensPrevented != 4500 || older.ResponseTimeMs != 12.5 {
		t.Errorf("second operation %+v", older)
	}
	window, err := c.QueryOperations(ctx, client.OperationQuery{
		ToolID: "query", OperationMode: client.ModeOverview,
		StartDate: base.Add(time.Minute), EndDate: base.Add(3 * time.Minute), Offset: 1,
	})
	if err != nil || window.Total != 3 || len(window.Operations) != 2 || window.Operations[0].ID != ids[2] {
		t.Errorf("filtered page %+v %v", window, err)
	}
	_, err = c.QueryOperations(ctx, client.OperationQuery{Limit: 5000})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnprocessableEntity || ae.Fields[0].Field() != "query.limit" {
		t.Errorf("limit out of range: %v", err)
	}
}

func TestAggregates(t *testing.T) {
	c := newClient(t, newService(t, "").URL)
	ctx := ctxFor(t, 30*time.Second)
	session := uuid.New()
	now := time.Now().UTC()
	for i, at := range []time.Time{now.Add(-36 * time.Hour), now.Add(-time.Minute), now.Add(-time.Minute)} {
		op := sampleOp(session, "aggregates")
		op.CreatedAt = at
		if i == 2 {
			op.ToolName, op.OperationMode = client.ToolSearch, client.ModeTriIndex
			op.TokensActual = 1000
		}
		if _, err := c.TrackOperation(ctx, op); err != nil {
			t.Fatal(err)
		}
	}
	bd, err := c.ToolBreakdown(ctx, client.BreakdownQuery{TimeRange: client.Range24h, ToolID: "aggregates"})
	if err != nil {
		t.Fatal(err)
	}
	if bd.Read.TotalOperations != 1 || bd.Search.TotalOperations != 1 || bd.Search.ByMode[client.ModeTriIndex].TokensPrevented != 4000 ||
		bd.TotalTokensPrevented != 8500 || bd.TotalCostSaved != 0.1275 || bd.TimePeriod != client.Range24h {
		t.Errorf("breakdown %+v", bd)
	}

	sv, err := c.APISavings(ctx, client.SavingsQuery{TimeRange: client.Range24h, ToolID: "aggregates", Compare: client.ComparePrevious})
	if err != nil {
		t.Fatal(err)
	}
	if sv.TotalOperations != 2 || sv.TotalTokensProcessed != 10000 || sv.SavingsPercentage != 85 ||
		sv.BreakdownByMode[client.ModeOverview].Operations != 1 || sv.TimeRange != client.Range24h || sv.CalculatedAt.IsZero() {
		t.Errorf("savings %+v", sv.PeriodSavings)
	}
	var trendOps int64
	for _, p := range sv.Trends {
		trendOps += p.Operations
		if p.Timestamp.Minute() != 0 || p.Timestamp.Location() != time.UTC {
			t.Errorf("trend bucket at %s", p.Timestamp)
		}
	}
	if trendOps != 2 || len(sv.Trends) < 24 {
		t.Errorf("%d trend buckets holding %d operations", len(sv.Trends), trendOps)
	}
	pp, ch := sv.PreviousPeriod, sv.Change
	if pp == nil || ch == nil {
		t.Fatalf("compared answer without previous_period or change: %+v", sv)
	}
	if pp.TotalOperations != 1 || pp.TotalTokensPrevented != 4500 || pp.End.Sub(pp.Start) != 24*time.Hour {
		t.Errorf("previous period %+v", pp)
	}
	if ch.TotalOperations.Absolute != 1 || ch.TotalOperations.Percent == nil || *ch.TotalOperations.Percent != 100 ||
		ch.TotalTokensPrevented.Absolute != 4000 || ch.SavingsPercentage.Absolute != -5 {
		t.Errorf("change %+v", ch)
	}
	plain, err := c.APISavings(ctx, client.SavingsQuery{ToolID: "aggregates"})
	if err != nil || plain.PreviousPeriod != nil || plain.Change != nil || plain.TimeRange != client.Range24h {
		t.Errorf("uncompared savings %+v %v", plain, err)
	}
}

func TestAggregate(t *testing.T) {
	c := newClient(t, newService(t, "").URL)
	ctx := ctxFor(t, 30*time.Second)
	session := uuid.New()
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Microsecond)
	hit := true
	for i, file := range []string{"src/a.go", "src/a.go", "src/b.go"} {
		op := sampleOp(session, "grouped")
		op.FilePath, op.CreatedAt = file, base.Add(time.Duration(i)*time.Minute)
		if i == 0 {
			op.CacheHit = &hit
		}
		if _, err := c.TrackOperation(ctx, op); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.Aggregate(ctx, client.AggregateQuery{GroupBy: []string{client.DimFilePath, client.DimToolID},
		OrderBy: client.OrderCount, Limit: 1, Filter: client.OperationQuery{SessionID: session, Limit: 7, Offset: 9}})
	if err != nil {
		t.Fatal(err)
	}
	if got.TotalGroups != 2 || len(got.Groups) != 1 || len(got.GroupBy) != 2 {
		t.Fatalf("answer %+v", got)
	}
	g := got.Groups[0]
	if *g.Key[client.DimFilePath] != "src/a.go" || *g.Key[client.DimToolID] != "grouped" || g.Count != 2 ||
		g.TokensPrevented != 9000 || g.CostSaved != 0.135 || g.CacheHits != 1 || g.CacheHitRate != 1 {
		t.Errorf("group %+v", g)
	}
	_, err = c.Aggregate(ctx, client.AggregateQuery{GroupBy: []string{"model"}})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown dimension: %v", err)
	}
}

// TestAuthToken: the bearer token is sent on every call; without it the
// service answers 401, which is not retried.
func TestAuthToken(t *testing.T) {
	svc := newService(t, "s3cret")
	p := newProxy(t, svc.URL, nil)
	ctx := ctxFor(t, 30*time.Second)

	anonymous := newClient(t, p.URL)
	if err := anonymous.Health(ctx); err != nil {
		t.Errorf("health needs no token: %v", err)
	}
	_, err := anonymous.TrackOperation(ctx, sampleOp(uuid.New(), "auth"))
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized || client.IsRetryable(err) || p.count("/track/tool-operation") != 1 {
		t.Errorf("without a token: %v after %d requests", err, p.count("/track/tool-operation"))
	}

	c := newClient(t, p.URL, client.WithToken("s3cret"), client.WithUserAgent("auth-test/1"))
	if _, err := c.TrackOperation(ctx, sampleOp(uuid.New(), "auth")); err != nil {
		t.Fatalf("with the token: %v", err)
	}
	if _, err := c.APISavings(ctx, client.SavingsQuery{}); err != nil {
		t.Errorf("savings with the token: %v", err)
	}
	h := p.seenHeaders()
	last := h[len(h)-1]
	if last.Get("Authorization") != "Bearer s3cret" || last.Get("User-Agent") != "auth-test/1" {
		t.Errorf("headers %v", last)
	}
	if h[0].Get("User-Agent") != client.DefaultUserAgent || h[0].Get("Authorization") != "" {
		t.Errorf("anonymous headers %v", h[0])
	}

	wrong := newClient(t, p.URL, client.WithToken("nope"))
	if _, err := wrong.GetSession(ctx, uuid.New()); !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized || ae.Detail != "Invalid bearer token" {
		t.Errorf("a wrong token: %v", err)
	}
}

// TestBasePathPrefix: a service behind a reverse proxy under a path.
func TestBasePathPrefix(t *testing.T) {
	svc := newService(t, "")
	p := newProxy(t, svc.URL, nil)
	mux := http.NewServeMux()
	mux.Handle("/omni/", http.StripPrefix("/omni", http.HandlerFunc(p.serve)))
	front := httptest.NewServer(mux)
	defer front.Close()
	c := newClient(t, front.URL+"/omni/")
	if _, err := c.TrackOperation(ctxFor(t, 10*time.Second), sampleOp(uuid.New(), "prefix")); err != nil {
		t.Fatal(err)
	}
	if p.count("/track/tool-operation") != 1 {
		t.Errorf("the prefix was not kept: %d requests reached the service", p.count("/track/tool-operation"))
	}
}

// TestOperationJSON: the wire form of an operation.
func TestOperationJSON(t *testing.T) {
	id := uuid.MustParse("0B6F7C1E-2F4A-4D7E-9C3B-5A1F0E2D3C4B")
	op := client.Operation{SessionID: id, ToolName: "read", OperationMode: "full", TokensOriginal: 1, ToolID: "x"}
	data, err := json.Marshal(op)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"session_id":"0b6f7c1e-2f4a-4d7e-9c3b-5a1f0e2d3c4b","tool_name":"read","operation_mode":"full","tokens_original":1,"tokens_actual":0,"response_time_ms":0,"tool_id":"x"}`
	if string(data) != want {
		t.Errorf("got  %s\nwant %s", data, want)
	}
	op.OperationID = id
	op.CreatedAt = time.Date(2025, 1, 14, 11, 30, 0, 500, time.FixedZone("CET", 3600))
	prevented := int64(-3)
	op.TokensPrevented = &prevented
	data, _ = json.Marshal(op)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	if m["operation_id"] != id.String() || m["created_at"] != "2025-01-14T10:30:00.0000005Z" || m["tokens_prevented"] != -3.0 {
		t.Errorf("encoded %s", data)
	}
}
