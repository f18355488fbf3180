package matrixrtc

// Format is how a membership is written on the wire.
type Format int

const (
	// FormatUnknown is the zero value.
	FormatUnknown Format = iota
	// FormatMSC3401 is a full-mesh entry: m.calls[].m.devices[] in a member state event keyed
	// by user (matrix-js-sdk GroupCall, Element Call up to 0.4).
	FormatMSC3401
	// FormatLegacy is a "memberships" list in a member state event keyed by user
	// (js-sdk 28-35).
	FormatLegacy
	// FormatSession is one membership per device in a member state event keyed by device
	// (js-sdk ≥ 34, Element Call's "compatibility" mode, the default today).
	FormatSession
	// FormatSticky is a sticky m.rtc.member event (MSC4354; js-sdk ≥ 39, Element Call's
	// "matrix_2_0" mode).
	FormatSticky
)

func (f Format) String() string {
	switch f {
	case FormatMSC3401:
		return "msc3401"
	case FormatLegacy:
		return "legacy"
	case FormatSession:
		return "session"
	case FormatSticky:
		return "sticky"
	}
	return "unknown"
}

// MatrixRTC is every format of the MatrixRTC era (the LiveKit formats): all but MSC3401.
var MatrixRTC = []Format{FormatLegacy, FormatSession, FormatSticky}
