package influx

import (
	"context"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// TestAggregatesUseInfluxQLOnTheTestServer: the influxd the tests run says
// it is 1.x, so a store that has not written yet learns it before its first
// aggregate and reads with InfluxQL: the conformance suite covers that path
// (and TestAggregatesFluxOnly the Flux one).
func TestAggregatesUseInfluxQLOnTheTestServer(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	bucket := srv.NewBucket(t)
	open := func() *Store {
		s, err := Open(context.Background(), Config{URL: srv.URL, Bucket: bucket, OutboxDir: t.TempDir()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	end := time.Now().UTC()
	op := tsdb.Operation{ID: uuid.New(), SessionID: uuid.New(), ToolName: api.ToolRead, OperationMode: "full",
		TokensOriginal: 100, TokensActual: 10, TokensPrevented: 90, ResponseTimeMs: 1, ToolID: "t",
		CreatedAt: end.Add(-time.Minute).Truncate(time.Microsecond)}
	if err := open().WriteOperations(context.Background(), []tsdb.Operation{op}); err != nil {
		t.Fatal(err)
	}

	// Another replica, which has written nothing, reads.
	s := open()
	got, err := s.Breakdown(context.Background(), tsdb.Window{Start: ptrTime(end.Add(-24 * time.Hour)), End: end})
	if err != nil || len(got) != 1 || got[0].Count != 1 || got[0].TokensPrevented != 90 {
		t.Fatalf("breakdown %+v, %v; want the one operation", got, err)
	}
	if known, v1, _ := s.q.Version(); !known || !v1 {
		t.Fatalf("after the first aggregate: version known %v, 1.x %v; want both (influxd built without its version?)", known, v1)
	}
	// On 1.x, ReadHours reads with InfluxQL.
	rows, err := s.q.ReadHours(context.Background(), "test", end.Add(-time.Hour), end.Add(time.Microsecond), "")
	if err != nil || len(rows) != 1 || rows[0].Count != 1 || rows[0].TokensPrevented != 90 {
		t.Fatalf("InfluxQL hourly totals %+v, %v; want one row of one operation preventing 90", rows, err)
	}
}

func ptrTime(t time.Time) *time.Time { return &t }
