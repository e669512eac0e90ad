package tsdb

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"
)

func TestValidTokensPrevented(t *testing.T) {
	for _, tc := range []struct {
		original, actual, prevented int64
		ok                          bool
	}{
		{5000, 500, 4500, true},
		{5000, 500, 0, false},
		{5000, 5050, -50, true}, // the difference: cost more than the baseline
		{5000, 5050, 0, true},   // the same, clamped
		{5000, 5050, 50, false},
		{0, 0, 0, true},
	} {
		if got := ValidTokensPrevented(tc.original, tc.actual, tc.prevented); got != tc.ok {
			t.Errorf("ValidTokensPrevented(%d, %d, %d) = %v", tc.original, tc.actual, tc.prevented, got)
		}
	}
	if DefaultTokensPrevented(5000, 5050) != 0 || DefaultTokensPrevented(5000, 500) != 4500 {
		t.Error("DefaultTokensPrevented")
	}
}

func TestCheckCreatedAt(t *testing.T) {
	now := time.Date(2025, 1, 14, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   time.Time
		want time.Time
		err  error
	}{
		{now.Add(-time.Hour + 1500), now.Add(-time.Hour + 1000), nil}, // truncated to the microsecond
		{now.Add(api.MaxClockSkew), now, nil},                         // clock skew: now
		{now.Add(api.MaxClockSkew + time.Second), now, ErrCreatedAtFuture},
		{time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC), now, ErrCreatedAtTooOld},
		{time.Date(1970, 1, 1, 1, 0, 0, 0, time.FixedZone("", 3600)), time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), nil},
	} {
		got, err := CheckCreatedAt(tc.in, now)
		if !errors.Is(err, tc.err) || !got.Equal(tc.want) {
			t.Errorf("CheckCreatedAt(%v) = %v, %v; want %v, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestValidToolIDAndJSONDepth(t *testing.T) {
	if !ValidToolID(strings.Repeat("é", api.MaxToolIDLength)) || ValidToolID(strings.Repeat("t", api.MaxToolIDLength+1)) || ValidToolID("") {
		t.Error("ValidToolID bounds")
	}
	if JSONDepth([]byte(`{"a":[{"b":"}]]"}]}`)) != 3 {
		t.Error("JSONDepth")
	}
}

func TestAddSat(t *testing.T) {
	for _, c := range []struct{ a, b, want int64 }{
		{1, 2, 3},
		{-1, -2, -3},
		{math.MaxInt64 - 1, 1, math.MaxInt64},
		{math.MaxInt64 - 1, 2, math.MaxInt64},
		{math.MaxInt64, math.MaxInt64, math.MaxInt64},
		{math.MinInt64 + 1, -1, math.MinInt64},
		{math.MinInt64, -2, math.MinInt64},
		{math.MinInt64, math.MinInt64, math.MinInt64},
		{math.MaxInt64, math.MinInt64, -1},
		{math.MaxInt64, -1, math.MaxInt64 - 1},
	} {
		if got := AddSat(c.a, c.b); got != c.want {
			t.Errorf("AddSat(%d, %d) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
