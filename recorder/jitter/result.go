package jitter

// PushResult says what Push did with a packet.
type PushResult int

// Push results. The zero value is PushUnknown, returned with an error for a malformed packet.
const (
	PushUnknown PushResult = iota
	// PushBuffered: the packet was accepted; Pop releases it in order.
	PushBuffered
	// PushDuplicate: the sequence number was already buffered or released; the packet was dropped.
	PushDuplicate
	// PushLate: the sequence number had already been declared lost (or was too old to tell);
	// the packet was dropped.
	PushLate
	// PushReset: the packet starts a new stream (sequence jump or new SSRC). Pop first releases
	// what is left of the old stream, then this packet with Packet.Reset set.
	PushReset
)

// String returns a lower-case name for logs.
func (r PushResult) String() string {
	switch r {
	case PushBuffered:
		return "buffered"
	case PushDuplicate:
		return "duplicate"
	case PushLate:
		return "late"
	case PushReset:
		return "reset"
	default:
		return "unknown"
	}
}
