package handlers_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/handlers"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

// BenchmarkIngestWithStreamSubscribers measures POST /track/tool-operations
// (batches of 1,000 on the embedded store, through the whole HTTP stack)
// in turns of phases of 5 batches: with no stream subscriber, with a
// subscriber that never reads (a new one each phase: the service drops
// one that falls a ring behind), and with one that reads everything.
// Taking turns keeps a machine whose load drifts from favouring one of
// them. ops/s of each and the ratios to none are the figures: a slow
// reader must not slow ingest.
func BenchmarkIngestWithStreamSubscribers(b *testing.B) {
	store, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "m.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	h, svc := newStack(store, exporter.Options{Registerer: prometheus.NewRegistry()}, handlers.Options{})
	srv := httptest.NewServer(h)
	defer func() {
		svc.EndStreams()
		srv.Close()
		_ = svc.Close(context.Background())
		_ = store.Close()
	}()
	items := make([]any, 1000)
	for i := range items {
		items[i] = op(map[string]any{"parameters": map[string]any{"symbol": fmt.Sprintf("Handler%d", i)}})
	}
	body, err := json.Marshal(map[string]any{"operations": items})
	if err != nil {
		b.Fatal(err)
	}

	modes := []string{"none", "stalled", "reading"}
	const phase = 5 // batches
	spent := map[string]time.Duration{}
	batches := map[string]int{}
	var end func() // ends the phase's subscriber
	i := 0
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		mode := modes[i/phase%len(modes)]
		if i%phase == 0 {
			if end != nil {
				end()
			}
			end = subscriberFor(b, srv.URL, mode)
		}
		i++
		start := time.Now()
		resp, err := http.Post(srv.URL+api.PathTrackOperations, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		spent[mode] += time.Since(start)
		batches[mode]++
		if resp.StatusCode != 200 {
			b.Fatalf("POST: %s", resp.Status)
		}
	}
	if end != nil {
		end()
	}
	rate := func(mode string) float64 { return float64(batches[mode]*len(items)) / spent[mode].Seconds() }
	for _, mode := range modes {
		if batches[mode] > 0 {
			b.ReportMetric(rate(mode), "ops/s-"+mode)
		}
	}
	if batches["stalled"] > 0 && batches["none"] > 0 {
		b.ReportMetric(rate("stalled")/rate("none"), "stalled/none")
	}
	if batches["reading"] > 0 && batches["none"] > 0 {
		b.ReportMetric(rate("reading")/rate("none"), "reading/none")
	}
}

// subscriberFor opens the phase's subscriber of mode and answers how to
// end it: none, one that never reads, one that reads every event.
func subscriberFor(b *testing.B, base, mode string) func() {
	switch mode {
	case "stalled":
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", api.PathStreamOperations)
		return func() { c.Close() }
	case "reading":
		resp, err := http.Get(base + api.PathStreamOperations)
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
			}
		}()
		return func() {
			resp.Body.Close()
			<-done
		}
	}
	return func() {}
}
