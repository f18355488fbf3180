package matrixrtc

import (
	"slices"
	"time"
)

// Presence follows who is in one call over time: fed the call's memberships whenever they
// may have changed, it says which devices joined and which left, and since when each one
// is in. Not safe for concurrent use.
type Presence struct {
	in map[DeviceKey]presence
}

type presence struct {
	member Member
	since  time.Time
}

// NewPresence returns a Presence with nobody in the call.
func NewPresence() *Presence { return &Presence{in: map[DeviceKey]presence{}} }

// Update takes the call's memberships at now (one per device, as Table.Members gives
// them) and returns the devices that joined and those that left since the last update,
// each sorted.
func (p *Presence) Update(members []Member, now time.Time) (joined, left []Member) {
	cur := make(map[DeviceKey]bool, len(members))
	for _, m := range members {
		k := m.Key()
		cur[k] = true
		was, ok := p.in[k]
		if !ok {
			joined = append(joined, m)
			was.since = now
		}
		p.in[k] = presence{member: m, since: was.since}
	}
	for k, was := range p.in {
		if !cur[k] {
			left = append(left, was.member)
			delete(p.in, k)
		}
	}
	byKey := func(a, b Member) int { return a.Key().Compare(b.Key()) }
	slices.SortFunc(joined, byKey)
	slices.SortFunc(left, byKey)
	return joined, left
}

// Devices returns the devices in the call, sorted.
func (p *Presence) Devices() []DeviceKey {
	out := make([]DeviceKey, 0, len(p.in))
	for k := range p.in {
		out = append(out, k)
	}
	slices.SortFunc(out, DeviceKey.Compare)
	return out
}

// Since reports since when a device is in the call (the update that first listed it).
func (p *Presence) Since(k DeviceKey) (time.Time, bool) {
	was, ok := p.in[k]
	return was.since, ok
}
