package call

// State is where a call the bot takes part in stands, in the order calls go through.
type State int

// Call states.
const (
	StateUnknown State = iota
	// StateRinging: the call came in and is being answered.
	StateRinging
	// StateConnecting: answered (or placed); media is not connected yet.
	StateConnecting
	// StateConnected: media flows.
	StateConnected
	// StateEnded: the call is over and its recording final.
	StateEnded
)

func (s State) String() string {
	switch s {
	case StateRinging:
		return "ringing"
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateEnded:
		return "ended"
	default:
		return "unknown"
	}
}

// RecordingState is the state of a recording of a call the bot joins (a group call, or a
// MatrixRTC call it answered), the one rule every backend reports it by: ended once done
// is closed, connected while at least one track is live, else connecting (joining, or
// nobody sends media yet). Live counts the tracks whose media is recorded and, while the
// bot is in the call, those left out because their owner opted out (whether the backend
// goes on receiving them, as mesh does, or unsubscribes them, as LiveKit does): a call in
// which everyone opted out is connected, nothing is wrong. A legacy 1:1 call follows its
// own peer instead: ringing, then connecting until ICE connects.
func RecordingState(done <-chan struct{}, live int) State {
	select {
	case <-done:
		return StateEnded
	default:
	}
	if live > 0 {
		return StateConnected
	}
	return StateConnecting
}
