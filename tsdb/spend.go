package tsdb

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Tokens are token counts by the kind an AI tool reports them in: what it
// sent (input), what it got back (output), and what its provider's prompt
// cache served (cache read) or stored (cache creation).
type Tokens struct {
	Input         int64
	Output        int64
	CacheRead     int64
	CacheCreation int64
}

// Add adds o to t.
func (t *Tokens) Add(o Tokens) {
	t.Input += o.Input
	t.Output += o.Output
	t.CacheRead += o.CacheRead
	t.CacheCreation += o.CacheCreation
}

// IsZero reports whether every count is 0.
func (t Tokens) IsZero() bool { return t == Tokens{} }

// SpendPoint is what an AI tool spent over one interval, as its own
// telemetry reports it (the OTLP metrics of issue "Spend beside savings"):
// tokens by kind and dollars, for one model. Every field is validated; the
// store keeps it as given. A point is a delta: cumulative series are turned
// into deltas before they reach a store.
type SpendPoint struct {
	// ID identifies the point: the same series, interval start and time
	// give the same ID, so a retried export is stored once.
	ID uuid.UUID
	// ToolID is the tool that spent (the resource's service.name, e.g.
	// claude-code), as operations' tool_id.
	ToolID string
	// Model is the model the tokens went to ("" when not reported).
	Model string
	// SessionID is the tool's session, when it reported one that is a UUID.
	SessionID *uuid.UUID
	// Time is the end of the point's interval: UTC, microsecond precision.
	Time    time.Time
	CostUSD float64 // >= 0
	Tokens  Tokens  // each >= 0

	// Duplicate is set by WriteSpend on a point whose ID was already
	// stored: a retried export, which it did not store again.
	Duplicate bool
}

// SpendTotals are the sums of the spend points of one (tool id, model).
type SpendTotals struct {
	ToolID  string
	Model   string
	Points  int64
	CostUSD float64
	Tokens  Tokens
}

// Add adds o's points, cost and tokens to t (not its tool id and model).
func (t *SpendTotals) Add(o SpendTotals) {
	t.Points += o.Points
	t.CostUSD += o.CostUSD
	t.Tokens.Add(o.Tokens)
}

// SpendBucket is the spend of the points whose time falls in [Start, next
// bucket start), restricted to the window asked for.
type SpendBucket struct {
	Start   time.Time
	CostUSD float64
	Tokens  Tokens
}

// SpendStore keeps spend points. A window selects points by Time as it
// selects operations by created_at (ToolID, Start <= time <= End).
type SpendStore interface {
	// WriteSpend stores points durably, all or none, as WriteOperations
	// does: when it returns nil every point survives a crash. A point whose
	// ID is stored already is not stored again and gets Duplicate set.
	WriteSpend(ctx context.Context, points []SpendPoint) error

	// SpendBreakdown answers the totals of every (tool id, model) with at
	// least one point in w, in no particular order (an empty, non-nil slice
	// when there is none).
	SpendBreakdown(ctx context.Context, w Window) ([]SpendTotals, error)

	// SpendTrend answers the spend per step bucket of the points in w,
	// oldest first, only for buckets that hold at least one point (an
	// empty, non-nil slice when there is none).
	SpendTrend(ctx context.Context, w Window, step Step) ([]SpendBucket, error)
}

// SpendWriter is the part of a SpendStore the ingest of OTLP metrics needs.
type SpendWriter interface {
	WriteSpend(ctx context.Context, points []SpendPoint) error
}
