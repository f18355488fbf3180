package lkpeer

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"

	"github.com/pion/rtp/codecs/vp9"
)

// vp9Payloader packetizes encrypted VP9 frames the way a browser does: the payload
// descriptor (RFC 9628, non-flexible mode) describes the frame as it was before
// encryption, because the encoder hands the packetizer that metadata alongside the
// encrypted bytes. pion's VP9 payloader reads the descriptor from the frame itself and
// drops frames it cannot parse, which every encrypted frame is. encWriter sets next
// before each frame.
type vp9Payloader struct {
	pictureID uint16
	next      vp9.Header
}

func newVP9Payloader() *vp9Payloader {
	return &vp9Payloader{pictureID: uint16(rand.IntN(0x8000))}
}

// describe records the plaintext frame's header for the next Payload call.
func (p *vp9Payloader) describe(plain []byte) error {
	var h vp9.Header
	if err := h.Unmarshal(plain); err != nil {
		return fmt.Errorf("vp9 frame header: %w", err)
	}
	p.next = h
	return nil
}

// Payload implements rtp.Payloader.
func (p *vp9Payloader) Payload(mtu uint16, payload []byte) [][]byte {
	key := !p.next.NonKeyFrame
	// I|P|L|F|B|E|V|Z, then M + 15-bit picture id; a key frame's first packet carries
	// the scalability structure with its resolution (one spatial layer).
	var ss []byte
	if key {
		ss = make([]byte, 5)
		ss[0] = 0x10 // N_S = 0, Y = 1, G = 0
		binary.BigEndian.PutUint16(ss[1:], p.next.Width())
		binary.BigEndian.PutUint16(ss[3:], p.next.Height())
	}
	var out [][]byte
	for first := true; len(payload) > 0 || first; first = false {
		hdr := []byte{0x80, byte(p.pictureID>>8) | 0x80, byte(p.pictureID)}
		if !key {
			hdr[0] |= 0x40 // P
		}
		if first {
			hdr[0] |= 0x08 // B
			if key {
				hdr[0] |= 0x02 // V
				hdr = append(hdr, ss...)
			}
		}
		room := int(mtu) - len(hdr)
		if room <= 0 {
			return nil
		}
		n := min(room, len(payload))
		if n == len(payload) {
			hdr[0] |= 0x04 // E
		}
		out = append(out, append(hdr, payload[:n]...))
		payload = payload[n:]
	}
	p.pictureID = (p.pictureID + 1) & 0x7fff
	return out
}
