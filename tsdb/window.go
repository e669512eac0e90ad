package tsdb

import (
	"fmt"
	"time"
)

// Times in the window planner are unix microseconds (UTC), the precision of
// every created_at.
const (
	MicrosPerHour = int64(time.Hour / time.Microsecond)
	MicrosPerDay  = 24 * MicrosPerHour
)

// FloorTo rounds v down to a multiple of step (also for negative v).
func FloorTo(v, step int64) int64 {
	r := v % step
	if r < 0 {
		r += step
	}
	return v - r
}

// CeilTo rounds v up to a multiple of step.
func CeilTo(v, step int64) int64 {
	f := FloorTo(v, step)
	if f < v {
		f += step
	}
	return f
}

// Source is where a Part of a window is summed from.
type Source int

// The sources of a plan.
const (
	// FromRaw: the stored operations themselves.
	FromRaw Source = iota
	// FromHourly: totals per UTC hour (and key), kept beside the operations.
	FromHourly
	// FromDaily: totals per UTC day (and key).
	FromDaily
)

func (s Source) String() string {
	switch s {
	case FromHourly:
		return "hourly"
	case FromDaily:
		return "daily"
	}
	return "raw"
}

// Part is one piece of an aggregate's window: the operations with created_at
// in [Lo, Hi) (unix microseconds) for FromRaw, or the rollup rows whose bucket
// starts in [Lo, Hi) for FromHourly and FromDaily (aligned to their buckets). A
// NoLower part has no lower bound (Lo means nothing). A Subtract part (FromRaw
// only) is taken away from the sums: it is the part of an hour whose rollup
// row the plan reads that lies outside the window.
type Part struct {
	Source   Source
	Lo, Hi   int64
	NoLower  bool
	Subtract bool
}

func (p Part) String() string {
	lo := time.UnixMicro(p.Lo).UTC().Format(time.RFC3339Nano)
	if p.NoLower {
		lo = "-inf"
	}
	sign := ""
	if p.Subtract {
		sign = "-"
	}
	return fmt.Sprintf("%s%s[%s, %s)", sign, p.Source, lo, time.UnixMicro(p.Hi).UTC().Format(time.RFC3339Nano))
}

// PlanOptions say which rollups a store keeps.
type PlanOptions struct {
	// Daily: whole UTC days may be read from a daily rollup. Hourly trends
	// plan without it: their buckets need hour rows.
	Daily bool
	// DaysOnly: the rollup keeps days but no hours (only FromDaily and
	// FromRaw parts): whole UTC days from it, and each partial day at the
	// window's edges read raw or as the day's row less the raw rows of the
	// day outside the window, whichever spans less time (so at most half a
	// day raw); a partial day that starts before RawHorizon counts whole.
	// It ignores the other options.
	DaysOnly bool
	// RollupEnd, when not zero, is where the rollups end (unix microseconds,
	// on an hour boundary): hours that start at or after it are not rolled
	// up yet and are read raw, in one part. A store whose rollups are kept
	// in the same transaction as the operations leaves it zero; one that
	// rolls up closed hours only (InfluxDB's cache) sets it.
	RollupEnd int64
	// RawEdges: the partial hours at a window's edges are always read raw,
	// never as an hour's rollup row less the raw rows outside the window.
	// For a store whose rollups may lag behind its raw rows (a cache
	// trusted for a while, as InfluxDB's): subtracting a fresh raw read
	// from a stale rollup row could take away operations the row never
	// counted.
	RawEdges bool
	// RawHorizon, when not zero, is the store's raw horizon (unix
	// microseconds, on an hour boundary): raw rows before it may have been
	// deleted by retention, while the rollups keep them. No part reads raw
	// rows before it: a partial edge hour that starts before it is read
	// whole from the hourly rollup instead, so the window counts that hour
	// whole.
	RawHorizon int64
}

// PlanWindow splits w into parts whose sums, added up (Subtract parts taken
// away), are the sums of the operations in w: whole UTC days (with
// o.Daily), whole UTC hours, and raw reads of at most two partial hours at
// its edges, so that an aggregate reads O(days + hours) rollup rows plus the
// raw rows of at most an hour, not O(operations). An empty plan answers
// nothing.
//
// A partial edge hour is read either raw or as the hour's rollup row less
// the raw rows of the hour outside the window, whichever spans less time.
// The window's end is now for every aggregate the service answers: the time
// after it holds no operations (or the rare one sent with a future
// created_at), so subtracting it costs nothing, and the hour holding now,
// where live traffic lands, reads no raw rows at all.
//
// With o.RawHorizon, a partial edge hour that starts before the horizon
// counts whole (see PlanOptions.RawHorizon; HorizonWindow is the window
// whose exact sums such a plan answers).
func PlanWindow(w Window, o PlanOptions) []Part {
	end := w.End.UnixMicro() + 1 // w.End is inclusive
	if o.DaysOnly {
		lo := int64(0)
		if w.Start != nil {
			if lo = w.Start.UnixMicro(); lo >= end {
				return nil
			}
		}
		return PlanOptions{RawHorizon: o.RawHorizon}.planSpans(lo, end, w.Start == nil, MicrosPerDay, FromDaily)
	}
	if w.Start == nil {
		step, src := MicrosPerHour, FromHourly
		if o.Daily {
			step, src = MicrosPerDay, FromDaily
		}
		cut := o.clamp(FloorTo(end, step), step) // rows before cut are whole
		parts := []Part{{Source: src, Hi: cut, NoLower: true}}
		if cut < end {
			parts = append(parts, o.planHours(cut, end)...)
		}
		return parts
	}
	start := w.Start.UnixMicro()
	if start >= end {
		return nil
	}
	if o.Daily {
		dStart, dEnd := CeilTo(start, MicrosPerDay), o.clamp(FloorTo(end, MicrosPerDay), MicrosPerDay)
		if dStart < dEnd {
			var parts []Part
			if start < dStart {
				parts = append(parts, o.planHours(start, dStart)...)
			}
			parts = append(parts, Part{Source: FromDaily, Lo: dStart, Hi: dEnd})
			if dEnd < end {
				parts = append(parts, o.planHours(dEnd, end)...)
			}
			return parts
		}
	}
	return o.planHours(start, end)
}

// clamp keeps a bucket boundary b (a multiple of step) at or before the end
// of the rollups.
func (o PlanOptions) clamp(b, step int64) int64 {
	if o.RollupEnd != 0 && b > o.RollupEnd {
		return FloorTo(o.RollupEnd, step)
	}
	return b
}

// planHours splits [start, end) (start < end) into whole hours and the
// partial hours at its edges (see edge); what lies at or after the end of
// the rollups is one raw part.
func (o PlanOptions) planHours(start, end int64) []Part {
	if o.RollupEnd != 0 && end > o.RollupEnd {
		if start >= o.RollupEnd {
			return []Part{{Source: FromRaw, Lo: start, Hi: end}}
		}
		return append(o.planHours(start, o.RollupEnd), Part{Source: FromRaw, Lo: o.RollupEnd, Hi: end})
	}
	return o.planSpans(start, end, false, MicrosPerHour, FromHourly)
}

// planSpans splits [start, end) (start < end) into whole spans of width
// microseconds (hours or days) read from src, and the partial spans at its
// edges (see edge). With noLower, start means nothing: every whole span
// before the one holding end is one part without a lower bound.
func (o PlanOptions) planSpans(start, end int64, noLower bool, width int64, src Source) []Part {
	first, last := FloorTo(start, width), FloorTo(end-1, width)
	if noLower {
		parts := []Part{{Source: src, Hi: last, NoLower: true}}
		if end == last+width {
			return []Part{{Source: src, Hi: end, NoLower: true}}
		}
		return append(parts, o.edge(last, last, end, width, src, true)...)
	}
	if first == last {
		if start == first && end == first+width { // one whole span
			return []Part{{Source: src, Lo: first, Hi: end}}
		}
		return o.edge(first, start, end, width, src, true)
	}
	var parts []Part
	wholeFrom, wholeTo := first, last // whole spans: wholeFrom <= s < wholeTo
	if start > first {
		parts = append(parts, o.edge(first, start, first+width, width, src, false)...)
		wholeFrom += width
	}
	lastWhole := end == last+width
	if lastWhole {
		wholeTo += width
	}
	if wholeFrom < wholeTo {
		parts = append(parts, Part{Source: src, Lo: wholeFrom, Hi: wholeTo})
	}
	if !lastWhole {
		parts = append(parts, o.edge(last, last, end, width, src, true)...)
	}
	return parts
}

// edge reads [lo, hi), a part of the span of width starting at h, either
// raw or as the span's rollup row (from src) less the raw rows of the span
// outside it, whichever spans less time; for a trailing edge (the window's
// end) the time after hi counts as free. Either way an edge reads at most
// half a span of raw rows. With RawEdges it is always read raw; a span
// that starts before the raw horizon is read whole from src.
func (o PlanOptions) edge(h, lo, hi, width int64, src Source, trailing bool) []Part {
	if o.RawHorizon != 0 && h < o.RawHorizon {
		return []Part{{Source: src, Lo: h, Hi: h + width}}
	}
	before, after := lo-h, h+width-hi
	cost := before
	if !trailing {
		cost += after
	}
	if o.RawEdges || cost >= hi-lo {
		return []Part{{Source: FromRaw, Lo: lo, Hi: hi}}
	}
	parts := []Part{{Source: src, Lo: h, Hi: h + width}}
	if before > 0 {
		parts = append(parts, Part{Source: FromRaw, Lo: h, Hi: lo, Subtract: true})
	}
	if after > 0 {
		parts = append(parts, Part{Source: FromRaw, Lo: hi, Hi: h + width, Subtract: true})
	}
	return parts
}

// HorizonWindow answers the window whose operations a plan of w with raw
// horizon horizon (unix microseconds, on an hour boundary; 0: none) sums:
// w itself, but with each edge that falls inside an hour starting before
// the horizon moved out to that hour's boundary, since such an hour counts
// whole.
func HorizonWindow(w Window, horizon int64) Window {
	if horizon == 0 || (w.Start != nil && w.Start.After(w.End)) {
		return w // no horizon, or an empty window: nothing moves
	}
	if w.Start != nil {
		if h := FloorTo(w.Start.UnixMicro(), MicrosPerHour); h < horizon {
			start := time.UnixMicro(h).UTC()
			w.Start = &start
		}
	}
	if h := FloorTo(w.End.UnixMicro(), MicrosPerHour); h < horizon {
		w.End = time.UnixMicro(h + MicrosPerHour - 1).UTC()
	}
	return w
}
