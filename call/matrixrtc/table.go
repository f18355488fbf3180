package matrixrtc

import (
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"
)

// Caps on what one room's call state may make the bot remember. Anyone allowed to send
// call memberships in a room can write as many as they like; beyond these, memberships are
// ignored (the caller logs one warning: Table.FirstWarning).
const (
	// MaxDevicesPerUser bounds the memberships of one sender (a client has one per device;
	// nobody joins a call from 16 devices).
	MaxDevicesPerUser = 16
	// MaxRoomMemberships bounds the memberships of one room.
	MaxRoomMemberships = 256
)

// Result says what Table.Apply did.
type Result int

const (
	ResultUnknown Result = iota
	// ResultChanged: the key's memberships were stored (or removed).
	ResultChanged
	// ResultUnchanged: nothing to do (no key, an older event, or a leave of an empty key).
	ResultUnchanged
	// ResultUserCap: the sender already has MaxDevicesPerUser memberships; some or all of
	// these were ignored.
	ResultUserCap
	// ResultRoomCap: the room already has MaxRoomMemberships memberships; some or all of
	// these were ignored.
	ResultRoomCap
)

func (r Result) String() string {
	switch r {
	case ResultChanged:
		return "changed"
	case ResultUnchanged:
		return "unchanged"
	case ResultUserCap:
		return "user cap"
	case ResultRoomCap:
		return "room cap"
	}
	return "unknown"
}

// Table is what the bot knows about one room's call memberships: the memberships under
// every key (state key or sticky key), replaced whenever a newer event fills the key. Each
// key belongs to the user who sent it (Parse refuses keys of other users). It is not safe
// for concurrent use.
type Table struct {
	entries map[string]entry
	// perUser counts the stored memberships of each sender; total, all of them.
	perUser map[id.UserID]int
	total   int
	// warned remembers which caps were already logged, so each is logged once.
	warnedRoom bool
	warnedUser map[id.UserID]bool
}

type entry struct {
	owner   id.UserID
	members []Member
	ts      int64 // origin_server_ts of the event, to ignore older ones
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{entries: map[string]entry{}, perUser: map[id.UserID]int{}, warnedUser: map[id.UserID]bool{}}
}

// Apply stores the memberships of an update; an older event than the one already stored
// for the key is ignored. Memberships beyond the owner's or the room's cap are dropped (the
// result says which cap).
func (t *Table) Apply(u Update) Result {
	if u.Key == "" {
		return ResultUnchanged
	}
	old, had := t.entries[u.Key]
	if had && u.Timestamp < old.ts {
		return ResultUnchanged
	}
	if had {
		t.remove(u.Key)
	}
	members := u.Members
	if len(members) == 0 {
		if had && len(old.members) > 0 {
			return ResultChanged
		}
		return ResultUnchanged
	}
	res := ResultChanged
	if room := MaxRoomMemberships - t.total; len(members) > room {
		t.EvictExpired(time.Now())
		if room = MaxRoomMemberships - t.total; len(members) > room {
			members, res = members[:max(room, 0)], ResultRoomCap
		}
	}
	if user := MaxDevicesPerUser - t.perUser[u.Owner]; len(members) > user {
		members, res = members[:max(user, 0)], ResultUserCap
	}
	if len(members) == 0 {
		return res
	}
	t.entries[u.Key] = entry{owner: u.Owner, members: members, ts: u.Timestamp}
	t.perUser[u.Owner] += len(members)
	t.total += len(members)
	return res
}

// remove forgets a key.
func (t *Table) remove(key string) {
	e, ok := t.entries[key]
	if !ok {
		return
	}
	delete(t.entries, key)
	t.total -= len(e.members)
	if t.perUser[e.owner] -= len(e.members); t.perUser[e.owner] <= 0 {
		delete(t.perUser, e.owner)
	}
}

// FirstWarning reports whether a cap was hit for the first time (room-wide, or for this
// user), for logging it once.
func (t *Table) FirstWarning(res Result, owner id.UserID) bool {
	switch res {
	case ResultRoomCap:
		first := !t.warnedRoom
		t.warnedRoom = true
		return first
	case ResultUserCap:
		if t.warnedUser[owner] || len(t.warnedUser) >= MaxDevicesPerUser {
			return false
		}
		t.warnedUser[owner] = true
		return true
	}
	return false
}

// Empty reports whether the table holds no membership.
func (t *Table) Empty() bool { return len(t.entries) == 0 }

// Len is how many memberships the table holds, expired ones included.
func (t *Table) Len() int { return t.total }

// EvictExpired forgets keys whose memberships have all expired.
func (t *Table) EvictExpired(now time.Time) {
	for k, e := range t.entries {
		if !slices.ContainsFunc(e.members, func(m Member) bool { return m.ExpiresAt.After(now) }) {
			t.remove(k)
		}
	}
}

// Members returns the unexpired memberships, one per device and call (the newest wins when
// a device has several, e.g. a state and a sticky one), except those of skip, sorted by
// device.
func (t *Table) Members(now time.Time, skip DeviceKey) []Member {
	type deviceCall struct {
		dev  DeviceKey
		slot string
	}
	newest := map[deviceCall]Member{}
	for _, e := range t.entries {
		for _, m := range e.members {
			if !m.ExpiresAt.After(now) || m.Key() == skip {
				continue
			}
			k := deviceCall{m.Key(), m.SlotID}
			if cur, ok := newest[k]; !ok || m.CreatedTs > cur.CreatedTs {
				newest[k] = m
			}
		}
	}
	out := make([]Member, 0, len(newest))
	for _, m := range newest {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int {
		if c := a.Key().Compare(b.Key()); c != 0 {
			return c
		}
		return strings.Compare(a.SlotID, b.SlotID)
	})
	return out
}

// NextExpiry returns the earliest expiry after now, for re-evaluating the call then.
func (t *Table) NextExpiry(now time.Time) (time.Time, bool) {
	var next time.Time
	for _, e := range t.entries {
		for _, m := range e.members {
			if m.ExpiresAt.After(now) && (next.IsZero() || m.ExpiresAt.Before(next)) {
				next = m.ExpiresAt
			}
		}
	}
	return next, !next.IsZero()
}

// Lists reports whether the device has an unexpired membership.
func (t *Table) Lists(dev DeviceKey, now time.Time) bool {
	for _, e := range t.entries {
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
