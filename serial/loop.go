// Package serial runs functions one at a time on a goroutine of their own, in the order
// they were posted: the event loop that owns a call's state (call backends), and the
// queue that writes a recording's rows off the media goroutines (lifecycle).
package serial

import (
	"context"
	"sync"
)

// Loop runs functions one at a time on its own goroutine, in the order they were posted.
// Posting never blocks, so callers that must not block (pion callbacks, a track's media
// goroutine) can post safely; the queue is bounded only by the callers' behaviour.
type Loop struct {
	mu       sync.Mutex
	queue    []func()
	wake     chan struct{}
	done     chan struct{}
	stopped  bool // Stop or ctx: queued functions are dropped
	draining bool // Close: queued functions run, nothing more is taken
}

// New starts a loop that runs until ctx ends, Stop is called, or Close has run what was
// posted before it.
func New(ctx context.Context) *Loop {
	l := &Loop{wake: make(chan struct{}, 1), done: make(chan struct{})}
	go l.run(ctx)
	return l
}

// Post queues fn; it reports false if the loop is stopped or closed.
func (l *Loop) Post(fn func()) bool {
	l.mu.Lock()
	if l.stopped || l.draining {
		l.mu.Unlock()
		return false
	}
	l.queue = append(l.queue, fn)
	l.mu.Unlock()
	l.poke()
	return true
}

// Stop ends the loop after the function running now; queued functions are dropped.
func (l *Loop) Stop() {
	l.mu.Lock()
	l.stopped = true
	l.queue = nil
	l.mu.Unlock()
	l.poke()
}

// Close ends the loop once the functions posted so far ran; nothing more is taken.
func (l *Loop) Close() {
	l.mu.Lock()
	l.draining = true
	l.mu.Unlock()
	l.poke()
}

// Flush waits until the functions posted so far ran (or the loop ended), or ctx ends.
func (l *Loop) Flush(ctx context.Context) error {
	reached := make(chan struct{})
	wait := l.done
	if l.Post(func() { close(reached) }) {
		wait = reached
	}
	select {
	case <-wait:
		return nil
	case <-l.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is closed when the loop goroutine has returned.
func (l *Loop) Done() <-chan struct{} { return l.done }

func (l *Loop) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *Loop) run(ctx context.Context) {
	defer close(l.done)
	for {
		l.mu.Lock()
		if l.stopped {
			l.mu.Unlock()
			return
		}
		q := l.queue
		l.queue = nil
		draining := l.draining
		l.mu.Unlock()
		for _, fn := range q {
			fn()
			l.mu.Lock()
			stopped := l.stopped
			l.mu.Unlock()
			if stopped {
				return
			}
		}
		if len(q) > 0 {
			continue
		}
		if draining {
			return
		}
		select {
		case <-ctx.Done():
			l.mu.Lock()
			l.stopped = true
			l.queue = nil
			l.mu.Unlock()
			return
		case <-l.wake:
		}
	}
}
