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
	au       h264Unit
	sps, pps []byte // the last ones seen
}

// h264Unit is what the adapter knows about the access unit being assembled.
type h264Unit struct {
	fuOpen    bool // inside an FU-A: start seen, end not yet
	fuType    byte // NAL type of the open FU-A
	fuStart   int  // offset of the open FU-A's NAL unit (after its start code)
	nals      int  // complete NAL units so far
	sawSPS    bool
	sawPPS    bool
	sawIDR    bool
	idrParams bool // SPS and PPS came before the first IDR slice
	sawVCL    bool
	firstMB0  bool // the first slice starts at macroblock 0
	insertAt  int  // where parameter sets go: after a leading access unit delimiter
}

func newH264() adapter { return &h264{} }

func (a *h264) add(dst, payload []byte, first bool) ([]byte, error) {
	if first {
		a.au = h264Unit{}
	}
	header := payload[0]
	if header&0x80 != 0 {
		return dst, fmt.Errorf("h264 forbidden_zero_bit set: %w", errBadPayload)
	}
	typ := header & 0x1f
	if a.au.fuOpen && typ != nalFUA {
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
		if a.au.fuOpen {
			return dst, fmt.Errorf("h264 fu-a without its end: %w", errIncomplete)
		}
		a.au.fuOpen, a.au.fuType = true, typ
		dst = append(dst, startCode...)
		a.au.fuStart = len(dst)
		dst = append(dst, indicator&0xe0|typ)
	case !a.au.fuOpen:
		return dst, fmt.Errorf("h264 fu-a without its start: %w", errIncomplete)
	case typ != a.au.fuType:
		return dst, fmt.Errorf("h264 fu-a changed nal type: %w", errBadPayload)
	}
	dst = append(dst, p[2:]...)
	if end {
		a.au.fuOpen = false
		a.noteNAL(dst[a.au.fuStart:], len(dst))
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
	a.au.nals++
	switch typ := nal[0] & 0x1f; typ {
	case nalSPS:
		a.au.sawSPS = true
		a.sps = append(a.sps[:0], nal...)
	case nalPPS:
		a.au.sawPPS = true
		a.pps = append(a.pps[:0], nal...)
	case nalAUD:
		if a.au.nals == 1 {
			a.au.insertAt = end
		}
	default:
		if typ >= nalSlice && typ <= nalIDR {
			if !a.au.sawVCL {
				a.au.sawVCL = true
				// first_mb_in_slice is the slice header's first ue(v); 0 is coded as a single 1 bit.
				a.au.firstMB0 = len(nal) > 1 && nal[1]&0x80 != 0
			}
			if typ == nalIDR && !a.au.sawIDR {
				a.au.sawIDR = true
				a.au.idrParams = a.au.sawSPS && a.au.sawPPS
			}
		}
	}
}

func (a *h264) finish(frame []byte) ([]byte, bool, error) {
	if a.au.fuOpen {
		return frame, false, fmt.Errorf("h264 fu-a without its end: %w", errIncomplete)
	}
	if !a.au.sawVCL {
		return frame, false, fmt.Errorf("h264 access unit without a slice: %w", errIncomplete)
	}
	if !a.au.firstMB0 {
		return frame, false, fmt.Errorf("h264 access unit without its first slice: %w", errIncomplete)
	}
	if !a.au.sawIDR {
		return frame, false, nil
	}
	if a.au.idrParams {
		return frame, true, nil
	}
	if len(a.sps) == 0 || len(a.pps) == 0 {
		// An IDR picture that cannot be decoded without parameter sets never seen.
		return frame, false, nil
	}
	// Both, in order, even if the access unit had one of them (or both, after the IDR
	// slice): a repeated one is harmless.
	n := 2*len(startCode) + len(a.sps) + len(a.pps)
	frame = slices.Grow(frame, n)
	frame = frame[:len(frame)+n]
	copy(frame[a.au.insertAt+n:], frame[a.au.insertAt:len(frame)-n])
	i := a.au.insertAt
	i += copy(frame[i:], startCode)
	i += copy(frame[i:], a.sps)
	i += copy(frame[i:], startCode)
	copy(frame[i:], a.pps)
	return frame, true, nil
}

func (a *h264) pictureID() (uint16, int) { return 0, 0 }

func (a *h264) reset() {
	a.au = h264Unit{}
	a.sps, a.pps = a.sps[:0], a.pps[:0]
}
