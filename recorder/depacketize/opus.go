package depacketize

import "github.com/pion/rtp"

// opus is the Depacketizer for Opus (RFC 7587): every RTP payload is one Opus packet, which
// decodes on its own, so a lost packet only means a missing frame.
type opus struct {
	maxFrame int
	buf      []byte
	out      [1]Frame
	stats    Stats
}

func newOpus(cfg config) *opus {
	return &opus{maxFrame: cfg.maxFrame}
}

func (o *opus) Push(pkt *rtp.Packet, lostBefore int) []Frame {
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

func (o *opus) NeedKeyframe() bool { return false }

func (o *opus) Reset() {}

func (o *opus) Stats() Stats { return o.stats }

// Limits from RFC 6716 section 3.4.
const (
	opusMaxFrameBytes = 1275
	opusMaxDurationUS = 120000
)

// validOpusPacket checks the framing rules R1 to R7 of RFC 6716 section 3.4, so that a writer
// can trust the TOC byte and the frame count of what it is given.
func validOpusPacket(p []byte) bool {
	if len(p) < 1 { // R1
		return false
	}
	toc := p[0]
	frameUS := opusFrameDurationUS(toc >> 3)
	rest := p[1:]
	switch toc & 3 {
	case 0: // one frame
		return len(rest) <= opusMaxFrameBytes // R2
	case 1: // two frames of equal size
		return len(rest)%2 == 0 && len(rest)/2 <= opusMaxFrameBytes // R3
	case 2: // two frames, the first with an explicit size
		size, n, ok := opusFrameLength(rest) // R4
		if !ok || size > len(rest)-n {
			return false
		}
		return size <= opusMaxFrameBytes && len(rest)-n-size <= opusMaxFrameBytes
	default: // code 3: an arbitrary number of frames
		return validOpusCode3(rest, frameUS)
	}
}

func validOpusCode3(p []byte, frameUS int) bool {
	if len(p) < 1 { // R6, R7
		return false
	}
	vbr, padded, count := p[0]&0x80 != 0, p[0]&0x40 != 0, int(p[0]&0x3f)
	p = p[1:]
	if count == 0 || count*frameUS > opusMaxDurationUS { // R5
		return false
	}
	padding := 0
	if padded {
		for {
			if len(p) < 1 {
				return false
			}
			b := int(p[0])
			p = p[1:]
			if b == 255 {
				padding += 254
				continue
			}
			padding += b
			break
		}
	}
	if padding > len(p) {
		return false
	}
	p = p[:len(p)-padding]
	if !vbr { // R6
		return len(p)%count == 0 && len(p)/count <= opusMaxFrameBytes
	}
	// R7: count-1 explicit sizes, the last frame takes the rest.
	total := 0
	for range count - 1 {
		size, n, ok := opusFrameLength(p)
		if !ok || size > opusMaxFrameBytes {
			return false
		}
		p = p[n:]
		total += size
	}
	return total <= len(p) && len(p)-total <= opusMaxFrameBytes
}

// opusFrameLength decodes a frame length (RFC 6716 section 3.2.1) and its size in bytes.
func opusFrameLength(p []byte) (size, n int, ok bool) {
	switch {
	case len(p) < 1:
		return 0, 0, false
	case p[0] < 252:
		return int(p[0]), 1, true
	case len(p) < 2:
		return 0, 0, false
	default:
		return int(p[1])*4 + int(p[0]), 2, true
	}
}

// opusFrameDurationUS is the duration of one frame for a TOC configuration number.
func opusFrameDurationUS(config byte) int {
	switch {
	case config < 12: // SILK-only: 10, 20, 40, 60 ms
		return [4]int{10000, 20000, 40000, 60000}[config%4]
	case config < 16: // hybrid: 10, 20 ms
		return [2]int{10000, 20000}[config%2]
	default: // CELT-only: 2.5, 5, 10, 20 ms
		return [4]int{2500, 5000, 10000, 20000}[config%4]
	}
}
