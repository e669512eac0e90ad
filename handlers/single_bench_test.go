package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/handlers"
	"github.com/omnimemory/omnimemory-metrics/internal/bare"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

// BenchmarkSingleOperation measures POST /track/tool-operation, one
// operation per request from 16 concurrent keep-alive clients in this
// process, through the whole HTTP stack: "bare" is internal/bare's handler
// (a net/http handler that decodes the same JSON into a struct and answers
// the same JSON, omnimemory-load's bare-server), "service" the service on
// the embedded store (durable: every 200 after its commit). Beside
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
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := c.Post(srv.URL+api.PathTrackOperation, "application/json", bytes.NewReader(body))
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
	b.Run("bare", func(b *testing.B) { run(b, bare.Handler()) })
	b.Run("service", func(b *testing.B) {
		store, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "m.db"), nil)
		if err != nil {
			b.Fatal(err)
		}
		h, svc := newStack(store, exporter.Options{Registerer: prometheus.NewRegistry()}, handlers.Options{})
		defer func() {
			_ = svc.Close(context.Background())
			_ = store.Close()
		}()
		run(b, h)
	})
}
