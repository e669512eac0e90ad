package storetest

import (
	"context"
	"sync"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// SpendMemory is a tsdb.SpendWriter in memory, for the tests of what writes
// spend points: it keeps them by id and marks a point whose id it holds
// Duplicate, as the stores do. Fail makes its writes fail (and store
// nothing); Stall makes them wait for their context. Set either before
// the first write, or Fail later with SetFail.
type SpendMemory struct {
	Fail  error
	Stall bool

	mu     sync.Mutex
	points map[uuid.UUID]tsdb.SpendPoint
	order  []uuid.UUID
}

// SetFail makes the writes from now on fail with err (nil: succeed).
func (m *SpendMemory) SetFail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Fail = err
}

// WriteSpend stores the points whose ids it does not hold.
func (m *SpendMemory) WriteSpend(ctx context.Context, points []tsdb.SpendPoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Stall {
		<-ctx.Done()
		return ctx.Err()
	}
	if m.Fail != nil {
		return m.Fail
	}
	if m.points == nil {
		m.points = map[uuid.UUID]tsdb.SpendPoint{}
	}
	for i := range points {
		if _, ok := m.points[points[i].ID]; ok {
			points[i].Duplicate = true
			continue
		}
		m.points[points[i].ID] = points[i]
		m.order = append(m.order, points[i].ID)
	}
	return nil
}

// Totals answers the tokens and dollars of every stored point.
func (m *SpendMemory) Totals() (tsdb.Tokens, float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var t tsdb.Tokens
	var cost float64
	for _, id := range m.order { // in order: the same sum every time
		t.Add(m.points[id].Tokens)
		cost += m.points[id].CostUSD
	}
	return t, cost
}

// Stored answers the stored points in the order they were first written.
func (m *SpendMemory) Stored() []tsdb.SpendPoint {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]tsdb.SpendPoint, len(m.order))
	for i, id := range m.order {
		out[i] = m.points[id]
	}
	return out
}
