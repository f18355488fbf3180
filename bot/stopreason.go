package bot

import (
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/lifecycle"
)

// hangupByUser hangs up the 1:1 calls in a room because someone there asked (!stop,
// !hangup), telling the lifecycle first so the metrics count it as a person's stop.
func (b *Bot) hangupByUser(roomID id.RoomID, why string) int {
	b.lc.Stopping(roomID, false, lifecycle.StopUser)
	return b.calls.HangupRoom(roomID, why)
}
