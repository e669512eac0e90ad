package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// streamResult is the live stream measured beside single-operation load:
// one Server-Sent Events subscriber of GET /stream/operations, every
// acknowledged operation's event timed from its 200.
type streamResult struct {
	Acked      int64 `json:"acked"`      // operations answered 200
	Received   int64 `json:"received"`   // of them, with an event
	Duplicates int64 `json:"duplicates"` // events of an operation seen before
	// Latency runs from the 200 to the event (0 when the event came
	// first: the stream may beat the answer).
	Latency latencyStats `json:"latency"`
}

// streamGrace is how long, after the load, the subscriber may take to
// deliver the events still on their way.
const streamGrace = 5 * time.Second

// runStream subscribes to the service's stream at base, sends single
// operations (bodies, in turn) on conns connections for dur, and times the
// event of every operation answered 200.
func runStream(ctx context.Context, base string, conns int, dur time.Duration, bodies [][]byte, progress io.Writer, label string) (streamResult, error) {
	var res streamResult
	// The subscription lasts the phase and the grace, and at most a
	// minute more.
	sctx, cancel := context.WithTimeout(ctx, dur+streamGrace+time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, base+"/stream/operations", nil)
	if err != nil {
		return res, err
	}
	// No client timeout: sctx bounds the subscription.
	sub := newClient(1, 0)
	defer sub.CloseIdleConnections()
	resp, err := sub.Do(req)
	if err != nil {
		return res, fmt.Errorf("subscribe: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return res, fmt.Errorf("subscribe: %s", resp.Status)
	}

	var (
		mu      sync.Mutex
		events  = map[string]time.Time{} // operation id: first event's arrival
		acks    = map[string]time.Time{} // operation id: its 200
		readErr = make(chan error, 1)
	)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		var id string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				id = strings.TrimPrefix(line, "id: ")
			case line == "" && id != "":
				now := time.Now()
				mu.Lock()
				if _, seen := events[id]; seen {
					res.Duplicates++
				} else {
					events[id] = now
				}
				mu.Unlock()
				id = ""
			}
		}
		readErr <- sc.Err()
	}()

	c := newClient(conns, 30*time.Second)
	defer c.CloseIdleConnections()
	url := base + "/track/tool-operation"
	load := runLoad(ctx, loadSpec{
		name: label, conns: conns, maxRequests: 1 << 62, maxTime: dur, opsPerReq: 1,
		maxErrors: 1000, progress: progress, spinner: true,
		send: func(ctx context.Context, _ int, seq int64) (int, error) {
			b, err := do(ctx, c, http.MethodPost, url, "application/json", bodies[seq%int64(len(bodies))], http.StatusOK)
			if err != nil {
				return 0, err
			}
			at := time.Now()
			var a struct {
				OperationID string `json:"operation_id"`
			}
			if err := json.Unmarshal(b, &a); err != nil || a.OperationID == "" {
				return 0, fmt.Errorf("unexpected answer %.200s", b)
			}
			mu.Lock()
			acks[a.OperationID] = at
			mu.Unlock()
			return 1, nil
		},
	})
	if load.Errors > 0 {
		return res, fmt.Errorf("%d single operations failed beside the stream: %s", load.Errors, load.FirstError)
	}

	// The events still on their way.
	deadline := time.Now().Add(streamGrace)
	for {
		mu.Lock()
		missing := 0
		for id := range acks {
			if _, ok := events[id]; !ok {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-readErr // ends with the cancelled body

	mu.Lock()
	defer mu.Unlock()
	lat := make([]time.Duration, 0, len(acks))
	for id, at := range acks {
		ev, ok := events[id]
		if !ok {
			continue
		}
		lat = append(lat, max(ev.Sub(at), 0))
	}
	res.Acked = int64(len(acks))
	res.Received = int64(len(lat))
	res.Latency = summarize(lat)
	return res, ctx.Err()
}
