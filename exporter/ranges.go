package exporter

import (
	"strings"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// TimeRange is a look-back window of the aggregate endpoints, [now -
// Duration, now], with the width of its trend buckets.
type TimeRange struct {
	Name     api.TimeRange
	Duration time.Duration // 0 for "all": no lower bound
	Step     tsdb.Step
}

// The time ranges of the contract.
var (
	Range1h  = TimeRange{api.Range1h, time.Hour, tsdb.Hourly}
	Range24h = TimeRange{api.Range24h, 24 * time.Hour, tsdb.Hourly}
	Range7d  = TimeRange{api.Range7d, 7 * 24 * time.Hour, tsdb.Daily}
	Range30d = TimeRange{api.Range30d, 30 * 24 * time.Hour, tsdb.Daily}
	RangeAll = TimeRange{api.RangeAll, 0, tsdb.Daily}
)

// BreakdownRanges are the ranges of ToolBreakdown; SavingsRanges those of
// APISavings; BoundedSavingsRanges those CompareAPISavings takes.
var (
	BreakdownRanges      = []TimeRange{Range1h, Range24h, Range7d, Range30d}
	SavingsRanges        = []TimeRange{Range1h, Range24h, Range7d, Range30d, RangeAll}
	BoundedSavingsRanges = BreakdownRanges
)

// DefaultRange is the range of an aggregate that names none.
var DefaultRange = Range24h

// ParseTimeRange finds name among allowed; ok is false when it is not there.
func ParseTimeRange(name string, allowed []TimeRange) (TimeRange, bool) {
	for _, r := range allowed {
		if string(r.Name) == name {
			return r, true
		}
	}
	return TimeRange{}, false
}

// RangeNames lists the names of ranges, comma-separated, for error messages.
func RangeNames(ranges []TimeRange) string {
	names := make([]string, len(ranges))
	for i, r := range ranges {
		names[i] = string(r.Name)
	}
	return strings.Join(names, ", ")
}

// window answers the store window of r ending at now.
func (r TimeRange) window(toolID string, now time.Time) tsdb.Window {
	w := tsdb.Window{ToolID: toolID, End: now}
	if r.Duration > 0 {
		start := now.Add(-r.Duration)
		w.Start = &start
	}
	return w
}
