package depacketize

import (
	"fmt"
	"slices"

	"github.com/pion/rtp/codecs/av1/obu"
)

// av1 depacketizes AV1 (the AV1 RTP payload specification, "AV1 RTP"). OBU elements are
// copied into the frame as they arrive, joined across packets when fragmented, and each
// completed OBU is rewritten in place to carry its size field. pion's AV1Depacketizer
// allocates per packet, so this adapter does its own parsing and uses pion's OBU type names.
type av1 struct {
	open     bool // the last OBU of the previous packet continues (Y=1)
	obuStart int  // offset of the OBU being assembled

	newSequence   bool // N bit of the first packet
	sequenceHdr   bool // a sequence header OBU is in this temporal unit
	frameSeen     bool // a frame or frame header OBU has been seen
	keyFrame      bool // the first frame header is a key frame
	reducedHeader bool // reduced_still_picture_header of the last sequence header
}

func newAV1() adapter { return &av1{} }

// Aggregation header bits (AV1 RTP section 4.4).
const (
	av1Z = 0x80
	av1Y = 0x40
	av1W = 0x30
	av1N = 0x08
)

func (a *av1) add(dst, payload []byte, first bool) ([]byte, error) {
	agg := payload[0]
	z, y, w := agg&av1Z != 0, agg&av1Y != 0, int(agg&av1W>>4)
	if z && agg&av1N != 0 {
		return dst, fmt.Errorf("av1 aggregation header with both Z and N: %w", errBadPayload)
	}
	if first {
		a.open, a.sequenceHdr, a.frameSeen, a.keyFrame = false, false, false, false
		a.newSequence = agg&av1N != 0
		if z {
			return dst, fmt.Errorf("av1 temporal unit without its first packet: %w", errIncomplete)
		}
	}
	if z != a.open {
		return dst, fmt.Errorf("av1 obu fragment without its neighbour: %w", errIncomplete)
	}

	pos, count := 1, 0
	for pos < len(payload) {
		count++
		var size int
		if w != 0 && count == w {
			size = len(payload) - pos
		} else {
			v, n, err := readLEB128(payload[pos:])
			if err != nil {
				return dst, fmt.Errorf("av1 obu element length: %w", err)
			}
			pos += n
			if v > uint64(len(payload)-pos) {
				return dst, fmt.Errorf("av1 obu element of %d bytes in %d: %w", v, len(payload)-pos, errShortPayload)
			}
			size = int(v)
		}
		last := pos+size == len(payload)
		if count > 1 || !z {
			a.obuStart = len(dst)
		}
		dst = append(dst, payload[pos:pos+size]...)
		pos += size
		if last && y {
			a.open = true
			return dst, nil
		}
		var err error
		if dst, err = a.completeOBU(dst); err != nil {
			return dst, err
		}
		a.open = false
	}
	if count == 0 || (w != 0 && count != w) {
		return dst, fmt.Errorf("av1 packet with %d obu elements, W=%d: %w", count, w, errBadPayload)
	}
	return dst, nil
}

// completeOBU rewrites the OBU at a.obuStart, the last thing in dst, in the low-overhead
// format: with obu_has_size_field set and the size after the header. Temporal delimiters,
// tile lists and padding are removed.
func (a *av1) completeOBU(dst []byte) ([]byte, error) {
	start := a.obuStart
	o := dst[start:]
	if len(o) == 0 {
		return dst, nil // an empty element carries nothing
	}
	header := o[0]
	if header&0x80 != 0 {
		return dst, fmt.Errorf("av1 obu forbidden bit: %w", errBadPayload)
	}
	typ := obu.Type(header >> 3 & 0xf)
	hdrLen := 1
	if header&0x04 != 0 { // extension header
		hdrLen = 2
	}
	if len(o) < hdrLen {
		return dst, fmt.Errorf("av1 obu header: %w", errShortPayload)
	}
	switch typ {
	case obu.OBUTemporalDelimiter, obu.OBUTileList, obu.OBUPadding:
		return dst[:start], nil
	}

	body := o[hdrLen:]
	if header&0x02 != 0 {
		// Sizes are optional in RTP; if the sender kept one, it must match the element.
		v, n, err := readLEB128(body)
		if err != nil || v != uint64(len(body)-n) {
			return dst, fmt.Errorf("av1 obu size field does not match its element: %w", errBadPayload)
		}
		body = body[n:]
	} else {
		var size [8]byte
		enc := appendLEB128(size[:0], uint64(len(body)))
		dst[start] |= 0x02
		dst = slices.Insert(dst, start+hdrLen, enc...)
		body = dst[start+hdrLen+len(enc):]
	}

	switch typ {
	case obu.OBUSequenceHeader:
		if len(body) < 1 {
			return dst, fmt.Errorf("av1 sequence header: %w", errShortPayload)
		}
		a.sequenceHdr = true
		// seq_profile f(3), still_picture f(1), reduced_still_picture_header f(1)
		a.reducedHeader = body[0]&0x08 != 0
	case obu.OBUFrameHeader, obu.OBUFrame:
		if !a.frameSeen {
			a.frameSeen = true
			// Without a reduced header: show_existing_frame f(1), frame_type f(2), KEY_FRAME = 0.
			a.keyFrame = a.reducedHeader || (len(body) > 0 && body[0]&0x80 == 0 && body[0]>>5&3 == 0)
		}
	}
	return dst, nil
}

func (a *av1) finish(frame []byte) ([]byte, bool, error) {
	if a.open {
		return frame, false, fmt.Errorf("av1 obu without its last fragment: %w", errIncomplete)
	}
	if len(frame) == 0 {
		return frame, false, fmt.Errorf("av1 temporal unit without obus: %w", errBadPayload)
	}
	// A key temporal unit starts a coded video sequence, with its sequence header.
	key := a.sequenceHdr && (a.newSequence || a.keyFrame)
	return frame, key, nil
}

func (a *av1) pictureID() (uint16, int) { return 0, 0 }

func (a *av1) reset() { *a = av1{} }

// readLEB128 reads an unsigned LEB128 number of at most 8 bytes whose value fits in 32 bits,
// as AV1 requires (AV1 specification section 4.10.5).
func readLEB128(p []byte) (v uint64, n int, err error) {
	for i := 0; i < 8 && i < len(p); i++ {
		v |= uint64(p[i]&0x7f) << (7 * i)
		if p[i]&0x80 == 0 {
			if v > 1<<32-1 {
				return 0, 0, fmt.Errorf("leb128 value %d: %w", v, errBadPayload)
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, fmt.Errorf("leb128: %w", errShortPayload)
}

func appendLEB128(dst []byte, v uint64) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}
