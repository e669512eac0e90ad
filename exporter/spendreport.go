package exporter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// Spend answers what the tools reported spending in r (for toolID, all
// when empty) beside what their operations saved in the same window: the
// api-savings window and buckets, the savings priced as there.
func (rep *Reporter) Spend(ctx context.Context, r TimeRange, toolID string) (api.Spend, error) {
	now := rep.now().UTC().Truncate(time.Microsecond)
	w := r.window(toolID, now)
	var (
		saved       api.PeriodSavings
		savedTrend  []api.TrendPoint
		spent       []tsdb.SpendTotals
		spentBucket []tsdb.SpendBucket
		errs        [4]error
		wg          sync.WaitGroup
	)
	for i, f := range []func() error{
		func() (err error) { saved, err = rep.periodSavings(ctx, w); return err },
		func() (err error) { savedTrend, err = rep.trends(ctx, r, w, now); return err },
		func() (err error) { spent, err = rep.store.SpendBreakdown(ctx, w); return err },
		func() (err error) { spentBucket, err = rep.store.SpendTrend(ctx, w, r.Step); return err },
	} {
		wg.Go(func() { errs[i] = f() })
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return api.Spend{}, fmt.Errorf("spend: %w", err)
	}

	out := api.Spend{
		CostSavedUSD: saved.TotalCostSaved,
		ByModel:      map[string]api.ModelSpend{},
		ByTool:       map[string]api.ToolSpend{},
		TimeRange:    r.Name,
		CalculatedAt: now,
	}
	var tools []string
	for _, t := range spent {
		out.CostSpentUSD += t.CostUSD
		addTokens(&out.Tokens, t.Tokens)
		model := t.Model
		if model == "" {
			model = api.UnknownModel
		}
		m := out.ByModel[model]
		m.CostUSD += t.CostUSD
		addTokens(&m.SpendTokens, t.Tokens)
		out.ByModel[model] = m
		ts := out.ByTool[t.ToolID]
		ts.CostSpentUSD += t.CostUSD
		out.ByTool[t.ToolID] = ts
		if !slices.Contains(tools, t.ToolID) {
			tools = append(tools, t.ToolID)
		}
	}
	if toolID != "" && !slices.Contains(tools, toolID) {
		tools = append(tools, toolID)
	}
	// The savings of each tool that spent: a breakdown of its own, unless
	// the window is already the tool's.
	for _, tool := range tools {
		ps := saved
		if tool != toolID {
			tw := w
			tw.ToolID = tool
			var err error
			if ps, err = rep.periodSavings(ctx, tw); err != nil {
				return api.Spend{}, fmt.Errorf("spend: savings of %s: %w", tool, err)
			}
		}
		ts := out.ByTool[tool]
		ts.CostSpentUSD = round(ts.CostSpentUSD, 9)
		ts.CostSavedUSD = ps.TotalCostSaved
		out.ByTool[tool] = ts
	}
	for k, m := range out.ByModel {
		m.CostUSD = round(m.CostUSD, 9)
		out.ByModel[k] = m
	}
	out.CostSpentUSD = round(out.CostSpentUSD, 9)
	if total := out.CostSpentUSD + out.CostSavedUSD; total > 0 {
		out.SavingsSharePercentage = round(out.CostSavedUSD/total*100, 2)
	}
	out.Trends = spendTrends(r.Step, now, savedTrend, spentBucket)
	return out, nil
}

func addTokens(dst *api.SpendTokens, t tsdb.Tokens) {
	dst.Input += t.Input
	dst.Output += t.Output
	dst.CacheRead += t.CacheRead
	dst.CacheCreation += t.CacheCreation
}

// spendTrends joins the api-savings buckets with the spend buckets: the
// savings' zero-filled grid, reaching back to the first spend bucket when
// spend came before the first operation (range "all"); a spend bucket past
// the grid's last (only the instant now) goes into the last.
func spendTrends(step tsdb.Step, now time.Time, saved []api.TrendPoint, spent []tsdb.SpendBucket) []api.SpendTrendPoint {
	grid := make([]api.SpendTrendPoint, 0, len(saved))
	if len(spent) > 0 && (len(saved) == 0 || spent[0].Start.Before(saved[0].Timestamp)) {
		end := now
		if len(saved) > 0 {
			end = saved[0].Timestamp.Add(-time.Nanosecond)
		}
		last := step.Truncate(end)
		for t := step.Truncate(spent[0].Start); !t.After(last); t = step.Next(t) {
			if len(saved) == 0 && t.Equal(now) && len(grid) > 0 {
				break // only the instant now: it goes into the previous bucket
			}
			grid = append(grid, api.SpendTrendPoint{Timestamp: t})
		}
	}
	for _, p := range saved {
		grid = append(grid, api.SpendTrendPoint{Timestamp: p.Timestamp, CostSavedUSD: p.CostSaved})
	}
	for _, b := range spent {
		// The last bucket starting at or before b.
		i, found := slices.BinarySearchFunc(grid, b.Start, func(p api.SpendTrendPoint, t time.Time) int { return p.Timestamp.Compare(t) })
		if !found {
			i--
		}
		if i >= 0 {
			grid[i].CostSpentUSD += b.CostUSD
		}
	}
	for i := range grid {
		grid[i].CostSpentUSD = round(grid[i].CostSpentUSD, 9)
	}
	return grid
}
