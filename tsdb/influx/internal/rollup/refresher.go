package rollup

import (
	"context"
	"sync"
	"time"
)

// refresher runs a cache's renewal in the background, every quarter of its
// TTL (between 100 ms and 30 s), and the fills it asks for (background),
// until Close.
type refresher struct {
	ctx    context.Context // cancelled by Close: stops a renewal in flight
	cancel context.CancelFunc
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once

	mu   sync.Mutex
	busy bool           // a background fill runs
	bg   sync.WaitGroup // the background fill
}

// startRefresher calls renew every quarter of ttl from now on, one call at a
// time; with ttl <= 0 it never does.
func startRefresher(ttl time.Duration, renew func(ctx context.Context)) *refresher {
	ctx, cancel := context.WithCancel(context.Background())
	r := &refresher{ctx: ctx, cancel: cancel, stop: make(chan struct{}), done: make(chan struct{})}
	if ttl <= 0 {
		close(r.done)
		return r
	}
	go func() {
		defer close(r.done)
		t := time.NewTicker(min(max(ttl/4, 100*time.Millisecond), 30*time.Second))
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
			}
			renew(r.ctx)
		}
	}()
	return r
}

// Close stops the refresher and waits for it. A nil refresher is closed.
func (r *refresher) Close() {
	if r == nil {
		return
	}
	r.once.Do(func() {
		close(r.stop)
		r.mu.Lock()
		r.cancel() // under mu: background starts nothing after it
		r.mu.Unlock()
		<-r.done
		r.bg.Wait()
	})
}

// background runs fill in a goroutine of its own, with a context that
// Close cancels, unless the fill it started before still runs or the
// refresher is closed: one at a time, whatever asks for it. It answers
// whether fill started.
func (r *refresher) background(fill func(ctx context.Context)) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.busy || r.ctx.Err() != nil {
		return false
	}
	r.busy = true
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		fill(r.ctx)
		r.mu.Lock()
		r.busy = false
		r.mu.Unlock()
	}()
	return true
}
