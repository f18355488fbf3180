package livekit

import (
	"sort"
	"time"

	"maunium.net/go/mautrix/id"
)

// Caps on what one room's call state may make the bot remember. Anyone allowed to send
// call memberships in a room can write as many as they like; beyond these, memberships are
// ignored (the caller logs one warning).
const (
	// maxDevicesPerUser bounds the memberships of one sender (Element Call has one per
	// device; nobody joins a call from 16 devices).
	maxDevicesPerUser = 16
	// maxRoomMemberships bounds the memberships of one room.
	maxRoomMemberships = 256
)

// applyResult says what memberTable.apply did.
type applyResult int

const (
	applyUnknown applyResult = iota
	// applyChanged: the slot's memberships were stored (or removed).
	applyChanged
	// applyUnchanged: nothing to do (an older event, or a leave of an empty slot).
	applyUnchanged
	// applyUserCap: the sender already has maxDevicesPerUser memberships; some or all of
	// these were ignored.
	applyUserCap
	// applyRoomCap: the room already has maxRoomMemberships memberships; some or all of
	// these were ignored.
	applyRoomCap
)

func (r applyResult) String() string {
	switch r {
	case applyChanged:
		return "changed"
	case applyUnchanged:
		return "unchanged"
	case applyUserCap:
		return "user cap"
	case applyRoomCap:
		return "room cap"
	}
	return "unknown"
}

// memberTable is what the bot knows about a room's call memberships: the memberships of
// every slot (state key or sticky key), replaced whenever a newer event fills the slot.
// Each slot belongs to the user who sent it (ParseMembers refuses keys of other users).
// It is not safe for concurrent use.
type memberTable struct {
	slots map[string]slotEntry
	// perUser counts the stored memberships of each sender; total, all of them.
	perUser map[id.UserID]int
	total   int
	// warned remembers which caps were already logged, so each is logged once.
	warnedRoom bool
	warnedUser map[id.UserID]bool
}

type slotEntry struct {
	owner   id.UserID
	members []Member
	ts      int64 // origin_server_ts of the event, to ignore older ones
}

func newMemberTable() *memberTable {
	return &memberTable{slots: map[string]slotEntry{}, perUser: map[id.UserID]int{}, warnedUser: map[id.UserID]bool{}}
}

// apply stores the memberships of owner's slot from an event sent at ts (ms); an older
// event than the one already stored for the slot is ignored. Memberships beyond the
// owner's or the room's cap are dropped (the result says which cap).
func (t *memberTable) apply(slot string, owner id.UserID, members []Member, ts int64) applyResult {
	old, had := t.slots[slot]
	if had && ts < old.ts {
		return applyUnchanged
	}
	if had {
		t.remove(slot)
	}
	if len(members) == 0 {
		if had && len(old.members) > 0 {
			return applyChanged
		}
		return applyUnchanged
	}
	res := applyChanged
	if room := maxRoomMemberships - t.total; len(members) > room {
		t.evictExpired(time.Now())
		if room = maxRoomMemberships - t.total; len(members) > room {
			members, res = members[:max(room, 0)], applyRoomCap
		}
	}
	if user := maxDevicesPerUser - t.perUser[owner]; len(members) > user {
		members, res = members[:max(user, 0)], applyUserCap
	}
	if len(members) == 0 {
		return res
	}
	t.slots[slot] = slotEntry{owner: owner, members: members, ts: ts}
	t.perUser[owner] += len(members)
	t.total += len(members)
	return res
}

// remove forgets a slot.
func (t *memberTable) remove(slot string) {
	e, ok := t.slots[slot]
	if !ok {
		return
	}
	delete(t.slots, slot)
	t.total -= len(e.members)
	if t.perUser[e.owner] -= len(e.members); t.perUser[e.owner] <= 0 {
		delete(t.perUser, e.owner)
	}
}

// firstWarning reports whether a cap was hit for the first time (room-wide, or for this
// user), for logging it once.
func (t *memberTable) firstWarning(res applyResult, owner id.UserID) bool {
	switch res {
	case applyRoomCap:
		first := !t.warnedRoom
		t.warnedRoom = true
		return first
	case applyUserCap:
		if t.warnedUser[owner] || len(t.warnedUser) >= maxDevicesPerUser {
			return false
		}
		t.warnedUser[owner] = true
		return true
	}
	return false
}

// empty reports whether the table holds no membership.
func (t *memberTable) empty() bool { return len(t.slots) == 0 }

// evictExpired forgets slots whose memberships have all expired.
func (t *memberTable) evictExpired(now time.Time) {
	for k, e := range t.slots {
		alive := false
		for _, m := range e.members {
			if m.ExpiresAt.After(now) {
				alive = true
			}
		}
		if !alive {
			t.remove(k)
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
		if e.owner != dev.User {
			continue
		}
		for _, m := range e.members {
			if m.Key() == dev && m.ExpiresAt.After(now) {
				return true
			}
		}
	}
	return false
}
