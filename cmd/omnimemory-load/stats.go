package main

import (
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/textfmt"
)

// percentile answers the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest sample with at least p % of the samples
// at or below it. An empty slice answers 0.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// latencyStats summarises a set of latencies.
type latencyStats struct {
	Count int     `json:"count"`
	P50Ms float64 `json:"p50_ms"`
	P95Ms float64 `json:"p95_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

// summarize sorts lat in place and answers its percentiles.
func summarize(lat []time.Duration) latencyStats {
	slices.Sort(lat)
	s := latencyStats{Count: len(lat)}
	if len(lat) == 0 {
		return s
	}
	s.P50Ms = ms(percentile(lat, 50))
	s.P95Ms = ms(percentile(lat, 95))
	s.P99Ms = ms(percentile(lat, 99))
	s.MaxMs = ms(lat[len(lat)-1])
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fmtMs formats milliseconds with about three significant digits.
func fmtMs(v float64) string {
	switch {
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64) + " ms"
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
	default:
		return thousands(int64(math.Round(v))) + " ms"
	}
}

// thousands formats n with comma separators: 1234567 -> "1,234,567".
func thousands(n int64) string { return textfmt.Thousands(n) }

// fmtRate formats operations per second.
func fmtRate(v float64) string { return thousands(int64(math.Round(v))) + " ops/s" }

// fmtMB formats kibibytes as megabytes (MiB).
func fmtMB(kb int64) string {
	return strconv.FormatFloat(float64(kb)/1024, 'f', 0, 64) + " MB"
}
