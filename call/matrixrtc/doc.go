// Package matrixrtc owns MatrixRTC membership: who is in a room's call, in whichever format
// their client writes it, and the bot's own membership.
//
// Four formats are read (Format): MSC3401 full-mesh entries (m.calls/m.devices in a state
// event keyed by user), the legacy "memberships" list keyed by user (js-sdk 28-35), one
// session membership per device in a state event keyed by device (js-sdk ≥ 34, Element
// Call's default), and sticky m.rtc.member events (js-sdk ≥ 39). Parse turns one event into
// an Update; a Table keeps a room's memberships, bounded per sender and per room, and a key
// that names a user belongs to that user only (StateKeyOwnedBy), so nobody can blank or
// overwrite someone else's membership.
//
// Presence turns a call's successive member lists into joins and leaves. Own publishes the
// bot's membership in the format a call uses, keeps it alive (delayed leave, refresh) and
// removes it; Stale removes one an earlier run left behind. Identity says which LiveKit
// identity goes with a membership's format. The backends (call/mesh, call/livekit,
// call/egress) build on this package; it knows nothing of their media.
package matrixrtc
