package mkvwriter

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// bitWriter is the test's own encoder for exp-Golomb and fixed fields.
type bitWriter struct {
	b    []byte
	used uint
}

func (w *bitWriter) bits(v uint64, n int) {
	for i := n - 1; i >= 0; i-- {
		if w.used%8 == 0 {
			w.b = append(w.b, 0)
		}
		if v>>uint(i)&1 == 1 {
			w.b[len(w.b)-1] |= 0x80 >> (w.used % 8)
		}
		w.used++
	}
}

func (w *bitWriter) ue(v uint32) {
	n := 0
	for (uint64(v)+1)>>uint(n+1) != 0 {
		n++
	}
	w.bits(0, n)
	w.bits(uint64(v)+1, n+1)
}

func (w *bitWriter) se(v int32) {
	if v > 0 {
		w.ue(uint32(2*v - 1))
	} else {
		w.ue(uint32(-2 * v))
	}
}

// trailing adds rbsp_trailing_bits.
func (w *bitWriter) trailing() []byte {
	w.bits(1, 1)
	for w.used%8 != 0 {
		w.bits(0, 1)
	}
	return w.b
}

// escape inserts emulation prevention bytes.
func escape(rbsp []byte) []byte {
	var out []byte
	zeros := 0
	for _, c := range rbsp {
		if zeros >= 2 && c <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

type spsFields struct {
	profile, constraints, level uint64
	chroma                      uint32
	scaling                     bool
	pocType                     uint32
	widthMBs, heightUnits       uint32
	frameMBsOnly                bool
	cropL, cropR, cropT, cropB  uint32
	crop                        bool
}

func (f spsFields) encode() []byte {
	var w bitWriter
	w.bits(f.profile, 8)
	w.bits(f.constraints, 8)
	w.bits(f.level, 8)
	w.ue(0) // seq_parameter_set_id
	if f.profile == 100 || f.profile == 122 || f.profile == 244 {
		w.ue(f.chroma)
		if f.chroma == 3 {
			w.bits(0, 1)
		}
		w.ue(0) // bit depths
		w.ue(0)
		w.bits(0, 1)
		if f.scaling {
			w.bits(1, 1)
			n := 8
			if f.chroma == 3 {
				n = 12
			}
			for i := 0; i < n; i++ {
				w.bits(uint64(i%2), 1)
				if i%2 == 1 {
					size := 16
					if i >= 6 {
						size = 64
					}
					for j := 0; j < size; j++ {
						w.se(int32(j%5) - 2)
					}
				}
			}
		} else {
			w.bits(0, 1)
		}
	}
	w.ue(0) // log2_max_frame_num_minus4
	w.ue(f.pocType)
	switch f.pocType {
	case 0:
		w.ue(2)
	case 1:
		w.bits(0, 1)
		w.se(-3)
		w.se(7)
		w.ue(2)
		w.se(1)
		w.se(-1)
	}
	w.ue(1)      // max_num_ref_frames
	w.bits(0, 1) // gaps
	w.ue(f.widthMBs - 1)
	w.ue(f.heightUnits - 1)
	if f.frameMBsOnly {
		w.bits(1, 1)
	} else {
		w.bits(0, 1)
		w.bits(1, 1)
	}
	w.bits(1, 1) // direct_8x8_inference_flag
	if f.crop {
		w.bits(1, 1)
		w.ue(f.cropL)
		w.ue(f.cropR)
		w.ue(f.cropT)
		w.ue(f.cropB)
	} else {
		w.bits(0, 1)
	}
	w.bits(0, 1) // vui_parameters_present_flag
	return append([]byte{0x67}, escape(w.trailing())...)
}

func fixtureSPS(t *testing.T, name string) []byte {
	t.Helper()
	frames := readH264(t, name)
	it, _ := newNALIter(frames[0].Data)
	for nal, ok := it.next(); ok; nal, ok = it.next() {
		if nal[0]&0x1F == nalSPS {
			return nal
		}
	}
	t.Fatal("no sps")
	return nil
}

func TestParseSPS(t *testing.T) {
	cases := []struct {
		name          string
		nal           []byte
		width, height int
	}{
		{"fixture baseline with cropping", fixtureSPS(t, "h264_320x180.h264"), 320, 180},
		{"fixture high", fixtureSPS(t, "h264_176x144_high.h264"), 176, 144},
		{"zeros needing escapes", spsFields{profile: 0, widthMBs: 40, heightUnits: 23, frameMBsOnly: true,
			crop: true, cropB: 4}.encode(), 640, 360},
		{"interlaced 4:2:0 crop", spsFields{profile: 100, chroma: 1, widthMBs: 120, heightUnits: 34,
			crop: true, cropB: 2}.encode(), 1920, 1080},
		{"high 4:4:4 scaling lists", spsFields{profile: 244, chroma: 3, scaling: true, widthMBs: 20,
			heightUnits: 15, frameMBsOnly: true, crop: true, cropL: 1, cropR: 1, cropT: 2}.encode(), 318, 238},
		{"4:2:2 poc type 1", spsFields{profile: 122, chroma: 2, pocType: 1, widthMBs: 80, heightUnits: 45,
			frameMBsOnly: true, crop: true, cropR: 3, cropT: 1}.encode(), 1274, 719},
		{"monochrome", spsFields{profile: 100, chroma: 0, pocType: 2, widthMBs: 10, heightUnits: 10,
			frameMBsOnly: true, crop: true, cropL: 3, cropB: 5}.encode(), 157, 155},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parseSPS(tc.nal)
			if err != nil {
				t.Fatal(err)
			}
			if s.width != tc.width || s.height != tc.height {
				t.Errorf("%dx%d, want %dx%d", s.width, s.height, tc.width, tc.height)
			}
			for n := 0; n < len(tc.nal)-1; n++ {
				if _, err := parseSPS(tc.nal[:n]); err == nil && n < 5 {
					t.Errorf("sps cut to %d bytes parsed", n)
				}
			}
		})
	}
	if nal := cases[2].nal; !bytes.Contains(nal, []byte{0, 0, 3}) {
		t.Errorf("test sps %x has no emulation prevention byte", nal)
	}
	// Absurd sizes and crops are errors.
	for _, f := range []spsFields{
		{profile: 66, widthMBs: 5000, heightUnits: 10, frameMBsOnly: true},
		{profile: 66, widthMBs: 10, heightUnits: 10, frameMBsOnly: true, crop: true, cropL: 80},
		{profile: 100, chroma: 7, widthMBs: 10, heightUnits: 10, frameMBsOnly: true},
		{profile: 66, pocType: 3, widthMBs: 10, heightUnits: 10, frameMBsOnly: true},
	} {
		if s, err := parseSPS(f.encode()); err == nil {
			t.Errorf("%+v parsed as %dx%d", f, s.width, s.height)
		}
	}
}

func TestBitReaderEmulationPrevention(t *testing.T) {
	r := bitReader{data: []byte{0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x03, 0x03, 0xff}, epb: true}
	if v := r.bits(24); v != 0x000001 {
		t.Errorf("first 24 bits %06x, want 000001", v)
	}
	if v := r.bits(24); v != 0x000003 {
		t.Errorf("next 24 bits %06x, want 000003 (an escaped 03)", v)
	}
	if v := r.bits(8); v != 0xff || r.err != nil {
		t.Errorf("last byte %02x, %v", v, r.err)
	}
	r.bit()
	if r.err == nil {
		t.Error("reading past the end set no error")
	}
}

func TestAnnexBToAVCC(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want []byte
	}{
		{"3-byte start codes", []byte{0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2}, []byte{0, 0, 0, 2, 0x67, 1, 0, 0, 0, 2, 0x68, 2}},
		{"4-byte start codes", []byte{0, 0, 0, 1, 0x65, 1, 2, 0, 0, 0, 1, 0x41, 3}, []byte{0, 0, 0, 3, 0x65, 1, 2, 0, 0, 0, 2, 0x41, 3}},
		{"trailing zeros", []byte{0, 0, 1, 0x65, 7, 0, 0, 0}, []byte{0, 0, 0, 2, 0x65, 7}},
		{"empty nal units", []byte{0, 0, 1, 0, 0, 1, 0x65, 9, 0, 0, 1}, []byte{0, 0, 0, 2, 0x65, 9}},
		{"escaped zeros stay", []byte{0, 0, 1, 0x65, 0, 0, 3, 1}, []byte{0, 0, 0, 5, 0x65, 0, 0, 3, 1}},
	}
	for _, tc := range cases {
		got, err := appendAVCC(nil, tc.in)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: %x, %v; want %x", tc.name, got, err, tc.want)
		}
	}
	for _, bad := range [][]byte{nil, {1, 2, 3}, {0, 0, 1}, {5, 0, 0, 1, 0x65}} {
		if _, err := appendAVCC(nil, bad); err == nil {
			t.Errorf("%x converted", bad)
		}
	}
}

func TestParseVP8Keyframe(t *testing.T) {
	frames := readIVF(t, "vp8_320x240.ivf", media.CodecVP8)
	w, h, err := parseVP8Keyframe(frames[0].Data)
	if err != nil || w != 320 || h != 240 {
		t.Errorf("%dx%d, %v", w, h, err)
	}
	// The horizontal scale bits are not part of the width.
	b := vp8Frame(true, 640|0xC000, 480|0x4000, 20)
	if w, h, err := parseVP8Keyframe(b); err != nil || w != 640 || h != 480 {
		t.Errorf("with scale bits: %dx%d, %v", w, h, err)
	}
}

// TestVP9Superframe: spatial layers in one superframe; the largest explicit size counts.
func TestVP9Superframe(t *testing.T) {
	small := readIVF(t, "vp9_176x144.ivf", media.CodecVP9)[0].Data
	large := readIVF(t, "vp9_320x240.ivf", media.CodecVP9)[0].Data
	if w, h, err := parseVP9Keyframe(large); err != nil || w != 320 || h != 240 {
		t.Fatalf("single frame: %dx%d, %v", w, h, err)
	}
	sf := append(append([]byte(nil), small...), large...)
	marker := byte(0xc0 | 3<<3 | 1) // 4-byte sizes, 2 frames
	sf = append(sf, marker)
	sf = binary.LittleEndian.AppendUint32(sf, uint32(len(small)))
	sf = binary.LittleEndian.AppendUint32(sf, uint32(len(large)))
	sf = append(sf, marker)
	if w, h, err := parseVP9Keyframe(sf); err != nil || w != 320 || h != 240 {
		t.Errorf("superframe: %dx%d, %v", w, h, err)
	}
	// An index whose sizes exceed the data is not an index.
	bad := append([]byte(nil), sf...)
	binary.LittleEndian.PutUint32(bad[len(bad)-9:], 1<<20)
	if w, h, err := parseVP9Keyframe(bad); err != nil || w != 176 {
		t.Errorf("bad index: %dx%d, %v (want the first frame's size)", w, h, err)
	}
}

func TestAV1SequenceHeader(t *testing.T) {
	for _, tc := range []struct {
		fixture       string
		width, height int
	}{{"av1_320x240.ivf", 320, 240}, {"av1_176x144.ivf", 176, 144}} {
		data := readIVF(t, tc.fixture, media.CodecAV1)[0].Data
		var seq obu
		for rest := data; len(rest) > 0; {
			o, next, err := nextOBU(rest)
			if err != nil {
				t.Fatal(err)
			}
			if o.typ == obuSequenceHeader {
				seq = o
			}
			rest = next
		}
		s, err := parseAV1SequenceHeader(seq.payload)
		if err != nil || s.maxWidth != tc.width || s.maxHeight != tc.height || s.profile != 0 || !s.subX || !s.subY {
			t.Errorf("%s: %+v, %v", tc.fixture, s, err)
		}
		// An OBU without a size field gets one in av1C.
		noSize := append([]byte{seq.raw[0] &^ 0x02}, seq.payload...)
		o, _, err := nextOBU(noSize)
		if err != nil {
			t.Fatal(err)
		}
		if c := av1Config(s, o); !bytes.Equal(c[4:], seq.raw) {
			t.Errorf("av1C OBU %x, want %x", c[4:], seq.raw)
		}
	}
}
