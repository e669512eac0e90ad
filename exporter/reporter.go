package exporter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// ReportStore is what the reports read of a store: the aggregates of
// operations and of spend.
type ReportStore interface {
	tsdb.Aggregator
	SpendBreakdown(ctx context.Context, w tsdb.Window) ([]tsdb.SpendTotals, error)
	SpendTrend(ctx context.Context, w tsdb.Window, step tsdb.Step) ([]tsdb.SpendBucket, error)
}

// Reporter answers the aggregate endpoints from a store, priced.
type Reporter struct {
	store   ReportStore
	pricing Pricing
	now     func() time.Time
}

// NewReporter answers from store at pricing; now is the clock (time.Now when nil).
func NewReporter(store ReportStore, pricing Pricing, now func() time.Time) *Reporter {
	if now == nil {
		now = time.Now
	}
	return &Reporter{store: store, pricing: pricing, now: now}
}

// ToolBreakdown answers the per-tool, per-mode figures of r for toolID (all when empty).
func (rep *Reporter) ToolBreakdown(ctx context.Context, r TimeRange, toolID string) (api.ToolBreakdown, error) {
	now := rep.now().UTC()
	rows, err := rep.store.Breakdown(ctx, r.window(toolID, now))
	if err != nil {
		return api.ToolBreakdown{}, fmt.Errorf("breakdown: %w", err)
	}
	type acc struct {
		totals tsdb.Totals
		modes  map[string]tsdb.Totals
	}
	tools := map[string]*acc{}
	for _, name := range api.ToolNames {
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
	stats := func(a *acc) api.ToolStats {
		s := api.ToolStats{
			TotalOperations:      a.totals.Count,
			TotalTokensOriginal:  a.totals.TokensOriginal,
			TotalTokensActual:    a.totals.TokensActual,
			TotalTokensPrevented: a.totals.TokensPrevented,
			AvgResponseTimeMs:    mean(a.totals.ResponseTimeSumMs, a.totals.Count),
			ByMode:               make(map[string]api.ModeBreakdown, len(a.modes)),
		}
		for mode, t := range a.modes {
			s.ByMode[mode] = api.ModeBreakdown{
				Count:             t.Count,
				TokensPrevented:   t.TokensPrevented,
				AvgResponseTimeMs: mean(t.ResponseTimeSumMs, t.Count),
			}
		}
		return s
	}
	return api.ToolBreakdown{
		Read:                 stats(tools[api.ToolRead]),
		Search:               stats(tools[api.ToolSearch]),
		TotalTokensPrevented: all.TokensPrevented,
		TotalCostSaved:       rep.pricing.Cost(all.TokensPrevented),
		TimePeriod:           r.Name,
	}, nil
}

// ErrUnboundedRange: a comparison was asked of a range without a lower
// bound ("all"), which has no previous period.
var ErrUnboundedRange = errors.New("time range has no lower bound")

// APISavings answers the priced savings of r for toolID (all when empty),
// with zero-filled trend buckets that sum to the totals.
func (rep *Reporter) APISavings(ctx context.Context, r TimeRange, toolID string) (api.APISavings, error) {
	return rep.apiSavings(ctx, r, toolID, rep.now().UTC(), false)
}

// CompareAPISavings answers APISavings with the figures of the previous
// period of the same length, [now - 2*range, now - range), and the change of
// every total from it. Now is taken to the microsecond, the stores'
// precision, so that the boundary falls on an instant an operation can have
// and every operation counts in exactly one period. A range without a lower
// bound ("all") is ErrUnboundedRange.
func (rep *Reporter) CompareAPISavings(ctx context.Context, r TimeRange, toolID string) (api.APISavings, error) {
	if r.Duration <= 0 {
		return api.APISavings{}, fmt.Errorf("compare %s: %w", r.Name, ErrUnboundedRange)
	}
	return rep.apiSavings(ctx, r, toolID, rep.now().UTC().Truncate(time.Microsecond), true)
}

// apiSavings answers the savings of r ending at now, compared with the
// previous period when compare is set.
func (rep *Reporter) apiSavings(ctx context.Context, r TimeRange, toolID string, now time.Time, compare bool) (api.APISavings, error) {
	w := r.window(toolID, now)
	// The store reads of the answer are independent: they run at once, so
	// that the answer takes as long as the slowest, not their sum.
	var (
		current, previous api.PeriodSavings
		trends            []api.TrendPoint
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
			return api.APISavings{}, err
		}
	}
	out := api.APISavings{
		PeriodSavings: current,
		Trends:        trends,
		TimeRange:     r.Name,
		CalculatedAt:  now,
	}
	if compare {
		out.PreviousPeriod = &api.PreviousPeriod{Start: start, End: end, PeriodSavings: previous}
		out.Change = savingsChange(current, previous)
	}
	return out, nil
}

// periodSavings answers the priced totals and breakdowns of the operations in w.
func (rep *Reporter) periodSavings(ctx context.Context, w tsdb.Window) (api.PeriodSavings, error) {
	rows, err := rep.store.Breakdown(ctx, w)
	if err != nil {
		return api.PeriodSavings{}, fmt.Errorf("savings breakdown: %w", err)
	}
	var all, read, search tsdb.Totals
	modes := map[string]tsdb.Totals{}
	for _, row := range rows {
		all.Add(row.Totals)
		switch row.ToolName {
		case api.ToolRead:
			read.Add(row.Totals)
		case api.ToolSearch:
			search.Add(row.Totals)
		}
		m := modes[row.OperationMode]
		m.Add(row.Totals)
		modes[row.OperationMode] = m
	}
	out := api.PeriodSavings{
		APICostBaseline:      rep.pricing.Cost(all.TokensOriginal),
		APICostActual:        rep.pricing.Cost(all.TokensActual),
		TotalCostSaved:       rep.pricing.Cost(all.TokensPrevented),
		SavingsPercentage:    percent(all.TokensPrevented, all.TokensOriginal),
		TotalTokensProcessed: all.TokensOriginal,
		TotalTokensPrevented: all.TokensPrevented,
		TotalOperations:      all.Count,
		BreakdownByTool:      api.ToolSavings{Read: rep.savings(read), Search: rep.savings(search)},
		BreakdownByMode:      make(map[string]api.Savings, len(modes)),
	}
	for mode, t := range modes {
		out.BreakdownByMode[mode] = rep.savings(t)
	}
	return out, nil
}

// savingsChange answers how every total moved from prev to cur.
func savingsChange(cur, prev api.PeriodSavings) *api.SavingsChange {
	money := func(c, p float64) api.Change[float64] {
		return api.Change[float64]{Absolute: round(c-p, 9), Percent: relative(c, p)}
	}
	count := func(c, p int64) api.Change[int64] {
		return api.Change[int64]{Absolute: c - p, Percent: relative(float64(c), float64(p))}
	}
	return &api.SavingsChange{
		APICostBaseline: money(cur.APICostBaseline, prev.APICostBaseline),
		APICostActual:   money(cur.APICostActual, prev.APICostActual),
		TotalCostSaved:  money(cur.TotalCostSaved, prev.TotalCostSaved),
		SavingsPercentage: api.Change[float64]{
			Absolute: round(cur.SavingsPercentage-prev.SavingsPercentage, 2),
			Percent:  relative(cur.SavingsPercentage, prev.SavingsPercentage),
		},
		TotalTokensProcessed: count(cur.TotalTokensProcessed, prev.TotalTokensProcessed),
		TotalTokensPrevented: count(cur.TotalTokensPrevented, prev.TotalTokensPrevented),
		TotalOperations:      count(cur.TotalOperations, prev.TotalOperations),
	}
}

func (rep *Reporter) savings(t tsdb.Totals) api.Savings {
	return api.Savings{CostSaved: rep.pricing.Cost(t.TokensPrevented), TokensPrevented: t.TokensPrevented, Operations: t.Count}
}

// trends answers every bucket from the one holding the window's start (for
// "all": the first operation's) up to the one holding now, zero-filled. A
// bucket that would start exactly at now holds no time of the window and is
// left out, so a 24h range has 24 buckets when now falls on an hour.
func (rep *Reporter) trends(ctx context.Context, r TimeRange, w tsdb.Window, now time.Time) ([]api.TrendPoint, error) {
	var first time.Time
	if w.Start != nil {
		first = *w.Start
	} else {
		t, ok, err := rep.store.FirstOperationTime(ctx, w.ToolID)
		if err != nil {
			return nil, fmt.Errorf("first operation: %w", err)
		}
		if !ok || t.After(now) {
			return []api.TrendPoint{}, nil
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
	out := []api.TrendPoint{}
	last := r.Step.Truncate(now)
	for t := r.Step.Truncate(first); !t.After(last); t = r.Step.Next(t) {
		if t.Equal(now) && !t.Equal(first) {
			// Only the instant now itself: fold it into the previous bucket.
			if tot, ok := byStart[t.UnixNano()]; ok && len(out) > 0 {
				p := &out[len(out)-1]
				p.TokensPrevented = tsdb.AddSat(p.TokensPrevented, tot.TokensPrevented)
				p.Operations += tot.Count
				p.CostSaved = rep.pricing.Cost(p.TokensPrevented)
			}
			break
		}
		tot := byStart[t.UnixNano()]
		out = append(out, api.TrendPoint{
			Timestamp:       t,
			TokensPrevented: tot.TokensPrevented,
			CostSaved:       rep.pricing.Cost(tot.TokensPrevented),
			Operations:      tot.Count,
		})
	}
	return out, nil
}
