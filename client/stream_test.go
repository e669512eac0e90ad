package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client"
	"github.com/omnimemory/omnimemory-metrics/client/api"
)

// streamed follows StreamOperations in a goroutine and gathers what fn is
// handed.
type streamed struct {
	mu   sync.Mutex
	ops  []client.ExportedOperation
	more chan struct{}
	done chan error
}

func follow(ctx context.Context, c *client.Client, q client.StreamQuery) *streamed {
	s := &streamed{more: make(chan struct{}, 1), done: make(chan error, 1)}
	go func() {
		s.done <- c.StreamOperations(ctx, q, func(op client.ExportedOperation) error {
			s.mu.Lock()
			s.ops = append(s.ops, op)
			s.mu.Unlock()
			select {
			case s.more <- struct{}{}:
			default:
			}
			return nil
		})
	}()
	return s
}

// wait answers the ids handed over once there are n, failing after 10 s.
func (s *streamed) wait(t *testing.T, n int) []uuid.UUID {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		ids := make([]uuid.UUID, len(s.ops))
		for i, op := range s.ops {
			ids[i] = op.ID
		}
		s.mu.Unlock()
		if len(ids) >= n {
			return ids
		}
		select {
		case <-s.more:
		case err := <-s.done:
			t.Fatalf("StreamOperations ended after %d operations: %v", len(ids), err)
		case <-deadline:
			t.Fatalf("%d operations streamed within 10s, want %d", len(ids), n)
		}
	}
}

// subscribed waits until the service counts n stream subscribers
// (token: the service's, when it wants one).
func subscribed(t *testing.T, base, token string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), "\nomnimemory_stream_subscribers "+strconv.Itoa(n)+"\n") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service does not count %d stream subscribers", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func track(t *testing.T, c *client.Client, toolID string) uuid.UUID {
	t.Helper()
	res, err := c.TrackOperation(context.Background(), client.Operation{SessionID: uuid.New(), ToolID: toolID,
		ToolName: client.ToolSearch, OperationMode: client.ModeSemantic, TokensOriginal: 900, TokensActual: 90, ResponseTimeMs: 3})
	if err != nil {
		t.Fatal(err)
	}
	return res.OperationID
}

// TestStreamOperations: the operations the filter selects, once, in order,
// as QueryOperations lists them; fn's error ends the stream with it.
func TestStreamOperations(t *testing.T) {
	svc := newService(t, "stream-token")
	c, err := client.New(svc.URL, client.WithToken("stream-token"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := follow(ctx, c, client.StreamQuery{ToolID: "streamed", ToolName: client.ToolSearch})
	subscribed(t, svc.URL, "stream-token", 1)
	var want []uuid.UUID
	for i := range 6 {
		tool := "streamed"
		if i%2 == 1 {
			tool = "other"
		}
		if id := track(t, c, tool); tool == "streamed" {
			want = append(want, id)
		}
	}
	if got := s.wait(t, 3); !slices.Equal(got, want) {
		t.Fatalf("streamed %v, want %v", got, want)
	}
	page, err := c.QueryOperations(ctx, client.OperationQuery{ToolID: "streamed"})
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	for _, op := range s.ops {
		i := slices.IndexFunc(page.Operations, func(o client.StoredOperation) bool { return o.ID == op.ID })
		if i < 0 || !op.CreatedAt.Equal(page.Operations[i].CreatedAt) || op.TokensPrevented != page.Operations[i].TokensPrevented ||
			string(op.Parameters) != string(page.Operations[i].Parameters) || op.SessionID != page.Operations[i].SessionID {
			t.Errorf("streamed %+v, listed %+v", op, page.Operations[max(i, 0)])
		}
	}
	s.mu.Unlock()

	// Resuming after the first: the second comes, and fn's error ends the
	// stream with it.
	stop := errors.New("enough")
	var handed uuid.UUID
	err = c.StreamOperations(ctx, client.StreamQuery{ToolID: "streamed", After: want[0]}, func(op client.ExportedOperation) error {
		handed = op.ID
		return stop
	})
	if handed != want[1] {
		t.Errorf("resumed after the first: %s, want %s", handed, want[1])
	}
	if !errors.Is(err, stop) {
		t.Errorf("fn's error: StreamOperations answered %v", err)
	}

	// A refusal no retry changes ends it at once.
	anon, _ := client.New(svc.URL)
	var ae *client.APIError
	if err := anon.StreamOperations(ctx, client.StreamQuery{}, func(client.ExportedOperation) error { return nil }); !errors.As(err, &ae) || ae.StatusCode != 401 {
		t.Errorf("without the token: %v, want a 401", err)
	}
	if err := c.StreamOperations(ctx, client.StreamQuery{ToolName: "write"}, func(client.ExportedOperation) error { return nil }); !errors.As(err, &ae) || ae.StatusCode != 400 {
		t.Errorf("a bad filter: %v, want a 400", err)
	}
}

// cutter is a TCP proxy to a service whose connections the test can cut.
type cutter struct {
	URL   string
	mu    sync.Mutex
	conns []net.Conn
}

func newCutter(t *testing.T, target string) *cutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c := &cutter{URL: "http://" + ln.Addr().String()}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target[len("http://"):])
			if err != nil {
				in.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return c
}

// cut closes every connection through the proxy.
func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

// TestStreamOperationsResumes: a lost connection is reopened with
// Last-Event-ID, and what was accepted meanwhile comes once; an id the
// service no longer keeps is a reset, handed to OnReset or answered.
func TestStreamOperationsResumes(t *testing.T) {
	svc := newService(t, "")
	direct, err := client.New(svc.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutter(t, svc.URL)
	c, err := client.New(proxy.URL, client.WithRetry(client.RetryPolicy{InitialBackoff: 200 * time.Millisecond, Jitter: -1}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := follow(ctx, c, client.StreamQuery{ToolID: "resumed"})
	subscribed(t, svc.URL, "", 1)
	first := track(t, direct, "resumed")
	s.wait(t, 1)

	proxy.cut()
	subscribed(t, svc.URL, "", 0)
	missed := []uuid.UUID{track(t, direct, "resumed"), track(t, direct, "resumed")}
	got := s.wait(t, 3)
	if want := append([]uuid.UUID{first}, missed...); !slices.Equal(got, want) {
		t.Fatalf("across the cut: %v, want %v", got, want)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(s.wait(t, 3)); n != 3 {
		t.Errorf("%d operations streamed, want each of 3 once", n)
	}

	// Resuming after an id the service never streamed.
	var resets []api.StreamReset
	r := follow(ctx, direct, client.StreamQuery{ToolID: "resumed", After: uuid.New(), OnReset: func(reset api.StreamReset) error {
		resets = append(resets, reset)
		return nil
	}})
	subscribed(t, svc.URL, "", 2)
	after := track(t, direct, "resumed")
	if got := r.wait(t, 1); got[0] != after || len(resets) != 1 || resets[0].Reason != api.ResetLastEventUnknown {
		t.Errorf("after a reset: %v, resets %+v", got, resets)
	}
	var re *client.StreamResetError
	err = direct.StreamOperations(ctx, client.StreamQuery{After: uuid.New()}, func(client.ExportedOperation) error { return nil })
	if !errors.As(err, &re) || re.Reset.Reason != api.ResetLastEventUnknown {
		t.Errorf("a reset without OnReset: %v", err)
	}
}
