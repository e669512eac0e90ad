package exporter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// TimeRange is a look-back window of the aggregate endpoints.
type TimeRange struct {
	Name     string
	Duration time.Duration // 0 for "all": no lower bound
	Step     tsdb.Step
}

// The time ranges of the contract.
var (
	Range1h  = TimeRange{"1h", time.Hour, tsdb.Hourly}
	Range24h = TimeRange{"24h", 24 * time.Hour, tsdb.Hourly}
	Range7d  = TimeRange{"7d", 7 * 24 * time.Hour, tsdb.Daily}
	Range30d = TimeRange{"30d", 30 * 24 * time.Hour, tsdb.Daily}
	RangeAll = TimeRange{"all", 0, tsdb.Daily}
)

// BreakdownRanges are the ranges /metrics/tool-breakdown takes;
// SavingsRanges those /metrics/api-savings takes.
var (
	BreakdownRanges = []TimeRange{Range1h, Range24h, Range7d, Range30d}
	SavingsRanges   = []TimeRange{Range1h, Range24h, Range7d, Range30d, RangeAll}
)

// ParseTimeRange finds name among allowed; ok is false when it is not there.
func ParseTimeRange(name string, allowed []TimeRange) (TimeRange, bool) {
	for _, r := range allowed {
		if r.Name == name {
			return r, true
		}
	}
	return TimeRange{}, false
}

// RangeNames lists the names of ranges, comma-separated, for error messages.
func RangeNames(ranges []TimeRange) string {
	names := make([]string, len(ranges))
	for i, r := range ranges {
		names[i] = r.Name
	}
	return strings.Join(names, ", ")
}

// Reporter answers the aggregate endpoints from a store, priced.
type Reporter struct {
	store   tsdb.Store
	pricing Pricing
	now     func() time.Time
}

// NewReporter answers from store at pricing; now is the clock (time.Now when nil).
func NewReporter(store tsdb.Store, pricing Pricing, now func() time.Time) *Reporter {
	if now == nil {
		now = time.Now
	}
	return &Reporter{store: store, pricing: pricing, now: now}
}

// ModeBreakdown is one mode of one tool in a ToolBreakdown.
type ModeBreakdown struct {
	Count             int64   `json:"count"`
	TokensPrevented   int64   `json:"tokens_prevented"`
	AvgResponseTimeMs float64 `json:"avg_response_time_ms"`
}

// ToolStats are one tool's figures in a ToolBreakdown.
type ToolStats struct {
	TotalOperations      int64                    `json:"total_operations"`
	TotalTokensOriginal  int64                    `json:"total_tokens_original"`
	TotalTokensActual    int64                    `json:"total_tokens_actual"`
	TotalTokensPrevented int64                    `json:"total_tokens_prevented"`
	AvgResponseTimeMs    float64                  `json:"avg_response_time_ms"`
	ByMode               map[string]ModeBreakdown `json:"by_mode"`
}

// ToolBreakdown is the answer of GET /metrics/tool-breakdown.
type ToolBreakdown struct {
	Read                 ToolStats `json:"read"`
	Search               ToolStats `json:"search"`
	TotalTokensPrevented int64     `json:"total_tokens_prevented"`
	TotalCostSaved       float64   `json:"total_cost_saved"`
	TimePeriod           string    `json:"time_period"`
}

// window answers the store window of r ending now.
func window(r TimeRange, toolID string, now time.Time) tsdb.Window {
	w := tsdb.Window{ToolID: toolID, End: now}
	if r.Duration > 0 {
		start := now.Add(-r.Duration)
		w.Start = &start
	}
	return w
}

// ToolBreakdown answers the per-tool, per-mode figures of r for toolID (all when empty).
func (rep *Reporter) ToolBreakdown(ctx context.Context, r TimeRange, toolID string) (ToolBreakdown, error) {
	now := rep.now().UTC()
	rows, err := rep.store.Breakdown(ctx, window(r, toolID, now))
	if err != nil {
		return ToolBreakdown{}, fmt.Errorf("breakdown: %w", err)
	}
	type acc struct {
		totals tsdb.Totals
		modes  map[string]tsdb.Totals
	}
	tools := map[string]*acc{}
	for _, name := range tsdb.ToolNames {
		tools[name] = &acc{modes: map[string]tsdb.Totals{}}
	}
	var all tsdb.Totals
	for _, row := range rows {
		a, ok := tools[row.ToolName]
		if !ok { // a tool name outside the contract: count it in the total only
			all.Add(row.Totals)
			continue
		}
		a.totals.Add(row.Totals)
		m := a.modes[row.OperationMode]
		m.Add(row.Totals)
		a.modes[row.OperationMode] = m
		all.Add(row.Totals)
	}
	stats := func(a *acc) ToolStats {
		s := ToolStats{
			TotalOperations:      a.totals.Count,
			TotalTokensOriginal:  a.totals.TokensOriginal,
			TotalTokensActual:    a.totals.TokensActual,
			TotalTokensPrevented: a.totals.TokensPrevented,
			AvgResponseTimeMs:    mean(a.totals.ResponseTimeSumMs, a.totals.Count),
			ByMode:               make(map[string]ModeBreakdown, len(a.modes)),
		}
		for mode, t := range a.modes {
			s.ByMode[mode] = ModeBreakdown{
				Count:             t.Count,
				TokensPrevented:   t.TokensPrevented,
				AvgResponseTimeMs: mean(t.ResponseTimeSumMs, t.Count),
			}
		}
		return s
	}
	return ToolBreakdown{
		Read:                 stats(tools[tsdb.ToolRead]),
		Search:               stats(tools[tsdb.ToolSearch]),
		TotalTokensPrevented: all.TokensPrevented,
		TotalCostSaved:       rep.pricing.Cost(all.TokensPrevented),
		TimePeriod:           r.Name,
	}, nil
}

// Savings are the figures of one tool or mode in APISavings.
type Savings struct {
	CostSaved       float64 `json:"cost_saved"`
	TokensPrevented int64   `json:"tokens_prevented"`
	Operations      int64   `json:"operations"`
}

// ToolSavings has both tools, always.
type ToolSavings struct {
	Read   Savings `json:"read"`
	Search Savings `json:"search"`
}

// TrendPoint is one bucket of APISavings.Trends.
type TrendPoint struct {
	Timestamp       string  `json:"timestamp"`
	TokensPrevented int64   `json:"tokens_prevented"`
	CostSaved       float64 `json:"cost_saved"`
	Operations      int64   `json:"operations"`
}

// PeriodSavings are the priced figures of one period of APISavings.
type PeriodSavings struct {
	APICostBaseline      float64            `json:"api_cost_baseline"`
	APICostActual        float64            `json:"api_cost_actual"`
	TotalCostSaved       float64            `json:"total_cost_saved"`
	SavingsPercentage    float64            `json:"savings_percentage"`
	TotalTokensProcessed int64              `json:"total_tokens_processed"`
	TotalTokensPrevented int64              `json:"total_tokens_prevented"`
	TotalOperations      int64              `json:"total_operations"`
	BreakdownByTool      ToolSavings        `json:"breakdown_by_tool"`
	BreakdownByMode      map[string]Savings `json:"breakdown_by_mode"`
}

// APISavings is the answer of GET /metrics/api-savings. PreviousPeriod and
// Change are set only when the answer is compared (see CompareAPISavings).
type APISavings struct {
	PeriodSavings
	Trends         []TrendPoint    `json:"trends"`
	TimeRange      string          `json:"time_range"`
	CalculatedAt   string          `json:"calculated_at"`
	PreviousPeriod *PreviousPeriod `json:"previous_period,omitempty"`
	Change         *SavingsChange  `json:"change,omitempty"`
}

// PreviousPeriod is the period of the same length that ends where the
// current one starts: [Start, End), End being the current period's start.
type PreviousPeriod struct {
	Start string `json:"start"`
	End   string `json:"end"`
	PeriodSavings
}

// Change is how a figure moved from the previous period to the current one:
// Absolute = current - previous, Percent = Absolute / previous * 100 to two
// decimals, nil (JSON null) when previous is 0.
type Change[T float64 | int64] struct {
	Absolute T        `json:"absolute"`
	Percent  *float64 `json:"percent"`
}

// SavingsChange is the Change of every total of APISavings. Money changes
// are rounded as money is; the savings percentage's Absolute is in
// percentage points, to two decimals.
type SavingsChange struct {
	APICostBaseline      Change[float64] `json:"api_cost_baseline"`
	APICostActual        Change[float64] `json:"api_cost_actual"`
	TotalCostSaved       Change[float64] `json:"total_cost_saved"`
	SavingsPercentage    Change[float64] `json:"savings_percentage"`
	TotalTokensProcessed Change[int64]   `json:"total_tokens_processed"`
	TotalTokensPrevented Change[int64]   `json:"total_tokens_prevented"`
	TotalOperations      Change[int64]   `json:"total_operations"`
}

// ErrUnboundedRange: a comparison was asked of a range without a lower
// bound ("all"), which has no previous period.
var ErrUnboundedRange = errors.New("time range has no lower bound")

// APISavings answers the priced savings of r for toolID (all when empty),
// with zero-filled trend buckets that sum to the totals.
func (rep *Reporter) APISavings(ctx context.Context, r TimeRange, toolID string) (APISavings, error) {
	return rep.apiSavings(ctx, r, toolID, rep.now().UTC(), false)
}

// CompareAPISavings answers APISavings with the figures of the previous
// period of the same length, [now - 2*range, now - range), and the change of
// every total from it. Now is taken to the microsecond, the stores'
// precision, so that the boundary falls on an instant an operation can have
// and every operation counts in exactly one period. A range without a lower
// bound ("all") is ErrUnboundedRange.
func (rep *Reporter) CompareAPISavings(ctx context.Context, r TimeRange, toolID string) (APISavings, error) {
	if r.Duration <= 0 {
		return APISavings{}, fmt.Errorf("compare %s: %w", r.Name, ErrUnboundedRange)
	}
	return rep.apiSavings(ctx, r, toolID, rep.now().UTC().Truncate(time.Microsecond), true)
}

// apiSavings answers the savings of r ending at now, compared with the
// previous period when compare is set.
func (rep *Reporter) apiSavings(ctx context.Context, r TimeRange, toolID string, now time.Time, compare bool) (APISavings, error) {
	w := window(r, toolID, now)
	// The store reads of the answer are independent: they run at once, so
	// that the answer takes as long as the slowest, not their sum.
	var (
		current, previous PeriodSavings
		trends            []TrendPoint
		start, end        time.Time
		errs              [3]error
		wg                sync.WaitGroup
	)
	run := func(i int, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f()
		}()
	}
	run(0, func() (err error) {
		current, err = rep.periodSavings(ctx, w)
		return err
	})
	run(1, func() (err error) {
		trends, err = rep.trends(ctx, r, w, now)
		return err
	})
	if compare {
		// The store's windows are inclusive: the previous one ends a
		// microsecond before the current one starts.
		start, end = now.Add(-2*r.Duration), *w.Start
		run(2, func() (err error) {
			previous, err = rep.periodSavings(ctx, tsdb.Window{ToolID: toolID, Start: &start, End: end.Add(-time.Microsecond)})
			if err != nil {
				err = fmt.Errorf("previous period: %w", err)
			}
			return err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return APISavings{}, err
		}
	}
	out := APISavings{
		PeriodSavings: current,
		Trends:        trends,
		TimeRange:     r.Name,
		CalculatedAt:  FormatTime(now),
	}
	if compare {
		out.PreviousPeriod = &PreviousPeriod{Start: FormatTime(start), End: FormatTime(end), PeriodSavings: previous}
		out.Change = savingsChange(current, previous)
	}
	return out, nil
}

// periodSavings answers the priced totals and breakdowns of the operations in w.
func (rep *Reporter) periodSavings(ctx context.Context, w tsdb.Window) (PeriodSavings, error) {
	rows, err := rep.store.Breakdown(ctx, w)
	if err != nil {
		return PeriodSavings{}, fmt.Errorf("savings breakdown: %w", err)
	}
	var all, read, search tsdb.Totals
	modes := map[string]tsdb.Totals{}
	for _, row := range rows {
		all.Add(row.Totals)
		switch row.ToolName {
		case tsdb.ToolRead:
			read.Add(row.Totals)
		case tsdb.ToolSearch:
			search.Add(row.Totals)
		}
		m := modes[row.OperationMode]
		m.Add(row.Totals)
		modes[row.OperationMode] = m
	}
	out := PeriodSavings{
		APICostBaseline:      rep.pricing.Cost(all.TokensOriginal),
		APICostActual:        rep.pricing.Cost(all.TokensActual),
		TotalCostSaved:       rep.pricing.Cost(all.TokensPrevented),
		SavingsPercentage:    percent(all.TokensPrevented, all.TokensOriginal),
		TotalTokensProcessed: all.TokensOriginal,
		TotalTokensPrevented: all.TokensPrevented,
		TotalOperations:      all.Count,
		BreakdownByTool:      ToolSavings{Read: rep.savings(read), Search: rep.savings(search)},
		BreakdownByMode:      make(map[string]Savings, len(modes)),
	}
	for mode, t := range modes {
		out.BreakdownByMode[mode] = rep.savings(t)
	}
	return out, nil
}

// savingsChange answers how every total moved from prev to cur.
func savingsChange(cur, prev PeriodSavings) *SavingsChange {
	money := func(c, p float64) Change[float64] {
		return Change[float64]{Absolute: round(c-p, 9), Percent: relative(c, p)}
	}
	count := func(c, p int64) Change[int64] {
		return Change[int64]{Absolute: c - p, Percent: relative(float64(c), float64(p))}
	}
	return &SavingsChange{
		APICostBaseline: money(cur.APICostBaseline, prev.APICostBaseline),
		APICostActual:   money(cur.APICostActual, prev.APICostActual),
		TotalCostSaved:  money(cur.TotalCostSaved, prev.TotalCostSaved),
		SavingsPercentage: Change[float64]{
			Absolute: round(cur.SavingsPercentage-prev.SavingsPercentage, 2),
			Percent:  relative(cur.SavingsPercentage, prev.SavingsPercentage),
		},
		TotalTokensProcessed: count(cur.TotalTokensProcessed, prev.TotalTokensProcessed),
		TotalTokensPrevented: count(cur.TotalTokensPrevented, prev.TotalTokensPrevented),
		TotalOperations:      count(cur.TotalOperations, prev.TotalOperations),
	}
}

func (rep *Reporter) savings(t tsdb.Totals) Savings {
	return Savings{CostSaved: rep.pricing.Cost(t.TokensPrevented), TokensPrevented: t.TokensPrevented, Operations: t.Count}
}

// trends answers every bucket from the one holding the window's start (for
// "all": the first operation's) up to the one holding now, zero-filled. A
// bucket that would start exactly at now holds no time of the window and is
// left out, so a 24h range has 24 buckets when now falls on an hour.
func (rep *Reporter) trends(ctx context.Context, r TimeRange, w tsdb.Window, now time.Time) ([]TrendPoint, error) {
	var first time.Time
	if w.Start != nil {
		first = *w.Start
	} else {
		t, ok, err := rep.store.FirstOperationTime(ctx, w.ToolID)
		if err != nil {
			return nil, fmt.Errorf("first operation: %w", err)
		}
		if !ok || t.After(now) {
			return []TrendPoint{}, nil
		}
		first = t
	}
	buckets, err := rep.store.Trend(ctx, w, r.Step)
	if err != nil {
		return nil, fmt.Errorf("trend: %w", err)
	}
	byStart := make(map[int64]tsdb.Totals, len(buckets))
	for _, b := range buckets {
		byStart[b.Start.UnixNano()] = b.Totals
	}
	out := []TrendPoint{}
	last := r.Step.Truncate(now)
	for t := r.Step.Truncate(first); !t.After(last); t = r.Step.Next(t) {
		if t.Equal(now) && !t.Equal(first) {
			// Only the instant now itself: fold it into the previous bucket.
			if tot, ok := byStart[t.UnixNano()]; ok && len(out) > 0 {
				p := &out[len(out)-1]
				p.TokensPrevented += tot.TokensPrevented
				p.Operations += tot.Count
				p.CostSaved = rep.pricing.Cost(p.TokensPrevented)
			}
			break
		}
		tot := byStart[t.UnixNano()]
		out = append(out, TrendPoint{
			Timestamp:       FormatTime(t),
			TokensPrevented: tot.TokensPrevented,
			CostSaved:       rep.pricing.Cost(tot.TokensPrevented),
			Operations:      tot.Count,
		})
	}
	return out, nil
}

// FormatTime formats t as RFC 3339 in UTC with a Z, with as many fractional
// digits as it needs.
func FormatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}
