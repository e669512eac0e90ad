package influx

import (
	"context"
	"encoding/json"
	"math/rand"
	"reflect"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/internal/testinflux"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// TestTrendShapesAgree: the grouped Trend query (used on 1.x) and the
// per-series one (used on 2.x) answer the same on the same data.
func TestTrendShapesAgree(t *testing.T) {
	srv := testinflux.Shared(t)
	s, err := Open(context.Background(), Config{URL: srv.URL, Bucket: srv.NewBucket(t), OutboxDir: t.TempDir() + "/ob"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := rand.New(rand.NewSource(7))
	from := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
	var ops []tsdb.Operation
	for range 600 {
		ops = append(ops, tsdb.Operation{
			ID: uuid.New(), SessionID: uuid.New(), ToolName: api.ToolNames[r.Intn(2)],
			OperationMode: api.OperationModes[r.Intn(6)], Parameters: json.RawMessage(`{}`),
			TokensOriginal: r.Int63n(1000), TokensActual: r.Int63n(1000), TokensPrevented: r.Int63n(1000) - 500,
			ResponseTimeMs: float64(r.Intn(1000)) / 4, ToolID: []string{"a", "b"}[r.Intn(2)],
			CreatedAt: from.Add(time.Duration(r.Int63n(int64(72*time.Hour/time.Microsecond))) * time.Microsecond),
		})
	}
	if err := s.WriteOperations(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		start := from.Add(time.Duration(r.Int63n(int64(48 * time.Hour))))
		w := tsdb.Window{Start: &start, End: start.Add(time.Duration(r.Int63n(int64(48 * time.Hour))))}
		if i%3 == 0 {
			w.ToolID = "a"
		}
		if i == 9 {
			w.Start = nil
		}
		for _, step := range []tsdb.Step{tsdb.Hourly, tsdb.Daily} {
			s.perSeries.Store(false)
			grouped, err := s.Trend(context.Background(), w, step)
			if err != nil {
				t.Fatal(err)
			}
			s.perSeries.Store(true)
			perSeries, err := s.Trend(context.Background(), w, step)
			if err != nil {
				t.Fatal(err)
			}
			if len(grouped) == 0 || !reflect.DeepEqual(grouped, perSeries) {
				t.Fatalf("window %d step %v: grouped %d buckets, per series %d buckets, or they differ", i, step, len(grouped), len(perSeries))
			}
		}
	}
}
