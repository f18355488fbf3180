package depacketize

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/matrix-recorder/matrix-recorder/recorder/jitter"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

var allCodecs = []media.Codec{media.CodecOpus, media.CodecVP8, media.CodecVP9, media.CodecAV1, media.CodecH264}

// testMTU makes video frames span several packets (and keyframes dozens).
const testMTU = 200

// got is a copy of a returned frame.
type got struct {
	data []byte
	ts   uint32
	key  bool
}

func collect(out []got, frames []Frame) []got {
	for _, f := range frames {
		out = append(out, got{data: bytes.Clone(f.Data), ts: f.RTPTimestamp, key: f.Keyframe})
	}
	return out
}

func newDepacketizer(t testing.TB, codec media.Codec, opts ...Option) Depacketizer {
	t.Helper()
	newFor := map[media.Codec]func(...Option) Depacketizer{
		media.CodecOpus: NewOpus, media.CodecVP8: NewVP8, media.CodecVP9: NewVP9, media.CodecAV1: NewAV1, media.CodecH264: NewH264,
	}[codec]
	if newFor == nil {
		t.Fatalf("no depacketizer for %s", codec)
	}
	return newFor(opts...)
}

// isVideo tells the video codecs from Opus.
func isVideo(c media.Codec) bool { return c != media.CodecOpus }

// checkFrame compares a returned frame with fixture frame i.
func checkFrame(t *testing.T, f fixture, g got, i int) {
	t.Helper()
	if g.ts != f.ts(i) {
		t.Fatalf("%v frame %d: timestamp %d, want %d", f.codec, i, g.ts, f.ts(i))
	}
	if g.key != f.keys[i] {
		t.Fatalf("%v frame %d: keyframe %v, want %v", f.codec, i, g.key, f.keys[i])
	}
	if f.codec == media.CodecH264 {
		checkNALs(t, g.data, f.want[i], i)
		return
	}
	if !bytes.Equal(g.data, f.want[i]) {
		t.Fatalf("%v frame %d: %d bytes differ from the %d bytes sent", f.codec, i, len(g.data), len(f.want[i]))
	}
}

// checkNALs compares H.264 access units by NAL unit; pion's payloader drops delimiters and
// filler data.
func checkNALs(t *testing.T, gotAU, wantAU []byte, i int) {
	t.Helper()
	if !bytes.HasPrefix(gotAU, []byte(startCode)) {
		t.Fatalf("frame %d does not start with a start code", i)
	}
	var want [][]byte
	for _, n := range splitAnnexB(wantAU) {
		if typ := n[0] & 0x1f; typ != nalAUD && typ != 12 {
			want = append(want, n)
		}
	}
	gotNALs := splitAnnexB(gotAU)
	if len(gotNALs) != len(want) {
		t.Fatalf("frame %d: %d nal units, want %d", i, len(gotNALs), len(want))
	}
	for j := range want {
		if !bytes.Equal(gotNALs[j], want[j]) {
			t.Fatalf("frame %d nal %d (type %d) differs", i, j, want[j][0]&0x1f)
		}
	}
}

// TestRoundTrip packetizes every fixture with pion's payloaders and checks that every frame
// comes back byte for byte, with its timestamp and keyframe flag.
func TestRoundTrip(t *testing.T) {
	for _, codec := range allCodecs {
		t.Run(codec.String(), func(t *testing.T) {
			f := loadFixture(t, codec)
			d := newDepacketizer(t, codec)
			if d.NeedKeyframe() != isVideo(codec) {
				t.Fatalf("need keyframe at start: %v", d.NeedKeyframe())
			}
			var out []got
			multi := 0
			for _, pkts := range f.packetize(t, testMTU, 65500) {
				if len(pkts) > 1 {
					multi++
				}
				for _, p := range pkts {
					out = collect(out, d.Push(p, 0))
				}
			}
			if isVideo(codec) && multi < len(f.frames)/2 {
				t.Fatalf("only %d frames span packets", multi)
			}
			if len(out) != len(f.frames) {
				t.Fatalf("%d frames, want %d (stats %+v)", len(out), len(f.frames), d.Stats())
			}
			for i, g := range out {
				checkFrame(t, f, g, i)
			}
			if d.NeedKeyframe() {
				t.Fatal("still needs a keyframe")
			}
			st := d.Stats()
			if st.Frames != uint64(len(f.frames)) || st.Malformed+st.Incomplete+st.Oversized+st.Undecodable != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// pipeline feeds raw packets through a jitter buffer into a depacketizer, with a fake clock.
type pipeline struct {
	t   *testing.T
	jb  *jitter.Buffer
	d   Depacketizer
	now time.Time
	out []got
	// needKey records NeedKeyframe after every packet.
	needKey []bool
}

func newPipeline(t *testing.T, codec media.Codec) *pipeline {
	return &pipeline{
		t:   t,
		jb:  jitter.New(100 * time.Millisecond),
		d:   newDepacketizer(t, codec),
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

func (p *pipeline) push(raw []byte) {
	p.t.Helper()
	if _, err := p.jb.Push(raw, p.now); err != nil {
		p.t.Fatal(err)
	}
	p.pop()
}

func (p *pipeline) pop() {
	for pkt, ok := p.jb.Pop(p.now); ok; pkt, ok = p.jb.Pop(p.now) {
		if pkt.Reset {
			p.d.Reset()
		}
		p.out = collect(p.out, p.d.Push(&pkt.Packet, pkt.LostBefore))
		p.needKey = append(p.needKey, p.d.NeedKeyframe())
	}
}

func (p *pipeline) advance(d time.Duration) {
	p.now = p.now.Add(d)
	p.pop()
}

func (p *pipeline) drain() {
	for pkt, ok := p.jb.Drain(); ok; pkt, ok = p.jb.Drain() {
		p.out = collect(p.out, p.d.Push(&pkt.Packet, pkt.LostBefore))
	}
}

// TestReorderAndDuplicates: packets shuffled within a window and some sent twice come out of
// the jitter buffer in order and every frame survives.
func TestReorderAndDuplicates(t *testing.T) {
	for _, codec := range allCodecs {
		t.Run(codec.String(), func(t *testing.T) {
			f := loadFixture(t, codec)
			var raws [][]byte
			for _, pkts := range f.packetize(t, testMTU, 65000) {
				for _, p := range pkts {
					raws = append(raws, marshal(t, p))
				}
			}
			rng := rand.New(rand.NewPCG(1, 2))
			// The first packet sets the start: packets before it would be late.
			for i := 1; i+8 <= len(raws); i += 8 {
				w := raws[i : i+8]
				rng.Shuffle(len(w), func(a, b int) { w[a], w[b] = w[b], w[a] })
			}
			p := newPipeline(t, codec)
			for i, r := range raws {
				p.push(r)
				if i%5 == 0 {
					p.push(r)
				}
				p.advance(time.Millisecond)
			}
			p.drain()
			if len(p.out) != len(f.frames) {
				t.Fatalf("%d frames, want %d (stats %+v, jitter %+v)", len(p.out), len(f.frames), p.d.Stats(), p.jb.Stats())
			}
			for i, g := range p.out {
				checkFrame(t, f, g, i)
			}
			if st := p.jb.Stats(); st.Reordered == 0 || st.Duplicates == 0 || st.Lost != 0 {
				t.Fatalf("jitter stats %+v", st)
			}
		})
	}
}

// lossCase drops some packets of a fixture and says which frames must come out.
type lossCase struct {
	name string
	// drop reports whether packet j of frame i is lost.
	drop func(i, j, n int) bool
	// want reports whether frame i is returned.
	want func(i int) bool
}

func TestLoss(t *testing.T) {
	video := []lossCase{
		{
			name: "middle packet of a delta frame",
			drop: func(i, j, n int) bool { return i == 5 && j == n/2 },
			want: func(i int) bool { return i < 5 || i >= keyInterval },
		},
		{
			name: "last packet of a delta frame",
			drop: func(i, j, n int) bool { return i == 5 && j == n-1 },
			want: func(i int) bool { return i < 5 || i >= keyInterval },
		},
		{
			name: "first packet of a delta frame",
			drop: func(i, j, n int) bool { return i == 5 && j == 0 },
			want: func(i int) bool { return i < 5 || i >= keyInterval },
		},
		{
			name: "whole delta frame",
			drop: func(i, j, n int) bool { return i == 5 },
			want: func(i int) bool { return i < 5 || i >= keyInterval },
		},
		{
			name: "packet of the second keyframe",
			drop: func(i, j, n int) bool { return i == keyInterval && j == 1 },
			want: func(i int) bool { return i < keyInterval },
		},
		{
			name: "packet of the first keyframe",
			drop: func(i, j, n int) bool { return i == 0 && j == 2 },
			want: func(i int) bool { return i >= keyInterval },
		},
	}
	for _, codec := range allCodecs {
		cases := video
		if !isVideo(codec) {
			cases = []lossCase{{
				name: "two packets",
				drop: func(i, j, n int) bool { return i == 10 || i == 11 },
				want: func(i int) bool { return i != 10 && i != 11 },
			}}
		}
		for _, c := range cases {
			t.Run(codec.String()+"/"+c.name, func(t *testing.T) {
				f := loadFixture(t, codec)
				p := newPipeline(t, codec)
				for i, pkts := range f.packetize(t, testMTU, 1000) {
					for j, pk := range pkts {
						if !c.drop(i, j, len(pkts)) {
							p.push(marshal(t, pk))
						}
					}
					// Frames are 66 ms apart: a gap is declared lost within two frames.
					p.advance(66 * time.Millisecond)
				}
				p.drain()
				var wantIdx []int
				for i := range f.frames {
					if c.want(i) {
						wantIdx = append(wantIdx, i)
					}
				}
				if len(p.out) != len(wantIdx) {
					var ts []int
					for _, g := range p.out {
						ts = append(ts, int((g.ts-fixtureTS)/f.samples))
					}
					t.Fatalf("frames %v, want %v (stats %+v)", ts, wantIdx, p.d.Stats())
				}
				for k, i := range wantIdx {
					checkFrame(t, f, p.out[k], i)
				}
				st := p.d.Stats()
				if st.Lost == 0 {
					t.Fatalf("no loss reported: %+v", st)
				}
				if isVideo(codec) {
					asked := false
					for _, n := range p.needKey[len(p.needKey)/10:] {
						asked = asked || n
					}
					if !asked {
						t.Fatal("never asked for a keyframe after the loss")
					}
					if p.d.NeedKeyframe() != !c.want(len(f.frames)-1) {
						t.Fatalf("need keyframe at the end: %v", p.d.NeedKeyframe())
					}
				}
			})
		}
	}
}

// TestLostPaddingNeedsNoKeyframe: a lost padding packet between frames of a VP8 or VP9 stream
// with picture IDs does not cost a keyframe, because the picture IDs show no frame is missing.
func TestLostPaddingNeedsNoKeyframe(t *testing.T) {
	for _, codec := range []media.Codec{media.CodecVP8, media.CodecVP9} {
		t.Run(codec.String(), func(t *testing.T) {
			f := loadFixture(t, codec)
			d := newDepacketizer(t, codec)
			var out []got
			lost := 0
			for i, pkts := range f.packetize(t, testMTU, 1) {
				for _, p := range pkts {
					out = collect(out, d.Push(p, lost))
					lost = 0
				}
				if i == 3 {
					lost = 1 // the padding packet after frame 3
				}
			}
			if len(out) != len(f.frames) {
				t.Fatalf("%d frames, want %d (stats %+v)", len(out), len(f.frames), d.Stats())
			}
		})
	}
}

// TestPaddingIgnored: padding-only packets in the stream (as pion's GeneratePadding makes
// them, with the next frame's timestamp) change nothing.
func TestPaddingIgnored(t *testing.T) {
	for _, codec := range allCodecs {
		t.Run(codec.String(), func(t *testing.T) {
			f := loadFixture(t, codec)
			d := newDepacketizer(t, codec)
			var out []got
			pz := rtp.NewPacketizerWithOptions(testMTU, f.payloader(), rtp.NewFixedSequencer(1), 90000,
				rtp.WithSSRC(fixtureSSRC), rtp.WithTimestamp(fixtureTS+f.samples))
			for _, pkts := range f.packetize(t, testMTU, 1) {
				for j, p := range pkts {
					out = collect(out, d.Push(p, 0))
					if j == 0 {
						for _, pad := range pz.GeneratePadding(2) {
							// Unmarshal as the jitter buffer would: the payload is the padding removed.
							var q rtp.Packet
							if err := q.Unmarshal(marshal(t, pad)); err != nil {
								t.Fatal(err)
							}
							out = collect(out, d.Push(&q, 0))
						}
					}
				}
			}
			if len(out) != len(f.frames) {
				t.Fatalf("%d frames, want %d", len(out), len(f.frames))
			}
			for i, g := range out {
				checkFrame(t, f, g, i)
			}
			if st := d.Stats(); st.Padding != uint64(2*len(f.frames)) {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestStartMidFrame: a recording that joins in the middle of a frame drops the partial frame
// and everything up to the next keyframe.
func TestStartMidFrame(t *testing.T) {
	for _, codec := range allCodecs {
		if !isVideo(codec) {
			continue
		}
		t.Run(codec.String(), func(t *testing.T) {
			f := loadFixture(t, codec)
			d := newDepacketizer(t, codec)
			var out []got
			for i, pkts := range f.packetize(t, testMTU, 1) {
				if i == 0 {
					pkts = pkts[len(pkts)/2:]
				}
				for _, p := range pkts {
					out = collect(out, d.Push(p, 0))
				}
			}
			if len(out) != len(f.frames)-keyInterval {
				t.Fatalf("%d frames, want %d (stats %+v)", len(out), len(f.frames)-keyInterval, d.Stats())
			}
			for k, g := range out {
				checkFrame(t, f, g, keyInterval+k)
			}
			if st := d.Stats(); st.Incomplete != 1 || st.Undecodable != keyInterval-1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestNoMarker: a sender that never sets the marker bit still gets its frames, each completed
// by the next timestamp.
func TestNoMarker(t *testing.T) {
	for _, codec := range allCodecs {
		t.Run(codec.String(), func(t *testing.T) {
			f := loadFixture(t, codec)
			d := newDepacketizer(t, codec)
			var out []got
			for _, pkts := range f.packetize(t, testMTU, 1) {
				for _, p := range pkts {
					p.Marker = false
					out = collect(out, d.Push(p, 0))
				}
			}
			want := len(f.frames)
			if isVideo(codec) {
				want-- // the last one is never known to be complete
			}
			if len(out) != want {
				t.Fatalf("%d frames, want %d", len(out), want)
			}
			for i, g := range out {
				checkFrame(t, f, g, i)
			}
		})
	}
}

// TestTwoFramesFromOnePacket: a packet that completes the previous frame by its new timestamp
// and its own frame by its marker returns both, in order, with distinct buffers.
func TestTwoFramesFromOnePacket(t *testing.T) {
	d := newDepacketizer(t, media.CodecVP8)
	key := []byte{0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 1, 0, 1, 0, 0xaa}
	delta := []byte{0x10, 0x01, 0x00, 0x00, 0xbb}
	if fr := d.Push(&rtp.Packet{Header: rtp.Header{Timestamp: 1}, Payload: key}, 0); len(fr) != 0 {
		t.Fatalf("frame before its end: %d", len(fr))
	}
	fr := d.Push(&rtp.Packet{Header: rtp.Header{Timestamp: 2, Marker: true}, Payload: delta}, 0)
	if len(fr) != 2 || !fr[0].Keyframe || fr[1].Keyframe || fr[0].RTPTimestamp != 1 || fr[1].RTPTimestamp != 2 {
		t.Fatalf("frames %+v", fr)
	}
	if !bytes.Equal(fr[0].Data, key[1:]) || !bytes.Equal(fr[1].Data, delta[1:]) {
		t.Fatalf("data %x %x", fr[0].Data, fr[1].Data)
	}
}

func TestOversized(t *testing.T) {
	for _, codec := range allCodecs {
		t.Run(codec.String(), func(t *testing.T) {
			f := loadFixture(t, codec)
			pkts := f.packetize(t, testMTU, 1)
			limit := 0
			d := newDepacketizer(t, codec)
			for _, fr := range pkts {
				for _, g := range pushAll(d, fr) {
					limit = max(limit, len(g.data))
				}
			}
			limit-- // the largest frame no longer fits
			d = newDepacketizer(t, codec, WithMaxFrameSize(limit))
			var out []got
			for _, fr := range pkts {
				out = append(out, pushAll(d, fr)...)
			}
			st := d.Stats()
			if st.Oversized != 1 {
				t.Fatalf("stats %+v", st)
			}
			for _, g := range out {
				if len(g.data) > limit {
					t.Fatalf("frame of %d bytes over the limit %d", len(g.data), limit)
				}
			}
		})
	}
}

// TestReset: after Reset a video depacketizer waits for a keyframe again.
func TestReset(t *testing.T) {
	for _, codec := range allCodecs {
		t.Run(codec.String(), func(t *testing.T) {
			f := loadFixture(t, codec)
			d := newDepacketizer(t, codec)
			var out []got
			for i, pkts := range f.packetize(t, testMTU, 1) {
				if i == 3 {
					d.Reset()
					if d.NeedKeyframe() != isVideo(codec) {
						t.Fatalf("need keyframe after reset: %v", d.NeedKeyframe())
					}
				}
				for _, p := range pkts {
					out = collect(out, d.Push(p, 0))
				}
			}
			want := len(f.frames)
			if isVideo(codec) {
				want -= keyInterval - 3
			}
			if len(out) != want {
				t.Fatalf("%d frames, want %d", len(out), want)
			}
		})
	}
}

// TestMalformedPackets: payloads each codec must reject are counted, never returned, and do
// not panic.
func TestMalformedPackets(t *testing.T) {
	cases := map[media.Codec][][]byte{
		media.CodecOpus: {
			{0x03},             // code 3 without a frame count
			{0x03, 0x00},       // code 3 with 0 frames
			{0x01, 0xaa},       // code 1 with an odd length
			{0x02, 0xfc},       // code 2 with a truncated length
			{0x02, 0x05, 0x01}, // code 2, first frame longer than the packet
			{0x1b, 0x07},       // code 3, 7 frames of 60 ms
			{0x03, 0x42, 0xff}, // padding longer than the packet
		},
		media.CodecVP8: {
			{0x80},             // X bit without the extension byte
			{0x90, 0x80},       // I bit without a picture ID
			{0x10, 0x00, 0x00}, // key frame tag too short
			{0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, // key frame without its start code
		},
		media.CodecVP9: {
			{0x80},       // I bit without a picture ID
			{0xa0, 0x80}, // I and L, with a truncated 15-bit picture ID
			{0x20, 0x0a}, // L with spatial layer 5
		},
		media.CodecAV1: {
			{0x00},                   // no OBU element
			{0x88, 0x02, 0x12, 0x00}, // Z and N together
			{0x00, 0x05, 0x30},       // element longer than the packet
			{0x10, 0x80, 0x08, 0x00}, // W=1 element with the forbidden bit
			{0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // endless leb128
			{0x10, 0x32, 0x05, 0x00},                                     // size field disagrees
		},
		media.CodecH264: {
			{0x80},                   // forbidden bit
			{0x00},                   // type 0
			{0x19, 0x00},             // STAP-B
			{0x18, 0x00, 0x05, 0x65}, // STAP-A with a short NAL
			{0x18, 0x00},             // STAP-A with a truncated size
			{0x1c},                   // FU-A without its header
			{0x1c, 0x80},             // FU-A of type 0
			{0x1e, 0x00},             // type 30
		},
	}
	for codec, payloads := range cases {
		t.Run(codec.String(), func(t *testing.T) {
			for i, pl := range payloads {
				d := newDepacketizer(t, codec)
				fr := d.Push(&rtp.Packet{Header: rtp.Header{Marker: true, Timestamp: 7}, Payload: pl}, 0)
				if len(fr) != 0 {
					t.Fatalf("payload %d (%x): returned a frame", i, pl)
				}
				if st := d.Stats(); st.Malformed != 1 {
					t.Fatalf("payload %d (%x): stats %+v", i, pl, st)
				}
			}
		})
	}
}

func pushAll(d Depacketizer, pkts []*rtp.Packet) []got {
	var out []got
	for _, p := range pkts {
		out = collect(out, d.Push(p, 0))
	}
	return out
}

func ExampleNewVP8() {
	d := NewVP8()
	// A one-packet VP8 key frame: payload descriptor (S=1, PID 0), then the frame.
	key := []byte{0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00}
	fmt.Println("need keyframe:", d.NeedKeyframe())
	for _, f := range d.Push(&rtp.Packet{Header: rtp.Header{Marker: true, Timestamp: 3000}, Payload: key}, 0) {
		fmt.Println(len(f.Data), f.RTPTimestamp, f.Keyframe)
	}
	fmt.Println("need keyframe:", d.NeedKeyframe())
	// Output:
	// need keyframe: true
	// 10 3000 true
	// need keyframe: false
}

// TestCutFrameDropped: in a stream that marks frame ends, a frame whose marker packet never
// came (an SFU switching simulcast layers cuts frames short) is dropped, not written
// truncated, and the stream waits for a keyframe.
func TestCutFrameDropped(t *testing.T) {
	for _, codec := range allCodecs {
		if !isVideo(codec) {
			continue
		}
		t.Run(codec.String(), func(t *testing.T) {
			f := loadFixture(t, codec)
			d := newDepacketizer(t, codec)
			frames := f.packetize(t, testMTU, 1)
			cut := -1
			var out []got
			for i, pkts := range frames {
				if cut < 0 && i > 0 && len(pkts) > 1 && !f.keys[i] {
					// Send all but the last packet: the next frame's first packet ends it.
					cut = i
					pkts = pkts[:len(pkts)-1]
				}
				for _, p := range pkts {
					out = collect(out, d.Push(p, 0))
				}
			}
			if cut < 0 {
				t.Skip("no multi-packet delta frame in the fixture")
			}
			for _, g := range out {
				if g.ts == f.ts(cut) {
					t.Fatalf("the cut frame %d was emitted", cut)
				}
			}
			if d.Stats().Incomplete == 0 {
				t.Error("the cut frame was not counted as incomplete")
			}
		})
	}
}

// TestOpaqueVP9Keyframes: with encrypted frames (header bytes unreadable) VP9 keyframes are
// still found from the payload descriptor; without the option they never are.
func TestOpaqueVP9Keyframes(t *testing.T) {
	f := loadFixture(t, media.CodecVP9)
	scramble := func(p *rtp.Packet) *rtp.Packet {
		q := *p
		q.Payload = bytes.Clone(p.Payload)
		// Keep the payload descriptor (its length varies; the fixture's is at most 3 bytes
		// here), garble the frame bytes as encryption would.
		for i := 3; i < len(q.Payload); i++ {
			q.Payload[i] ^= 0x5a
		}
		return &q
	}
	for _, opaque := range []bool{false, true} {
		var opts []Option
		if opaque {
			opts = append(opts, WithOpaquePayload())
		}
		d := newDepacketizer(t, media.CodecVP9, opts...)
		keys := 0
		for _, pkts := range f.packetize(t, testMTU, 1) {
			for _, p := range pkts {
				for _, fr := range d.Push(scramble(p), 0) {
					if fr.Keyframe {
						keys++
					}
				}
			}
		}
		if opaque && keys == 0 {
			t.Error("no keyframe found in an encrypted VP9 stream with WithOpaquePayload")
		}
		if !opaque && keys != 0 {
			t.Error("the test no longer garbles the VP9 frame header")
		}
	}
}
