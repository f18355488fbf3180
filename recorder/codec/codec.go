// Package codec is the recorder's codec table: one entry per codec it records, with
// everything the program decides by codec. An entry names its MIME type, kind and clock
// rate; the RTP payload formats the bot negotiates for it; the depacketizer that cuts its
// frames (and finds its key frames); the container it is written to (with the container's
// extension, content type, writer and repair); for audio, its frame durations and
// silence; and which bytes of its frames stay in clear under MatrixRTC media encryption.
//
// The entries are in table.go. Adding a codec is one entry there plus the codec's own
// files: its depacketizer (recorder/depacketize/<codec>.go), its container mapping (for
// Matroska, recorder/mkvwriter/<codec>.go) and, if MatrixRTC encrypts it, its clear
// header (<codec>.go here). Nothing else switches on codecs.
package codec

import (
	"io"
	"path"
	"strings"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/depacketize"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
	"github.com/matrix-recorder/matrix-recorder/recorder/mkvwriter"
)

// Kind is audio or video. The zero value is KindUnknown.
type Kind int

// Kinds of media.
const (
	KindUnknown Kind = iota
	Audio
	Video
)

// String returns "audio" or "video", as manifests say it.
func (k Kind) String() string {
	switch k {
	case Audio:
		return "audio"
	case Video:
		return "video"
	default:
		return "unknown"
	}
}

// Spec is one codec the recorder records.
type Spec struct {
	// ID names the codec in manifests ("opus") and is what the writers are given.
	ID media.Codec
	// MimeType is its WebRTC name ("audio/opus", "video/VP8"), matched without regard to
	// case.
	MimeType  string
	Kind      Kind
	ClockRate uint32
	// Channels is what SDP negotiates for audio (Opus: always 2); 0 for video.
	Channels uint16
	// RTP lists the payload formats the bot's peer connections accept, in the order they
	// are offered. Video formats get NACK, PLI, FIR and REMB feedback and an RTX format at
	// the next payload type (call/rtc).
	RTP []RTPFormat
	// Container is the file format the codec is written to.
	Container *Container
	// Matroska is how a WebM or Matroska container stores the codec.
	Matroska mkvwriter.Codec
	// Depacketizer returns the frame assembler of one track.
	Depacketizer func(opts ...depacketize.Option) depacketize.Depacketizer
	// Audio says how long audio frames last and makes silence; nil for video.
	Audio *AudioFrames
	// Encryption says how MatrixRTC media encryption treats its frames; nil: it has no
	// encryption format (such a track cannot be recorded when it is encrypted).
	Encryption *FrameEncryption
}

// IsVideo reports whether the codec carries video.
func (s *Spec) IsVideo() bool { return s.Kind == Video }

// RTPFormat is one RTP payload format of a codec.
type RTPFormat struct {
	PayloadType uint8
	// Fmtp is the format's SDP fmtp line (without "a=fmtp:<pt> ").
	Fmtp string
}

// AudioFrames is what the pipeline needs to place audio frames on a timeline and to fill
// gaps.
type AudioFrames struct {
	// Duration returns how long a frame lasts, from its bytes; an error means the frame is
	// not valid in the codec.
	Duration func(frame []byte) (time.Duration, error)
	// Grid: every frame lasts a multiple of it, so only gaps of such multiples can be filled.
	Grid time.Duration
	// Silence returns a frame of d of digital silence.
	Silence func(d time.Duration) ([]byte, error)
}

// FrameEncryption is how the LiveKit SDK's frame cryptor (MatrixRTC media encryption)
// treats a codec's frames: a clear header, then the encrypted rest.
type FrameEncryption struct {
	// ClearBytes returns how many leading bytes of a frame stay in clear and whether the
	// encrypted rest is RBSP-escaped (H.264). keyframe is the frame type the encoder (or,
	// on the receiving side, the depacketizer) reports.
	ClearBytes func(frame []byte, keyframe bool) (n int, rbsp bool)
	// AddedPrefix, when set, returns the length of what the depacketizer may have put in
	// front of a received frame that its sender did not have (H.264: the parameter sets in
	// front of an IDR), so that decryption can try the clear header without it.
	AddedPrefix func(header []byte) int
}

// NewWriter creates the file at path (it must not exist) for a track of this codec and
// returns its container's writer, which owns the file.
func (s *Spec) NewWriter(path string, p media.TrackParams, o WriterOptions) (media.Writer, error) {
	return s.Container.open(path, s, p, o)
}

// NewWriterTo returns the container's writer for a track of this codec writing to ws, which
// the caller owns.
func (s *Spec) NewWriterTo(ws io.WriteSeeker, p media.TrackParams, o WriterOptions) (media.Writer, error) {
	return s.Container.openWith(ws, s, p, o)
}

// All returns the codec table, in the order codecs are offered.
func All() []*Spec { return table }

// ByMimeType returns the codec of a WebRTC MIME type ("audio/opus", "video/VP8").
func ByMimeType(mime string) (*Spec, bool) {
	for _, s := range table {
		if strings.EqualFold(s.MimeType, mime) {
			return s, true
		}
	}
	return nil, false
}

// Of returns the codec with the ID.
func Of(id media.Codec) (*Spec, bool) {
	for _, s := range table {
		if s.ID == id {
			return s, true
		}
	}
	return nil, false
}

// ContainerOf returns the container of a file from its extension.
func ContainerOf(file string) (*Container, bool) {
	ext := strings.ToLower(path.Ext(file))
	for _, c := range containers {
		if c.Extension == ext {
			return c, true
		}
	}
	return nil, false
}
