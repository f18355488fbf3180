package onetoone

import (
	"time"

	"maunium.net/go/mautrix/id"
)

// Mark puts a note on the timeline of every call being recorded in roomID and returns
// how many calls got it. A call that is ending is left alone: its manifest is being
// finalised.
func (m *Manager) Mark(roomID id.RoomID, user id.UserID, text string, at time.Time) int {
	m.mu.Lock()
	var cs []*Call
	for k, c := range m.calls {
		if k.room == roomID {
			cs = append(cs, c)
		}
	}
	m.mu.Unlock()
	n := 0
	for _, c := range cs {
		if c.mark(user, text, at) {
			n++
		}
	}
	return n
}

// mark adds a marker to the call's recording if it is recording.
func (c *Call) mark(user id.UserID, text string, at time.Time) bool {
	c.mediaMu.Lock()
	defer c.mediaMu.Unlock()
	if c.mediaClosed || c.recSession == nil {
		return false
	}
	if t0 := c.recSession.StartedAt(); at.Before(t0) {
		at = t0 // "!mark -30s" in the first seconds: the start of the recording
	}
	c.recSession.AddMarker(string(user), text, at)
	return true
}
