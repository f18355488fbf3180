package depacketize

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// H.264 NAL unit types (ITU-T H.264 table 7-1, RFC 6184 table 1).
const (
	nalSlice   = 1
	nalIDR     = 5
	nalSPS     = 7
	nalPPS     = 8
	nalAUD     = 9
	nalSTAPA   = 24
	nalFUA     = 28
	nalTypeMax = 23 // highest single NAL unit type
)

// startCode prefixes every NAL unit of an Annex B access unit.
const startCode = "\x00\x00\x00\x01"

// h264 depacketizes H.264 in packetization mode 0 or 1 (RFC 6184): single NAL units, STAP-A
// and FU-A. pion's H264Packet allocates per packet and does not notice a lost FU-A start,
// so this adapter does its own parsing. It remembers the last SPS and PPS and puts them in
// front of an IDR access unit that lacks them.
type h264 struct {
	fuOpen   bool // inside an FU-A: start seen, end not yet
	fuType   byte // NAL type of the open FU-A
	fuStart  int  // offset of the open FU-A's NAL unit (after its start code)
	sawSPS   bool
	sawPPS   bool
	sawIDR   bool
	sawVCL   bool
	firstMB0 bool // the first slice of the access unit starts at macroblock 0
	insertAt int  // where parameter sets go: after a leading access unit delimiter
	sps, pps []byte
	nalsInAU int
}

func newH264() adapter { return &h264{} }

func (a *h264) add(dst, payload []byte, first bool) ([]byte, error) {
	if first {
		a.fuOpen, a.sawSPS, a.sawPPS, a.sawIDR, a.sawVCL, a.firstMB0 = false, false, false, false, false, false
		a.insertAt, a.nalsInAU = 0, 0
	}
	header := payload[0]
	if header&0x80 != 0 {
		return dst, fmt.Errorf("h264 forbidden_zero_bit set: %w", errBadPayload)
	}
	typ := header & 0x1f
	if a.fuOpen && typ != nalFUA {
		return dst, fmt.Errorf("h264 fu-a without its end: %w", errIncomplete)
	}
	switch {
	case typ >= 1 && typ <= nalTypeMax:
		return a.appendNAL(dst, payload), nil
	case typ == nalSTAPA:
		return a.addSTAPA(dst, payload[1:])
	case typ == nalFUA:
		return a.addFUA(dst, payload)
	default:
		return dst, fmt.Errorf("h264 nal unit type %d: %w", typ, errUnsupportedNAL)
	}
}

func (a *h264) addSTAPA(dst, p []byte) ([]byte, error) {
	if len(p) == 0 {
		return dst, fmt.Errorf("h264 empty stap-a: %w", errShortPayload)
	}
	for len(p) > 0 {
		if len(p) < 2 {
			return dst, fmt.Errorf("h264 stap-a nal size: %w", errShortPayload)
		}
		size := int(binary.BigEndian.Uint16(p))
		p = p[2:]
		if size == 0 || size > len(p) {
			return dst, fmt.Errorf("h264 stap-a nal of %d bytes in %d: %w", size, len(p), errShortPayload)
		}
		nal := p[:size]
		p = p[size:]
		if nal[0]&0x80 != 0 || nal[0]&0x1f == 0 || nal[0]&0x1f > nalTypeMax {
			return dst, fmt.Errorf("h264 stap-a nal header %#x: %w", nal[0], errBadPayload)
		}
		dst = a.appendNAL(dst, nal)
	}
	return dst, nil
}

func (a *h264) addFUA(dst, p []byte) ([]byte, error) {
	if len(p) < 2 {
		return dst, fmt.Errorf("h264 fu-a header: %w", errShortPayload)
	}
	indicator, fu := p[0], p[1]
	start, end, typ := fu&0x80 != 0, fu&0x40 != 0, fu&0x1f
	if typ == 0 || typ > nalTypeMax {
		return dst, fmt.Errorf("h264 fu-a of nal type %d: %w", typ, errBadPayload)
	}
	switch {
	case start:
		if a.fuOpen {
			return dst, fmt.Errorf("h264 fu-a without its end: %w", errIncomplete)
		}
		a.fuOpen, a.fuType = true, typ
		dst = append(dst, startCode...)
		a.fuStart = len(dst)
		dst = append(dst, indicator&0xe0|typ)
	case !a.fuOpen:
		return dst, fmt.Errorf("h264 fu-a without its start: %w", errIncomplete)
	case typ != a.fuType:
		return dst, fmt.Errorf("h264 fu-a changed nal type: %w", errBadPayload)
	}
	dst = append(dst, p[2:]...)
	if end {
		a.fuOpen = false
		a.noteNAL(dst[a.fuStart:], len(dst))
	}
	return dst, nil
}

// appendNAL appends a complete NAL unit with its start code.
func (a *h264) appendNAL(dst, nal []byte) []byte {
	dst = append(dst, startCode...)
	dst = append(dst, nal...)
	a.noteNAL(nal, len(dst))
	return dst
}

// noteNAL records what a complete NAL unit means for the access unit; end is its end offset.
func (a *h264) noteNAL(nal []byte, end int) {
	a.nalsInAU++
	switch typ := nal[0] & 0x1f; typ {
	case nalSPS:
		a.sawSPS = true
		a.sps = append(a.sps[:0], nal...)
	case nalPPS:
		a.sawPPS = true
		a.pps = append(a.pps[:0], nal...)
	case nalAUD:
		if a.nalsInAU == 1 {
			a.insertAt = end
		}
	default:
		if typ >= nalSlice && typ <= nalIDR {
			if !a.sawVCL {
				a.sawVCL = true
				// first_mb_in_slice is the slice header's first ue(v); 0 is coded as a single 1 bit.
				a.firstMB0 = len(nal) > 1 && nal[1]&0x80 != 0
			}
			if typ == nalIDR {
				a.sawIDR = true
			}
		}
	}
}

func (a *h264) finish(frame []byte) ([]byte, bool, error) {
	if a.fuOpen {
		return frame, false, fmt.Errorf("h264 fu-a without its end: %w", errIncomplete)
	}
	if !a.sawVCL {
		return frame, false, fmt.Errorf("h264 access unit without a slice: %w", errIncomplete)
	}
	if !a.firstMB0 {
		return frame, false, fmt.Errorf("h264 access unit without its first slice: %w", errIncomplete)
	}
	if !a.sawIDR {
		return frame, false, nil
	}
	if a.sawSPS && a.sawPPS {
		return frame, true, nil
	}
	if len(a.sps) == 0 || len(a.pps) == 0 {
		// An IDR picture that cannot be decoded without parameter sets never seen.
		return frame, false, nil
	}
	// Both, in order, even if the access unit had one of them: a repeated one is harmless.
	n := 2*len(startCode) + len(a.sps) + len(a.pps)
	frame = slices.Grow(frame, n)
	frame = frame[:len(frame)+n]
	copy(frame[a.insertAt+n:], frame[a.insertAt:len(frame)-n])
	i := a.insertAt
	i += copy(frame[i:], startCode)
	i += copy(frame[i:], a.sps)
	i += copy(frame[i:], startCode)
	copy(frame[i:], a.pps)
	return frame, true, nil
}

func (a *h264) pictureID() (uint16, int) { return 0, 0 }

func (a *h264) reset() {
	sps, pps := a.sps[:0], a.pps[:0]
	*a = h264{sps: sps, pps: pps}
}
