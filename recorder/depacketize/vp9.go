package depacketize

import (
	"fmt"

	"github.com/pion/rtp/codecs"
)

// vp9MaxLayers is the most frames a VP9 superframe can hold.
const vp9MaxLayers = 8

// vp9 depacketizes VP9 (RFC 9628) with pion's payload descriptor parser. A picture is the
// frames of all its spatial layers, each delimited by the B and E bits; when there is more
// than one, they are joined into a superframe with an index, as a VP9 decoder reading a
// container expects.
type vp9 struct {
	desc    codecs.VP9Packet
	key     bool // the descriptor says the first layer frame is not inter-predicted
	opaque  bool // frames are encrypted: judge keyframes by the descriptor alone
	pic     uint16
	picMod  int
	inLayer bool // inside a layer frame: B seen, E not yet
	start   int  // offset of the current layer frame
	sizes   [vp9MaxLayers]int
	layers  int
}

func newVP9() *vp9 { return &vp9{} }

func (a *vp9) add(dst, payload []byte, first bool) ([]byte, error) {
	// pion appends to these on every Unmarshal without truncating them first.
	a.desc.PDiff = a.desc.PDiff[:0]
	a.desc.PGTID = a.desc.PGTID[:0]
	a.desc.PGU = a.desc.PGU[:0]
	a.desc.PGPDiff = a.desc.PGPDiff[:0]
	data, err := a.desc.Unmarshal(payload)
	if err != nil {
		return dst, fmt.Errorf("vp9 payload descriptor: %w", err)
	}
	if first {
		if !a.desc.B {
			return dst, fmt.Errorf("vp9 frame without its first packet: %w", errIncomplete)
		}
		a.key = !a.desc.P
		a.inLayer, a.layers = false, 0
		a.pic, a.picMod = 0, 0
		if a.desc.I {
			a.pic, a.picMod = a.desc.PictureID, 1<<7
			if payload[1]&0x80 != 0 { // M bit: 15-bit picture ID
				a.picMod = 1 << 15
			}
		}
	}
	if a.desc.B {
		if a.inLayer {
			return dst, fmt.Errorf("vp9 layer frame without its last packet: %w", errIncomplete)
		}
		if a.layers == vp9MaxLayers {
			return dst, fmt.Errorf("vp9 picture with more than %d layer frames: %w", vp9MaxLayers, errBadPayload)
		}
		a.inLayer, a.start = true, len(dst)
	} else if !a.inLayer {
		return dst, fmt.Errorf("vp9 layer frame without its first packet: %w", errIncomplete)
	}
	dst = append(dst, data...)
	if a.desc.E {
		a.inLayer = false
		a.sizes[a.layers] = len(dst) - a.start
		a.layers++
	}
	return dst, nil
}

func (a *vp9) finish(frame []byte) ([]byte, bool, error) {
	if a.inLayer || a.layers == 0 {
		return frame, false, fmt.Errorf("vp9 layer frame without its last packet: %w", errIncomplete)
	}
	for _, size := range a.sizes[:a.layers] {
		if size == 0 {
			return frame, false, fmt.Errorf("empty vp9 layer frame: %w", errBadPayload)
		}
	}
	key := a.key && (a.opaque || vp9IsKeyFrame(frame[:a.sizes[0]]))
	if a.layers > 1 {
		frame = appendVP9SuperframeIndex(frame, a.sizes[:a.layers])
	}
	return frame, key, nil
}

func (a *vp9) pictureID() (uint16, int) { return a.pic, a.picMod }

func (a *vp9) reset() {
	a.key, a.inLayer, a.layers, a.picMod = false, false, 0, 0
}

// vp9IsKeyFrame reads the start of a VP9 uncompressed header (VP9 bitstream specification,
// section 6.2): frame_marker, profile, show_existing_frame, frame_type. A frame packed as a
// superframe starts with its first frame, which is the key frame of a key picture.
func vp9IsKeyFrame(frame []byte) bool {
	if len(frame) < 1 || frame[0]>>6 != 2 { // frame_marker
		return false
	}
	profile := (frame[0]>>5)&1 | (frame[0]>>4)&1<<1
	bit := 3 // next bit, counting down from bit 7 of the first byte
	if profile == 3 {
		bit-- // reserved_zero
	}
	showExisting := frame[0]>>bit&1 == 1
	frameType := frame[0] >> (bit - 1) & 1
	return !showExisting && frameType == 0
}

// appendVP9SuperframeIndex appends the index of a superframe made of frames of the given
// sizes (VP9 bitstream specification, annex B).
func appendVP9SuperframeIndex(dst []byte, sizes []int) []byte {
	largest := 0
	for _, s := range sizes {
		largest = max(largest, s)
	}
	width := 1
	for width < 4 && largest >= 1<<(8*width) {
		width++
	}
	marker := byte(0xc0 | (width-1)<<3 | (len(sizes) - 1))
	dst = append(dst, marker)
	for _, s := range sizes {
		for i := range width {
			dst = append(dst, byte(s>>(8*i)))
		}
	}
	return append(dst, marker)
}
