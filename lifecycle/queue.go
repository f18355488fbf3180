package lifecycle

import (
	"context"
	"sync"
)

// queue runs one recording's row writes in the order the recorder reported them, on a
// goroutine of its own: the recorder's hooks only push, so a slow or stuck database never
// holds up the goroutine that writes media (see hooks.go for what that costs).
type queue struct {
	// after, when set, is the done channel of an earlier queue of the same folder (a
	// recording resumed before its last rows were written): its ops run first.
	after <-chan struct{}

	mu     sync.Mutex
	ops    []func(ctx context.Context)
	wake   chan struct{} // one pending wake-up at most
	closed bool          // the last op was pushed
	done   chan struct{} // closed once the last op ran (or the lifecycle stopped)
}

func newQueue(after <-chan struct{}) *queue {
	return &queue{after: after, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// push adds an op; it never blocks. An op pushed after close is dropped.
func (q *queue) push(op func(ctx context.Context)) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.ops = append(q.ops, op)
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// close says that no op follows; the queue ends once it ran what it has.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// flush waits until every op pushed so far ran, or ctx ends.
func (q *queue) flush(ctx context.Context) error {
	reached := make(chan struct{})
	wait := q.done
	if q.push(func(context.Context) { close(reached) }) {
		wait = reached
	}
	select {
	case <-wait:
		return nil
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run runs the ops as they come until the queue is closed and empty, or stop ends (then
// what is left is not written: the next start rebuilds the rows from the manifest).
// opCtx gives each op its context.
func (q *queue) run(stop context.Context, opCtx func() (context.Context, context.CancelFunc)) {
	defer close(q.done)
	if q.after != nil {
		select {
		case <-q.after:
		case <-stop.Done():
			return
		}
	}
	for {
		q.mu.Lock()
		ops := q.ops
		q.ops = nil
		closed := q.closed
		q.mu.Unlock()
		for _, op := range ops {
			ctx, cancel := opCtx()
			op(ctx)
			cancel()
		}
		if len(ops) > 0 {
			continue
		}
		if closed {
			return
		}
		select {
		case <-q.wake:
		case <-stop.Done():
			return
		}
	}
}
