package matrixrtc

import "maunium.net/go/mautrix/event"

// Membership event types (protocols.md §2.1, §3.1). The stable names are accepted too, for
// when clients switch.
var (
	// TypeCallMember carries MSC3401 entries, legacy lists and session memberships.
	TypeCallMember       = event.Type{Type: "org.matrix.msc3401.call.member", Class: event.StateEventType}
	TypeCallMemberStable = event.Type{Type: "m.call.member", Class: event.StateEventType}
	// TypeRTCMember is the sticky membership (MSC4143 with MSC4354).
	TypeRTCMember       = event.Type{Type: "org.matrix.msc4143.rtc.member", Class: event.MessageEventType}
	TypeRTCMemberStable = event.Type{Type: "m.rtc.member", Class: event.MessageEventType}
)

// MainSlot is the MatrixRTC slot of a room's main call: application m.call, call id ""
// on the wire ("ROOM" in the slot id). It is the only MatrixRTC call the bot records.
const MainSlot = "m.call#ROOM"

// IsMemberEvent reports whether t is a membership event type of any format.
func IsMemberEvent(t event.Type) bool {
	return IsMemberState(t.Type) || t.Type == TypeRTCMember.Type || t.Type == TypeRTCMemberStable.Type
}

// IsMemberState reports whether t is the type of a member state event (MSC3401, legacy and
// session memberships).
func IsMemberState(t string) bool {
	return t == TypeCallMember.Type || t == TypeCallMemberStable.Type
}
