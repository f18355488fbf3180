package depacketize

import "errors"

// Reasons an adapter rejects a packet or a frame. errIncomplete marks a frame whose start or
// end is missing (counted as Incomplete); anything else is a packetization error (Malformed).
var (
	errIncomplete     = errors.New("incomplete frame")
	errShortPayload   = errors.New("payload too short")
	errBadPayload     = errors.New("invalid payload")
	errUnsupportedNAL = errors.New("unsupported nal unit type")
)
