package depacketize

import (
	"bytes"
	"testing"

	"github.com/pion/rtp"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

func pkt(ts uint32, marker bool, payload ...byte) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Timestamp: ts, Marker: marker}, Payload: payload}
}

// VP9 frames for hand-made pictures: the first byte of an uncompressed header, then filler.
var (
	vp9Key   = []byte{0x80, 0x49, 0x83, 0x42, 0x00, 0x11}                   // frame_marker 2, profile 0, key
	vp9Delta = []byte{0x84, 0x22, 0x33}                                     // frame_type 1
	vp9Layer = []byte{0x86, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb} // a second spatial layer
)

// vp9Packet builds a VP9 payload with a 15-bit picture ID and layer indices.
func vp9Packet(p, b, e bool, sid byte, pic uint16, data []byte) []byte {
	d := byte(0x80 | 0x20) // I, L
	if p {
		d |= 0x40
	}
	if b {
		d |= 0x08
	}
	if e {
		d |= 0x04
	}
	out := []byte{d, 0x80 | byte(pic>>8), byte(pic), sid << 1, 0}
	return append(out, data...)
}

func TestVP9SpatialLayersBecomeSuperframe(t *testing.T) {
	d := newDepacketizer(t, media.CodecVP9)
	var out []got
	out = collect(out, d.Push(pkt(10, false, vp9Packet(false, true, true, 0, 1, vp9Key)...), 0))
	out = collect(out, d.Push(pkt(10, false, vp9Packet(false, true, false, 1, 1, vp9Layer[:4])...), 0))
	out = collect(out, d.Push(pkt(10, true, vp9Packet(false, false, true, 1, 1, vp9Layer[4:])...), 0))
	// A one-layer delta picture: no index.
	out = collect(out, d.Push(pkt(20, true, vp9Packet(true, true, true, 0, 2, vp9Delta)...), 0))
	if len(out) != 2 {
		t.Fatalf("%d frames (stats %+v)", len(out), d.Stats())
	}
	want := append(append([]byte{}, vp9Key...), vp9Layer...)
	want = append(want, 0xc1, byte(len(vp9Key)), byte(len(vp9Layer)), 0xc1)
	if !bytes.Equal(out[0].data, want) || !out[0].key {
		t.Fatalf("superframe %x key %v, want %x", out[0].data, out[0].key, want)
	}
	if !bytes.Equal(out[1].data, vp9Delta) || out[1].key {
		t.Fatalf("delta %x key %v", out[1].data, out[1].key)
	}
}

func TestVP9SuperframeIndexWidth(t *testing.T) {
	got := appendVP9SuperframeIndex(nil, []int{0x10, 0x1234, 0x20})
	want := []byte{0xca, 0x10, 0x00, 0x34, 0x12, 0x20, 0x00, 0xca}
	if !bytes.Equal(got, want) {
		t.Fatalf("index %x, want %x", got, want)
	}
	got = appendVP9SuperframeIndex(nil, []int{1 << 24, 1})
	if got[0] != 0xd9 || len(got) != 2+2*4 {
		t.Fatalf("index %x", got)
	}
}

func TestVP9MissingLayerEnd(t *testing.T) {
	d := newDepacketizer(t, media.CodecVP9)
	d.Push(pkt(10, false, vp9Packet(false, true, false, 0, 1, vp9Key)...), 0)
	// The next layer starts before the first one ended.
	if fr := d.Push(pkt(10, true, vp9Packet(false, true, true, 1, 1, vp9Layer)...), 0); len(fr) != 0 {
		t.Fatal("returned a broken picture")
	}
	if st := d.Stats(); st.Incomplete != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestVP9KeyNeedsKeyHeader: a descriptor that claims a key picture (P=0, as pion's flexible
// mode payloader always sends) is not trusted when the frame header says otherwise.
func TestVP9KeyNeedsKeyHeader(t *testing.T) {
	for _, c := range []struct {
		frame []byte
		key   bool
	}{
		{vp9Key, true},
		{vp9Delta, false},
		{[]byte{0x88}, false},       // show_existing_frame
		{[]byte{0xb0, 0x00}, true},  // profile 3, reserved bit, key
		{[]byte{0xb2, 0x00}, false}, // profile 3, frame_type 1
		{[]byte{0x40}, false},       // bad frame_marker
		{nil, false},
	} {
		if got := vp9IsKeyFrame(c.frame); got != c.key {
			t.Errorf("%x: key %v, want %v", c.frame, got, c.key)
		}
	}
}

// h264AU joins NAL units into an Annex B access unit.
func h264AU(nals ...[]byte) []byte {
	var b []byte
	for _, n := range nals {
		b = append(b, startCode...)
		b = append(b, n...)
	}
	return b
}

var (
	testSPS   = []byte{0x67, 0x42, 0xc0, 0x1e, 0xda}
	testPPS   = []byte{0x68, 0xce, 0x3c, 0x80}
	testAUD   = []byte{0x09, 0xf0}
	testIDR   = []byte{0x65, 0x88, 0x84, 0x00, 0x33} // first_mb_in_slice 0
	testIDR2  = []byte{0x65, 0x40, 0x11}             // a second slice
	testSlice = []byte{0x41, 0x9a, 0x02}
)

// TestH264ParameterSetsBeforeIDR: an IDR access unit without SPS and PPS gets the last ones
// seen, after its access unit delimiter.
func TestH264ParameterSetsBeforeIDR(t *testing.T) {
	d := newDepacketizer(t, media.CodecH264)
	var out []got
	stapA := []byte{0x78, 0, byte(len(testSPS))}
	stapA = append(stapA, testSPS...)
	stapA = append(stapA, 0, byte(len(testPPS)))
	stapA = append(stapA, testPPS...)
	out = collect(out, d.Push(pkt(1, false, stapA...), 0))
	out = collect(out, d.Push(pkt(1, true, testIDR...), 0))
	out = collect(out, d.Push(pkt(2, true, testSlice...), 0))
	out = collect(out, d.Push(pkt(3, false, testAUD...), 0))
	out = collect(out, d.Push(pkt(3, false, testIDR...), 0))
	out = collect(out, d.Push(pkt(3, true, testIDR2...), 0))
	out = collect(out, d.Push(pkt(4, true, testIDR...), 0))
	// Parameter sets after the slice are put in front as well.
	out = collect(out, d.Push(pkt(5, false, testIDR...), 0))
	out = collect(out, d.Push(pkt(5, false, testSPS...), 0))
	out = collect(out, d.Push(pkt(5, true, testPPS...), 0))
	if len(out) != 5 {
		t.Fatalf("%d frames (stats %+v)", len(out), d.Stats())
	}
	for i, want := range [][]byte{
		h264AU(testSPS, testPPS, testIDR),
		h264AU(testSlice),
		h264AU(testAUD, testSPS, testPPS, testIDR, testIDR2),
		h264AU(testSPS, testPPS, testIDR),
		h264AU(testSPS, testPPS, testIDR, testSPS, testPPS),
	} {
		if !bytes.Equal(out[i].data, want) {
			t.Fatalf("frame %d: %x, want %x", i, out[i].data, want)
		}
		if out[i].key != (i != 1) {
			t.Fatalf("frame %d: key %v", i, out[i].key)
		}
	}
}

// TestH264ParameterSetsFromFixture: the fixture's second IDR, stripped of its parameter sets
// before packetizing, comes out with them again.
func TestH264ParameterSetsFromFixture(t *testing.T) {
	f := loadFixture(t, media.CodecH264)
	var stripped []byte
	for _, n := range splitAnnexB(f.frames[keyInterval]) {
		if typ := n[0] & 0x1f; typ != nalSPS && typ != nalPPS {
			stripped = append(stripped, startCode...)
			stripped = append(stripped, n...)
		}
	}
	f.frames = append([][]byte{}, f.frames...)
	f.frames[keyInterval] = stripped
	d := newDepacketizer(t, media.CodecH264)
	var out []got
	for _, pkts := range f.packetize(t, testMTU, 1) {
		out = append(out, pushAll(d, pkts)...)
	}
	if len(out) != len(f.frames) {
		t.Fatalf("%d frames", len(out))
	}
	for i, g := range out {
		checkFrame(t, f, g, i) // f.want still holds the original access units
	}
}

func TestH264IDRWithoutParameterSets(t *testing.T) {
	d := newDepacketizer(t, media.CodecH264)
	if fr := d.Push(pkt(1, true, testIDR...), 0); len(fr) != 0 {
		t.Fatal("returned an IDR without parameter sets")
	}
	if st := d.Stats(); st.Undecodable != 1 || !d.NeedKeyframe() {
		t.Fatalf("stats %+v", st)
	}
}

func TestH264FragmentErrors(t *testing.T) {
	fu := func(start, end bool, typ byte, data ...byte) []byte {
		h := typ
		if start {
			h |= 0x80
		}
		if end {
			h |= 0x40
		}
		return append([]byte{0x7c, h}, data...)
	}
	for name, pkts := range map[string][]*rtp.Packet{
		"no start": {pkt(1, true, fu(false, true, 5, 1, 2)...)},
		"no end":   {pkt(1, false, fu(true, false, 5, 0x88, 2)...), pkt(1, true, testSlice...)},
		"no end at marker": {
			pkt(1, false, fu(true, false, 5, 0x88, 2)...), pkt(1, true, fu(false, false, 5, 3)...),
		},
		"second start": {
			pkt(1, false, fu(true, false, 5, 0x88, 2)...), pkt(1, true, fu(true, true, 5, 0x88)...),
		},
		"no first slice": {pkt(1, true, testIDR2...)},
		"no slice":       {pkt(1, true, testSPS...)},
	} {
		t.Run(name, func(t *testing.T) {
			d := newDepacketizer(t, media.CodecH264)
			if out := pushAll(d, pkts); len(out) != 0 {
				t.Fatal("returned a broken access unit")
			}
			if st := d.Stats(); st.Incomplete != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
	// And a good one, reassembled.
	d := newDepacketizer(t, media.CodecH264)
	d.Push(pkt(1, false, testSPS...), 0)
	d.Push(pkt(1, false, testPPS...), 0)
	d.Push(pkt(1, false, fu(true, false, 5, 0x88, 0x84)...), 0)
	out := pushAll(d, []*rtp.Packet{pkt(1, true, fu(false, true, 5, 0x00, 0x33)...)})
	if len(out) != 1 || !bytes.Equal(out[0].data, h264AU(testSPS, testPPS, testIDR)) {
		t.Fatalf("frames %+v", out)
	}
}

// AV1 OBUs for hand-made temporal units, without size fields as RTP carries them.
var (
	av1SeqHdr  = []byte{0x08, 0x00, 0x00, 0x00, 0x42, 0xab} // profile 0, not reduced
	av1KeyOBU  = []byte{0x32 &^ 0x02, 0x10, 0x01, 0x02}     // OBU_FRAME, show_existing 0, KEY_FRAME
	av1Delta   = []byte{0x30, 0x30, 0x05}                   // OBU_FRAME, INTER_FRAME (frame_type 1)
	av1ExtOBU  = []byte{0x34, 0x28, 0x30, 0x07}             // OBU_FRAME with an extension header
	av1TempDel = []byte{0x10}
)

// sized returns an OBU in the low-overhead format.
func sized(o []byte) []byte {
	hdr := 1
	if o[0]&0x04 != 0 {
		hdr = 2
	}
	out := append([]byte{o[0] | 0x02}, o[1:hdr]...)
	out = appendLEB128(out, uint64(len(o)-hdr))
	return append(out, o[hdr:]...)
}

func TestAV1Aggregation(t *testing.T) {
	d := newDepacketizer(t, media.CodecAV1)
	// Key TU: N=1, W=0: a temporal delimiter and the sequence header with lengths; the frame
	// OBU fragmented over three packets.
	p1 := []byte{0x48} // Y, N, W=0
	p1 = appendLEB128(p1, uint64(len(av1TempDel)))
	p1 = append(p1, av1TempDel...)
	p1 = appendLEB128(p1, uint64(len(av1SeqHdr)))
	p1 = append(p1, av1SeqHdr...)
	p1 = appendLEB128(p1, 2)
	p1 = append(p1, av1KeyOBU[:2]...)
	p2 := append([]byte{0xd0}, av1KeyOBU[2:3]...) // Z, Y, W=1
	p3 := append([]byte{0x90}, av1KeyOBU[3:]...)  // Z, W=1
	// Delta TU: two OBUs, W=2, the first with a size field already.
	p4 := []byte{0x20}
	withSize := sized(av1Delta)
	p4 = appendLEB128(p4, uint64(len(withSize)))
	p4 = append(p4, withSize...)
	p4 = append(p4, av1ExtOBU...)

	var out []got
	for _, p := range []*rtp.Packet{pkt(1, false, p1...), pkt(1, false, p2...), pkt(1, true, p3...), pkt(2, true, p4...)} {
		out = collect(out, d.Push(p, 0))
	}
	if len(out) != 2 {
		t.Fatalf("%d frames (stats %+v)", len(out), d.Stats())
	}
	want := append(sized(av1SeqHdr), sized(av1KeyOBU)...)
	if !bytes.Equal(out[0].data, want) || !out[0].key {
		t.Fatalf("key TU %x key %v, want %x", out[0].data, out[0].key, want)
	}
	want = append(sized(av1Delta), sized(av1ExtOBU)...)
	if !bytes.Equal(out[1].data, want) || out[1].key {
		t.Fatalf("delta TU %x key %v, want %x", out[1].data, out[1].key, want)
	}
}

// TestAV1KeyframeWithoutNBit: a sequence header followed by a key frame is a keyframe even
// when the sender does not set N.
func TestAV1KeyframeWithoutNBit(t *testing.T) {
	d := newDepacketizer(t, media.CodecAV1)
	p := []byte{0x20}
	p = appendLEB128(p, uint64(len(av1SeqHdr)))
	p = append(p, av1SeqHdr...)
	p = append(p, av1KeyOBU...)
	out := pushAll(d, []*rtp.Packet{pkt(1, true, p...)})
	if len(out) != 1 || !out[0].key {
		t.Fatalf("frames %+v stats %+v", out, d.Stats())
	}
	// A key frame OBU without a sequence header is not enough.
	d = newDepacketizer(t, media.CodecAV1)
	out = pushAll(d, []*rtp.Packet{pkt(1, true, append([]byte{0x18}, av1KeyOBU...)...)})
	if len(out) != 0 {
		t.Fatalf("frames %+v", out)
	}
}

func TestAV1FragmentErrors(t *testing.T) {
	for name, pkts := range map[string][]*rtp.Packet{
		"continuation first": {pkt(1, true, 0x90, 0x01)},
		"unfinished":         {pkt(1, false, 0x50, 0x30), pkt(1, true, 0x10, 0x30, 0x01)},
		"open at marker":     {pkt(1, true, 0x50, 0x30)},
		"continuation of nothing": {
			pkt(1, false, append([]byte{0x18}, av1SeqHdr...)...), pkt(1, true, 0x90, 0x01),
		},
	} {
		t.Run(name, func(t *testing.T) {
			d := newDepacketizer(t, media.CodecAV1)
			if out := pushAll(d, pkts); len(out) != 0 {
				t.Fatal("returned a broken temporal unit")
			}
			if st := d.Stats(); st.Incomplete != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestLEB128(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 300, 1<<32 - 1} {
		b := appendLEB128(nil, v)
		got, n, err := readLEB128(append(b, 0xee))
		if err != nil || got != v || n != len(b) {
			t.Fatalf("%d: %d %d %v", v, got, n, err)
		}
	}
	if _, _, err := readLEB128(appendLEB128(nil, 1<<32)); err == nil {
		t.Fatal("accepted a value over 32 bits")
	}
	if _, _, err := readLEB128([]byte{0x80}); err == nil {
		t.Fatal("accepted a truncated value")
	}
}

// TestLostPaddingWithoutPictureIDs: codecs without picture IDs cannot tell a lost padding
// packet from a lost frame, so they wait for a keyframe.
func TestLostPaddingWithoutPictureIDs(t *testing.T) {
	for _, codec := range []media.Codec{media.CodecAV1, media.CodecH264} {
		f := loadFixture(t, codec)
		d := newDepacketizer(t, codec)
		var out []got
		for i, pkts := range f.packetize(t, testMTU, 1) {
			lost := 0
			if i == 3 {
				lost = 1
			}
			for j, p := range pkts {
				if j > 0 {
					lost = 0
				}
				out = collect(out, d.Push(p, lost))
			}
		}
		if len(out) != len(f.frames)-(keyInterval-3) {
			t.Fatalf("%v: %d frames", codec, len(out))
		}
	}
}

func TestOpusValidation(t *testing.T) {
	valid := [][]byte{
		{0xfc},                         // code 0, empty frame (DTX)
		{0xfc, 1, 2, 3},                // code 0
		{0xfd, 1, 2},                   // code 1
		{0xfe, 0x01, 0xaa, 0xbb},       // code 2
		{0xfe, 0xfc, 0x00},             // code 2, first frame of 252 bytes in a 3-byte packet
		{0xff, 0x03, 1, 2, 3},          // code 3 CBR, 3 frames of 1 byte
		{0xff, 0x82, 0x01, 0xaa, 0xbb}, // code 3 VBR, 2 frames
		{0xff, 0x41, 0x02, 0xaa, 0, 0}, // code 3 with 2 bytes of padding
		{0x03, 0x02},                   // SILK 10 ms x 2
	}
	for i, p := range valid {
		want := i != 4
		if got := validOpusPacket(p); got != want {
			t.Errorf("%x: valid %v, want %v", p, got, want)
		}
	}
	if validOpusPacket(make([]byte, 1+1276)) {
		t.Error("accepted a frame over 1275 bytes")
	}
	if !validOpusPacket(append([]byte{0x83, 0x30}, make([]byte, 48)...)) {
		t.Error("rejected 48 frames of 2.5 ms")
	}
	if validOpusPacket(append([]byte{0x83, 0x31}, make([]byte, 49)...)) {
		t.Error("accepted 49 frames of 2.5 ms")
	}
}
