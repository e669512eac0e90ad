package client

import (
	"context"
	"net/url"
	"time"
)

// TimeRange is a look-back window of the aggregate endpoints: the window
// is [now - range, now].
type TimeRange string

// The ranges of the contract. ToolBreakdown takes all but RangeAll.
const (
	Range1h  TimeRange = "1h"
	Range24h TimeRange = "24h"
	Range7d  TimeRange = "7d"
	Range30d TimeRange = "30d"
	RangeAll TimeRange = "all"
)

// BreakdownQuery selects a ToolBreakdown. Zero fields take the service's
// defaults: the last 24 hours, every tool_id.
type BreakdownQuery struct {
	TimeRange TimeRange
	ToolID    string
}

// ModeBreakdown is one mode of one tool in a ToolBreakdown.
type ModeBreakdown struct {
	Count             int64   `json:"count"`
	TokensPrevented   int64   `json:"tokens_prevented"`
	AvgResponseTimeMs float64 `json:"avg_response_time_ms"`
}

// ToolStats are one tool's figures in a ToolBreakdown.
type ToolStats struct {
	TotalOperations      int64   `json:"total_operations"`
	TotalTokensOriginal  int64   `json:"total_tokens_original"`
	TotalTokensActual    int64   `json:"total_tokens_actual"`
	TotalTokensPrevented int64   `json:"total_tokens_prevented"`
	AvgResponseTimeMs    float64 `json:"avg_response_time_ms"`
	// ByMode lists the modes that occurred.
	ByMode map[string]ModeBreakdown `json:"by_mode"`
}

// ToolBreakdown is the answer of GET /metrics/tool-breakdown.
type ToolBreakdown struct {
	Read                 ToolStats `json:"read"`
	Search               ToolStats `json:"search"`
	TotalTokensPrevented int64     `json:"total_tokens_prevented"`
	TotalCostSaved       float64   `json:"total_cost_saved"`
	TimePeriod           TimeRange `json:"time_period"`
}

// ToolBreakdown answers the per-tool, per-mode figures of a time range
// (GET /metrics/tool-breakdown).
func (c *Client) ToolBreakdown(ctx context.Context, q BreakdownQuery) (*ToolBreakdown, error) {
	v := url.Values{}
	if q.TimeRange != "" {
		v.Set("time_range", string(q.TimeRange))
	}
	if q.ToolID != "" {
		v.Set("tool_id", q.ToolID)
	}
	var out ToolBreakdown
	if err := c.get(ctx, "/metrics/tool-breakdown", v, retryIdempotent, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Compare asks APISavings for a comparison.
type Compare string

// ComparePrevious compares with the previous period of the same length,
// [now - 2*range, now - range). It needs a bounded range (not RangeAll).
const ComparePrevious Compare = "previous"

// SavingsQuery selects an APISavings. Zero fields take the service's
// defaults: the last 24 hours, every tool_id, no comparison.
type SavingsQuery struct {
	TimeRange TimeRange
	ToolID    string
	// Compare, when ComparePrevious, fills PreviousPeriod and Change.
	Compare Compare
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

// TrendPoint is one bucket of APISavings.Trends; Timestamp is the bucket's
// start (an hour or a day, UTC).
type TrendPoint struct {
	Timestamp       time.Time `json:"timestamp"`
	TokensPrevented int64     `json:"tokens_prevented"`
	CostSaved       float64   `json:"cost_saved"`
	Operations      int64     `json:"operations"`
}

// PeriodSavings are the priced figures of one period. Money is in US
// dollars, never rounded to cents.
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

// PreviousPeriod is the period compared with: [Start, End), End being
// where the current period starts.
type PreviousPeriod struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	PeriodSavings
}

// Change is how a figure moved from the previous period to the current
// one: Absolute = current - previous; Percent = Absolute / previous * 100,
// nil when previous is 0.
type Change[T float64 | int64] struct {
	Absolute T        `json:"absolute"`
	Percent  *float64 `json:"percent"`
}

// SavingsChange is the Change of every total. SavingsPercentage.Absolute is
// in percentage points.
type SavingsChange struct {
	APICostBaseline      Change[float64] `json:"api_cost_baseline"`
	APICostActual        Change[float64] `json:"api_cost_actual"`
	TotalCostSaved       Change[float64] `json:"total_cost_saved"`
	SavingsPercentage    Change[float64] `json:"savings_percentage"`
	TotalTokensProcessed Change[int64]   `json:"total_tokens_processed"`
	TotalTokensPrevented Change[int64]   `json:"total_tokens_prevented"`
	TotalOperations      Change[int64]   `json:"total_operations"`
}

// APISavings is the answer of GET /metrics/api-savings.
type APISavings struct {
	PeriodSavings
	// Trends are zero-filled buckets, oldest first, summing to the totals:
	// hourly for 1h and 24h, daily otherwise.
	Trends       []TrendPoint `json:"trends"`
	TimeRange    TimeRange    `json:"time_range"`
	CalculatedAt time.Time    `json:"calculated_at"`
	// PreviousPeriod and Change are set only when asked with
	// ComparePrevious.
	PreviousPeriod *PreviousPeriod `json:"previous_period"`
	Change         *SavingsChange  `json:"change"`
}

// APISavings answers the priced savings of a time range
// (GET /metrics/api-savings), compared with the previous period when
// q.Compare is ComparePrevious.
func (c *Client) APISavings(ctx context.Context, q SavingsQuery) (*APISavings, error) {
	v := url.Values{}
	if q.TimeRange != "" {
		v.Set("time_range", string(q.TimeRange))
	}
	if q.ToolID != "" {
		v.Set("tool_id", q.ToolID)
	}
	if q.Compare != "" {
		v.Set("compare", string(q.Compare))
	}
	var out APISavings
	if err := c.get(ctx, "/metrics/api-savings", v, retryIdempotent, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
