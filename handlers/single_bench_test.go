package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/handlers"
	"github.com/omnimemory/omnimemory-metrics/internal/bare"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

// BenchmarkSingleOperation measures POST /track/tool-operation, one
// operation per request from 16 concurrent keep-alive clients in this
// process, through the whole HTTP stack: "bare" is internal/bare's handler
// (a net/http handler that decodes the same JSON into a struct and answers
// the same JSON, omnimemory-load's bare-server), "service" the service on
// the embedded store (durable: every 200 after its commit), and
// "service-no-commit" the same service whose store answers every write at
// once without storing it: the whole stack (HTTP, decoding, validation,
// instrumentation, the hand-off to the writer and its group commit) but
// the store's commit, which the difference to "service" measures. Beside
// ns/op it is the harness for an instruction count per operation and per
// component:
//
//	go test -c -o h.test ./handlers
//	GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind h.test \
//	  -test.run='^$' -test.bench='SingleOperation/service' -test.benchtime=4000x
//
// (the difference of two such runs, 2000x and 4000x, divided by 2000 is
// the count of one operation without the setup; callgrind_annotate
// --inclusive=yes splits it by function).
func BenchmarkSingleOperation(b *testing.B) {
	body, err := json.Marshal(op(map[string]any{"parameters": map[string]any{"symbol": "Handler"}}))
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, h http.Handler) {
		srv := httptest.NewServer(h)
		defer srv.Close()
		c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		defer c.CloseIdleConnections()
		b.SetParallelism(8) // 16 clients on 2 cores
		b.ResetTimer()
		postAll(b, c, srv.URL+api.PathTrackOperation, func() []byte { return body })
	}
	b.Run("bare", func(b *testing.B) { run(b, bare.Handler()) })
	b.Run("service", func(b *testing.B) { run(b, embeddedService(b)) })
	b.Run("service-no-commit", func(b *testing.B) { run(b, stackOn(b, noCommit{openEmbedded(b)})) })
}

// noCommit is a store whose writes are answered at once and stored
// nowhere; everything else is the store it wraps.
type noCommit struct{ tsdb.Store }

func (noCommit) WriteOperations(context.Context, []tsdb.Operation) error { return nil }

// openEmbedded opens a new embedded store, closed with b.
func openEmbedded(b *testing.B) *sqlite.Store {
	store, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "m.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	return store
}

// stackOn answers the service's handler on store, its service closed
// with b (before the store: cleanups run last first).
func stackOn(b *testing.B, store tsdb.Store) http.Handler {
	h, svc := newStack(store, exporter.Options{Registerer: prometheus.NewRegistry()}, handlers.Options{})
	b.Cleanup(func() { _ = svc.Close(context.Background()) })
	return h
}

// embeddedService answers the service's handler on a new embedded store,
// closed with b.
func embeddedService(b *testing.B) http.Handler { return stackOn(b, openEmbedded(b)) }

// postAll posts body() to url from b's parallel clients until b.N, and
// fails b on an error or an answer other than 200.
func postAll(b *testing.B, c *http.Client, url string, body func() []byte) {
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Post(url, "application/json", bytes.NewReader(body()))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("%s", resp.Status)
				return
			}
		}
	})
}

// BenchmarkBatchOperations measures POST /track/tool-operations through the
// whole HTTP stack on the embedded store, as omnimemory-load's batch phase
// sends it: 4 concurrent clients, 5,000 operations a request (of 50
// sessions and 2,500 files, created_at in the last hour); ops/s is the
// figure to read, and the harness of a CPU profile of batch ingest
// (-cpuprofile).
func BenchmarkBatchOperations(b *testing.B) {
	const size = api.MaxBatchOperations
	now := time.Now().UTC()
	bodies := make([][]byte, 8)
	for i := range bodies {
		ops := make([]map[string]any, size)
		for j := range ops {
			n := i*size + j
			ops[j] = op(map[string]any{
				"session_id":     fmt.Sprintf("3f1c2a9e-5b7d-4e21-9a4f-%012d", n%50),
				"operation_mode": api.OperationModes[n%4],
				"parameters":     map[string]any{"symbol": "Handler", "n": n},
				"file_path":      fmt.Sprintf("src/pkg%d/file%d.go", n%25, n%2500),
				"created_at":     now.Add(-time.Hour + time.Duration(n)*time.Millisecond/10).Format(time.RFC3339Nano),
			})
		}
		body, err := json.Marshal(map[string]any{"operations": ops})
		if err != nil {
			b.Fatal(err)
		}
		bodies[i] = body
	}
	h := embeddedService(b)
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := &http.Client{Timeout: time.Minute}
	defer c.CloseIdleConnections()
	var next atomic.Int64
	b.SetParallelism(2) // 4 clients on 2 cores
	b.ResetTimer()
	postAll(b, c, srv.URL+api.PathTrackOperations, func() []byte {
		return bodies[next.Add(1)%int64(len(bodies))]
	})
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "ops/s")
}
