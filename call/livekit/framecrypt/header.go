package framecrypt

import (
	"github.com/matrix-recorder/matrix-recorder/recorder/codec"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// encryption returns how the SDK encrypts frames of codec (the codec table says it), or
// ErrUnsupportedCodec.
func encryption(c media.Codec) (*codec.FrameEncryption, error) {
	s, ok := codec.Of(c)
	if !ok || s.Encryption == nil {
		return nil, ErrUnsupportedCodec
	}
	return s.Encryption, nil
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
