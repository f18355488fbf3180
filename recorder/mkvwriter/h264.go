package mkvwriter

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// H.264 NAL unit types the writer looks at.
const (
	nalIDR = 5
	nalSPS = 7
	nalPPS = 8
)

// nalIter walks the NAL units of an Annex B access unit in place.
type nalIter struct {
	b   []byte
	pos int // where the next NAL unit starts, -1 when done
}

// newNALIter starts at the first start code; ok is false when b has none.
func newNALIter(b []byte) (nalIter, bool) {
	start := startCodeEnd(b, 0)
	if start < 0 {
		return nalIter{}, false
	}
	// Only zero bytes may precede the first start code.
	for _, c := range b[:start-3] {
		if c != 0 {
			return nalIter{}, false
		}
	}
	return nalIter{b: b, pos: start}, true
}

// next returns the next non-empty NAL unit, trailing zero bytes removed.
func (it *nalIter) next() ([]byte, bool) {
	for it.pos >= 0 && it.pos <= len(it.b) {
		start := it.pos
		end := len(it.b)
		if n := startCodeEnd(it.b, start); n >= 0 {
			end = n - 3
			it.pos = n
		} else {
			it.pos = -1
		}
		nal := it.b[start:end]
		for len(nal) > 0 && nal[len(nal)-1] == 0 {
			nal = nal[:len(nal)-1]
		}
		if len(nal) > 0 {
			return nal, true
		}
	}
	return nil, false
}

// startCodeEnd returns the index just after the first 00 00 01 at or after from, or -1.
func startCodeEnd(b []byte, from int) int {
	for i := from; i+2 < len(b); {
		j := bytes.IndexByte(b[i+2:], 1)
		if j < 0 {
			return -1
		}
		k := i + 2 + j // b[k] == 1
		if b[k-1] == 0 && b[k-2] == 0 {
			return k + 1
		}
		i = k - 1
	}
	return -1
}

// appendAVCC appends the NAL units of an Annex B access unit in length-prefixed form
// (4-byte big-endian lengths), as Matroska's V_MPEG4/ISO/AVC wants them.
func appendAVCC(dst, annexB []byte) ([]byte, error) {
	it, ok := newNALIter(annexB)
	if !ok {
		return dst, fmt.Errorf("converting h264 access unit: no start code: %w", ErrBadFrame)
	}
	n := 0
	for nal, ok := it.next(); ok; nal, ok = it.next() {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(nal)))
		dst = append(dst, nal...)
		n++
	}
	if n == 0 {
		return dst, fmt.Errorf("converting h264 access unit: no nal units: %w", ErrBadFrame)
	}
	return dst, nil
}

// avcConfig builds the AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1) from the
// parameter sets, with 4-byte NAL lengths.
func avcConfig(info spsInfo, sps, pps [][]byte) ([]byte, error) {
	if len(sps) == 0 || len(sps) > 31 || len(pps) == 0 || len(pps) > 255 {
		return nil, fmt.Errorf("building avcC from %d sps and %d pps: %w", len(sps), len(pps), ErrBadFrame)
	}
	first := sps[0]
	b := []byte{1, first[1], first[2], first[3], 0xFC | 3, 0xE0 | byte(len(sps))}
	for _, s := range sps {
		if len(s) > 0xFFFF {
			return nil, fmt.Errorf("building avcC: sps of %d bytes: %w", len(s), ErrBadFrame)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	b = append(b, byte(len(pps)))
	for _, p := range pps {
		if len(p) > 0xFFFF {
			return nil, fmt.Errorf("building avcC: pps of %d bytes: %w", len(p), ErrBadFrame)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	switch info.profileIDC {
	case 100, 110, 122, 144:
		b = append(b,
			0xFC|byte(info.chromaFormatIDC&3),
			0xF8|byte(info.bitDepthLumaMinus8&7),
			0xF8|byte(info.bitDepthChromaMinus8&7),
			0) // numOfSequenceParameterSetExt
	}
	return b, nil
}

// H264 is H.264 in Matroska (V_MPEG4/ISO/AVC, with its avcC); WebM cannot hold it.
var H264 = Codec{name: "h264", docType: "matroska", video: true, adapter: func(media.TrackParams) (codecAdapter, error) { return &h264Adapter{}, nil }}

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
