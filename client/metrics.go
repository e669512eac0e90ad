package client

import (
	"context"
	"net/url"
	"strconv"
	"strings"

	"github.com/omnimemory/omnimemory-metrics/client/api"
)

// TimeRange is a look-back window of the aggregate endpoints: the window
// is [now - range, now].
type TimeRange = api.TimeRange

// The ranges of the contract. ToolBreakdown takes all but RangeAll.
const (
	Range1h  = api.Range1h
	Range24h = api.Range24h
	Range7d  = api.Range7d
	Range30d = api.Range30d
	RangeAll = api.RangeAll
)

// rangeValues answers the query parameters of a time range and a tool id,
// each left out when empty (the service's default).
func rangeValues(tr TimeRange, toolID string) url.Values {
	v := url.Values{}
	if tr != "" {
		v.Set("time_range", string(tr))
	}
	if toolID != "" {
		v.Set("tool_id", toolID)
	}
	return v
}

// BreakdownQuery selects a ToolBreakdown. Zero fields take the service's
// defaults: the last 24 hours, every tool_id.
type BreakdownQuery struct {
	TimeRange TimeRange
	ToolID    string
}

// ToolBreakdown answers the per-tool, per-mode figures of a time range
// (GET /metrics/tool-breakdown).
func (c *Client) ToolBreakdown(ctx context.Context, q BreakdownQuery) (*ToolBreakdown, error) {
	v := rangeValues(q.TimeRange, q.ToolID)
	var out ToolBreakdown
	if err := c.get(ctx, api.PathToolBreakdown, v, retryIdempotent, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Compare asks APISavings for a comparison.
type Compare string

// ComparePrevious compares with the previous period of the same length,
// [now - 2*range, now - range). It needs a bounded range (not RangeAll).
const ComparePrevious Compare = api.ComparePrevious

// SavingsQuery selects an APISavings. Zero fields take the service's
// defaults: the last 24 hours, every tool_id, no comparison.
type SavingsQuery struct {
	TimeRange TimeRange
	ToolID    string
	// Compare, when ComparePrevious, fills PreviousPeriod and Change.
	Compare Compare
}

// APISavings answers the priced savings of a time range
// (GET /metrics/api-savings), compared with the previous period when
// q.Compare is ComparePrevious.
func (c *Client) APISavings(ctx context.Context, q SavingsQuery) (*APISavings, error) {
	v := rangeValues(q.TimeRange, q.ToolID)
	if q.Compare != "" {
		v.Set("compare", string(q.Compare))
	}
	var out APISavings
	if err := c.get(ctx, api.PathAPISavings, v, retryIdempotent, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SpendQuery selects GET /metrics/spend.
type SpendQuery struct {
	TimeRange TimeRange
	ToolID    string
}

// Spend answers what the tools reported spending in a time range beside
// what their operations saved (GET /metrics/spend).
func (c *Client) Spend(ctx context.Context, q SpendQuery) (*Spend, error) {
	v := rangeValues(q.TimeRange, q.ToolID)
	var out Spend
	if err := c.get(ctx, api.PathSpend, v, retryIdempotent, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// The dimensions Aggregate groups by: fields of the operation, its
// session's project, and the UTC hour or day of its created_at.
const (
	DimFilePath      = api.DimFilePath
	DimToolID        = api.DimToolID
	DimSessionID     = api.DimSessionID
	DimProjectID     = api.DimProjectID
	DimToolName      = api.DimToolName
	DimOperationMode = api.DimOperationMode
	DimHour          = api.DimHour
	DimDay           = api.DimDay
)

// The figures Aggregate ranks its groups by, largest first.
const (
	OrderTokensPrevented   = api.OrderTokensPrevented
	OrderTokensOriginal    = api.OrderTokensOriginal
	OrderTokensActual      = api.OrderTokensActual
	OrderCount             = api.OrderCount
	OrderCostSaved         = api.OrderCostSaved
	OrderAvgResponseTimeMs = api.OrderAvgResponseTimeMs
)

// AggregateQuery selects GET /metrics/aggregate.
type AggregateQuery struct {
	// GroupBy is one to three distinct dimensions (DimFilePath, ...).
	GroupBy []string
	// OrderBy ranks the groups (OrderTokensPrevented when empty).
	OrderBy string
	// Limit is how many groups to answer, 1 to 1000 (0: the service's
	// default, 100).
	Limit int
	// Filter selects the operations as QueryOperations does; its Limit and
	// Offset are not used.
	Filter OperationQuery
}

// Aggregate answers the operations matching q.Filter grouped by q.GroupBy,
// the largest groups first, with how many groups there are in all (GET
// /metrics/aggregate).
func (c *Client) Aggregate(ctx context.Context, q AggregateQuery) (*Aggregate, error) {
	f := q.Filter
	f.Limit, f.Offset = 0, 0
	v := f.values()
	v.Set("group_by", strings.Join(q.GroupBy, ","))
	if q.OrderBy != "" {
		v.Set("order_by", q.OrderBy)
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out Aggregate
	if err := c.get(ctx, api.PathAggregate, v, retryIdempotent, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
