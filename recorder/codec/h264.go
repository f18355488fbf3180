package codec

// h264ClearBytes: the LiveKit SDK leaves an H.264 frame in clear up to the start of its first
// slice's header, and RBSP-escapes the encrypted rest. A frame without a slice (or that does
// not start with a start code) falls back to the VP8 rule, by the frame type.
func h264ClearBytes(frame []byte, keyframe bool) (int, bool) {
	if n, ok := h264SliceStart(frame); ok {
		return n, true
	}
	if keyframe {
		return vp8KeyClear, false
	}
	return vp8DeltaClear, false
}

// h264SliceStart finds the first slice NAL unit (type 1 or 5) of an Annex B frame and returns
// the offset just after its header byte and one more byte (the start of the slice header),
// which is what the SDK leaves in clear. ok is false when the frame does not start with a
// start code or has no slice.
func h264SliceStart(frame []byte) (int, bool) {
	starts, ok := naluStarts(frame)
	if !ok {
		return 0, false
	}
	for _, i := range starts {
		if i >= len(frame) {
			continue
		}
		if t := frame[i] & 0x1f; t == 1 || t == 5 {
			return min(i+2, len(frame)), true
		}
	}
	return 0, false
}

// naluStarts returns the offsets of the NAL units of an Annex B byte stream (just after each
// 3- or 4-byte start code). ok is false when bytes other than zeros precede the first start
// code (the SDK rejects such a stream and falls back to the VP8 rule).
func naluStarts(b []byte) ([]int, bool) {
	var out []int
	first := true
	i := 0
	for {
		sc, scLen := nextStartCode(b, i)
		if sc < 0 {
			break
		}
		if first {
			for _, c := range b[:sc] {
				if c != 0 {
					return nil, false
				}
			}
			first = false
		}
		i = sc + scLen
		out = append(out, i)
	}
	if first && len(b) > 0 {
		return nil, false
	}
	return out, true
}

// nextStartCode finds the next 00 00 01 at or after from; a 4-byte 00 00 00 01 is reported
// from its first zero.
func nextStartCode(b []byte, from int) (pos, length int) {
	for i := from; i+2 < len(b); i++ {
		if b[i] != 0 || b[i+1] != 0 {
			continue
		}
		if b[i+2] == 1 {
			if i > from && b[i-1] == 0 {
				return i - 1, 4
			}
			return i, 3
		}
	}
	return -1, 0
}

// h264ParameterSets returns the length of a leading "SPS, PPS" pair of NAL units (with
// their start codes) in an Annex B header, or 0: the recorder's depacketizer puts the last
// SPS and PPS in front of an IDR access unit that came without them, which the sender's
// clear header did not have.
func h264ParameterSets(header []byte) int {
	starts, ok := naluStarts(header)
	if !ok || len(starts) < 3 || starts[0] >= len(header) || starts[1] >= len(header) {
		return 0
	}
	if header[starts[0]]&0x1f != 7 || header[starts[1]]&0x1f != 8 {
		return 0
	}
	// The third NAL unit's start code begins where the PPS ends.
	sc, _ := nextStartCode(header, starts[1])
	if sc < 0 {
		return 0
	}
	return sc
}
