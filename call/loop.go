// Package call holds what every call backend shares: the serial event loop that owns a
// call's state, and the status a backend reports.
package call

import (
	"context"
	"sync"
)

// Loop runs functions one at a time on its own goroutine, in the order they were posted.
// Posting never blocks, so pion callbacks (which must not block) can post safely; the
// queue is bounded only by the callers' behaviour, which for one call is small.
type Loop struct {
	mu     sync.Mutex
	queue  []func()
	wake   chan struct{}
	done   chan struct{}
	closed bool
}

// NewLoop starts a loop that runs until ctx ends or Stop is called.
func NewLoop(ctx context.Context) *Loop {
	l := &Loop{wake: make(chan struct{}, 1), done: make(chan struct{})}
	go l.run(ctx)
	return l
}

// Post queues fn; it reports false if the loop has stopped.
func (l *Loop) Post(fn func()) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.queue = append(l.queue, fn)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return true
}

// Stop ends the loop after the function running now; queued functions are dropped.
func (l *Loop) Stop() {
	l.mu.Lock()
	l.closed = true
	l.queue = nil
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Done is closed when the loop goroutine has returned.
func (l *Loop) Done() <-chan struct{} { return l.done }

func (l *Loop) run(ctx context.Context) {
	defer close(l.done)
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return
		}
		q := l.queue
		l.queue = nil
		l.mu.Unlock()
		for _, fn := range q {
			fn()
			l.mu.Lock()
			closed := l.closed
			l.mu.Unlock()
			if closed {
				return
			}
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			l.mu.Lock()
			l.closed = true
			l.queue = nil
			l.mu.Unlock()
			return
		case <-l.wake:
		}
	}
}
