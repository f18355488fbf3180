package mkvwriter

import (
	"fmt"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// codecAdapter turns one codec's frames into Matroska blocks and describes the track.
// There is one small adapter per codec; the Writer stays generic.
type codecAdapter interface {
	// prepare validates a frame and returns the bytes of its block, which stay valid until
	// the next call. For key frames it also returns the coded size (0, 0 when the frame codes
	// none). first is true for the first frame of the file. A frame prepare rejects must not
	// change the adapter's state.
	prepare(data []byte, key, first bool) (block []byte, width, height int, err error)
	// codecID is the Matroska CodecID.
	codecID() string
	// codecPrivate is the CodecPrivate, known once the first frame was prepared.
	codecPrivate() []byte
}

// Codec is how one codec is stored in a Matroska file: its CodecID, CodecPrivate and the
// frame parsing that finds the picture size (the adapter), whether it is video, and the
// DocType of a file that holds it. Each codec's file declares its own (VP8, VP9, AV1, H264,
// Opus); the codec table (recorder/codec) names the one a codec is written with. The zero
// Codec writes nothing (ErrUnsupportedCodec).
type Codec struct {
	name    string
	docType string
	video   bool
	adapter func(p media.TrackParams) (codecAdapter, error)
}

// String names the codec in messages.
func (c Codec) String() string {
	if c.name == "" {
		return "unknown"
	}
	return c.name
}

func (c Codec) newAdapter(p media.TrackParams) (codecAdapter, error) {
	if c.adapter == nil {
		return nil, fmt.Errorf("codec %s: %w", c, ErrUnsupportedCodec)
	}
	return c.adapter(p)
}
