package storetest

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// Scale makes operations as clients send them, for the stores' tests and
// benchmarks: see Batch.
type Scale struct {
	r     *rand.Rand
	files *rand.Zipf
}

// NewScale answers a Scale whose operations follow seed.
func NewScale(seed int64) *Scale { return ScaleOf(rand.New(rand.NewSource(seed))) }

// ScaleOf answers a Scale whose operations follow r (which it uses, not
// safely for concurrent use).
func ScaleOf(r *rand.Rand) *Scale { return &Scale{r: r, files: rand.NewZipf(r, 1.1, 1, 4999)} }

// Batch answers n operations with random ids (version 4, from the Scale's
// source) and random created_at in [from, from+span), in no order: eight
// new sessions, three tool ids, both tools and every mode at random; a read
// has one of 5,000 files in 50 folders, a few read far more often than the
// rest (Zipf's law, as the files of a code base are), a search none; a
// third of the operations say nothing of the cache, the rest hit or miss it.
func (s *Scale) Batch(n int, from time.Time, span time.Duration) []tsdb.Operation {
	r := s.r
	sessions := make([]uuid.UUID, 8)
	for i := range sessions {
		sessions[i] = uuid.Must(uuid.NewRandomFromReader(r))
	}
	toolIDs := []string{"claude-code", "cursor", "windsurf"}
	ops := make([]tsdb.Operation, n)
	for i := range ops {
		orig, act := r.Int63n(10000), r.Int63n(10000)
		op := tsdb.Operation{
			ID:              uuid.Must(uuid.NewRandomFromReader(r)),
			SessionID:       sessions[r.Intn(len(sessions))],
			ToolName:        api.ToolNames[r.Intn(len(api.ToolNames))],
			OperationMode:   api.OperationModes[r.Intn(len(api.OperationModes))],
			Parameters:      json.RawMessage(`{"q":"x"}`),
			TokensOriginal:  orig,
			TokensActual:    act,
			TokensPrevented: orig - act,
			ResponseTimeMs:  float64(r.Intn(100000)) / 16,
			ToolID:          toolIDs[r.Intn(len(toolIDs))],
			CreatedAt:       from.Add(time.Duration(r.Int63n(int64(span/time.Microsecond))) * time.Microsecond),
		}
		if op.ToolName == api.ToolRead {
			f := s.files.Uint64()
			op.FilePath = ptr(fmt.Sprintf("src/pkg%d/file%d.go", f%50, f))
		}
		if c := r.Intn(3); c < 2 {
			op.CacheHit = ptr(c == 1)
		}
		ops[i] = op
	}
	return ops
}

// Live answers Batch sorted by created_at, with time-ordered (version 7)
// ids: a batch as the service writes one from live traffic.
func (s *Scale) Live(n int, from time.Time, span time.Duration) []tsdb.Operation {
	ops := s.Batch(n, from, span)
	slices.SortFunc(ops, func(a, b tsdb.Operation) int { return a.CreatedAt.Compare(b.CreatedAt) })
	for i := range ops {
		ops[i].ID = uuid.Must(uuid.NewV7())
	}
	return ops
}

// Seed writes n operations with created_at over [from, from+span) into w,
// in Live batches of 5,000, each a 1/n slice of the span, oldest first (as
// live traffic and an import arrive).
func (s *Scale) Seed(b *testing.B, w tsdb.OperationWriter, n int, from time.Time, span time.Duration) {
	b.Helper()
	const batch = 5000
	for i := 0; i < n; i += batch {
		slice := span / time.Duration(n) * batch
		at := from.Add(span / time.Duration(n) * time.Duration(i))
		if err := w.WriteOperations(b.Context(), s.Live(min(batch, n-i), at, slice)); err != nil {
			b.Fatal(err)
		}
	}
}

// ScaleSize answers how many operations a benchmark at scale seeds: the
// variable env when it holds a positive number, else 2,000,000.
func ScaleSize(env string) int {
	if n, err := strconv.Atoi(os.Getenv(env)); err == nil && n > 0 {
		return n
	}
	return 2_000_000
}

// TimeCalls runs f b.N times (with the call's number) and reports the p50
// and p95 of its latency in milliseconds.
func TimeCalls(b *testing.B, f func(i int) error) {
	b.Helper()
	var took []time.Duration
	i := 0
	for b.Loop() {
		t0 := time.Now()
		if err := f(i); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(t0))
		i++
	}
	slices.Sort(took)
	pct := func(p float64) float64 {
		return float64(took[min(len(took)-1, int(p*float64(len(took))))]) / 1e6
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.95), "p95-ms")
}

// AggregateCases are the aggregates the benchmarks at scale time: the top
// 100 groups of each grouping over a window.
var AggregateCases = []struct {
	Name string
	Dims []tsdb.Dimension
}{
	{"FilePath", []tsdb.Dimension{tsdb.DimFilePath}},
	{"SessionID", []tsdb.Dimension{tsdb.DimSessionID}},
	{"ProjectDay", []tsdb.Dimension{tsdb.DimProjectID, tsdb.DimDay}},
	{"ToolIDDay", []tsdb.Dimension{tsdb.DimToolID, tsdb.DimDay}}, // from the rollups
	{"ModeHour", []tsdb.Dimension{tsdb.DimOperationMode, tsdb.DimHour}},
}

// BenchAggregates times every AggregateCases grouping over the last 24
// hours, 30 days and all of the data ending at end (a different instant of
// its last hour on every call), as sub-benchmarks of b.
func BenchAggregates(b *testing.B, s tsdb.Aggregator, end time.Time) {
	for _, rg := range []struct {
		name string
		d    time.Duration // 0: no lower bound
	}{{"24h", 24 * time.Hour}, {"30d", 30 * 24 * time.Hour}, {"all", 0}} {
		for _, c := range AggregateCases {
			b.Run("Aggregate"+c.Name+"Top100/"+rg.name, func(b *testing.B) {
				TimeCalls(b, func(i int) error {
					e := end.Add(-time.Duration(int64(i)*7919%3600_000_000) * time.Microsecond)
					f := tsdb.OperationFilter{End: &e}
					if rg.d > 0 {
						f.Start = ptr(e.Add(-rg.d))
					}
					_, err := s.Aggregate(b.Context(), tsdb.AggregateQuery{GroupBy: c.Dims, Filter: f, Limit: 100})
					return err
				})
			})
		}
	}
}
