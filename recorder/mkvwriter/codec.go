package mkvwriter

import (
	"bytes"
	"encoding/binary"
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

// newCodecAdapter returns the adapter for a codec, and the DocType of its file.
func newCodecAdapter(p media.TrackParams) (codecAdapter, string, error) {
	switch p.Codec {
	case media.CodecVP8:
		return &vp8Adapter{}, "webm", nil
	case media.CodecVP9:
		return &vp9Adapter{}, "webm", nil
	case media.CodecAV1:
		return &av1Adapter{}, "webm", nil
	case media.CodecH264:
		return &h264Adapter{}, "matroska", nil
	case media.CodecOpus:
		channels := p.Channels
		if channels == 0 {
			channels = 2
		}
		if channels > 2 {
			return nil, "", fmt.Errorf("opus with %d channels: %w", channels, ErrUnsupportedCodec)
		}
		return &opusAdapter{channels: channels}, "webm", nil
	}
	return nil, "", fmt.Errorf("codec %s: %w", p.Codec, ErrUnsupportedCodec)
}

type vp8Adapter struct{}

func (*vp8Adapter) codecID() string      { return "V_VP8" }
func (*vp8Adapter) codecPrivate() []byte { return nil }
func (*vp8Adapter) prepare(data []byte, key, _ bool) ([]byte, int, int, error) {
	if !key {
		return data, 0, 0, nil
	}
	w, h, err := parseVP8Keyframe(data)
	return data, w, h, err
}

type vp9Adapter struct{}

func (*vp9Adapter) codecID() string      { return "V_VP9" }
func (*vp9Adapter) codecPrivate() []byte { return nil }
func (*vp9Adapter) prepare(data []byte, key, _ bool) ([]byte, int, int, error) {
	if !key {
		return data, 0, 0, nil
	}
	w, h, err := parseVP9Keyframe(data)
	return data, w, h, err
}

// av1Adapter keeps the first sequence header for av1C and the last one seen, so that a
// repeated header is compared rather than parsed again.
type av1Adapter struct {
	private []byte
	lastSeq []byte
	lastW   int
	lastH   int
}

func (*av1Adapter) codecID() string        { return "V_AV1" }
func (a *av1Adapter) codecPrivate() []byte { return a.private }
func (a *av1Adapter) prepare(data []byte, key, first bool) ([]byte, int, int, error) {
	// Temporal delimiters must not be stored in Matroska; drop any the caller left in front.
	var seq obu
	haveSeq := false
	rest := data
	block := data
	for len(rest) > 0 {
		o, next, err := nextOBU(rest)
		if err != nil {
			return nil, 0, 0, err
		}
		if o.typ == obuTemporalDelimiter && len(block) == len(rest) {
			block = next
		}
		if o.typ == obuSequenceHeader && !haveSeq {
			seq, haveSeq = o, true
		}
		rest = next
	}
	if len(block) == 0 {
		return nil, 0, 0, fmt.Errorf("preparing av1 frame: only temporal delimiters: %w", ErrBadFrame)
	}
	if !key {
		return block, 0, 0, nil
	}
	if !haveSeq {
		if first {
			return nil, 0, 0, fmt.Errorf("preparing av1 key frame: no sequence header: %w", ErrBadFrame)
		}
		return block, 0, 0, nil
	}
	if bytes.Equal(seq.raw, a.lastSeq) {
		return block, a.lastW, a.lastH, nil
	}
	s, err := parseAV1SequenceHeader(seq.payload)
	if err != nil {
		return nil, 0, 0, err
	}
	if first {
		a.private = av1Config(s, seq)
	}
	a.lastSeq = append(a.lastSeq[:0], seq.raw...)
	a.lastW, a.lastH = s.maxWidth, s.maxHeight
	return block, s.maxWidth, s.maxHeight, nil
}

// h264Adapter converts Annex B access units to length-prefixed NAL units. The parameter
// sets of the first IDR become the avcC; a different SPS or PPS later needs a new part,
// since CodecPrivate cannot change within a file.
type h264Adapter struct {
	sps, pps [][]byte
	info     spsInfo
	private  []byte
	buf      []byte
}

func (*h264Adapter) codecID() string        { return "V_MPEG4/ISO/AVC" }
func (a *h264Adapter) codecPrivate() []byte { return a.private }
func (a *h264Adapter) prepare(data []byte, key, first bool) ([]byte, int, int, error) {
	it, ok := newNALIter(data)
	if !ok {
		return nil, 0, 0, fmt.Errorf("preparing h264 access unit: no start code: %w", ErrBadFrame)
	}
	var sps, pps [][]byte
	var newSPS, newPPS []byte
	idr := false
	nals := 0
	for nal, ok := it.next(); ok; nal, ok = it.next() {
		nals++
		switch nal[0] & 0x1F {
		case nalIDR:
			idr = true
		case nalSPS:
			if first {
				sps = append(sps, nal)
			} else if newSPS == nil && !containsNAL(a.sps, nal) {
				newSPS = nal
			}
		case nalPPS:
			if first {
				pps = append(pps, nal)
			} else if newPPS == nil && !containsNAL(a.pps, nal) {
				newPPS = nal
			}
		}
	}
	if nals == 0 {
		return nil, 0, 0, fmt.Errorf("preparing h264 access unit: no nal units: %w", ErrBadFrame)
	}
	if key && !idr {
		return nil, 0, 0, fmt.Errorf("preparing h264 key frame: no idr slice: %w", ErrBadFrame)
	}
	if newSPS != nil || newPPS != nil {
		return nil, 0, 0, fmt.Errorf("preparing h264 access unit: parameter sets changed: %w", media.ErrNewPart)
	}
	if first {
		if len(sps) == 0 || len(pps) == 0 {
			return nil, 0, 0, fmt.Errorf("preparing first h264 key frame: %d sps and %d pps: %w",
				len(sps), len(pps), ErrBadFrame)
		}
		info, err := parseSPS(sps[0])
		if err != nil {
			return nil, 0, 0, fmt.Errorf("preparing first h264 key frame: %w", err)
		}
		private, err := avcConfig(info, sps, pps)
		if err != nil {
			return nil, 0, 0, err
		}
		a.info, a.private = info, private
		a.sps, a.pps = cloneAll(sps), cloneAll(pps)
	}
	var err error
	a.buf, err = appendAVCC(a.buf[:0], data)
	if err != nil {
		return nil, 0, 0, err
	}
	if key {
		return a.buf, a.info.width, a.info.height, nil
	}
	return a.buf, 0, 0, nil
}

func containsNAL(set [][]byte, nal []byte) bool {
	for _, s := range set {
		if bytes.Equal(s, nal) {
			return true
		}
	}
	return false
}

func cloneAll(in [][]byte) [][]byte {
	out := make([][]byte, len(in))
	for i, b := range in {
		out[i] = bytes.Clone(b)
	}
	return out
}

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
