package mkvwriter

import (
	"bytes"
	"fmt"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// AV1 OBU types (AV1 spec §6.2.2).
const (
	obuSequenceHeader    = 1
	obuTemporalDelimiter = 2
)

// obu is one OBU of a temporal unit in low-overhead bitstream format.
type obu struct {
	typ     int
	raw     []byte // the whole OBU, header included
	payload []byte
}

// nextOBU splits the first OBU off b. An OBU without a size field runs to the end of b.
func nextOBU(b []byte) (o obu, rest []byte, err error) {
	if len(b) == 0 {
		return o, nil, fmt.Errorf("reading av1 obu: empty: %w", ErrBadFrame)
	}
	h := b[0]
	if h&0x80 != 0 {
		return o, nil, fmt.Errorf("reading av1 obu: forbidden bit set: %w", ErrBadFrame)
	}
	o.typ = int(h>>3) & 0xF
	n := 1
	if h&0x04 != 0 { // obu_extension_flag
		n++
	}
	if len(b) < n {
		return o, nil, fmt.Errorf("reading av1 obu: header cut short: %w", ErrBadFrame)
	}
	if h&0x02 == 0 { // no obu_has_size_field
		o.raw, o.payload = b, b[n:]
		return o, nil, nil
	}
	size, sl, ok := leb128(b[n:])
	if !ok || size > uint64(len(b)-n-sl) {
		return o, nil, fmt.Errorf("reading av1 obu: bad size: %w", ErrBadFrame)
	}
	end := n + sl + int(size)
	o.raw, o.payload = b[:end], b[n+sl:end]
	return o, b[end:], nil
}

// leb128 decodes an unsigned LEB128 value of at most 8 bytes (AV1 spec §4.10.5).
func leb128(b []byte) (v uint64, n int, ok bool) {
	for i := 0; i < 8 && i < len(b); i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1, v <= 1<<32-1
		}
	}
	return 0, 0, false
}

// appendLeb128 appends v in LEB128.
func appendLeb128(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// av1Sequence is what the writer needs from an AV1 sequence header.
type av1Sequence struct {
	profile, level0, tier0        uint8
	highBitdepth, twelveBit, mono bool
	subX, subY                    bool
	chromaSamplePosition          uint8
	maxWidth, maxHeight           int
}

// parseAV1SequenceHeader parses a sequence_header_obu() payload (AV1 spec §5.5).
func parseAV1SequenceHeader(p []byte) (av1Sequence, error) {
	var s av1Sequence
	r := bitReader{data: p}
	s.profile = uint8(r.bits(3))
	if s.profile > 2 {
		return s, fmt.Errorf("parsing av1 sequence header: profile %d: %w", s.profile, ErrBadFrame)
	}
	r.bit() // still_picture
	reduced := r.flag()
	if reduced {
		s.level0 = uint8(r.bits(5))
	} else {
		decoderModelInfo := false
		bufferDelayLen := 0
		if r.flag() { // timing_info_present_flag
			r.bits(32) // num_units_in_display_tick
			r.bits(32) // time_scale
			if r.flag() {
				r.uvlc() // num_ticks_per_picture_minus_1
			}
			decoderModelInfo = r.flag()
			if decoderModelInfo {
				bufferDelayLen = int(r.bits(5)) + 1
				r.bits(32) // num_units_in_decoding_tick
				r.bits(5)  // buffer_removal_time_length_minus_1
				r.bits(5)  // frame_presentation_time_length_minus_1
			}
		}
		initialDisplayDelay := r.flag()
		ops := int(r.bits(5)) + 1
		for i := 0; i < ops && r.err == nil; i++ {
			r.bits(12) // operating_point_idc
			level := uint8(r.bits(5))
			tier := uint8(0)
			if level > 7 {
				tier = uint8(r.bit())
			}
			if i == 0 {
				s.level0, s.tier0 = level, tier
			}
			if decoderModelInfo && r.flag() {
				r.bits(bufferDelayLen) // decoder_buffer_delay
				r.bits(bufferDelayLen) // encoder_buffer_delay
				r.bit()                // low_delay_mode_flag
			}
			if initialDisplayDelay && r.flag() {
				r.bits(4) // initial_display_delay_minus_1
			}
		}
	}
	widthBits := int(r.bits(4)) + 1
	heightBits := int(r.bits(4)) + 1
	s.maxWidth = int(r.bits(widthBits)) + 1
	s.maxHeight = int(r.bits(heightBits)) + 1
	if !reduced && r.flag() { // frame_id_numbers_present_flag
		r.bits(4) // delta_frame_id_length_minus_2
		r.bits(3) // additional_frame_id_length_minus_1
	}
	r.bits(3) // use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter
	if !reduced {
		r.bits(4) // enable_interintra_compound, masked_compound, warped_motion, dual_filter
		orderHint := r.flag()
		if orderHint {
			r.bits(2) // enable_jnt_comp, enable_ref_frame_mvs
		}
		forceScreenContent := uint32(2) // SELECT_SCREEN_CONTENT_TOOLS
		if !r.flag() {                  // seq_choose_screen_content_tools
			forceScreenContent = r.bit()
		}
		if forceScreenContent > 0 && !r.flag() { // seq_choose_integer_mv
			r.bit() // seq_force_integer_mv
		}
		if orderHint {
			r.bits(3) // order_hint_bits_minus_1
		}
	}
	r.bits(3) // enable_superres, enable_cdef, enable_restoration
	av1ColorConfig(&r, &s)
	r.bit() // film_grain_params_present
	if r.err != nil {
		return s, fmt.Errorf("parsing av1 sequence header: %w", ErrBadFrame)
	}
	return s, nil
}

// av1ColorConfig reads color_config() (AV1 spec §5.5.2).
func av1ColorConfig(r *bitReader, s *av1Sequence) {
	s.highBitdepth = r.flag()
	if s.profile == 2 && s.highBitdepth {
		s.twelveBit = r.flag()
	}
	if s.profile != 1 {
		s.mono = r.flag()
	}
	primaries, transfer, matrix := uint64(2), uint64(2), uint64(2)
	if r.flag() { // color_description_present_flag
		primaries, transfer, matrix = r.bits(8), r.bits(8), r.bits(8)
	}
	switch {
	case s.mono:
		r.bit() // color_range
		s.subX, s.subY = true, true
		return
	case primaries == 1 && transfer == 13 && matrix == 0: // sRGB
		s.subX, s.subY = false, false
	default:
		r.bit() // color_range
		switch {
		case s.profile == 0:
			s.subX, s.subY = true, true
		case s.profile == 1:
			s.subX, s.subY = false, false
		case s.twelveBit:
			s.subX = r.flag()
			if s.subX {
				s.subY = r.flag()
			}
		default:
			s.subX, s.subY = true, false
		}
		if s.subX && s.subY {
			s.chromaSamplePosition = uint8(r.bits(2))
		}
	}
	r.bit() // separate_uv_delta_q
}

// av1Config builds the av1C CodecPrivate (AV1 in Matroska, "AV1CodecConfigurationRecord"):
// four bytes describing the sequence, then the sequence header OBU with a size field.
func av1Config(s av1Sequence, seq obu) []byte {
	b := make([]byte, 4, 4+len(seq.raw)+8)
	b[0] = 0x81 // marker, version 1
	b[1] = s.profile<<5 | s.level0&0x1f
	b[2] = s.tier0<<7 | bit8(s.highBitdepth)<<6 | bit8(s.twelveBit)<<5 | bit8(s.mono)<<4 |
		bit8(s.subX)<<3 | bit8(s.subY)<<2 | s.chromaSamplePosition&3
	b[3] = 0 // no initial_presentation_delay
	// Write the OBU header again with obu_has_size_field set, whatever the input had.
	hdrLen := len(seq.raw) - len(seq.payload)
	if seq.raw[0]&0x02 != 0 {
		return append(b, seq.raw...)
	}
	b = append(b, seq.raw[0]|0x02)
	b = append(b, seq.raw[1:hdrLen]...)
	b = appendLeb128(b, uint64(len(seq.payload)))
	return append(b, seq.payload...)
}

func bit8(v bool) uint8 {
	if v {
		return 1
	}
	return 0
}

// AV1 is AV1 in WebM (V_AV1, with its av1C).
var AV1 = Codec{name: "av1", docType: "webm", video: true, adapter: func(media.TrackParams) (codecAdapter, error) { return &av1Adapter{}, nil }}

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
