package rollup

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

func TestDeliveredHours(t *testing.T) {
	h := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	lp := "tool_operation,operation_mode=full id=\"x\" " + itoa(h.Add(59*time.Minute).UnixNano()) + "\n" +
		"tool_session,event=start v=1i " + itoa(h.Add(-5*time.Hour).UnixNano()) + "\n" +
		"tool_operationx,a=b v=1i " + itoa(h.Add(-6*time.Hour).UnixNano()) + "\n" +
		"tool_operation,operation_mode=full id=\"y\" " + itoa(h.Add(2*time.Hour).UnixNano())
	hours := map[int64]struct{}{}
	var minTime time.Time
	deliveredHours([]byte(lp), hours, &minTime)
	want := []int64{h.UnixMicro(), h.Add(2 * time.Hour).UnixMicro()}
	got := make([]int64, 0, len(hours))
	for k := range hours {
		got = append(got, k)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) || !minTime.Equal(h.Add(59*time.Minute)) {
		t.Fatalf("hours %v, first %v; want %v, %v", got, minTime, want, h.Add(59*time.Minute))
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestSpans(t *testing.T) {
	d := time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC).UnixMicro()
	h := tsdb.MicrosPerHour
	hours := []int64{d - 2*h, d - h, d, d + h, d + 3*h}
	got := spans(hours)
	want := [][2]int64{{d - 2*h, d}, {d, d + 2*h}, {d + 3*h, d + 4*h}}
	if !slices.Equal(got, want) {
		t.Fatalf("spans %v, want %v (cut at the day and at gaps)", got, want)
	}
}
