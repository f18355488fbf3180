package call

// Kind is the kind of a recorded call. Its String is what manifests, the state database
// and metrics say (recorder.CallInfo.Kind), so those never change.
type Kind int

// Call kinds.
const (
	KindUnknown Kind = iota
	// KindOneToOne is a legacy 1:1 call (MSC2746 room events) the bot answered.
	KindOneToOne
	// KindMesh is a full-mesh group call (MSC3401); it is recorded as "group".
	KindMesh
	// KindLiveKit is a MatrixRTC call on a LiveKit SFU, recorded by subscribing.
	KindLiveKit
	// KindEgress is a LiveKit room recorded by LiveKit Egress.
	KindEgress
)

func (k Kind) String() string {
	switch k {
	case KindOneToOne:
		return "1:1"
	case KindMesh:
		return "group"
	case KindLiveKit:
		return "livekit"
	case KindEgress:
		return "egress"
	default:
		return "unknown"
	}
}

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
