package opus

import (
	"fmt"
	"time"
)

// CELT-only fullband TOC configurations (RFC 6716 §3.1): 2.5, 5, 10 and 20 ms frames.
const (
	celtFB2_5ms = 28
	celtFB20ms  = 31
)

// silence0 and silence1 make one CELT frame whose range-coded first symbol, the silence
// flag (RFC 6716 §4.3, Table 56), decodes as 1: the decoder outputs digital silence and
// reads nothing else. Two bytes, because decoders treat a frame of 0 or 1 byte as lost.
const (
	silence0 = 0xff
	silence1 = 0xfe
)

// Silence returns a new Opus packet of duration d that decodes to digital silence.
// It is a CELT-only fullband mono packet, which decoders of one or two channels accept
// alike. d must be 2.5, 5, 10 or 20 ms (one frame) or 40, 60, 80, 100 or 120 ms
// (several 20 ms frames in one code 3 packet).
func Silence(d time.Duration) ([]byte, error) {
	n := DurationToSamples(d)
	if n <= 0 || SamplesToDuration(n) != d {
		return nil, fmt.Errorf("no opus silence packet of %v", d)
	}
	switch n {
	case 120, 240, 480, 960:
		return appendSilence(nil, int(n)), nil
	case 1920, 2880, 3840, 4800, 5760:
		return appendLongSilence(nil, int(n/960)), nil
	default:
		return nil, fmt.Errorf("no opus silence packet of %v", d)
	}
}

// AppendSilence appends the shortest silence packet of at least need samples, or of
// 120 ms (the longest packet) if need is more.
func AppendSilence(dst []byte, need int64) []byte {
	for n := int64(120); n <= 960; n *= 2 {
		if n >= need {
			return appendSilence(dst, int(n))
		}
	}
	return appendLongSilence(dst, int(min((need+959)/960, MaxPacketSamples/960)))
}

// appendLongSilence appends a code 3 packet (CBR, no padding) of m 20 ms silence frames.
func appendLongSilence(dst []byte, m int) []byte {
	dst = append(dst, celtFB20ms<<3|3, byte(m))
	for range m {
		dst = append(dst, silence0, silence1)
	}
	return dst
}

// appendSilence appends a one-frame silence packet of n samples, n one of 120, 240,
// 480, 960.
func appendSilence(dst []byte, n int) []byte {
	return append(dst, celtConfig(n)<<3, silence0, silence1)
}

// celtConfig is the CELT-only fullband configuration of frames of n samples (120, 240,
// 480, 960).
func celtConfig(n int) byte {
	config := byte(celtFB2_5ms)
	for s := 120; s < n; s <<= 1 {
		config++
	}
	return config
}

// AppendLoss appends a one-frame packet of n samples (120, 240, 480, 960) whose frame is
// empty, which asks the decoder for packet loss concealment (RFC 6716 §3.2.1, RFC 7845
// §4.1). It keeps the previous packet's configuration and stereo flag when that has the
// same frame size, as RFC 7845 §4.1 suggests (prevTOC, when havePrev), else uses
// CELT-only fullband.
func AppendLoss(dst []byte, n int, prevTOC byte, havePrev bool) []byte {
	if havePrev && FrameSamples(prevTOC>>3) == n {
		return append(dst, prevTOC&^3)
	}
	stereo := byte(0)
	if havePrev {
		stereo = prevTOC & 0x04
	}
	return append(dst, celtConfig(n)<<3|stereo)
}
