package influx_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/omnimemory/omnimemory-metrics/tsdb/influx"
)

// TestMetrics: the store's metrics are registered, lint-clean, and follow
// the outbox and write errors. InfluxDB refuses connections here.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := influx.Config{
		URL:            "http://127.0.0.1:1", // nothing listens
		Bucket:         "db/autogen",
		OutboxDir:      t.TempDir() + "/outbox",
		OutboxMaxBytes: 4 << 10,
		RetryMin:       time.Hour, // one attempt only
		Registerer:     reg,
	}
	s, err := influx.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	writeOK(t, s, mkOps(2, uuid.New(), t0))
	var full error
	for i := 0; i < 50 && full == nil; i++ {
		full = s.WriteOperations(context.Background(), mkOps(5, uuid.New(), t0))
	}
	if !errors.Is(full, influx.ErrBacklogFull) {
		t.Fatalf("never ErrBacklogFull: %v", full)
	}

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	names := map[string]bool{}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"omnimemory_store_write_duration_seconds", "omnimemory_store_batch_size",
		"omnimemory_store_outbox_depth", "omnimemory_store_outbox_bytes", "omnimemory_store_write_errors_total"} {
		if !names[n] {
			t.Errorf("metric %s missing", n)
		}
	}
	st := s.Stats()
	want := `
# HELP omnimemory_store_outbox_depth Batches in the local outbox that InfluxDB has not yet taken.
# TYPE omnimemory_store_outbox_depth gauge
omnimemory_store_outbox_depth ` + strconv.Itoa(st.OutboxRecords) + `
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "omnimemory_store_outbox_depth"); err != nil {
		t.Error(err)
	}
	if st.OutboxRecords < 2 {
		t.Errorf("outbox holds %d records", st.OutboxRecords)
	}
	if n := testutil.ToFloat64(errorsCounter(t, reg, "backlog_full")); n < 1 {
		t.Errorf("write_errors_total{kind=backlog_full} = %v", n)
	}
	if n := testutil.ToFloat64(errorsCounter(t, reg, "network")); n < 1 {
		t.Errorf("write_errors_total{kind=network} = %v", n)
	}
}

// errorsCounter answers a collector holding the one write-error series of kind.
func errorsCounter(t *testing.T, reg *prometheus.Registry, kind string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "omnimemory_store_write_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
					c.Add(m.GetCounter().GetValue())
					return c
				}
			}
		}
	}
	t.Fatalf("no write_errors_total series of kind %q", kind)
	return nil
}
