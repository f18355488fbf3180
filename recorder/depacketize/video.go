package depacketize

import (
	"errors"
	"fmt"

	"github.com/pion/rtp"
)

// adapter is the codec-specific part of video depacketizing. The shared part (video) finds
// frame boundaries, tracks losses, enforces the size limit and gates on keyframes.
type adapter interface {
	// add parses one RTP payload (never empty) of the current frame and appends the frame
	// data it carries to dst. first is true for the frame's first packet, when the adapter
	// also resets its per-frame state. An error drops the frame; wrap errIncomplete when the
	// frame's start is missing.
	add(dst, payload []byte, first bool) ([]byte, error)
	// finish checks the assembled frame, completes it if the codec needs that, and reports
	// whether it is a keyframe. Wrap errIncomplete when the frame's end is missing.
	finish(frame []byte) ([]byte, bool, error)
	// pictureID returns the picture ID of the current frame and the modulus it counts in, or
	// a modulus of 0 when the stream carries none.
	pictureID() (id uint16, modulus int)
	// reset forgets all per-frame and per-stream state.
	reset()
}

// video is the Depacketizer for every video codec, around one adapter.
type video struct {
	a        adapter
	maxFrame int

	// Two frame buffers: one Push may return a frame completed by a timestamp change while
	// the next frame is already being assembled.
	bufs [2][]byte
	cur  int
	out  [2]Frame

	active   bool   // a frame is being assembled in bufs[cur]
	ts       uint32 // its RTP timestamp
	dropping error  // why the frame in progress will be dropped, or nil
	needKey  bool   // drop frames until a keyframe
	gap      bool   // packets were lost since the last complete frame

	sawMarker bool // the stream marks frame ends; a frame that ends without one was cut

	prevPic    uint16 // picture ID of the last complete frame
	prevPicMod int    // its modulus; 0 if unknown

	stats Stats
}

// errLost marks a frame in progress that lost packets; errTooBig one over the size limit;
// errCut one that ended without its marker packet.
var (
	errLost   = errors.New("packet lost")
	errTooBig = errors.New("frame too large")
	errCut    = fmt.Errorf("%w: frame ended without its marker packet", errIncomplete)
)

func newVideo(a adapter, cfg config) *video {
	return &video{a: a, maxFrame: cfg.maxFrame, needKey: true}
}

func (v *video) Push(pkt *rtp.Packet, lostBefore int) []Frame {
	n := 0
	v.stats.Packets++
	if lostBefore > 0 {
		v.stats.Lost += uint64(lostBefore)
		v.gap = true
		if v.active && v.dropping == nil {
			v.dropping = errLost
		}
	}
	if len(pkt.Payload) == 0 {
		v.stats.Padding++
		return v.out[:0]
	}
	if v.active && pkt.Timestamp != v.ts {
		// The frame in progress ended without its marker packet. In a stream that marks
		// frame ends (every WebRTC sender does) that means it was cut short, e.g. by an
		// SFU switching simulcast layers: drop it rather than write a truncated frame.
		if v.sawMarker && v.dropping == nil {
			v.dropping = errCut
		}
		n = v.finish(n)
	}
	first := !v.active
	if first {
		v.active = true
		v.ts = pkt.Timestamp
		v.dropping = nil
		v.bufs[v.cur] = v.bufs[v.cur][:0]
	}
	if v.dropping == nil {
		dst, err := v.a.add(v.bufs[v.cur], pkt.Payload, first)
		v.bufs[v.cur] = dst
		switch {
		case err != nil:
			v.dropping = err
			if !errors.Is(err, errIncomplete) {
				v.stats.Malformed++
			}
		case len(dst) > v.maxFrame:
			v.dropping = errTooBig
		}
	}
	if pkt.Marker {
		v.sawMarker = true
		n = v.finish(n)
	}
	return v.out[:n]
}

// finish ends the frame in progress, appends it to the output if it is to be emitted, and
// returns the new number of output frames.
func (v *video) finish(n int) int {
	v.active = false
	gap := v.gap
	v.gap = false
	if v.dropping == nil {
		var (
			frame []byte
			key   bool
			err   error
		)
		frame, key, err = v.a.finish(v.bufs[v.cur])
		v.bufs[v.cur] = frame
		switch {
		case err != nil:
			v.dropping = err
			if !errors.Is(err, errIncomplete) {
				v.stats.Malformed++
			}
		case len(frame) > v.maxFrame:
			v.dropping = errTooBig
		default:
			return v.emit(n, frame, key, gap)
		}
	}
	switch v.dropping {
	case errTooBig:
		v.stats.Oversized++
	case errLost:
		v.stats.Incomplete++
	default:
		if errors.Is(v.dropping, errIncomplete) {
			v.stats.Incomplete++
		}
	}
	v.needKey = true
	v.prevPicMod = 0
	return n
}

func (v *video) emit(n int, frame []byte, key, gap bool) int {
	pic, mod := v.a.pictureID()
	if gap && !(mod != 0 && mod == v.prevPicMod && int(pic) == (int(v.prevPic)+1)%mod) {
		// Whole frames may have been lost: the reference chain is broken.
		v.needKey = true
	}
	v.prevPic, v.prevPicMod = pic, mod
	if v.needKey && !key {
		v.stats.Undecodable++
		return n
	}
	v.needKey = false
	v.out[n] = Frame{Data: frame, RTPTimestamp: v.ts, Keyframe: key}
	v.cur ^= 1
	v.stats.Frames++
	if key {
		v.stats.Keyframes++
	}
	return n + 1
}

func (v *video) NeedKeyframe() bool { return v.needKey }

func (v *video) Reset() {
	v.active = false
	v.dropping = nil
	v.needKey = true
	v.gap = false
	v.prevPicMod = 0
	v.sawMarker = false
	v.a.reset()
}

func (v *video) Stats() Stats { return v.stats }
