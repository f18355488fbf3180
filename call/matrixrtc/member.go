package matrixrtc

import (
	"cmp"
	"time"

	"maunium.net/go/mautrix/id"
)

// Member is one device's membership in one of a room's calls, whatever format it came in.
type Member struct {
	Format   Format
	UserID   id.UserID
	DeviceID id.DeviceID
	// SlotID is the call: MainSlot for the MatrixRTC formats (the only one parsed), the
	// group call id (m.call_id, the key of the call state event) for FormatMSC3401.
	SlotID string
	// CreatedTs is when the membership began, in ms since the epoch (created_ts, else the
	// event's time). It orders memberships (oldest_membership).
	CreatedTs int64
	// ExpiresAt is when the membership stops counting.
	ExpiresAt time.Time
	// EventID of the event that carries it.
	EventID id.EventID

	// MemberID is the MatrixRTC member id (media keys name it); not in FormatMSC3401.
	MemberID string
	// Identity is the LiveKit participant identity the device connects with (Identity).
	Identity string
	// Transports are the device's foci in preference order (the MatrixRTC formats).
	Transports     []Transport
	FocusSelection string

	// SessionID changes when the device rejoins (FormatMSC3401).
	SessionID string
	// Feeds are the purposes of the feeds the device sends: m.usermedia, m.screenshare
	// (FormatMSC3401).
	Feeds []string
	// UsesSFU: the call entry names foci, so the device's media goes through an SFU, not
	// peer to peer (Element Call 0.4's LiveKit mode; FormatMSC3401).
	UsesSFU bool
}

// Key names the device.
func (m Member) Key() DeviceKey { return DeviceKey{User: m.UserID, Device: m.DeviceID} }

// Screensharing reports whether the device says it shares its screen (FormatMSC3401).
func (m Member) Screensharing() bool {
	for _, p := range m.Feeds {
		if p == "m.screenshare" {
			return true
		}
	}
	return false
}

// DeviceKey names one device of one user.
type DeviceKey struct {
	User   id.UserID
	Device id.DeviceID
}

// String is "@user:server:DEVICE", the form of a session membership's member id and LiveKit
// identity (SessionIdentity); logs show devices this way.
func (k DeviceKey) String() string { return SessionIdentity(k.User, k.Device) }

// Compare orders devices by user, then device.
func (k DeviceKey) Compare(o DeviceKey) int {
	return cmp.Or(cmp.Compare(k.User, o.User), cmp.Compare(k.Device, o.Device))
}
