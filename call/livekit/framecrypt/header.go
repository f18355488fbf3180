package framecrypt

import (
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// Clear header lengths of the SDK (UNENCRYPTED_BYTES).
const (
	audioClear    = 1  // the Opus TOC byte
	vp8KeyClear   = 10 // frame tag (3) + start code (3) + dimensions (4)
	vp8DeltaClear = 3  // frame tag
)

// headerLen returns how many leading bytes of a frame stay in clear, and whether the rest is
// RBSP-escaped (H.264). keyframe is the frame type the encoder (or, on the receiving side,
// the depacketizer) reports; it matters for VP8 and for H.264 frames that fall back to the
// VP8 rule.
func headerLen(codec media.Codec, frame []byte, keyframe bool) (n int, rbsp bool, err error) {
	switch codec {
	case media.CodecOpus:
		return audioClear, false, nil
	case media.CodecVP8:
		// RFC 6386 §9.1: bit 0 of the frame tag is 0 for a key frame. The SDK uses the
		// encoder's frame type; both agree for a VP8 stream.
		if len(frame) > 0 && frame[0]&1 == 0 {
			return vp8KeyClear, false, nil
		}
		return vp8DeltaClear, false, nil
	case media.CodecVP9:
		return 0, false, nil
	case media.CodecH264:
		if n, ok := h264ClearBytes(frame); ok {
			return n, true, nil
		}
		// The SDK falls back to the VP8 rule when it finds no slice.
		if keyframe {
			return vp8KeyClear, false, nil
		}
		return vp8DeltaClear, false, nil
	default:
		return 0, false, ErrUnsupportedCodec
	}
}

// h264ClearBytes finds the first slice NAL unit (type 1 or 5) of an Annex B frame and returns
// the offset just after its header byte and one more byte (the start of the slice header),
// which is what the SDK leaves in clear. ok is false when the frame does not start with a
// start code or has no slice.
func h264ClearBytes(frame []byte) (int, bool) {
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

// escapeRBSP inserts an emulation prevention byte (0x03) wherever two zero bytes are
// followed by a byte <= 3, as H.264 requires inside a NAL unit (§7.4.1).
func escapeRBSP(dst, src []byte) []byte {
	zeros := 0
	for _, c := range src {
		if zeros >= 2 && c <= 3 {
			dst = append(dst, 3)
			zeros = 0
		}
		dst = append(dst, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return dst
}

// hasEscapes reports whether src contains 00 00 03 followed by at least one byte, the
// SDK's test for whether unescaping is needed.
func hasEscapes(src []byte) bool {
	for i := 0; i+3 < len(src); i++ {
		if src[i] == 0 && src[i+1] == 0 && src[i+2] == 3 {
			return true
		}
	}
	return false
}

// unescapeRBSP removes emulation prevention bytes: every 03 that follows two zero bytes.
func unescapeRBSP(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		if len(src)-i >= 3 && src[i] == 0 && src[i+1] == 0 && src[i+2] == 3 {
			dst = append(dst, 0, 0)
			i += 3
			continue
		}
		dst = append(dst, src[i])
		i++
	}
	return dst
}
