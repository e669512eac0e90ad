package tsdb

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var day0 = time.Date(2025, 1, 14, 0, 0, 0, 0, time.UTC)

// at answers the unix microseconds of day d, hh:mm after day0.
func at(d, hh, mm int) int64 {
	return day0.AddDate(0, 0, d).Add(time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute).UnixMicro()
}

func TestPlanWindow(t *testing.T) {
	tm := func(us int64) *time.Time { t := time.UnixMicro(us).UTC(); return &t }
	raw := func(lo, hi int64) Part { return Part{Source: FromRaw, Lo: lo, Hi: hi} }
	less := func(lo, hi int64) Part { return Part{Source: FromRaw, Lo: lo, Hi: hi, Subtract: true} }
	hours := func(lo, hi int64) Part { return Part{Source: FromHourly, Lo: lo, Hi: hi} }
	days := func(lo, hi int64) Part { return Part{Source: FromDaily, Lo: lo, Hi: hi} }
	daily := PlanOptions{Daily: true}
	for _, tc := range []struct {
		name  string
		start *time.Time
		end   int64 // inclusive, as Window.End
		opts  PlanOptions
		want  []Part
	}{
		// Edges: an hour's rollup row less the raw rows of its part outside
		// the window, when that part is shorter; after the end (now), none.
		{"unaligned", tm(at(0, 10, 17)), at(0, 13, 5), daily, []Part{
			hours(at(0, 10, 0), at(0, 11, 0)), less(at(0, 10, 0), at(0, 10, 17)),
			hours(at(0, 11, 0), at(0, 13, 0)),
			hours(at(0, 13, 0), at(0, 14, 0)), less(at(0, 13, 5)+1, at(0, 14, 0))}},
		{"long leading edge read raw", tm(at(0, 10, 47)), at(0, 13, 5), daily, []Part{
			raw(at(0, 10, 47), at(0, 11, 0)),
			hours(at(0, 11, 0), at(0, 13, 0)),
			hours(at(0, 13, 0), at(0, 14, 0)), less(at(0, 13, 5)+1, at(0, 14, 0))}},
		{"aligned", tm(at(0, 10, 0)), at(0, 13, 0) - 1, daily, []Part{hours(at(0, 10, 0), at(0, 13, 0))}},
		{"a microsecond short of aligned", tm(at(0, 10, 0)), at(0, 13, 0) - 2, daily, []Part{hours(at(0, 10, 0), at(0, 12, 0)),
			hours(at(0, 12, 0), at(0, 13, 0)), less(at(0, 13, 0)-1, at(0, 13, 0))}},
		{"aligned end", tm(at(0, 10, 0)), at(0, 13, 0), daily, []Part{hours(at(0, 10, 0), at(0, 13, 0)),
			hours(at(0, 13, 0), at(0, 14, 0)), less(at(0, 13, 0)+1, at(0, 14, 0))}},
		{"inside an hour", tm(at(0, 10, 10)), at(0, 10, 50), daily, []Part{hours(at(0, 10, 0), at(0, 11, 0)),
			less(at(0, 10, 0), at(0, 10, 10)), less(at(0, 10, 50)+1, at(0, 11, 0))}},
		{"inside an hour, late start", tm(at(0, 10, 40)), at(0, 10, 50), daily, []Part{raw(at(0, 10, 40), at(0, 10, 50)+1)}},
		{"across one hour boundary", tm(at(0, 10, 30)), at(0, 11, 30), daily, []Part{raw(at(0, 10, 30), at(0, 11, 0)),
			hours(at(0, 11, 0), at(0, 12, 0)), less(at(0, 11, 30)+1, at(0, 12, 0))}},
		{"30 days", tm(at(0, 10, 17)), at(30, 13, 5), daily, []Part{
			hours(at(0, 10, 0), at(0, 11, 0)), less(at(0, 10, 0), at(0, 10, 17)),
			hours(at(0, 11, 0), at(1, 0, 0)), days(at(1, 0, 0), at(30, 0, 0)), hours(at(30, 0, 0), at(30, 13, 0)),
			hours(at(30, 13, 0), at(30, 14, 0)), less(at(30, 13, 5)+1, at(30, 14, 0))}},
		{"30 days, hourly", tm(at(0, 10, 17)), at(30, 13, 5), PlanOptions{}, []Part{
			hours(at(0, 10, 0), at(0, 11, 0)), less(at(0, 10, 0), at(0, 10, 17)),
			hours(at(0, 11, 0), at(30, 13, 0)),
			hours(at(30, 13, 0), at(30, 14, 0)), less(at(30, 13, 5)+1, at(30, 14, 0))}},
		{"whole days", tm(at(0, 0, 0)), at(2, 0, 0) - 1, daily, []Part{days(at(0, 0, 0), at(2, 0, 0))}},
		{"no start", nil, at(3, 11, 30), daily, []Part{{Source: FromDaily, Hi: at(3, 0, 0), NoLower: true},
			hours(at(3, 0, 0), at(3, 11, 0)), hours(at(3, 11, 0), at(3, 12, 0)), less(at(3, 11, 30)+1, at(3, 12, 0))}},
		{"no start, hourly", nil, at(3, 11, 30), PlanOptions{}, []Part{{Source: FromHourly, Hi: at(3, 11, 0), NoLower: true},
			hours(at(3, 11, 0), at(3, 12, 0)), less(at(3, 11, 30)+1, at(3, 12, 0))}},
		{"empty", tm(at(0, 11, 0)), at(0, 10, 0), daily, nil},
		{"the first microsecond of an hour", tm(at(0, 11, 0)), at(0, 11, 0), daily, []Part{
			hours(at(0, 11, 0), at(0, 12, 0)), less(at(0, 11, 0)+1, at(0, 12, 0))}},
		{"the last microsecond of an hour", tm(at(0, 12, 0) - 1), at(0, 12, 0) - 1, daily, []Part{raw(at(0, 12, 0)-1, at(0, 12, 0))}},

		// Rollups that end before the window does (closed hours only): what
		// follows their end is one raw part, and no edge subtracts from an
		// hour they lack.
		{"rolled up until the hour before", tm(at(0, 10, 17)), at(0, 13, 5), PlanOptions{RollupEnd: at(0, 12, 0)}, []Part{
			hours(at(0, 10, 0), at(0, 11, 0)), less(at(0, 10, 0), at(0, 10, 17)),
			hours(at(0, 11, 0), at(0, 12, 0)),
			raw(at(0, 12, 0), at(0, 13, 5)+1)}},
		{"rolled up until the window's last hour", tm(at(0, 10, 17)), at(0, 13, 5), PlanOptions{RollupEnd: at(0, 13, 0)}, []Part{
			hours(at(0, 10, 0), at(0, 11, 0)), less(at(0, 10, 0), at(0, 10, 17)),
			hours(at(0, 11, 0), at(0, 13, 0)),
			raw(at(0, 13, 0), at(0, 13, 5)+1)}},
		{"rolled up past the window", tm(at(0, 10, 17)), at(0, 13, 5), PlanOptions{RollupEnd: at(1, 0, 0)}, []Part{
			hours(at(0, 10, 0), at(0, 11, 0)), less(at(0, 10, 0), at(0, 10, 17)),
			hours(at(0, 11, 0), at(0, 13, 0)),
			hours(at(0, 13, 0), at(0, 14, 0)), less(at(0, 13, 5)+1, at(0, 14, 0))}},
		{"nothing rolled up yet", tm(at(0, 10, 17)), at(0, 13, 5), PlanOptions{RollupEnd: at(0, 9, 0)}, []Part{
			raw(at(0, 10, 17), at(0, 13, 5)+1)}},
		{"no start, rolled up until the hour before", nil, at(3, 11, 30), PlanOptions{RollupEnd: at(3, 10, 0)}, []Part{
			{Source: FromHourly, Hi: at(3, 10, 0), NoLower: true}, raw(at(3, 10, 0), at(3, 11, 30)+1)}},
		{"daily, rolled up until mid-day", tm(at(0, 10, 17)), at(3, 11, 30), PlanOptions{Daily: true, RollupEnd: at(3, 10, 0)}, []Part{
			hours(at(0, 10, 0), at(0, 11, 0)), less(at(0, 10, 0), at(0, 10, 17)),
			hours(at(0, 11, 0), at(1, 0, 0)), days(at(1, 0, 0), at(3, 0, 0)),
			hours(at(3, 0, 0), at(3, 10, 0)), raw(at(3, 10, 0), at(3, 11, 30)+1)}},

		// Raw edges (rollups that may lag behind the raw rows): a partial
		// hour is never a rollup row less raw rows.
		{"raw edges, unaligned", tm(at(0, 10, 17)), at(0, 13, 5), PlanOptions{RawEdges: true}, []Part{
			raw(at(0, 10, 17), at(0, 11, 0)), hours(at(0, 11, 0), at(0, 13, 0)), raw(at(0, 13, 0), at(0, 13, 5)+1)}},
		{"raw edges, inside an hour", tm(at(0, 10, 10)), at(0, 10, 50), PlanOptions{RawEdges: true}, []Part{
			raw(at(0, 10, 10), at(0, 10, 50)+1)}},
		{"raw edges, aligned", tm(at(0, 10, 0)), at(0, 13, 0) - 1, PlanOptions{RawEdges: true}, []Part{hours(at(0, 10, 0), at(0, 13, 0))}},
		{"raw edges, one whole hour", tm(at(0, 10, 0)), at(0, 11, 0) - 1, PlanOptions{RawEdges: true}, []Part{hours(at(0, 10, 0), at(0, 11, 0))}},
		{"one whole hour", tm(at(0, 10, 0)), at(0, 11, 0) - 1, PlanOptions{}, []Part{hours(at(0, 10, 0), at(0, 11, 0))}},
		{"raw edges, one whole hour rolled up, then the rest raw", tm(at(0, 10, 0)), at(0, 11, 20), PlanOptions{RawEdges: true, RollupEnd: at(0, 11, 0)}, []Part{
			hours(at(0, 10, 0), at(0, 11, 0)), raw(at(0, 11, 0), at(0, 11, 20)+1)}},
		{"raw edges, rolled up until the hour before", tm(at(0, 10, 17)), at(0, 13, 5), PlanOptions{RawEdges: true, RollupEnd: at(0, 12, 0)}, []Part{
			raw(at(0, 10, 17), at(0, 11, 0)), hours(at(0, 11, 0), at(0, 12, 0)), raw(at(0, 12, 0), at(0, 13, 5)+1)}},
		{"raw edges, rolled up within the first hour", tm(at(0, 10, 17)), at(0, 13, 5), PlanOptions{RawEdges: true, RollupEnd: at(0, 11, 0)}, []Part{
			raw(at(0, 10, 17), at(0, 11, 0)), raw(at(0, 11, 0), at(0, 13, 5)+1)}},
		{"raw edges, no start", nil, at(3, 11, 30), PlanOptions{RawEdges: true}, []Part{{Source: FromHourly, Hi: at(3, 11, 0), NoLower: true},
			raw(at(3, 11, 0), at(3, 11, 30)+1)}},
		{"raw edges, daily", tm(at(0, 10, 17)), at(3, 11, 30), PlanOptions{Daily: true, RawEdges: true}, []Part{
			raw(at(0, 10, 17), at(0, 11, 0)), hours(at(0, 11, 0), at(1, 0, 0)), days(at(1, 0, 0), at(3, 0, 0)),
			hours(at(3, 0, 0), at(3, 11, 0)), raw(at(3, 11, 0), at(3, 11, 30)+1)}},

		// A raw horizon: no raw read before it; an edge hour that starts
		// before it is read whole from its rollup.
		{"horizon after the window", tm(at(0, 10, 17)), at(0, 13, 5), PlanOptions{RawHorizon: at(0, 14, 0)}, []Part{
			hours(at(0, 10, 0), at(0, 11, 0)), hours(at(0, 11, 0), at(0, 13, 0)), hours(at(0, 13, 0), at(0, 14, 0))}},
		{"horizon inside the window", tm(at(0, 10, 47)), at(0, 13, 5), PlanOptions{RawHorizon: at(0, 12, 0)}, []Part{
			hours(at(0, 10, 0), at(0, 11, 0)), hours(at(0, 11, 0), at(0, 13, 0)),
			hours(at(0, 13, 0), at(0, 14, 0)), less(at(0, 13, 5)+1, at(0, 14, 0))}},
		{"horizon at the window's first hour", tm(at(0, 10, 17)), at(0, 13, 5), PlanOptions{RawHorizon: at(0, 10, 0)}, []Part{
			hours(at(0, 10, 0), at(0, 11, 0)), less(at(0, 10, 0), at(0, 10, 17)),
			hours(at(0, 11, 0), at(0, 13, 0)),
			hours(at(0, 13, 0), at(0, 14, 0)), less(at(0, 13, 5)+1, at(0, 14, 0))}},
		{"horizon, inside an hour", tm(at(0, 10, 40)), at(0, 10, 50), PlanOptions{RawHorizon: at(0, 11, 0)}, []Part{
			hours(at(0, 10, 0), at(0, 11, 0))}},
		{"horizon, raw edges", tm(at(0, 10, 17)), at(0, 13, 5), PlanOptions{RawEdges: true, RawHorizon: at(0, 11, 0)}, []Part{
			hours(at(0, 10, 0), at(0, 11, 0)), hours(at(0, 11, 0), at(0, 13, 0)), raw(at(0, 13, 0), at(0, 13, 5)+1)}},
		{"horizon, daily", tm(at(0, 10, 47)), at(3, 11, 30), PlanOptions{Daily: true, RawHorizon: at(2, 0, 0)}, []Part{
			hours(at(0, 10, 0), at(0, 11, 0)), hours(at(0, 11, 0), at(1, 0, 0)), days(at(1, 0, 0), at(3, 0, 0)),
			hours(at(3, 0, 0), at(3, 11, 0)), hours(at(3, 11, 0), at(3, 12, 0)), less(at(3, 11, 30)+1, at(3, 12, 0))}},
		// Days only (a rollup without hours): partial days at the edges are
		// read raw, or as the day's row less the raw rows outside the
		// window, whichever spans less.
		{"days only, 30 days", tm(at(0, 10, 17)), at(30, 13, 5), PlanOptions{DaysOnly: true}, []Part{
			days(at(0, 0, 0), at(1, 0, 0)), less(at(0, 0, 0), at(0, 10, 17)),
			days(at(1, 0, 0), at(30, 0, 0)),
			days(at(30, 0, 0), at(31, 0, 0)), less(at(30, 13, 5)+1, at(31, 0, 0))}},
		{"days only, late start", tm(at(0, 18, 0)), at(2, 3, 0), PlanOptions{DaysOnly: true}, []Part{
			raw(at(0, 18, 0), at(1, 0, 0)), days(at(1, 0, 0), at(2, 0, 0)),
			days(at(2, 0, 0), at(3, 0, 0)), less(at(2, 3, 0)+1, at(3, 0, 0))}},
		{"days only, inside a day", tm(at(0, 1, 0)), at(0, 2, 0), PlanOptions{DaysOnly: true}, []Part{
			days(at(0, 0, 0), at(1, 0, 0)), less(at(0, 0, 0), at(0, 1, 0)), less(at(0, 2, 0)+1, at(1, 0, 0))}},
		{"days only, inside a day, late start", tm(at(0, 13, 0)), at(0, 14, 0), PlanOptions{DaysOnly: true}, []Part{
			raw(at(0, 13, 0), at(0, 14, 0)+1)}},
		{"days only, whole days", tm(at(0, 0, 0)), at(2, 0, 0) - 1, PlanOptions{DaysOnly: true}, []Part{days(at(0, 0, 0), at(2, 0, 0))}},
		{"days only, no start", nil, at(3, 11, 30), PlanOptions{DaysOnly: true}, []Part{{Source: FromDaily, Hi: at(3, 0, 0), NoLower: true},
			days(at(3, 0, 0), at(4, 0, 0)), less(at(3, 11, 30)+1, at(4, 0, 0))}},
		{"days only, no start, aligned end", nil, at(3, 0, 0) - 1, PlanOptions{DaysOnly: true}, []Part{{Source: FromDaily, Hi: at(3, 0, 0), NoLower: true}}},
		{"days only, empty", tm(at(0, 11, 0)), at(0, 10, 0), PlanOptions{DaysOnly: true}, nil},
		{"days only, horizon", tm(at(0, 10, 17)), at(30, 13, 5), PlanOptions{DaysOnly: true, RawHorizon: at(5, 0, 0)}, []Part{
			days(at(0, 0, 0), at(1, 0, 0)), days(at(1, 0, 0), at(30, 0, 0)),
			days(at(30, 0, 0), at(31, 0, 0)), less(at(30, 13, 5)+1, at(31, 0, 0))}},
	} {
		got := PlanWindow(Window{Start: tc.start, End: time.UnixMicro(tc.end).UTC()}, tc.opts)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s:\ngot  %v\nwant %v", tc.name, got, tc.want)
		}
	}
}

// TestPlanWindowSumsExactly checks the promise of PlanWindow on random
// operations and windows: the sums of a plan's parts, computed from
// rollups built from the operations, are the sums of the operations in the
// window, for every option.
func TestPlanWindowSumsExactly(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	span := 5 * MicrosPerDay
	for trial := range 2000 {
		ops := make([]int64, 1+r.IntN(60))
		for i := range ops {
			ops[i] = day0.UnixMicro() + r.Int64N(span)
		}
		if trial%3 == 0 { // bunch them at hour and day edges too
			for i := range ops[:len(ops)/2] {
				ops[i] = FloorTo(ops[i], MicrosPerHour) + r.Int64N(3) - 1
			}
		}
		var start *time.Time
		lo := day0.UnixMicro() - MicrosPerHour + r.Int64N(span)
		if r.IntN(5) > 0 {
			s := time.UnixMicro(lo).UTC()
			start = &s
		} else {
			lo = -1 << 62
		}
		end := lo + r.Int64N(3*MicrosPerDay)
		if start == nil {
			end = day0.UnixMicro() + r.Int64N(span)
		}
		if trial%4 == 1 { // a window that ends a microsecond or two short of an hour
			end = FloorTo(end, MicrosPerHour) + MicrosPerHour - 1 - r.Int64N(3)
		}
		w := Window{Start: start, End: time.UnixMicro(end).UTC()}
		// Operations right at the window's edges and the edges' hours.
		edges := []int64{end, FloorTo(end, MicrosPerHour), FloorTo(end, MicrosPerHour) + MicrosPerHour}
		if start != nil {
			edges = append(edges, lo, FloorTo(lo, MicrosPerHour), CeilTo(lo, MicrosPerDay))
		}
		for _, edge := range edges {
			ops = append(ops, edge-1, edge, edge+1)
		}
		var want int64
		for _, op := range ops {
			if op >= lo && op <= end {
				want++
			}
		}
		for _, o := range []PlanOptions{{}, {Daily: true},
			{RollupEnd: FloorTo(end, MicrosPerHour) - MicrosPerHour*r.Int64N(3)},
			{Daily: true, RollupEnd: FloorTo(end, MicrosPerHour) - MicrosPerHour*r.Int64N(30)},
			{RawEdges: true, RollupEnd: FloorTo(end, MicrosPerHour) - MicrosPerHour*r.Int64N(3)},
			{DaysOnly: true}} {
			plan := PlanWindow(w, o)
			var got int64
			for _, p := range plan {
				n := countPart(ops, p)
				if p.Subtract {
					n = -n
				}
				got += n
				if o.DaysOnly && p.Source == FromHourly {
					t.Fatalf("window %v, days only: part %v", w, p)
				}
				if o.RawEdges && (p.Subtract || p.Source == FromHourly && (p.Lo%MicrosPerHour != 0 || p.Hi%MicrosPerHour != 0)) {
					t.Fatalf("window %v, %+v: part %v with raw edges", w, o, p)
				}
				if p.Source != FromRaw && o.RollupEnd != 0 && p.Hi > o.RollupEnd {
					t.Fatalf("window %v, %+v: part %v reads a rollup past its end", w, o, p)
				}
			}
			if got != want {
				t.Fatalf("window [%v, %v], %+v, ops %v: plan %v sums %d, want %d", w.Start, w.End, o, ops, plan, got, want)
			}
		}
	}
}

// TestPlanWindowRawHorizon checks the promise of a plan with a raw horizon
// on random operations, windows and horizons: no part reads raw rows
// before the horizon (retention may have deleted them), and the parts sum
// exactly the operations of HorizonWindow, the window with its edges
// inside hours before the horizon moved out to those hours' boundaries.
func TestPlanWindowRawHorizon(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	span := 5 * MicrosPerDay
	for range 2000 {
		ops := make([]int64, 1+r.IntN(60))
		for i := range ops {
			ops[i] = day0.UnixMicro() + r.Int64N(span)
		}
		horizon := FloorTo(day0.UnixMicro()+r.Int64N(span), MicrosPerHour)
		var w Window
		lo := day0.UnixMicro() - MicrosPerHour + r.Int64N(span)
		if r.IntN(5) > 0 {
			s := time.UnixMicro(lo).UTC()
			w.Start = &s
		}
		w.End = time.UnixMicro(lo + r.Int64N(3*MicrosPerDay)).UTC()
		for _, edge := range []int64{lo, w.End.UnixMicro(), horizon} {
			ops = append(ops, edge-1, edge, edge+1, FloorTo(edge, MicrosPerHour))
		}
		hw := HorizonWindow(w, horizon)
		var want int64
		for _, op := range ops {
			if (hw.Start == nil || op >= hw.Start.UnixMicro()) && op <= hw.End.UnixMicro() {
				want++
			}
		}
		for _, o := range []PlanOptions{{RawHorizon: horizon}, {Daily: true, RawHorizon: horizon}, {RawEdges: true, RawHorizon: horizon}} {
			plan := PlanWindow(w, o)
			var got int64
			for _, p := range plan {
				if p.Source == FromRaw && (p.NoLower || p.Lo < horizon) {
					t.Fatalf("window %v, %+v: part %v reads raw rows before the horizon", w, o, p)
				}
				n := countPart(ops, p)
				if p.Subtract {
					n = -n
				}
				got += n
			}
			if got != want {
				t.Fatalf("window [%v, %v], horizon %v, %+v: plan %v sums %d, want %d", w.Start, w.End,
					time.UnixMicro(horizon).UTC(), o, plan, got, want)
			}
		}
	}
}

func TestHorizonWindow(t *testing.T) {
	tm := func(us int64) *time.Time { t := time.UnixMicro(us).UTC(); return &t }
	h := at(0, 12, 0)
	for _, tc := range []struct {
		name       string
		in, want   Window
		horizonArg int64
	}{
		{"no horizon", Window{Start: tm(at(0, 10, 17)), End: time.UnixMicro(at(0, 11, 5))},
			Window{Start: tm(at(0, 10, 17)), End: time.UnixMicro(at(0, 11, 5))}, 0},
		{"both edges before", Window{Start: tm(at(0, 10, 17)), End: time.UnixMicro(at(0, 11, 5))},
			Window{Start: tm(at(0, 10, 0)), End: time.UnixMicro(at(0, 12, 0) - 1)}, h},
		{"start before, end after", Window{Start: tm(at(0, 10, 17)), End: time.UnixMicro(at(0, 13, 5))},
			Window{Start: tm(at(0, 10, 0)), End: time.UnixMicro(at(0, 13, 5))}, h},
		{"both after", Window{Start: tm(at(0, 12, 17)), End: time.UnixMicro(at(0, 13, 5))},
			Window{Start: tm(at(0, 12, 17)), End: time.UnixMicro(at(0, 13, 5))}, h},
		{"no start", Window{End: time.UnixMicro(at(0, 11, 5))}, Window{End: time.UnixMicro(at(0, 12, 0) - 1)}, h},
		{"empty stays empty", Window{Start: tm(at(0, 10, 40)), End: time.UnixMicro(at(0, 10, 20))},
			Window{Start: tm(at(0, 10, 40)), End: time.UnixMicro(at(0, 10, 20))}, h},
	} {
		got := HorizonWindow(tc.in, tc.horizonArg)
		if !got.End.Equal(tc.want.End) || (got.Start == nil) != (tc.want.Start == nil) ||
			(got.Start != nil && !got.Start.Equal(*tc.want.Start)) {
			t.Errorf("%s: HorizonWindow = [%v, %v], want [%v, %v]", tc.name, got.Start, got.End, tc.want.Start, tc.want.End)
		}
	}
}

// countPart counts the operations (created_at in unix microseconds) a part
// sums: raw ones by time, rolled-up ones by their bucket's start.
func countPart(ops []int64, p Part) int64 {
	var n int64
	for _, op := range ops {
		t := op
		switch p.Source {
		case FromHourly:
			t = FloorTo(op, MicrosPerHour)
		case FromDaily:
			t = FloorTo(op, MicrosPerDay)
		}
		if (p.NoLower || t >= p.Lo) && t < p.Hi {
			n++
		}
	}
	return n
}

func TestPartString(t *testing.T) {
	p := Part{Source: FromRaw, Lo: at(0, 10, 0), Hi: at(0, 11, 0), Subtract: true}
	if got := p.String(); !strings.HasPrefix(got, "-raw[2025-01-14T10:00:00Z") {
		t.Errorf("String() = %q", got)
	}
}
