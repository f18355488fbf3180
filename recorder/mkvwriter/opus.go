package mkvwriter

import (
	"encoding/binary"
	"fmt"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// Opus is Opus in WebM (A_OPUS, with its OpusHead), mono or stereo.
var Opus = Codec{name: "opus", docType: "webm", adapter: func(p media.TrackParams) (codecAdapter, error) {
	channels := p.Channels
	if channels == 0 {
		channels = 2
	}
	if channels > 2 {
		return nil, fmt.Errorf("opus with %d channels: %w", channels, ErrUnsupportedCodec)
	}
	return &opusAdapter{channels: channels}, nil
}}

// opusAdapter writes Opus packets as they are, behind an OpusHead CodecPrivate.
type opusAdapter struct {
	channels uint16
	private  []byte
}

func (*opusAdapter) codecID() string { return "A_OPUS" }

// codecPrivate is the OpusHead of RFC 7845 §5.1 with channel mapping family 0 and no
// pre-skip: WebRTC gives no way to learn the sender's encoder delay, and 0 keeps audio
// aligned with the PTS it was received at.
func (a *opusAdapter) codecPrivate() []byte {
	if a.private == nil {
		b := append([]byte("OpusHead"), 1, byte(a.channels))
		b = binary.LittleEndian.AppendUint16(b, 0)     // pre-skip
		b = binary.LittleEndian.AppendUint32(b, 48000) // input sample rate
		b = binary.LittleEndian.AppendUint16(b, 0)     // output gain
		a.private = append(b, 0)                       // mapping family
	}
	return a.private
}

func (*opusAdapter) prepare(data []byte, _, _ bool) ([]byte, int, int, error) {
	return data, 0, 0, nil
}
