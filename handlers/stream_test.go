package handlers_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/exporter"
)

// streamWait bounds every wait for a stream's event; an operation arrives
// within milliseconds of its 200 when all goes well.
const streamWait = 10 * time.Second

// streamEvent is one event of either stream: an operation (with its id),
// a reset, a heartbeat.
type streamEvent struct {
	event string // api.StreamEventOperation, api.StreamEventReset or api.StreamEventHeartbeat
	id    string
	data  string
}

// streamClient reads one subscription's events, whatever its transport.
type streamClient struct {
	t      *testing.T
	events chan streamEvent
	ended  chan error // the transport's end
	close  func()
}

// next answers the next event, failing the test after streamWait.
func (c *streamClient) next() streamEvent {
	c.t.Helper()
	select {
	case e, ok := <-c.events:
		if !ok {
			c.t.Fatalf("the stream ended: %v", <-c.ended)
		}
		return e
	case <-time.After(streamWait):
		c.t.Fatalf("no event within %v", streamWait)
	}
	return streamEvent{}
}

// nextNonHeartbeat answers the next event that is not a heartbeat.
func (c *streamClient) nextNonHeartbeat() streamEvent {
	c.t.Helper()
	for {
		if e := c.next(); e.event != api.StreamEventHeartbeat {
			return e
		}
	}
}

// operations answers the ids of the next n operation events, failing on
// any other event but heartbeats.
func (c *streamClient) operations(n int) []string {
	c.t.Helper()
	ids := make([]string, 0, n)
	for len(ids) < n {
		e := c.nextNonHeartbeat()
		if e.event != api.StreamEventOperation {
			c.t.Fatalf("event %+v, want an operation", e)
		}
		ids = append(ids, e.id)
	}
	return ids
}

// quiet fails the test if an event other than a heartbeat comes within d.
func (c *streamClient) quiet(d time.Duration) {
	c.t.Helper()
	timer := time.After(d)
	for {
		select {
		case e, ok := <-c.events:
			if ok && e.event != api.StreamEventHeartbeat {
				c.t.Fatalf("unexpected event %+v", e)
			}
			if !ok {
				return
			}
		case <-timer:
			return
		}
	}
}

// openSSE subscribes to GET /stream/operations?query with the headers
// (name, value pairs) and answers once the service has subscribed it.
func openSSE(t *testing.T, s *service, query string, headers ...string) *streamClient {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.srv.URL+api.PathStreamOperations+"?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET %s?%s: %s %s", api.PathStreamOperations, query, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	c := &streamClient{t: t, events: make(chan streamEvent, 20000), ended: make(chan error, 1), close: func() { resp.Body.Close() }}
	t.Cleanup(c.close)
	subscribed := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		var e streamEvent
		for sc.Scan() {
			line := sc.Text()
			name, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch {
			case line == "":
				if e.data != "" {
					if e.event == "" {
						e.event = api.StreamEventOperation
					}
					c.events <- e
				}
				e = streamEvent{}
			case name == "" && value == "subscribed":
				close(subscribed)
			case name == "" && value == "heartbeat":
				c.events <- streamEvent{event: api.StreamEventHeartbeat}
			case name == "id":
				e.id = value
			case name == "event":
				e.event = value
			case name == "data":
				e.data += value
			}
		}
		c.ended <- sc.Err()
		close(c.events)
	}()
	select {
	case <-subscribed:
	case <-time.After(streamWait):
		t.Fatal("the stream did not open")
	}
	return c
}

// openWS subscribes to GET /ws/operations?query; it answers once the
// service has subscribed it.
func openWS(t *testing.T, s *service, query string, header http.Header) *streamClient {
	t.Helper()
	c, err := dialWS(s, query, header)
	if err != nil {
		t.Fatal(err)
	}
	sc := &streamClient{t: t, events: make(chan streamEvent, 20000), ended: make(chan error, 1), close: func() { c.CloseNow() }}
	t.Cleanup(sc.close)
	c.SetReadLimit(4 << 20)
	go func() {
		for {
			_, data, err := c.Read(context.Background())
			if err != nil {
				sc.ended <- err
				close(sc.events)
				return
			}
			var m api.StreamMessage
			if err := json.Unmarshal(data, &m); err != nil {
				t.Errorf("message %s is not a StreamMessage: %v", data, err)
				continue
			}
			e := streamEvent{event: m.Event, data: string(m.Data)}
			if m.ID != nil {
				e.id = m.ID.String()
			}
			sc.events <- e
		}
	}()
	return sc
}

func dialWS(s *service, query string, header http.Header) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), streamWait)
	defer cancel()
	u := "ws" + strings.TrimPrefix(s.srv.URL, "http") + api.PathWSOperations + "?" + query
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(resp.Body)
			return nil, fmt.Errorf("dial %s: %s %s: %w", u, resp.Status, body, err)
		}
		return nil, err
	}
	return c, nil
}

// transports opens a stream over SSE and over WebSocket.
var transports = []struct {
	name string
	open func(t *testing.T, s *service, query string) *streamClient
}{
	{"sse", func(t *testing.T, s *service, query string) *streamClient { return openSSE(t, s, query) }},
	{"websocket", func(t *testing.T, s *service, query string) *streamClient { return openWS(t, s, query, nil) }},
}

// listItems answers the list's items by id, as the list's bytes.
func (s *service) listItems() map[string]string {
	s.t.Helper()
	out := map[string]string{}
	for _, raw := range s.queryObjects("") {
		var item struct{ ID string }
		if err := json.Unmarshal(raw, &item); err != nil {
			s.t.Fatal(err)
		}
		out[item.ID] = string(raw)
	}
	return out
}

// TestStreamCarriesEveryAcceptedOperationOnce: over SSE and WebSocket,
// without a filter and with each of the list's filters, every operation
// the service accepts (single and batch POSTs) arrives once, as the list
// gives it, in the order accepted; rejected requests and retries send
// nothing.
func TestStreamCarriesEveryAcceptedOperationOnce(t *testing.T) {
	s := newService(t, serviceOpts{})
	const sessionB = "9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"
	filters := []struct {
		query string
		match func(o map[string]any) bool
	}{
		{"", func(map[string]any) bool { return true }},
		{"session_id=" + strings.ToUpper(sessionB), func(o map[string]any) bool { return o["session_id"] == sessionB }},
		{"tool_name=search", func(o map[string]any) bool { return o["tool_name"] == "search" }},
		{"operation_mode=symbol", func(o map[string]any) bool { return o["operation_mode"] == "symbol" }},
		{"tool_id=cursor", func(o map[string]any) bool { return o["tool_id"] == "cursor" }},
		{"tool_name=read&tool_id=cursor&unknown=ignored", func(o map[string]any) bool { return o["tool_name"] == "read" && o["tool_id"] == "cursor" }},
	}
	type sub struct {
		name   string
		client *streamClient
		match  func(map[string]any) bool
	}
	var subs []sub
	for _, tr := range transports {
		for _, f := range filters {
			subs = append(subs, sub{tr.name + " ?" + f.query, tr.open(t, s, f.query), f.match})
		}
	}

	bodies := []map[string]any{
		op(nil),
		op(map[string]any{"session_id": sessionB, "tool_name": "search", "operation_mode": "semantic", "tool_id": "cursor", "cache_hit": true}),
		op(map[string]any{"operation_mode": "symbol", "tool_id": "cursor", "cache_hit": false}),
	}
	cacheHit := []string{"null", "true", "false"} // of bodies; null for the rest
	var sent []string
	for _, b := range bodies {
		sent = append(sent, s.mustDo("POST", "/track/tool-operation", b, 200)["operation_id"].(string))
	}
	// Sent as bytes, so that what HTML characters look like is the
	// client's: the stream, as the list, answers them as sent.
	html := s.do("POST", "/track/tool-operation", `{"session_id":"`+sessionA+`","tool_name":"read","operation_mode":"full",`+
		`"parameters":{"q":"<a href='x'>&amp;</a>","esc":"\u003c"},"tokens_original":10,"tokens_actual":1,"response_time_ms":1,"tool_id":"cursor"}`)
	if html.status != 200 {
		t.Fatalf("POST: %d %s", html.status, html.body)
	}
	sent = append(sent, html.json(t)["operation_id"].(string))
	batch := s.mustDo("POST", "/track/tool-operations", map[string]any{"operations": []any{
		op(map[string]any{"session_id": sessionB, "operation_mode": "symbol", "file_path": nil}),
		op(map[string]any{"tool_name": "search", "operation_mode": "tri_index", "tool_id": "cursor"}),
	}}, 200)
	for _, id := range batch["operation_ids"].([]any) {
		sent = append(sent, id.(string))
	}
	// Rejected: nothing stored, nothing streamed.
	s.mustDo("POST", "/track/tool-operation", op(map[string]any{"tool_name": "write"}), 422)
	// A retry of an operation already stored: streamed once.
	keyed := func() string {
		r := s.do("POST", "/track/tool-operation", op(map[string]any{"tool_id": "retry"}), "Idempotency-Key", "k-1")
		if r.status != 200 {
			t.Fatalf("keyed POST: %d %s", r.status, r.body)
		}
		return r.json(t)["operation_id"].(string)
	}
	sent = append(sent, keyed())
	keyed()

	items := s.listItems()
	if len(items) != len(sent) {
		t.Fatalf("the list holds %d operations, want %d", len(items), len(sent))
	}
	// An event is the list's item and cache_hit, as a line of the export.
	wantData := map[string]string{}
	for i, id := range sent {
		hit := "null"
		if i < len(cacheHit) {
			hit = cacheHit[i]
		}
		wantData[id] = strings.TrimSuffix(items[id], "}") + `,"cache_hit":` + hit + "}"
	}
	for _, sb := range subs {
		var want []string
		for _, id := range sent {
			var item map[string]any
			if err := json.Unmarshal([]byte(items[id]), &item); err != nil {
				t.Fatal(err)
			}
			if sb.match(item) {
				want = append(want, id)
			}
		}
		got := make([]string, 0, len(want))
		for range want {
			e := sb.client.nextNonHeartbeat()
			if e.event != api.StreamEventOperation {
				t.Fatalf("%s: event %+v, want an operation", sb.name, e)
			}
			if e.data != wantData[e.id] {
				t.Errorf("%s: event %s carries\n%s\nwant the list's item and cache_hit\n%s", sb.name, e.id, e.data, wantData[e.id])
			}
			got = append(got, e.id)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v, want %v", sb.name, got, want)
		}
	}
	time.Sleep(200 * time.Millisecond)
	for _, sb := range subs {
		sb.client.quiet(time.Millisecond) // nothing twice
	}
	if got := subscribers(s); got != float64(len(subs)) {
		t.Errorf("subscribers gauge %v, want %d", got, len(subs))
	}
}

// prometheusValue reads one metric of the service's registry.
type prometheusValue struct {
	s      *service
	name   string
	labels map[string]string
}

func (p prometheusValue) value() float64 {
	mfs, err := p.s.reg.Gather()
	if err != nil {
		p.s.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != p.name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := p.labels[l.GetName()]; ok && want != l.GetValue() {
					continue metrics
				}
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			}
		}
	}
	p.s.t.Fatalf("no metric %s%v", p.name, p.labels)
	return 0
}

func dropped(s *service, reason string) float64 {
	return prometheusValue{s: s, name: "omnimemory_stream_subscribers_dropped_total", labels: map[string]string{"reason": reason}}.value()
}

func subscribers(s *service) float64 {
	return prometheusValue{s: s, name: "omnimemory_stream_subscribers"}.value()
}

func TestStreamRejectsBadParametersAndSubscribesNothing(t *testing.T) {
	s := newService(t, serviceOpts{})
	cases := []struct {
		query, lastEventID, detail string
	}{
		{"session_id=nope", "", "Invalid session_id"},
		{"tool_name=write", "", "Invalid tool_name"},
		{"operation_mode=fast", "", "Invalid operation_mode"},
		{"start_date=2025-01-01", "", "start_date does not apply to the live stream"},
		{"end_date=2025-01-01", "", "end_date does not apply"},
		{"limit=10", "", "limit does not apply"},
		{"offset=10", "", "offset does not apply"},
		{"last_event_id=42", "", "Invalid last_event_id"},
		{"", "42", "Invalid Last-Event-ID"},
	}
	for _, path := range []string{api.PathStreamOperations, api.PathWSOperations} {
		for _, tc := range cases {
			headers := []string{"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}
			if tc.lastEventID != "" {
				headers = append(headers, api.HeaderLastEventID, tc.lastEventID)
			}
			r := s.do("GET", path+"?"+tc.query, nil, headers...)
			if r.status != 400 || !strings.Contains(string(r.body), tc.detail) {
				t.Errorf("GET %s?%s (Last-Event-ID %q): %d %s; want 400 naming %q", path, tc.query, tc.lastEventID, r.status, r.body, tc.detail)
			}
		}
	}
	r := s.do("GET", api.PathWSOperations, nil)
	if r.status != http.StatusUpgradeRequired || r.header.Get("Upgrade") != "websocket" || !strings.Contains(string(r.body), "WebSocket upgrade") {
		t.Errorf("GET %s without an upgrade: %d %v %s", api.PathWSOperations, r.status, r.header, r.body)
	}
	if n := subscribers(s); n != 0 {
		t.Errorf("%v subscribers after refused requests", n)
	}
}

// TestStreamResumesAfterLastEventID: a stream resumes after the id in the
// Last-Event-ID header (SSE) or the last_event_id parameter (both), and
// says with a reset event when the id is one the ring of the latest
// 10,000 no longer keeps.
func TestStreamResumesAfterLastEventID(t *testing.T) {
	s := newService(t, serviceOpts{})
	var ids []string
	for i := range 4 {
		ids = append(ids, s.mustDo("POST", "/track/tool-operation", op(map[string]any{"tokens_original": 5000 + i, "tokens_prevented": nil}), 200)["operation_id"].(string))
	}
	resumed := []*streamClient{
		openSSE(t, s, "", api.HeaderLastEventID, ids[1]),
		openSSE(t, s, "last_event_id="+ids[1]),
		// The header, which EventSource sends on reconnecting, wins over a
		// parameter left in its URL.
		openSSE(t, s, "last_event_id="+ids[0], api.HeaderLastEventID, ids[1]),
		openWS(t, s, "last_event_id="+ids[1], nil),
	}
	for i, c := range resumed {
		if got := c.operations(2); !reflect.DeepEqual(got, ids[2:]) {
			t.Errorf("stream %d resumed after the second: %v, want %v", i, got, ids[2:])
		}
	}

	// Push the first operations out of the ring of 10,000.
	batch := make([]any, api.MaxBatchOperations)
	for i := range batch {
		batch[i] = op(map[string]any{"tool_id": "filler"})
	}
	for range api.StreamReplayOperations / api.MaxBatchOperations {
		s.mustDo("POST", "/track/tool-operations", map[string]any{"operations": batch}, 200)
	}
	for _, tr := range []struct {
		name string
		open func() *streamClient
	}{
		{"sse", func() *streamClient { return openSSE(t, s, "tool_id=claude-code", api.HeaderLastEventID, ids[1]) }},
		{"websocket", func() *streamClient { return openWS(t, s, "tool_id=claude-code&last_event_id="+ids[1], nil) }},
		{"sse, an id never streamed", func() *streamClient {
			return openSSE(t, s, "", api.HeaderLastEventID, "00000000-0000-4000-8000-000000000000")
		}},
	} {
		c := tr.open()
		e := c.nextNonHeartbeat()
		var reset api.StreamReset
		if e.event != api.StreamEventReset || json.Unmarshal([]byte(e.data), &reset) != nil ||
			reset.Reason != api.ResetLastEventUnknown || !strings.Contains(reset.Detail, "10000") {
			t.Errorf("%s: resuming after an operation pushed out of the ring: %+v, want a reset", tr.name, e)
		}
		// Then live.
		id := s.mustDo("POST", "/track/tool-operation", op(nil), 200)["operation_id"].(string)
		if got := c.operations(1); got[0] != id {
			t.Errorf("%s: after the reset: %v, want %s", tr.name, got, id)
		}
	}
}

// TestStreamHeartbeat: after the heartbeat interval without an event, a
// comment line (SSE) or a heartbeat message (WebSocket).
func TestStreamHeartbeat(t *testing.T) {
	s := newService(t, serviceOpts{stream: exporter.StreamOptions{Heartbeat: 50 * time.Millisecond}})
	for _, tr := range transports {
		c := tr.open(t, s, "")
		for range 3 {
			if e := c.next(); e.event != api.StreamEventHeartbeat {
				t.Errorf("%s: %+v, want a heartbeat", tr.name, e)
			}
		}
	}
}

// TestStreamOutlivesTheServersTimeouts: a stream stays open past the HTTP
// server's ReadTimeout and WriteTimeout and still carries operations.
//
// The POST after them goes on a new connection: the server has closed the
// client's idle ones by then (its idle timeout is the ReadTimeout), and a
// POST that the client's transport sends on one it has not yet seen closed
// fails with EOF, without a retry. The timeout leaves that POST, under the
// race detector on a busy machine, time to be answered.
func TestStreamOutlivesTheServersTimeouts(t *testing.T) {
	const timeout = time.Second
	s := newService(t, serviceOpts{serverTimeout: timeout, stream: exporter.StreamOptions{Heartbeat: 100 * time.Millisecond}})
	clients := []*streamClient{openSSE(t, s, ""), openWS(t, s, "", nil)}
	time.Sleep(4 * timeout)
	http.DefaultClient.CloseIdleConnections()
	id := s.mustDo("POST", "/track/tool-operation", op(nil), 200)["operation_id"].(string)
	for i, c := range clients {
		if got := c.operations(1); got[0] != id {
			t.Errorf("stream %d, past the server's timeouts: %v, want %s", i, got, id)
		}
	}
}

// stalledSSE opens GET /stream/operations on a raw connection and never
// reads from it; it answers once the service counts the subscriber.
func stalledSSE(t *testing.T, s *service) net.Conn {
	t.Helper()
	before := subscribers(s)
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(16 << 10) // fills sooner
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", api.PathStreamOperations)
	waitFor(t, func() bool { return subscribers(s) == before+1 })
	return conn
}

// postUntil posts batches of operations until cond holds, failing when a
// POST fails or cond does not hold after max batches; it waits pause
// after each batch, and answers the operations posted.
func postUntil(t *testing.T, s *service, max int, pause time.Duration, cond func() bool) int {
	t.Helper()
	batch := make([]any, 1000)
	for i := range batch {
		batch[i] = op(map[string]any{"parameters": map[string]any{"pad": strings.Repeat("x", 200)}})
	}
	posted := 0
	for range max {
		if cond() {
			return posted
		}
		s.mustDo("POST", "/track/tool-operations", map[string]any{"operations": batch}, 200)
		posted += len(batch)
		time.Sleep(pause)
	}
	if !cond() {
		t.Fatalf("after %d operations the condition does not hold (lagging %v, write_timeout %v)", posted, dropped(s, exporter.DropLagging), dropped(s, exporter.DropWriteTimeout))
	}
	return posted
}

// TestStreamDropsASlowReader: a subscriber that never reads is
// disconnected and counted, once it falls a whole ring behind
// (reason lagging) or once a write waits for it past the write timeout
// (reason write_timeout), while every POST goes on being accepted and a
// reading subscriber gets every operation.
func TestStreamDropsASlowReader(t *testing.T) {
	t.Run("lagging", func(t *testing.T) {
		s := newService(t, serviceOpts{streamWriteTimeout: time.Minute})
		reader := openSSE(t, s, "")
		conn := stalledSSE(t, s)
		posted := postUntil(t, s, 200, 0, func() bool { return dropped(s, exporter.DropLagging) == 1 })
		t.Logf("dropped after %d operations", posted)
		if got := reader.operations(posted); len(got) != posted {
			t.Errorf("the reader got %d of %d operations", len(got), posted)
		}
		if n := subscribers(s); n != 1 {
			t.Errorf("%v subscribers, want the reader only", n)
		}
		// The stalled request ends at once, not after the write timeout
		// of a minute.
		waitFor(t, func() bool {
			return prometheusValue{s: s, name: "omnimemory_http_requests_total", labels: map[string]string{"route": api.PathStreamOperations}}.value() == 1
		})
		conn.Close()
		// A stream is counted but not timed: it would blur the latency of
		// the requests that answer.
		mfs, _ := s.reg.Gather()
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if mf.GetName() == "omnimemory_http_request_duration_seconds" && l.GetValue() == api.PathStreamOperations {
						t.Errorf("the stream's duration is observed: %v", m)
					}
				}
			}
		}
	})
	t.Run("write timeout", func(t *testing.T) {
		s := newService(t, serviceOpts{streamWriteTimeout: 200 * time.Millisecond})
		stalledSSE(t, s)
		// A pause between batches: the write's wait (200 ms) ends before
		// the ring (10,000) passes the subscriber, however fast the
		// machine commits.
		postUntil(t, s, 100, 50*time.Millisecond, func() bool { return dropped(s, exporter.DropWriteTimeout) == 1 })
		waitFor(t, func() bool { return subscribers(s) == 0 })
		if n := dropped(s, exporter.DropLagging); n != 0 {
			t.Errorf("dropped{lagging} = %v", n)
		}
	})
}

// TestStreamBoundsItsSubscribers: past the bound a subscription is a 503
// with Retry-After, on either transport; a place freed is taken again.
func TestStreamBoundsItsSubscribers(t *testing.T) {
	s := newService(t, serviceOpts{stream: exporter.StreamOptions{MaxSubscribers: 1}})
	first := openSSE(t, s, "")
	r := s.do("GET", api.PathStreamOperations, nil)
	if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "Too many stream subscribers") {
		t.Errorf("a subscriber past the bound: %d %v %s", r.status, r.header, r.body)
	}
	if _, err := dialWS(s, "", nil); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("a WebSocket past the bound: %v, want a 503", err)
	}
	first.close()
	waitFor(t, func() bool { return subscribers(s) == 0 })
	openWS(t, s, "", nil)
}

// TestStreamAuth: with a token configured both endpoints want it, in the
// Authorization header or (browsers cannot set headers on EventSource or
// WebSocket) the access_token parameter; the parameter opens nothing
// else.
func TestStreamAuth(t *testing.T) {
	s := newService(t, serviceOpts{token: "stream-secret"})
	for _, path := range []string{api.PathStreamOperations, api.PathWSOperations} {
		for _, q := range []string{"", "access_token=wrong"} {
			r := s.do("GET", path+"?"+q, nil)
			if r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("GET %s?%s: %d, want 401", path, q, r.status)
			}
		}
	}
	if r := s.do("GET", api.PathStreamOperations, nil); !strings.Contains(string(r.body), "access_token") {
		t.Errorf("the 401 of the stream does not name access_token: %s", r.body)
	}
	if r := s.do("GET", "/metrics/tool-operations?access_token=stream-secret", nil); r.status != 401 {
		t.Errorf("access_token opened the list: %d", r.status)
	}
	clients := []*streamClient{
		openSSE(t, s, "", "Authorization", "Bearer stream-secret"),
		openSSE(t, s, "access_token=stream-secret"),
		openWS(t, s, "access_token=stream-secret", nil),
		openWS(t, s, "", http.Header{"Authorization": {"Bearer stream-secret"}}),
	}
	r := s.do("POST", "/track/tool-operation", op(nil), "Authorization", "Bearer stream-secret")
	if r.status != 200 {
		t.Fatalf("POST: %d %s", r.status, r.body)
	}
	id := r.json(t)["operation_id"].(string)
	for i, c := range clients {
		if got := c.operations(1); got[0] != id {
			t.Errorf("client %d: %v", i, got)
		}
	}
}

// TestWebSocketOrigins: a page of another origin opens the WebSocket only
// when OMNIMEMORY_CORS_ORIGINS allows it; the service's own pages always.
func TestWebSocketOrigins(t *testing.T) {
	s := newService(t, serviceOpts{origins: []string{"http://localhost:8004"}})
	host := strings.TrimPrefix(s.srv.URL, "http://")
	for _, tc := range []struct {
		origin string
		ok     bool
	}{{"http://localhost:8004", true}, {"http://" + host, true}, {"http://evil.example", false}} {
		c, err := dialWS(s, "", http.Header{"Origin": {tc.origin}})
		if tc.ok != (err == nil) {
			t.Errorf("origin %s: %v, want allowed %v", tc.origin, err, tc.ok)
		}
		if err == nil {
			c.CloseNow()
		} else if !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "OMNIMEMORY_CORS_ORIGINS") {
			t.Errorf("origin %s refused with %v", tc.origin, err)
		}
	}
}

// TestStreamEndsOnShutdown: ending the streams (the first step of the
// binary's shutdown) closes every subscriber's connection.
func TestStreamEndsOnShutdown(t *testing.T) {
	s := newService(t, serviceOpts{})
	clients := []*streamClient{openSSE(t, s, ""), openWS(t, s, "", nil)}
	s.svc.EndStreams()
	for i, c := range clients {
		select {
		case _, ok := <-c.events:
			if ok {
				t.Errorf("client %d: an event after the end", i)
			}
		case <-time.After(streamWait):
			t.Errorf("client %d: the stream did not end", i)
		}
	}
	if err := <-clients[1].ended; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("websocket closed with %v, want going away", err)
	}
	if r := s.do("GET", api.PathStreamOperations, nil); r.status != 503 {
		t.Errorf("a subscriber after the end: %d", r.status)
	}
}
