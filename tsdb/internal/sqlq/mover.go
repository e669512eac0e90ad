package sqlq

import "time"

// Mover is the goroutine with which a SQL store moves the operations it
// staged (see the stores' pending.go) into its tables in the background:
// a while after Wake, so that the moves of a busy writer carry many
// operations, or at once after Now, until Stop.
type Mover struct {
	wake, now, stop, done chan struct{}
}

// StartMover starts the goroutine, which calls move delay after a Wake, or
// at once after a Now; signals that come while move runs ask for one more.
func StartMover(delay time.Duration, move func()) *Mover {
	m := &Mover{wake: make(chan struct{}, 1), now: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go m.run(delay, move)
	return m
}

// Wake asks for a move after the delay, without waiting.
func (m *Mover) Wake() { signal(m.wake) }

// Now asks for a move at once, without waiting.
func (m *Mover) Now() { signal(m.now) }

// Stop ends the goroutine, once the move it runs (if any) returns. Call
// it once.
func (m *Mover) Stop() {
	close(m.stop)
	<-m.done
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (m *Mover) run(delay time.Duration, move func()) {
	defer close(m.done)
	for {
		select {
		case <-m.stop:
			return
		case <-m.now:
		case <-m.wake:
			t := time.NewTimer(delay)
			select {
			case <-m.stop:
				t.Stop()
				return
			case <-t.C:
			case <-m.now:
				t.Stop()
			}
		}
		move()
	}
}
