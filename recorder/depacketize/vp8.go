package depacketize

import (
	"fmt"

	"github.com/pion/rtp/codecs"
)

// vp8 depacketizes VP8 (RFC 7741) with pion's payload descriptor parser.
type vp8 struct {
	desc   codecs.VP8Packet
	key    bool
	pic    uint16
	picMod int
}

func newVP8() adapter { return &vp8{} }

func (a *vp8) add(dst, payload []byte, first bool) ([]byte, error) {
	data, err := a.desc.Unmarshal(payload)
	if err != nil {
		return dst, fmt.Errorf("vp8 payload descriptor: %w", err)
	}
	if first {
		// The first packet of a frame starts partition 0 and carries the frame tag.
		if a.desc.S != 1 || a.desc.PID != 0 {
			return dst, fmt.Errorf("vp8 frame without its first packet: %w", errIncomplete)
		}
		if len(data) < 3 {
			return dst, fmt.Errorf("vp8 frame tag: %w", errShortPayload)
		}
		// Frame tag P bit: 0 for a key frame, whose header starts with a start code.
		a.key = data[0]&1 == 0
		if a.key && (len(data) < 10 || data[3] != 0x9d || data[4] != 0x01 || data[5] != 0x2a) {
			return dst, fmt.Errorf("vp8 key frame start code: %w", errBadPayload)
		}
		a.pic, a.picMod = 0, 0
		if a.desc.I == 1 {
			a.pic, a.picMod = a.desc.PictureID, 1<<7
			if payload[2]&0x80 != 0 { // M bit: 15-bit picture ID
				a.picMod = 1 << 15
			}
		}
	}
	return append(dst, data...), nil
}

func (a *vp8) finish(frame []byte) ([]byte, bool, error) {
	return frame, a.key, nil
}

func (a *vp8) pictureID() (uint16, int) { return a.pic, a.picMod }

func (a *vp8) reset() { *a = vp8{} }
