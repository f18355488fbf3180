// Package media defines the contract between the recorder's track pipeline and
// the container writers: codec frames with their presentation times in, files out.
package media

import "time"

// Codec names a codec the recorder can write, as manifests name it ("opus", "vp8"). What
// the program knows about each one (its MIME type, kind, container, depacketizer, writer)
// is in the codec table, recorder/codec; the zero value is CodecUnknown.
type Codec string

// The codecs the recorder knows.
const (
	CodecUnknown Codec = ""
	CodecOpus    Codec = "opus"
	CodecVP8     Codec = "vp8"
	CodecVP9     Codec = "vp9"
	CodecAV1     Codec = "av1"
	CodecH264    Codec = "h264"
)

// String returns the codec's name, "unknown" for CodecUnknown.
func (c Codec) String() string {
	if c == CodecUnknown {
		return "unknown"
	}
	return string(c)
}

// Frame is one complete codec frame, ready for a container.
//
// Data formats by codec:
//   - Opus: one Opus packet (RFC 6716), as carried in one RTP payload.
//   - VP8, VP9: one compressed frame (for VP9 a superframe if the sender used one).
//   - AV1: one temporal unit as a sequence of OBUs in low-overhead bitstream format
//     (every OBU with obu_has_size_field = 1), temporal delimiters removed.
//   - H.264: one access unit in Annex B format (start-code prefixed NAL units), with
//     SPS and PPS in front of every IDR picture.
//
// The writer may keep a reference to Data only until WriteFrame returns.
type Frame struct {
	Data []byte
	// PTS is the presentation time from the start of the file (the first frame of a file
	// usually has PTS 0). It never goes backwards; a jump forward is a gap.
	PTS time.Duration
	// Duration of the frame if known (audio: from the Opus TOC), else 0.
	Duration time.Duration
	// Keyframe is true for a frame that decodes on its own (VP8/VP9/AV1 key frame, H.264 IDR).
	// Audio frames are always keyframes.
	Keyframe bool
}

// Writer writes frames of one track into one file.
type Writer interface {
	// WriteFrame appends a frame. Video writers expect the first frame to be a keyframe.
	WriteFrame(f Frame) error
	// Flush pushes everything written so far to the file so that a crash after Flush loses
	// nothing before it, and the file stays playable up to that point.
	Flush() error
	// Close finalises the file (duration, cues, headers), syncs it to disk and closes it.
	// It is idempotent.
	Close() error
}

// TrackParams describes what a writer needs to know before the first frame (which codec it
// writes is given to the writer's constructor).
type TrackParams struct {
	// ClockRate of the RTP stream (48000 for Opus, 90000 for video).
	ClockRate uint32
	// Channels for audio (Opus: 1 or 2; WebRTC always negotiates 2 in SDP).
	Channels uint16
	// Width and Height of video if known before the first keyframe, else 0
	// (writers learn it from the keyframe).
	Width, Height int
	// Title names the track inside the container, e.g. "@alice:example.org (DEVICE) microphone".
	Title string
}
