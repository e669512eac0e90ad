package query

import (
	"slices"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
)

// TestSpanAndCountFindThePoints: the first and last operation of a
// range, and how many it holds, with InfluxQL (1.x) and with Flux alone
// (2.x), agree with the points written: whole ranges, ranges that cut
// points off at either end, one that holds one point, and empty ones
// before, between and after the points.
func TestSpanAndCountFindThePoints(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	bucket := srv.NewBucket(t)
	from := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
	ops := randomOps(9, 40, from, 24*time.Hour)
	far := randomOps(10, 3, from.AddDate(0, 0, 90), time.Hour) // a sparse history
	ops = append(ops, far...)
	writeOps(t, srv, bucket, ops)
	times := make([]time.Time, len(ops))
	for i, op := range ops {
		times[i] = op.CreatedAt
	}
	slices.SortFunc(times, time.Time.Compare)
	n := len(times)
	ranges := [][2]time.Time{
		{from.AddDate(0, 0, -1), from.AddDate(0, 0, 100)},
		{times[0], times[n-1].Add(time.Microsecond)},
		{times[0].Add(time.Microsecond), times[n-1]}, // the first and the last left out
		{times[5], times[5].Add(time.Microsecond)},
		{from.AddDate(0, 0, -30), times[0]},
		{from.AddDate(0, 0, 2), from.AddDate(0, 0, 89)},
		{times[n-1].Add(time.Microsecond), from.AddDate(0, 0, 200)},
	}
	for _, flux := range []bool{false, true} {
		s := newReader(t, srv, bucket)
		s.cfg.AlwaysFlux = flux
		for _, rg := range ranges {
			var want []time.Time
			for _, tm := range times {
				if !tm.Before(rg[0]) && tm.Before(rg[1]) {
					want = append(want, tm)
				}
			}
			n, err := s.CountOperations(t.Context(), rg[0], rg[1])
			if err != nil {
				t.Fatalf("flux %v: [%v, %v): count: %v", flux, rg[0], rg[1], err)
			}
			if n != int64(len(want)) {
				t.Errorf("flux %v: [%v, %v): count %d, want %d", flux, rg[0], rg[1], n, len(want))
			}
			first, last, ok, err := s.OperationSpan(t.Context(), rg[0], rg[1])
			if err != nil {
				t.Fatalf("flux %v: [%v, %v): %v", flux, rg[0], rg[1], err)
			}
			switch {
			case len(want) == 0 && ok:
				t.Errorf("flux %v: [%v, %v): %v .. %v, want no point", flux, rg[0], rg[1], first, last)
			case len(want) > 0 && (!ok || !first.Truncate(time.Microsecond).Equal(want[0]) || !last.Truncate(time.Microsecond).Equal(want[len(want)-1])):
				t.Errorf("flux %v: [%v, %v): %v .. %v (%v), want %v .. %v", flux, rg[0], rg[1], first, last, ok, want[0], want[len(want)-1])
			}
		}
	}
}
