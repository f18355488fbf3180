package livekit

import (
	"sort"
	"time"
)

// maxSlots bounds the membership slots remembered per room (every device's state key and
// every sticky key is one slot).
const maxSlots = 2048

// memberTable is what the bot knows about a room's call memberships: the memberships of
// every slot (state key or sticky key), replaced whenever a newer event fills the slot.
// It is not safe for concurrent use.
type memberTable struct {
	slots map[string]slotEntry
}

type slotEntry struct {
	members []Member
	ts      int64 // origin_server_ts of the event, to ignore older ones
}

func newMemberTable() *memberTable { return &memberTable{slots: map[string]slotEntry{}} }

// apply stores the memberships of a slot from an event sent at ts (ms); an older event
// than the one already stored for the slot is ignored. It reports whether anything changed.
func (t *memberTable) apply(slot string, members []Member, ts int64) bool {
	old, had := t.slots[slot]
	if had && ts < old.ts {
		return false
	}
	if len(members) == 0 {
		delete(t.slots, slot)
		return had && len(old.members) > 0
	}
	if !had && len(t.slots) >= maxSlots {
		t.evictExpired(time.Now())
		if len(t.slots) >= maxSlots {
			return false
		}
	}
	t.slots[slot] = slotEntry{members: members, ts: ts}
	return true
}

func (t *memberTable) evictExpired(now time.Time) {
	for k, e := range t.slots {
		alive := false
		for _, m := range e.members {
			if m.ExpiresAt.After(now) {
				alive = true
			}
		}
		if !alive {
			delete(t.slots, k)
		}
	}
}

// members returns the unexpired memberships, one per device (the newest wins when a
// device has several, e.g. a state and a sticky one), except those of skip, sorted.
func (t *memberTable) members(now time.Time, skip DeviceKey) []Member {
	byDevice := map[DeviceKey]Member{}
	for _, e := range t.slots {
		for _, m := range e.members {
			if !m.ExpiresAt.After(now) || m.Key() == skip {
				continue
			}
			if cur, ok := byDevice[m.Key()]; !ok || m.CreatedTs > cur.CreatedTs {
				byDevice[m.Key()] = m
			}
		}
	}
	out := make([]Member, 0, len(byDevice))
	for _, m := range byDevice {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key().String() < out[j].Key().String() })
	return out
}

// nextExpiry returns the earliest expiry after now, for re-evaluating the call.
func (t *memberTable) nextExpiry(now time.Time) (time.Time, bool) {
	var next time.Time
	for _, e := range t.slots {
		for _, m := range e.members {
			if m.ExpiresAt.After(now) && (next.IsZero() || m.ExpiresAt.Before(next)) {
				next = m.ExpiresAt
			}
		}
	}
	return next, !next.IsZero()
}

// lists reports whether the device has an unexpired membership.
func (t *memberTable) lists(dev DeviceKey, now time.Time) bool {
	for _, e := range t.slots {
		for _, m := range e.members {
			if m.Key() == dev && m.ExpiresAt.After(now) {
				return true
			}
		}
	}
	return false
}
