package depacketize

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// A fixture is a real encoded stream from testdata (see testdata/generate.sh), its frames as
// the depacketizer should return them, and how pion's payloader packetizes it.
type fixture struct {
	codec     media.Codec
	frames    [][]byte // input frames, as the payloader gets them
	want      [][]byte // expected output Data
	keys      []bool   // expected Keyframe
	samples   uint32   // RTP timestamp step per frame
	payloader func() rtp.Payloader
}

const (
	fixtureSSRC = 0x5eed
	fixtureTS   = 0xffff0000 // close to the wrap, to cross it
	videoFrames = 30
	keyInterval = 15
)

func loadFixture(t testing.TB, codec media.Codec) fixture {
	t.Helper()
	f := fixture{codec: codec, samples: 90000 / 15}
	switch codec {
	case media.CodecVP8:
		f.frames = readIVF(t, "vp8.ivf")
		f.payloader = func() rtp.Payloader { return &codecs.VP8Payloader{EnablePictureID: true} }
	case media.CodecVP9:
		f.frames = readIVF(t, "vp9.ivf")
		f.payloader = func() rtp.Payloader {
			return &codecs.VP9Payloader{InitialPictureIDFn: func() uint16 { return 0x7ff0 }}
		}
	case media.CodecAV1:
		f.frames = readIVF(t, "av1.ivf")
		f.payloader = func() rtp.Payloader { return &codecs.AV1Payloader{} }
		for _, fr := range f.frames {
			f.want = append(f.want, stripTemporalDelimiters(t, fr))
		}
	case media.CodecH264:
		f.frames = readAnnexB(t, "h264.h264")
		f.payloader = func() rtp.Payloader { return &codecs.H264Payloader{} }
	case media.CodecOpus:
		f.frames = readOggOpus(t, "opus.ogg")
		f.samples = 960
		f.payloader = func() rtp.Payloader { return &codecs.OpusPayloader{} }
	default:
		t.Fatalf("no fixture for %v", codec)
	}
	if f.want == nil {
		f.want = f.frames
	}
	for i := range f.frames {
		f.keys = append(f.keys, codec == media.CodecOpus || i%keyInterval == 0)
	}
	if isVideo(codec) && len(f.frames) != videoFrames {
		t.Fatalf("%v fixture has %d frames, want %d", codec, len(f.frames), videoFrames)
	}
	return f
}

// packetize turns the fixture into RTP packets with pion's packetizer at the given MTU,
// starting at sequence number seq.
func (f fixture) packetize(t testing.TB, mtu uint16, seq uint16) [][]*rtp.Packet {
	t.Helper()
	p := rtp.NewPacketizerWithOptions(mtu, f.payloader(), rtp.NewFixedSequencer(seq), 90000,
		rtp.WithSSRC(fixtureSSRC), rtp.WithPayloadType(96), rtp.WithTimestamp(fixtureTS))
	out := make([][]*rtp.Packet, len(f.frames))
	for i, fr := range f.frames {
		out[i] = p.Packetize(fr, f.samples)
		if len(out[i]) == 0 {
			t.Fatalf("%v frame %d: no packets", f.codec, i)
		}
	}
	return out
}

func (f fixture) ts(i int) uint32 { return fixtureTS + uint32(i)*f.samples }

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

func readIVF(t testing.TB, name string) [][]byte {
	t.Helper()
	r, _, err := ivfreader.NewWith(bytes.NewReader(readFile(t, name)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var frames [][]byte
	for {
		fr, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		frames = append(frames, fr)
	}
}

// splitAnnexB returns the NAL units of an Annex B byte stream.
func splitAnnexB(b []byte) [][]byte {
	var nals [][]byte
	start := -1
	for i := 0; i+3 <= len(b); i++ {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				end := i
				if end > start && b[end-1] == 0 {
					end--
				}
				nals = append(nals, b[start:end])
			}
			start = i + 3
			i += 2
		}
	}
	if start >= 0 && start <= len(b) {
		nals = append(nals, b[start:])
	}
	return nals
}

// readAnnexB splits an H.264 byte stream into access units: a new one starts at a parameter
// set, SEI or delimiter after a slice, or at a slice with first_mb_in_slice 0 after a slice.
func readAnnexB(t testing.TB, name string) [][]byte {
	t.Helper()
	var (
		aus    [][]byte
		cur    []byte
		hasVCL bool
	)
	for _, nal := range splitAnnexB(readFile(t, name)) {
		typ := nal[0] & 0x1f
		vcl := typ >= 1 && typ <= 5
		newAU := hasVCL && ((typ >= 6 && typ <= 9) || (vcl && nal[1]&0x80 != 0))
		if newAU {
			aus = append(aus, cur)
			cur, hasVCL = nil, false
		}
		cur = append(cur, 0, 0, 0, 1)
		cur = append(cur, nal...)
		hasVCL = hasVCL || vcl
	}
	if cur != nil {
		aus = append(aus, cur)
	}
	return aus
}

// readOggOpus returns the Opus packets of an Ogg Opus file, without the two header packets.
func readOggOpus(t testing.TB, name string) [][]byte {
	t.Helper()
	b := readFile(t, name)
	var (
		pkts [][]byte
		cur  []byte
	)
	for len(b) > 0 {
		if len(b) < 27 || string(b[:4]) != "OggS" {
			t.Fatalf("%s: bad page", name)
		}
		nseg := int(b[26])
		segs := b[27 : 27+nseg]
		b = b[27+nseg:]
		for _, s := range segs {
			cur = append(cur, b[:s]...)
			b = b[s:]
			if s < 255 {
				pkts = append(pkts, cur)
				cur = nil
			}
		}
	}
	if len(pkts) < 3 || !bytes.HasPrefix(pkts[0], []byte("OpusHead")) {
		t.Fatalf("%s: not Ogg Opus", name)
	}
	return pkts[2:]
}

// av1OBUs splits a low-overhead AV1 bitstream (every OBU with a size field) into OBUs.
func av1OBUs(t testing.TB, b []byte) [][]byte {
	t.Helper()
	var obus [][]byte
	for len(b) > 0 {
		if b[0]&0x02 == 0 {
			t.Fatalf("obu without size field: %x", b[:min(len(b), 8)])
		}
		hdr := 1
		if b[0]&0x04 != 0 {
			hdr = 2
		}
		size, n, err := readLEB128(b[hdr:])
		if err != nil || uint64(len(b)-hdr-n) < size {
			t.Fatalf("bad obu size in %x", b[:min(len(b), 8)])
		}
		end := hdr + n + int(size)
		obus = append(obus, b[:end])
		b = b[end:]
	}
	return obus
}

func stripTemporalDelimiters(t testing.TB, tu []byte) []byte {
	t.Helper()
	var out []byte
	for _, o := range av1OBUs(t, tu) {
		if o[0]>>3&0xf != 2 {
			out = append(out, o...)
		}
	}
	return out
}

// marshal returns the wire bytes of a packet.
func marshal(t testing.TB, p *rtp.Packet) []byte {
	t.Helper()
	b, err := p.Marshal()
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}
