package exporter

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// AggregateRequest is a GET /metrics/aggregate request whose parameters
// the HTTP layer has read: the dimensions (ParseGroupBy), the filters of the
// operations' list (its Limit and Offset aside), one of api.AggregateOrders,
// and 1 to api.MaxLimit groups.
type AggregateRequest struct {
	GroupBy []tsdb.Dimension
	Filter  tsdb.OperationFilter
	OrderBy string
	Limit   int
}

// ParseGroupBy reads group_by: one to api.MaxGroupBy distinct dimensions of
// api.Dimensions, comma-separated. Its error says what is wrong with s.
func ParseGroupBy(s string) ([]tsdb.Dimension, error) {
	names := strings.Split(s, ",")
	if len(names) > api.MaxGroupBy {
		return nil, fmt.Errorf("at most %d dimensions, not %d", api.MaxGroupBy, len(names))
	}
	dims := make([]tsdb.Dimension, 0, len(names))
	for _, name := range names {
		if !slices.Contains(api.Dimensions, name) {
			return nil, fmt.Errorf("%q is not one of %s", name, strings.Join(api.Dimensions, ", "))
		}
		if slices.Contains(dims, tsdb.Dimension(name)) {
			return nil, fmt.Errorf("%s is named twice", name)
		}
		dims = append(dims, tsdb.Dimension(name))
	}
	return dims, nil
}

// order answers how the store ranks the groups for order_by: as the figure
// itself, and cost_saved as tokens_prevented, which it is priced from at
// one price (at a price of 0 every cost ties, and the key alone ranks).
func (rep *Reporter) order(orderBy string) tsdb.AggregateOrder {
	switch orderBy {
	case api.OrderTokensOriginal:
		return tsdb.OrderByTokensOriginal
	case api.OrderTokensActual:
		return tsdb.OrderByTokensActual
	case api.OrderCount:
		return tsdb.OrderByCount
	case api.OrderAvgResponseTimeMs:
		return tsdb.OrderByAvgResponseTime
	case api.OrderCostSaved:
		if rep.pricing.PerThousandUSD == 0 {
			return tsdb.OrderByKey
		}
	}
	return tsdb.OrderByTokensPrevented
}

// Aggregate answers the operations that match req grouped by its
// dimensions, the first req.Limit groups in its order (ties by key), priced,
// with each group's cache hit rate.
func (rep *Reporter) Aggregate(ctx context.Context, req AggregateRequest) (api.Aggregate, error) {
	q := tsdb.AggregateQuery{GroupBy: req.GroupBy, Filter: req.Filter, Order: rep.order(req.OrderBy), Limit: req.Limit}
	q.Filter.Limit, q.Filter.Offset = 0, 0
	res, err := rep.store.Aggregate(ctx, q)
	if err != nil {
		return api.Aggregate{}, fmt.Errorf("aggregate: %w", err)
	}
	out := api.Aggregate{GroupBy: make([]string, len(req.GroupBy)), Groups: make([]api.AggregateGroup, len(res.Groups)), TotalGroups: res.TotalGroups}
	for i, d := range req.GroupBy {
		out.GroupBy[i] = string(d)
	}
	for i, g := range res.Groups {
		key := make(map[string]*string, len(g.Key))
		for j, v := range g.Key {
			var s *string
			switch {
			case v.Null:
			case !v.Start.IsZero():
				s = new(api.FormatTime(v.Start))
			default:
				s = new(v.Text)
			}
			key[out.GroupBy[j]] = s
		}
		out.Groups[i] = api.AggregateGroup{
			Key:               key,
			Count:             g.Count,
			TokensOriginal:    g.TokensOriginal,
			TokensActual:      g.TokensActual,
			TokensPrevented:   g.TokensPrevented,
			CostSaved:         rep.pricing.Cost(g.TokensPrevented),
			AvgResponseTimeMs: mean(g.ResponseTimeSumMs, g.Count),
			CacheHits:         g.Cache.Hits,
			CacheHitRate:      ratio(g.Cache.Hits, g.Cache.Lookups),
		}
	}
	return out, nil
}

// ratio answers part/whole to nine decimals, 0 when whole is 0.
func ratio(part, whole int64) float64 {
	if whole == 0 {
		return 0
	}
	return round(float64(part)/float64(whole), 9)
}
