package lifecycle

import (
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// StopReason is why a recording ended, as the metrics count it
// (recordings_stopped_total's reason label).
type StopReason string

// The reasons a recording ends.
const (
	// StopCallEnded: the call ended or everyone left (the default when nobody said).
	StopCallEnded StopReason = "call_ended"
	// StopUser: someone in the room stopped it (!stop, !hangup).
	StopUser StopReason = "user"
	// The limits (limits.go).
	StopMaxDuration StopReason = "max_duration"
	StopMaxSize     StopReason = "max_size"
	StopDiskSpace   StopReason = "disk_space"
	StopDiskShare   StopReason = "disk_share"
	// StopShutdown: the recorder stopped (SIGTERM).
	StopShutdown StopReason = "shutdown"
	// StopError: the files could not be finalised cleanly.
	StopError StopReason = "error"
)

// stopReasonOf is why a live recording whose session ended did: what a limit or the
// caller said, else an error when the files could not all be finalised, else the
// recorder's shutdown, else the end of the call.
func (lc *Lifecycle) stopReasonOf(lr *liveRec, m recorder.Manifest) StopReason {
	lc.mu.Lock()
	r := lr.stopReason
	lc.mu.Unlock()
	switch {
	case r != "":
		return r
	case m.Interruption != "":
		return StopError
	case lc.shuttingDown.Load():
		return StopShutdown
	}
	return StopCallEnded
}

// StoppedByUser says that the room's recordings are about to end because someone in the
// room asked (call/rooms: !stop, !hangup of an answered call), whatever their kind. A
// reason a limit gave first is kept. A recording that ends without a reason ended with
// its call, or with the recorder.
func (lc *Lifecycle) StoppedByUser(room id.RoomID) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for _, lr := range lc.live {
		if lr.roomID == room && lr.stopReason == "" {
			lr.stopReason = StopUser
		}
	}
}
