package sqlq

import (
	"sync/atomic"
	"testing"
	"time"
)

// moves counts a mover's moves and tells of each.
type moves struct {
	n    atomic.Int32
	done chan struct{}
}

func (m *moves) move() {
	m.n.Add(1)
	m.done <- struct{}{}
}

func (m *moves) waitOne(t *testing.T, what string) {
	t.Helper()
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("no move within 10 s of %s", what)
	}
}

func (m *moves) none(t *testing.T, what string) {
	t.Helper()
	select {
	case <-m.done:
		t.Fatalf("a move %s", what)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestMoverWaitsTheDelayUnlessNow: Wake moves after the delay, Now at once
// (also while a Wake's delay runs), and Stop ends the mover.
func TestMoverWaitsTheDelayUnlessNow(t *testing.T) {
	slow := &moves{done: make(chan struct{}, 4)}
	m := StartMover(time.Hour, slow.move)
	m.Wake()
	slow.none(t, "before the delay of a Wake")
	m.Now()
	slow.waitOne(t, "Now, during a Wake's delay")
	m.Now()
	slow.waitOne(t, "Now")
	m.Stop()
	if n := slow.n.Load(); n != 2 {
		t.Errorf("%d moves, want 2", n)
	}

	fast := &moves{done: make(chan struct{}, 4)}
	m = StartMover(10*time.Millisecond, fast.move)
	defer m.Stop()
	m.Wake()
	fast.waitOne(t, "a Wake with a delay of 10 ms")
	fast.none(t, "without a signal")
}
