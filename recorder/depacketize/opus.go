package depacketize

import (
	"github.com/pion/rtp"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec/opus"
)

// opusDepacketizer is the Depacketizer for Opus (RFC 7587): every RTP payload is one Opus
// packet, which decodes on its own, so a lost packet only means a missing frame.
type opusDepacketizer struct {
	maxFrame int
	buf      []byte
	out      [1]Frame
	stats    Stats
}

func newOpus(cfg config) *opusDepacketizer {
	return &opusDepacketizer{maxFrame: cfg.maxFrame}
}

func (o *opusDepacketizer) Push(pkt *rtp.Packet, lostBefore int) []Frame {
	o.stats.Packets++
	if lostBefore > 0 {
		o.stats.Lost += uint64(lostBefore)
	}
	switch {
	case len(pkt.Payload) == 0:
		o.stats.Padding++
		return o.out[:0]
	case len(pkt.Payload) > o.maxFrame:
		o.stats.Oversized++
		return o.out[:0]
	case !validOpusPacket(pkt.Payload):
		o.stats.Malformed++
		return o.out[:0]
	}
	o.buf = append(o.buf[:0], pkt.Payload...)
	o.out[0] = Frame{Data: o.buf, RTPTimestamp: pkt.Timestamp, Keyframe: true}
	o.stats.Frames++
	o.stats.Keyframes++
	return o.out[:1]
}

func (o *opusDepacketizer) NeedKeyframe() bool { return false }

func (o *opusDepacketizer) Reset() {}

func (o *opusDepacketizer) Stats() Stats { return o.stats }

// validOpusPacket checks the framing rules R1 to R7 of RFC 6716 section 3.4, so that a writer
// can trust the TOC byte and the frame count of what it is given.
func validOpusPacket(p []byte) bool {
	_, err := opus.Samples(p)
	return err == nil
}
