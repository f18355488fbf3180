package command

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
	"maunium.net/go/mautrix/id"
)

// Command rate limits: token buckets per sender and per room. A sender gets a burst of
// commands and then one every userEvery; a room a larger burst and one every roomEvery.
const (
	userBurst = 5
	userEvery = 4 * time.Second
	roomBurst = 10
	roomEvery = 2 * time.Second
	// maxBuckets bounds the limiter's memory; full (idle) buckets are dropped first.
	maxBuckets = 10000
)

// verdict is what the limiter says about one command.
type verdict int

const (
	allowed verdict = iota
	// refusedNotice: over the limit; say so once.
	refusedNotice
	// refusedSilently: over the limit and already told.
	refusedSilently
)

// limiter is the per-sender and per-room token bucket of commands.
type limiter struct {
	now func() time.Time

	mu    sync.Mutex
	users map[id.UserID]*bucket
	rooms map[id.RoomID]*bucket
}

type bucket struct {
	lim    *rate.Limiter
	burst  int
	warned bool // the sender (or room) was told it is over the limit
}

func newLimiter(now func() time.Time) *limiter {
	return &limiter{now: now, users: map[id.UserID]*bucket{}, rooms: map[id.RoomID]*bucket{}}
}

// allow takes a token from the sender's and the room's bucket, or neither. Over the
// limit, the first refusal asks for a notice (whose: byRoom) and the next ones are silent
// until a command passes again.
func (l *limiter) allow(user id.UserID, room id.RoomID) (v verdict, byRoom bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	u := getBucket(l.users, user, userBurst, userEvery, now)
	r := getBucket(l.rooms, room, roomBurst, roomEvery, now)
	var over *bucket
	switch {
	case u.lim.TokensAt(now) < 1:
		over = u
	case r.lim.TokensAt(now) < 1:
		over, byRoom = r, true
	}
	if over != nil {
		if over.warned {
			return refusedSilently, byRoom
		}
		over.warned = true
		return refusedNotice, byRoom
	}
	u.lim.AllowN(now, 1)
	r.lim.AllowN(now, 1)
	u.warned, r.warned = false, false
	return allowed, false
}

func getBucket[K comparable](m map[K]*bucket, k K, burst int, every time.Duration, now time.Time) *bucket {
	if b := m[k]; b != nil {
		return b
	}
	if len(m) >= maxBuckets {
		for key, b := range m {
			if b.lim.TokensAt(now) >= float64(b.burst) {
				delete(m, key) // full again: forgetting it changes nothing
			}
		}
	}
	b := &bucket{lim: rate.NewLimiter(rate.Every(every), burst), burst: burst}
	m[k] = b
	return b
}
