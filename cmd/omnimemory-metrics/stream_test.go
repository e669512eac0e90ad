package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
)

// sseIDs follows GET /stream/operations of a service: the ids of the
// operation events it sends, as they come.
type sseIDs struct {
	ids  chan string
	done chan struct{} // closed when the stream ends
}

func openStream(t *testing.T, base string) *sseIDs {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/stream/operations", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		cancel()
		t.Fatalf("GET %s/stream/operations: %s", base, resp.Status)
	}
	s := &sseIDs{ids: make(chan string, 10000), done: make(chan struct{})}
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-s.done
	})
	subscribed := make(chan struct{})
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			switch line := sc.Text(); {
			case line == ": subscribed":
				close(subscribed)
			case strings.HasPrefix(line, "id: "):
				s.ids <- strings.TrimPrefix(line, "id: ")
			}
		}
	}()
	select {
	case <-subscribed:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not open")
	}
	return s
}

// next answers the next id within d, or "" when none came.
func (s *sseIDs) next(d time.Duration) string {
	select {
	case id := <-s.ids:
		return id
	case <-time.After(d):
		return ""
	}
}

// until reads ids until want, within d; it answers how many times want
// came and every other id read.
func (s *sseIDs) until(want string, d time.Duration) (found bool, others []string) {
	deadline := time.Now().Add(d)
	for {
		id := s.next(time.Until(deadline))
		switch id {
		case "":
			return false, others
		case want:
			return true, others
		}
		others = append(others, id)
	}
}

// TestStreamAcrossPostgresReplicas: two replicas of the service on one
// PostgreSQL database. A subscriber of either replica gets every
// operation posted to either, once, within a second of its 200.
func TestStreamAcrossPostgresReplicas(t *testing.T) {
	url := realtools.SharedPostgres(t).NewDatabase(t)
	a := startInProcess(t, []string{"--listen", "127.0.0.1:0"}, postgresVars(url))
	b := startInProcess(t, []string{"--listen", "127.0.0.1:0"}, postgresVars(url))
	onA, onB := openStream(t, a), openStream(t, b)

	// Both replicas' feeds listen once an operation posted to each has
	// reached the other (they start listening as the service starts).
	for _, r := range []struct {
		to   string
		from *sseIDs
	}{{a, onB}, {b, onA}} {
		for probe := 0; ; probe++ {
			id, code, err := postOperation(http.DefaultClient, r.to, 1000+probe)
			if err != nil || code != 200 {
				t.Fatalf("probe: %d %v", code, err)
			}
			if found, _ := r.from.until(id, 500*time.Millisecond); found {
				break
			}
			if probe == 20 {
				t.Fatal("the replicas' feeds do not listen")
			}
		}
	}
	drain := func(s *sseIDs) {
		for s.next(300*time.Millisecond) != "" {
		}
	}
	drain(onA)
	drain(onB)

	var slowest time.Duration
	for i, to := range []string{a, b, a, b} {
		id, code, err := postOperation(http.DefaultClient, to, 5000+i)
		acked := time.Now()
		if err != nil || code != 200 {
			t.Fatalf("POST to %s: %d %v", to, code, err)
		}
		for name, s := range map[string]*sseIDs{"a": onA, "b": onB} {
			found, others := s.until(id, time.Second)
			took := time.Since(acked)
			if !found || len(others) > 0 {
				t.Fatalf("replica %s's stream: operation %s posted to %s found %v within a second of its 200, with %v before it", name, id, to, found, others)
			}
			slowest = max(slowest, took)
		}
	}
	t.Logf("slowest event after its 200, across both replicas: %v", slowest.Round(time.Microsecond))

	// A batch to one replica: every operation once on both streams, in
	// order.
	body := `{"operations":[` + strings.Repeat(`{"session_id":"123e4567-e89b-12d3-a456-426614174000","tool_name":"search","operation_mode":"semantic",`+
		`"tokens_original":900,"tokens_actual":90,"response_time_ms":2,"tool_id":"cursor"},`, 499) +
		`{"session_id":"123e4567-e89b-12d3-a456-426614174000","tool_name":"read","operation_mode":"full","tokens_original":9,"tokens_actual":1,"response_time_ms":2,"tool_id":"cursor"}]}`
	code, _, out := postJSON(t, b+"/track/tool-operations", json.RawMessage(body))
	if code != 200 {
		t.Fatalf("batch: %d %v", code, out)
	}
	var want []string
	for _, id := range out["operation_ids"].([]any) {
		want = append(want, id.(string))
	}
	for name, s := range map[string]*sseIDs{"a": onA, "b": onB} {
		var got []string
		for len(got) < len(want) {
			id := s.next(5 * time.Second)
			if id == "" {
				break
			}
			got = append(got, id)
		}
		if extra := s.next(300 * time.Millisecond); extra != "" {
			got = append(got, extra)
		}
		if !slices.Equal(got, want) {
			t.Errorf("replica %s's stream: %d ids for the batch of %d, in order: %v", name, len(got), len(want), slices.Equal(got[:min(len(got), len(want))], want[:min(len(got), len(want))]))
		}
	}
}

// TestShutdownEndsStreams: a service with subscribers shuts down at once
// and cleanly; their streams end.
func TestShutdownEndsStreams(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan int, 1)
	var stderr syncBuffer
	vars := map[string]string{"SQLITE_DB_PATH": filepath.Join(t.TempDir(), "m.db")}
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0"}, testProc(vars, io.Discard, &stderr, nil), ready)
	}()
	base := "http://" + <-ready
	streams := []*sseIDs{openStream(t, base), openStream(t, base)}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the service did not stop with streams open")
	}
	for i, s := range streams {
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Errorf("stream %d did not end", i)
		}
	}
}
