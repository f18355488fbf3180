// Package depacketize turns the in-order RTP packets of one track into complete codec frames.
//
// One small adapter per codec (Opus, VP8, VP9, AV1, H.264) sits behind the Depacketizer
// interface, each with its own constructor (NewOpus, NewVP8, ...); the codec table
// (recorder/codec) says which one a codec uses. Packets come in sequence order from the jitter buffer together with the number of
// packets lost right before each; frames go out in the media.Frame.Data format the container
// writers expect. A frame that lost a packet is dropped, never emitted broken, and after a
// dropped video frame nothing is emitted until the next keyframe (NeedKeyframe tells the
// caller to ask the sender for one). Frame buffers are reused, so steady-state operation does
// not allocate.
package depacketize

import (
	"github.com/pion/rtp"
)

// Default frame size limits; larger frames are dropped and counted as Oversized.
const (
	DefaultMaxVideoFrame = 4 << 20
	DefaultMaxAudioFrame = 8 << 10
)

// Frame is one complete codec frame. Data is in the media.Frame.Data format of the codec; it
// belongs to the Depacketizer and stays valid until the next call to Push or Reset.
type Frame struct {
	Data []byte
	// RTPTimestamp is the RTP timestamp shared by the frame's packets.
	RTPTimestamp uint32
	// Keyframe is true for a frame that decodes on its own. Opus frames are always keyframes.
	Keyframe bool
}

// Depacketizer assembles the frames of one track.
type Depacketizer interface {
	// Push takes the next packet in sequence order and the number of packets lost right
	// before it, and returns the frames completed by it, oldest first: none, one, or two
	// (a frame completed by a timestamp change, then the packet's own frame if it carries the
	// marker bit). Packets without payload (padding) are ignored. pkt is not retained.
	Push(pkt *rtp.Packet, lostBefore int) []Frame
	// NeedKeyframe reports whether video frames are being dropped until a keyframe arrives:
	// from the start until the first keyframe, and after a frame was dropped. The caller
	// should then send a (rate-limited) picture loss indication. Always false for audio.
	NeedKeyframe() bool
	// Reset forgets the frame in progress and everything learnt about the stream, as after a
	// restart of the RTP stream (jitter.Packet.Reset); video waits for a keyframe again.
	Reset()
	// Stats returns the counters so far.
	Stats() Stats
}

// Stats counts what a Depacketizer has seen.
type Stats struct {
	// Packets counts calls to Push.
	Packets uint64
	// Padding counts packets without payload, which are ignored.
	Padding uint64
	// Lost sums the lostBefore counts passed to Push.
	Lost uint64
	// Malformed counts frames dropped because a payload broke the codec's packetization
	// rules (the rest of such a frame is not parsed, so one bad frame counts once).
	Malformed uint64
	// Frames counts frames returned, Keyframes those among them that are keyframes.
	Frames    uint64
	Keyframes uint64
	// Incomplete counts frames dropped because a packet was lost or their first or last
	// packet was missing.
	Incomplete uint64
	// Oversized counts frames dropped for exceeding the frame size limit.
	Oversized uint64
	// Undecodable counts complete video frames dropped while waiting for a keyframe.
	Undecodable uint64
}

// Option configures a Depacketizer.
type Option func(*config)

type config struct {
	maxFrame int
	opaque   bool
}

// WithOpaquePayload says the frames are end-to-end encrypted (MatrixRTC media keys): a
// frame's bytes cannot be parsed before decryption, so keyframes are judged by the RTP
// payload descriptor alone where a codec would otherwise also read the frame header (VP9).
// VP8, H.264 and Opus keep what keyframe detection reads in the clear.
func WithOpaquePayload() Option {
	return func(c *config) { c.opaque = true }
}

// WithMaxFrameSize sets the largest frame, in bytes, that is returned; larger ones are dropped
// and counted as Oversized. The defaults are DefaultMaxVideoFrame and DefaultMaxAudioFrame.
func WithMaxFrameSize(n int) Option {
	return func(c *config) { c.maxFrame = n }
}

func newConfig(opts []Option, maxFrame int) config {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.maxFrame <= 0 {
		cfg.maxFrame = maxFrame
	}
	return cfg
}

// NewOpus returns a Depacketizer for Opus (RFC 7587).
func NewOpus(opts ...Option) Depacketizer {
	return newOpus(newConfig(opts, DefaultMaxAudioFrame))
}

// NewVP8 returns a Depacketizer for VP8 (RFC 7741).
func NewVP8(opts ...Option) Depacketizer {
	return newVideo(newVP8(), newConfig(opts, DefaultMaxVideoFrame))
}

// NewVP9 returns a Depacketizer for VP9 (RFC 9628).
func NewVP9(opts ...Option) Depacketizer {
	cfg := newConfig(opts, DefaultMaxVideoFrame)
	a := newVP9()
	a.opaque = cfg.opaque
	return newVideo(a, cfg)
}

// NewAV1 returns a Depacketizer for AV1 (the AV1 RTP payload specification).
func NewAV1(opts ...Option) Depacketizer {
	return newVideo(newAV1(), newConfig(opts, DefaultMaxVideoFrame))
}

// NewH264 returns a Depacketizer for H.264 (RFC 6184, packetization modes 0 and 1).
func NewH264(opts ...Option) Depacketizer {
	return newVideo(newH264(), newConfig(opts, DefaultMaxVideoFrame))
}
