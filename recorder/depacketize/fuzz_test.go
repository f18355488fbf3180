package depacketize

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/pion/rtp"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// The fuzz targets run one codec each, e.g.
//
//	go test -run '^$' -fuzz '^FuzzAV1$' -fuzztime 30s -fuzzminimizetime 2s ./recorder/depacketize
//
// (the seeds from real streams are large, and minimizing them for the default 60 s per new
// input stalls short runs).
//
// Fuzz input: a sequence of packets, each a flags byte, a 2-byte big-endian payload length
// and the payload. Flags: bit 0 marker, bit 1 next timestamp, bits 2-3 packets lost before,
// bit 4 Reset before the packet.
const (
	fuzzMarker = 1 << 0
	fuzzNextTS = 1 << 1
	fuzzLost   = 3 << 2
	fuzzReset  = 1 << 4

	fuzzMaxFrame = 16 << 10
)

func encodeFuzz(pkts []*rtp.Packet, lost map[int]int) []byte {
	var out []byte
	var ts uint32
	for i, p := range pkts {
		var flags byte
		if p.Marker {
			flags |= fuzzMarker
		}
		if i > 0 && p.Timestamp != ts {
			flags |= fuzzNextTS
		}
		ts = p.Timestamp
		flags |= byte(min(lost[i], 3)) << 2
		out = append(out, flags)
		out = binary.BigEndian.AppendUint16(out, uint16(len(p.Payload)))
		out = append(out, p.Payload...)
	}
	return out
}

func fuzzDepacketizer(t *testing.T, codec media.Codec, data []byte) {
	d := newDepacketizer(t, codec, WithMaxFrameSize(fuzzMaxFrame))
	var (
		ts      uint32 = 0xfffffff0
		prevTS  uint32 = ts // timestamp of the last packet with a payload
		emitted uint64
		keys    uint64
		pkt     rtp.Packet
	)
	for len(data) >= 3 {
		flags := data[0]
		n := min(int(binary.BigEndian.Uint16(data[1:3])), len(data)-3)
		pkt.Payload = data[3 : 3+n]
		data = data[3+n:]
		if flags&fuzzReset != 0 {
			d.Reset()
		}
		if flags&fuzzNextTS != 0 {
			ts += 3000
		}
		pkt.Marker = flags&fuzzMarker != 0
		pkt.Timestamp = ts
		lost := int(flags&fuzzLost) >> 2

		waiting := d.NeedKeyframe()
		frames := d.Push(&pkt, lost)
		if len(frames) > 2 {
			t.Fatalf("%d frames from one packet", len(frames))
		}
		for _, f := range frames {
			if waiting && !f.Keyframe {
				t.Fatal("delta frame while waiting for a keyframe")
			}
			waiting = false
			if lost > 0 && isVideo(codec) && codec != media.CodecVP8 && codec != media.CodecVP9 && !f.Keyframe {
				t.Fatal("delta frame right after a loss in a stream without picture IDs")
			}
			if f.RTPTimestamp != ts && f.RTPTimestamp != prevTS {
				t.Fatalf("frame timestamp %d, packet %d, previous %d", f.RTPTimestamp, ts, prevTS)
			}
			if len(f.Data) == 0 && isVideo(codec) {
				t.Fatal("empty video frame")
			}
			if len(f.Data) > fuzzMaxFrame {
				t.Fatalf("frame of %d bytes over the limit", len(f.Data))
			}
			if err := checkFrameFormat(codec, f); err != nil {
				t.Fatal(err)
			}
			emitted++
			if f.Keyframe {
				keys++
			}
		}
		if len(frames) == 2 && &frames[0].Data[0] == &frames[1].Data[0] {
			t.Fatal("two frames share a buffer")
		}
		if len(pkt.Payload) > 0 {
			prevTS = ts
		}
	}
	if st := d.Stats(); st.Frames != emitted || st.Keyframes != keys {
		t.Fatalf("stats %+v, returned %d frames, %d keyframes", st, emitted, keys)
	}
}

// checkFrameFormat checks a frame against the media.Frame.Data format of its codec.
func checkFrameFormat(codec media.Codec, f Frame) error {
	switch codec {
	case media.CodecOpus:
		if !validOpusPacket(f.Data) {
			return fmt.Errorf("invalid opus packet %x", f.Data)
		}
	case media.CodecVP8:
		if f.Keyframe && (len(f.Data) < 10 || !bytes.Equal(f.Data[3:6], []byte{0x9d, 0x01, 0x2a})) {
			return fmt.Errorf("vp8 keyframe without start code")
		}
	case media.CodecVP9:
		if f.Keyframe && !vp9IsKeyFrame(f.Data) {
			return fmt.Errorf("vp9 keyframe with a non-key header")
		}
	case media.CodecAV1:
		return checkAV1Format(f)
	case media.CodecH264:
		return checkH264Format(f)
	}
	return nil
}

func checkAV1Format(f Frame) error {
	b := f.Data
	seq := false
	for len(b) > 0 {
		if b[0]&0x82 != 0x02 {
			return fmt.Errorf("obu header %#x: forbidden bit or no size field", b[0])
		}
		typ := b[0] >> 3 & 0xf
		if typ == 2 || typ == 8 || typ == 15 {
			return fmt.Errorf("obu type %d left in", typ)
		}
		seq = seq || typ == 1
		hdr := 1
		if b[0]&0x04 != 0 {
			hdr = 2
		}
		if len(b) < hdr {
			return fmt.Errorf("truncated obu header")
		}
		size, n, err := readLEB128(b[hdr:])
		if err != nil || size > uint64(len(b)-hdr-n) {
			return fmt.Errorf("obu size does not fit")
		}
		b = b[hdr+n+int(size):]
	}
	if f.Keyframe && !seq {
		return fmt.Errorf("av1 keyframe without a sequence header")
	}
	return nil
}

func checkH264Format(f Frame) error {
	if !bytes.HasPrefix(f.Data, []byte(startCode)) {
		return fmt.Errorf("access unit does not start with a start code")
	}
	var sps, pps, idr bool
	for _, nal := range splitAnnexB(f.Data) {
		if len(nal) == 0 {
			return fmt.Errorf("empty nal unit")
		}
		switch nal[0] & 0x1f {
		case nalSPS:
			sps = true
		case nalPPS:
			pps = pps || sps
		case nalIDR:
			idr = idr || (sps && pps)
		}
	}
	if f.Keyframe && !idr {
		return fmt.Errorf("h264 keyframe without sps, pps, idr in that order")
	}
	return nil
}

func fuzzSeeds(f *testing.F) {
	// Small hand-made seeds; the larger ones from real streams are in testdata/fuzz.
	f.Add([]byte{})
	f.Add([]byte{fuzzMarker, 0, 1, 0})
	f.Add([]byte{fuzzMarker | fuzzNextTS | 1<<2, 0, 2, 0x10, 0x00})
}

func FuzzOpus(f *testing.F) { fuzzSeeds(f); f.Fuzz(fuzzFor(media.CodecOpus)) }
func FuzzVP8(f *testing.F)  { fuzzSeeds(f); f.Fuzz(fuzzFor(media.CodecVP8)) }
func FuzzVP9(f *testing.F)  { fuzzSeeds(f); f.Fuzz(fuzzFor(media.CodecVP9)) }
func FuzzAV1(f *testing.F)  { fuzzSeeds(f); f.Fuzz(fuzzFor(media.CodecAV1)) }
func FuzzH264(f *testing.F) { fuzzSeeds(f); f.Fuzz(fuzzFor(media.CodecH264)) }

func fuzzFor(codec media.Codec) func(*testing.T, []byte) {
	return func(t *testing.T, data []byte) { fuzzDepacketizer(t, codec, data) }
}

// TestWriteFuzzSeeds writes the seed corpora under testdata/fuzz from the real streams:
// the first frames of each, whole, with a loss, and with a reset. Run it with
// DEPACKETIZE_WRITE_SEEDS=1 after changing the fixtures or the input encoding.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("DEPACKETIZE_WRITE_SEEDS") == "" {
		t.Skip("set DEPACKETIZE_WRITE_SEEDS=1 to rewrite testdata/fuzz")
	}
	names := map[media.Codec]string{
		media.CodecOpus: "FuzzOpus", media.CodecVP8: "FuzzVP8", media.CodecVP9: "FuzzVP9",
		media.CodecAV1: "FuzzAV1", media.CodecH264: "FuzzH264",
	}
	for _, codec := range allCodecs {
		fx := loadFixture(t, codec)
		frames := fx.packetize(t, testMTU, 1)
		var pkts []*rtp.Packet
		for _, fr := range frames[:4] {
			pkts = append(pkts, fr...)
		}
		dir := filepath.Join("testdata", "fuzz", names[codec])
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		seeds := map[string][]byte{
			"stream":    encodeFuzz(pkts, nil),
			"loss":      encodeFuzz(pkts, map[int]int{len(pkts) / 2: 1}),
			"lost-tail": encodeFuzz(pkts[:len(pkts)-1], map[int]int{1: 2}),
		}
		reset := encodeFuzz(pkts, nil)
		reset[0] |= fuzzReset
		seeds["reset"] = reset
		for name, data := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
