package onetoone

import (
	"time"

	"maunium.net/go/mautrix/id"
)

// Mark implements call.Recording: a note on the call's timeline while it records. A call
// that is ending is left alone: its manifest is being finalised.
func (c *Call) Mark(user id.UserID, text string, at time.Time) {
	c.mediaMu.Lock()
	defer c.mediaMu.Unlock()
	if c.mediaClosed || c.recSession == nil {
		return
	}
	if t0 := c.recSession.StartedAt(); at.Before(t0) {
		at = t0 // "!mark -30s" in the first seconds: the start of the recording
	}
	c.recSession.AddMarker(string(user), text, at)
}
