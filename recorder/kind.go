package recorder

// Kind is the kind of call a recording is of (the manifest's "kind"). Its values are what
// manifests, the state database and the metrics have always said; they never change.
type Kind string

// The kinds of call.
const (
	KindUnknown Kind = ""
	// KindOneToOne: a legacy 1:1 call (MSC2746, m.call.*) that rang the bot. It cannot
	// continue after a restart: the call ends with the bot's peer connection.
	KindOneToOne Kind = "1:1"
	// KindDirect: a MatrixRTC call in a direct room that rang the bot (Element X, Element
	// Call), answered and recorded on its LiveKit SFU. A 1:1 call for limits, notices and
	// the metrics; it continues after a restart while the caller is still in it.
	KindDirect Kind = "1:1-matrixrtc"
	// KindMesh: a full-mesh group call ("group" from before there were other kinds).
	KindMesh Kind = "group"
	// KindLiveKit: a MatrixRTC group call on a LiveKit SFU, recorded as a subscriber.
	KindLiveKit Kind = "livekit"
	// KindEgress: a LiveKit room recorded by LiveKit Egress.
	KindEgress Kind = "egress"
)

// OneToOne reports whether the kind is a call between the bot's caller and the bot:
// calls.max_duration applies, it does not count against calls.max_group_recordings, and
// without bot.notices the room hears nothing about it.
func (k Kind) OneToOne() bool { return k == KindOneToOne || k == KindDirect }

// Label is the kind as the metrics' kind label says it: "1:1" for every 1:1 call,
// "mesh", "livekit", "egress", or "other".
func (k Kind) Label() string {
	switch k {
	case KindOneToOne, KindDirect:
		return "1:1"
	case KindMesh:
		return "mesh"
	case KindLiveKit, KindEgress:
		return string(k)
	}
	return "other"
}
