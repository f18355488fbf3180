package mesh

import (
	"sort"
	"time"
)

// Bounds of the reorder buffer.
const (
	// maxPendingPerCall bounds messages held back behind a missing seq of one call.
	maxPendingPerCall = 64
	// maxSeqCalls bounds the calls whose seq is tracked; the least recently used is forgotten.
	maxSeqCalls = 256
	// seqGapTimeout: messages held back this long behind a missing seq are released anyway.
	// matrix-js-sdk waits forever; a recorder prefers a late message to a stalled call.
	seqGapTimeout = 5 * time.Second
	// maxSeq rejects absurd seq values (a hostile sender could otherwise park messages).
	maxSeq = 1 << 40
)

// reorder puts each call's to-device messages back in seq order, as matrix-js-sdk's
// CallEventHandler does: the first expected seq is 0, a message with the next seq is
// delivered with every held-back message that follows it, a later one waits, an earlier one
// is a duplicate. Messages without seq are delivered at once. It is not safe for concurrent
// use; the recording's loop owns it.
type reorder[T any] struct {
	calls map[string]*seqCall[T]
}

type seqCall[T any] struct {
	next     int64
	pending  []seqMsg[T] // sorted by seq
	lastUsed time.Time
	// waiting is when the oldest held-back message arrived.
	waiting time.Time
}

type seqMsg[T any] struct {
	seq int64
	msg T
}

func newReorder[T any]() *reorder[T] { return &reorder[T]{calls: map[string]*seqCall[T]{}} }

// Push adds a message of call key and returns the messages now deliverable, in order. The
// second result reports a dropped message (duplicate, absurd seq, or too many held back).
func (r *reorder[T]) Push(key string, seq *int64, msg T, now time.Time) ([]T, bool) {
	if seq == nil {
		return []T{msg}, false
	}
	s := *seq
	if s < 0 || s > maxSeq {
		return nil, true
	}
	c := r.calls[key]
	if c == nil {
		r.evict()
		c = &seqCall[T]{}
		r.calls[key] = c
	}
	c.lastUsed = now
	switch {
	case s < c.next:
		return nil, true // already delivered
	case s > c.next:
		i := sort.Search(len(c.pending), func(i int) bool { return c.pending[i].seq >= s })
		if i < len(c.pending) && c.pending[i].seq == s {
			return nil, true
		}
		if len(c.pending) >= maxPendingPerCall {
			return nil, true
		}
		c.pending = append(c.pending, seqMsg[T]{})
		copy(c.pending[i+1:], c.pending[i:])
		c.pending[i] = seqMsg[T]{seq: s, msg: msg}
		if len(c.pending) == 1 {
			c.waiting = now
		}
		return nil, false
	}
	out := []T{msg}
	c.next = s + 1
	return c.release(out, now), false
}

// release appends the held-back messages that follow next without a gap.
func (c *seqCall[T]) release(out []T, now time.Time) []T {
	n := 0
	for n < len(c.pending) && c.pending[n].seq == c.next {
		out = append(out, c.pending[n].msg)
		c.next++
		n++
	}
	// Duplicates of delivered seqs cannot be pending (Push drops them), so the rest waits.
	c.pending = append(c.pending[:0], c.pending[n:]...)
	if n > 0 {
		c.waiting = now
	}
	return out
}

// Expire releases messages that have waited longer than seqGapTimeout behind a gap,
// skipping the missing seqs, and forgets idle calls.
func (r *reorder[T]) Expire(now time.Time) []T {
	var out []T
	for key, c := range r.calls {
		if len(c.pending) > 0 && now.Sub(c.waiting) >= seqGapTimeout {
			c.next = c.pending[0].seq
			out = c.release(out, now)
		}
		if len(c.pending) == 0 && now.Sub(c.lastUsed) > 10*time.Minute {
			delete(r.calls, key)
		}
	}
	return out
}

// Waiting reports whether any message is held back (the owner then schedules Expire).
func (r *reorder[T]) Waiting() bool {
	for _, c := range r.calls {
		if len(c.pending) > 0 {
			return true
		}
	}
	return false
}

func (r *reorder[T]) evict() {
	if len(r.calls) < maxSeqCalls {
		return
	}
	var oldest string
	var t time.Time
	for k, c := range r.calls {
		if oldest == "" || c.lastUsed.Before(t) {
			oldest, t = k, c.lastUsed
		}
	}
	delete(r.calls, oldest)
}
