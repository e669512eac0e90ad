package tsdb

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"
)

// Dimension is what an aggregate groups operations by: a field of the
// operation, its session's project, or the UTC hour or day of its
// created_at.
type Dimension string

// The dimensions, named as GET /metrics/aggregate names them.
const (
	DimFilePath      Dimension = api.DimFilePath
	DimToolID        Dimension = api.DimToolID
	DimSessionID     Dimension = api.DimSessionID
	DimProjectID     Dimension = api.DimProjectID
	DimToolName      Dimension = api.DimToolName
	DimOperationMode Dimension = api.DimOperationMode
	DimHour          Dimension = api.DimHour
	DimDay           Dimension = api.DimDay
)

// Step answers the bucket width of a time dimension; ok is false for the
// others.
func (d Dimension) Step() (s Step, ok bool) {
	switch d {
	case DimHour:
		return Hourly, true
	case DimDay:
		return Daily, true
	}
	return 0, false
}

// InRollups reports whether the rollup rows carry d: the tool id, tool
// name and mode of their key, and the hour or day of their bucket.
func (d Dimension) InRollups() bool {
	switch d {
	case DimToolID, DimToolName, DimOperationMode, DimHour, DimDay:
		return true
	}
	return false
}

// AggregateOrder is the figure an aggregate ranks its groups by, largest
// first.
type AggregateOrder int

// The orders. OrderByKey ranks by the key alone (every figure tied).
const (
	OrderByTokensPrevented AggregateOrder = iota
	OrderByTokensOriginal
	OrderByTokensActual
	OrderByCount
	OrderByAvgResponseTime
	OrderByKey
)

// AggregateQuery asks for the totals of the operations that match Filter
// (its Limit and Offset aside), grouped by the values of GroupBy (one to
// api.MaxGroupBy distinct dimensions): the Limit first groups in Order, then
// by key ascending, and the number of all groups.
type AggregateQuery struct {
	GroupBy []Dimension
	Filter  OperationFilter
	Order   AggregateOrder
	Limit   int // > 0
}

// FromRollups reports whether q can be answered from the rollup rows (and
// must be, so that its cost grows with buckets, not operations): every
// dimension is one the rollups carry, and no session is asked for.
func (q AggregateQuery) FromRollups() bool {
	if q.Filter.SessionID != nil {
		return false
	}
	for _, d := range q.GroupBy {
		if !d.InRollups() {
			return false
		}
	}
	return true
}

// Window answers q's time range as an aggregate's window: a nil start is
// unbounded, a nil end is the far future.
func (q AggregateQuery) Window() Window {
	w := Window{ToolID: q.Filter.ToolID, Start: q.Filter.Start, End: FarFuture}
	if q.Filter.End != nil {
		w.End = *q.Filter.End
	}
	return w
}

// FarFuture stands for "no upper bound" of a time range: far beyond any
// operation, far from int64 overflow in unix microseconds.
var FarFuture = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// KeyValue is the value of one dimension of a group's key: Text for the
// text dimensions (a session id in lower-case hyphenated form), Start for
// hour and day (the bucket's start, UTC). Null: the operations have no value
// (no file path, no project).
type KeyValue struct {
	Null  bool
	Text  string
	Start time.Time
}

// Compare orders key values: null first, then text byte by byte, or
// bucket starts oldest first.
func (v KeyValue) Compare(o KeyValue) int {
	switch {
	case v.Null || o.Null:
		return -cmp.Compare(boolInt(v.Null), boolInt(o.Null))
	case !v.Start.IsZero() || !o.Start.IsZero():
		return v.Start.Compare(o.Start)
	}
	return strings.Compare(v.Text, o.Text)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// AggregateGroup is one group of an aggregate: the values of its key, in
// the query's GroupBy order, and the totals of its operations.
type AggregateGroup struct {
	Key []KeyValue
	Totals
	Cache CacheCounts
}

// AggregateResult is an aggregate's answer: at most the query's Limit
// groups, in its order, and the number of all groups.
type AggregateResult struct {
	Groups      []AggregateGroup
	TotalGroups int64
}

// CompareGroups orders a before b when a ranks first in o: the larger
// figure first (an average response time compared as its float64 quotient,
// as SQL divides), then the key ascending, dimension by dimension.
func (o AggregateOrder) CompareGroups(a, b *AggregateGroup) int {
	var c int
	switch o {
	case OrderByTokensPrevented:
		c = cmp.Compare(b.TokensPrevented, a.TokensPrevented)
	case OrderByTokensOriginal:
		c = cmp.Compare(b.TokensOriginal, a.TokensOriginal)
	case OrderByTokensActual:
		c = cmp.Compare(b.TokensActual, a.TokensActual)
	case OrderByCount:
		c = cmp.Compare(b.Count, a.Count)
	case OrderByAvgResponseTime:
		c = cmp.Compare(b.ResponseTimeSumMs/float64(b.Count), a.ResponseTimeSumMs/float64(a.Count))
	}
	if c != 0 {
		return c
	}
	for i := range min(len(a.Key), len(b.Key)) {
		if c := a.Key[i].Compare(b.Key[i]); c != 0 {
			return c
		}
	}
	return 0
}

// RankGroups sorts groups in q's order and keeps the first q.Limit: the
// answer of a store that groups in Go.
func RankGroups(groups []AggregateGroup, q AggregateQuery) AggregateResult {
	slices.SortFunc(groups, func(a, b AggregateGroup) int { return q.Order.CompareGroups(&a, &b) })
	return AggregateResult{Groups: groups[:min(len(groups), max(q.Limit, 0))], TotalGroups: int64(len(groups))}
}

// Of answers op's value of dimension d; project is the project of op's
// session (nil: none).
func (d Dimension) Of(op *Operation, project *string) KeyValue {
	text := func(p *string) KeyValue {
		if p == nil {
			return KeyValue{Null: true}
		}
		return KeyValue{Text: *p}
	}
	switch d {
	case DimFilePath:
		return text(op.FilePath)
	case DimToolID:
		return KeyValue{Text: op.ToolID}
	case DimSessionID:
		return KeyValue{Text: op.SessionID.String()}
	case DimProjectID:
		return text(project)
	case DimToolName:
		return KeyValue{Text: op.ToolName}
	case DimOperationMode:
		return KeyValue{Text: op.OperationMode}
	}
	step, _ := d.Step()
	return KeyValue{Start: step.Truncate(op.CreatedAt)}
}

// GroupSums adds up totals per key, for a store that groups in Go. Its
// zero value is ready to use.
type GroupSums struct {
	groups map[string]*AggregateGroup
	buf    []byte
}

// Add adds t and c to the group of key (which it keeps; the caller may not
// change it afterwards).
func (g *GroupSums) Add(key []KeyValue, t Totals, c CacheCounts) {
	if g.groups == nil {
		g.groups = map[string]*AggregateGroup{}
	}
	b := g.buf[:0]
	for _, v := range key { // injective: every text is prefixed with its length
		switch {
		case v.Null:
			b = append(b, 'n')
		case !v.Start.IsZero():
			b = append(b, 't')
			b = strconv.AppendInt(b, v.Start.UnixMicro(), 10)
		default:
			b = append(b, 's')
			b = strconv.AppendInt(b, int64(len(v.Text)), 10)
			b = append(b, ':')
			b = append(b, v.Text...)
		}
	}
	g.buf = b
	grp := g.groups[string(b)]
	if grp == nil {
		grp = &AggregateGroup{Key: key}
		g.groups[string(b)] = grp
	}
	grp.Totals.Add(t)
	grp.Cache.Add(c)
}

// Rank answers the groups with operations, ranked as q asks (see
// RankGroups).
func (g *GroupSums) Rank(q AggregateQuery) AggregateResult {
	groups := make([]AggregateGroup, 0, len(g.groups))
	for _, grp := range g.groups {
		if grp.Count > 0 {
			groups = append(groups, *grp)
		}
	}
	return RankGroups(groups, q)
}
