// Package opus reads and makes the Opus packets (RFC 6716) the recorder handles: how long
// a packet lasts from its TOC byte and frame count, whether its framing keeps the rules
// R1-R7 of RFC 6716 §3.4, and packets of digital silence or of a lost frame. The
// depacketizer checks packets with it, the pipeline places them on the timeline with it and
// the Ogg writer counts granule positions with it; it does not decode audio.
package opus

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrInvalidPacket means the data is not a valid Opus packet (RFC 6716 §3.4: empty,
// impossible frame lengths, more than 120 ms).
var ErrInvalidPacket = errors.New("invalid opus packet")

// SampleRate is the rate of Opus timestamps and granule positions (RFC 7587, RFC 7845 §4);
// everything in this package that counts samples counts at this rate.
const SampleRate = 48000

const (
	// MaxFrameBytes is the largest Opus frame (RFC 6716 §3.2.1, R2).
	MaxFrameBytes = 1275
	// MaxPacketSamples is 120 ms, the longest Opus packet (RFC 6716 §3.2.5, R5).
	MaxPacketSamples = 5760
	// MinFrame is the shortest Opus frame: every packet lasts a multiple of it.
	MinFrame = 2500 * time.Microsecond
)

// Duration returns how much audio one Opus packet holds, from its TOC byte and frame
// count (RFC 6716 §3.1, §3.2). It checks the packet's framing against the rules R1-R7 of
// RFC 6716 §3.4 and returns an error wrapping ErrInvalidPacket if the packet breaks one of
// them. It does not look inside the frames.
func Duration(packet []byte) (time.Duration, error) {
	n, err := Samples(packet)
	if err != nil {
		return 0, err
	}
	return SamplesToDuration(int64(n)), nil
}

// Samples is Duration in 48 kHz samples.
func Samples(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, fmt.Errorf("%w: empty packet", ErrInvalidPacket)
	}
	fs := FrameSamples(p[0] >> 3)
	switch p[0] & 3 {
	case 0: // one frame
		if len(p)-1 > MaxFrameBytes {
			return 0, fmt.Errorf("%w: code 0 frame of %d bytes", ErrInvalidPacket, len(p)-1)
		}
		return fs, nil
	case 1: // two frames of equal size
		if (len(p)-1)%2 != 0 {
			return 0, fmt.Errorf("%w: code 1 packet with odd payload of %d bytes", ErrInvalidPacket, len(p)-1)
		}
		if (len(p)-1)/2 > MaxFrameBytes {
			return 0, fmt.Errorf("%w: code 1 frames of %d bytes", ErrInvalidPacket, (len(p)-1)/2)
		}
		return 2 * fs, nil
	case 2: // two frames, the first one's length coded
		l, n, ok := frameLength(p[1:])
		if !ok {
			return 0, fmt.Errorf("%w: code 2 packet without frame length", ErrInvalidPacket)
		}
		rest := len(p) - 1 - n
		if l > rest {
			return 0, fmt.Errorf("%w: code 2 first frame of %d bytes in %d", ErrInvalidPacket, l, rest)
		}
		if rest-l > MaxFrameBytes {
			return 0, fmt.Errorf("%w: code 2 second frame of %d bytes", ErrInvalidPacket, rest-l)
		}
		return 2 * fs, nil
	default: // code 3: an arbitrary number of frames
		return code3Samples(p, fs)
	}
}

// HeadSamples is the duration of a packet read from its first two bytes only, as players
// read it (opus_packet_get_nb_frames): 0 for a packet too short to tell. It checks nothing
// else (a torn packet at the end of a file still counts).
func HeadSamples(h []byte) int {
	if len(h) == 0 {
		return 0
	}
	fs := FrameSamples(h[0] >> 3)
	switch h[0] & 3 {
	case 0:
		return fs
	case 1, 2:
		return 2 * fs
	default:
		if len(h) < 2 {
			return 0
		}
		return int(h[1]&0x3f) * fs
	}
}

// code3Samples checks a code 3 packet (RFC 6716 §3.2.5) and returns its samples.
func code3Samples(p []byte, fs int) (int, error) {
	if len(p) < 2 {
		return 0, fmt.Errorf("%w: code 3 packet without frame count", ErrInvalidPacket)
	}
	m := int(p[1] & 0x3f)
	vbr := p[1]&0x80 != 0
	padded := p[1]&0x40 != 0
	if m == 0 {
		return 0, fmt.Errorf("%w: code 3 packet with no frames", ErrInvalidPacket)
	}
	if m*fs > MaxPacketSamples {
		return 0, fmt.Errorf("%w: code 3 packet of %d frames of %d samples", ErrInvalidPacket, m, fs)
	}
	rest := p[2:]
	if padded {
		pad := 0
		for {
			if len(rest) == 0 {
				return 0, fmt.Errorf("%w: code 3 padding length cut short", ErrInvalidPacket)
			}
			b := rest[0]
			rest = rest[1:]
			if b < 255 {
				pad += int(b)
				break
			}
			pad += 254
		}
		if pad > len(rest) {
			return 0, fmt.Errorf("%w: code 3 padding of %d bytes in %d", ErrInvalidPacket, pad, len(rest))
		}
		rest = rest[:len(rest)-pad]
	}
	if !vbr {
		if len(rest)%m != 0 {
			return 0, fmt.Errorf("%w: code 3 cbr payload of %d bytes for %d frames", ErrInvalidPacket, len(rest), m)
		}
		if len(rest)/m > MaxFrameBytes {
			return 0, fmt.Errorf("%w: code 3 cbr frames of %d bytes", ErrInvalidPacket, len(rest)/m)
		}
		return m * fs, nil
	}
	total := 0
	for range m - 1 {
		l, n, ok := frameLength(rest)
		if !ok {
			return 0, fmt.Errorf("%w: code 3 vbr frame lengths cut short", ErrInvalidPacket)
		}
		rest = rest[n:]
		total += l
	}
	if total > len(rest) {
		return 0, fmt.Errorf("%w: code 3 vbr frames of %d bytes in %d", ErrInvalidPacket, total, len(rest))
	}
	if len(rest)-total > MaxFrameBytes {
		return 0, fmt.Errorf("%w: code 3 vbr last frame of %d bytes", ErrInvalidPacket, len(rest)-total)
	}
	return m * fs, nil
}

// frameLength decodes a frame length (RFC 6716 §3.2.1): the length, how many bytes it took,
// and false if b is too short.
func frameLength(b []byte) (length, n int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	if b[0] < 252 {
		return int(b[0]), 1, true
	}
	if len(b) < 2 {
		return 0, 0, false
	}
	return int(b[1])*4 + int(b[0]), 2, true
}

// FrameSamples returns the samples per frame at 48 kHz of a TOC configuration number
// (RFC 6716 §3.1, Table 2).
func FrameSamples(config byte) int {
	switch {
	case config < 12: // SILK-only: 10, 20, 40, 60 ms
		return [4]int{480, 960, 1920, 2880}[config%4]
	case config < 16: // hybrid: 10, 20 ms
		return [2]int{480, 960}[config%2]
	default: // CELT-only: 2.5, 5, 10, 20 ms
		return 120 << (config % 4)
	}
}

// SamplesToDuration converts 48 kHz samples to a duration, rounding down. Counts beyond
// the longest duration (292 years; only a damaged file has them) give the longest.
func SamplesToDuration(n int64) time.Duration {
	if n/SampleRate >= int64(math.MaxInt64/time.Second) {
		return math.MaxInt64
	}
	return time.Duration(n/SampleRate)*time.Second + time.Duration(n%SampleRate*int64(time.Second)/SampleRate)
}

// DurationToSamples converts a non-negative duration to 48 kHz samples, rounding to the
// nearest sample so that SamplesToDuration followed by DurationToSamples is exact.
func DurationToSamples(d time.Duration) int64 {
	s := int64(d / time.Second)
	r := int64(d % time.Second)
	return s*SampleRate + (r*SampleRate+int64(time.Second)/2)/int64(time.Second)
}
