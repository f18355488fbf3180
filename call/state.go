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
