package codec

// Clear header lengths of VP8 frames in the LiveKit SDK (UNENCRYPTED_BYTES).
const (
	vp8KeyClear   = 10 // frame tag (3) + start code (3) + dimensions (4)
	vp8DeltaClear = 3  // frame tag
)

// vp8ClearBytes: the frame tag, and for a key frame its start code and dimensions. Bit 0 of
// the frame tag is 0 for a key frame (RFC 6386 §9.1); the SDK uses the encoder's frame type,
// and both agree for a VP8 stream.
func vp8ClearBytes(frame []byte, _ bool) (int, bool) {
	if len(frame) > 0 && frame[0]&1 == 0 {
		return vp8KeyClear, false
	}
	return vp8DeltaClear, false
}
