package mesh

import (
	"sort"
	"strings"
	"time"
)

// Bounds of the reorder buffer.
const (
	// maxPendingPerCall bounds messages held back behind a missing seq of one call.
	maxPendingPerCall = 64
	// maxSeqCalls bounds the calls whose seq is tracked; the least recently used idle one
	// is forgotten for a new one.
	maxSeqCalls = 256
	// maxSeqCallsPerOwner bounds the calls tracked for one sender (user), so one sender
	// cannot push the others' out.
	maxSeqCallsPerOwner = 16
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
// use; the recording's loop owns it, and gives it messages of call members only.
type reorder[T any] struct {
	calls  map[string]*seqCall[T]
	owners map[string]int // calls tracked per owner
}

type seqCall[T any] struct {
	owner    string
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

func newReorder[T any]() *reorder[T] {
	return &reorder[T]{calls: map[string]*seqCall[T]{}, owners: map[string]int{}}
}

// Push adds a message of call key, sent by owner, and returns the messages now
// deliverable, in order. The second result reports a dropped message (duplicate, absurd
// seq, too many held back, or too many calls tracked for owner or in all).
func (r *reorder[T]) Push(owner, key string, seq *int64, msg T, now time.Time) ([]T, bool) {
	if seq == nil {
		return []T{msg}, false
	}
	s := *seq
	if s < 0 || s > maxSeq {
		return nil, true
	}
	c := r.calls[key]
	if c == nil {
		if r.owners[owner] >= maxSeqCallsPerOwner || !r.evict() {
			return nil, true
		}
		c = &seqCall[T]{owner: owner}
		r.calls[key] = c
		r.owners[owner]++
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
			r.remove(key)
		}
	}
	return out
}

// Forget drops the calls whose key starts with prefix (a device that left), with the
// messages they held back.
func (r *reorder[T]) Forget(prefix string) {
	for key := range r.calls {
		if strings.HasPrefix(key, prefix) {
			r.remove(key)
		}
	}
}

// Len returns how many calls are tracked.
func (r *reorder[T]) Len() int { return len(r.calls) }

func (r *reorder[T]) remove(key string) {
	c := r.calls[key]
	if c == nil {
		return
	}
	delete(r.calls, key)
	if r.owners[c.owner]--; r.owners[c.owner] <= 0 {
		delete(r.owners, c.owner)
	}
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

// evict makes room for a new call: it forgets the least recently used call that holds
// nothing back. It reports false when every tracked call is waiting for a message.
func (r *reorder[T]) evict() bool {
	if len(r.calls) < maxSeqCalls {
		return true
	}
	var oldest string
	var t time.Time
	for k, c := range r.calls {
		if len(c.pending) == 0 && (oldest == "" || c.lastUsed.Before(t)) {
			oldest, t = k, c.lastUsed
		}
	}
	if oldest == "" {
		return false
	}
	r.remove(oldest)
	return true
}
