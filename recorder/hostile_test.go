package recorder

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// hostilePackets returns packets no honest sender sends, each with what the recorder
// should count it as: malformed (not RTP at all) or unknown payload type. The rest
// (valid RTP of the right payload type with nonsense in it) are dropped as frames.
func hostilePackets(r *rand.Rand, good rtp.Header) (malformed, wrongPT, other [][]byte) {
	hdr := func(mod func(h *rtp.Header), payload []byte) []byte {
		h := good
		mod(&h)
		raw, err := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
		if err != nil {
			panic(err)
		}
		return raw
	}
	for i := range 20 {
		b := make([]byte, r.IntN(1500))
		for j := range b {
			b[j] = byte(r.IntN(256))
		}
		if len(b) > 0 {
			b[0] = b[0]&0x3f | 0x40 // version 1: never RTP
		}
		malformed = append(malformed, b)
		malformed = append(malformed, make([]byte, i%12)) // shorter than a header
	}
	malformed = append(malformed,
		[]byte{0x8f, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1},                         // 15 CSRCs announced, none there
		[]byte{0x90, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde, 0xff, 0xff}, // extension longer than the packet
		[]byte{0xa0, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xf8, 0xff},             // padding longer than the packet
		[]byte{0x00, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xf8},                   // version 0
	)
	for _, pt := range []uint8{0, 13, 96, 127} {
		wrongPT = append(wrongPT, hdr(func(h *rtp.Header) { h.PayloadType = pt; h.SequenceNumber += 5000 }, []byte{0xf8, 1, 2, 3}))
	}
	other = append(other,
		hdr(func(h *rtp.Header) { h.SequenceNumber += 20000 }, []byte{0xff}),                                     // Opus code 3 without a frame count
		hdr(func(h *rtp.Header) { h.SequenceNumber += 30000 }, []byte{0xfb, 0x3f}),                               // 63 frames of 20 ms: longer than 120 ms
		hdr(func(h *rtp.Header) { h.SequenceNumber += 40000; h.SSRC = 0 }, nil),                                  // no payload
		hdr(func(h *rtp.Header) { h.Timestamp += 1 << 31; h.SequenceNumber += 50000 }, []byte{0xf8, 0xff, 0xfe}), // half the clock away
	)
	return malformed, wrongPT, other
}

// TestHostileRTP throws garbage at a track between the packets of a good stream: every
// bad packet is counted and dropped, nothing crashes, and the good stream is recorded whole.
func TestHostileRTP(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.Tone440)
	s := opusStream()
	good := s.media(t, frames, base, 0, 8*time.Second, nil)
	var first rtp.Packet
	if err := first.Unmarshal(good[0].data); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	malformed, wrongPT, other := hostilePackets(r, first.Header)
	evs := append([]event(nil), good...)
	at := func() time.Time {
		return base.Add(time.Duration(r.Int64N(int64(8 * time.Second)))).Add(time.Millisecond)
	}
	for _, raw := range append(append(malformed, wrongPT...), other...) {
		evs = append(evs, event{at: at(), data: raw})
	}
	// pion reports packets of a payload type it does not know as read errors.
	readErrors := 5
	for range readErrors {
		evs = append(evs, event{at: at(), err: errors.New("unknown payload type")})
	}
	h.run(opusInfo(), evs)
	m := h.close()
	files := filesOf(m, "")
	if len(files) != 1 {
		t.Fatalf("hostile packets split the track: %s", describeFiles(files))
	}
	e := files[0]
	checkEntry(t, h, e)
	st := e.Stats
	t.Logf("stats %+v", st)
	if st.PacketsMalformed != uint64(len(malformed)) {
		t.Errorf("malformed %d, sent %d", st.PacketsMalformed, len(malformed))
	}
	// Every other bad packet is counted once: as an unknown payload type, as late or
	// duplicate (the reorder buffer judges sequence numbers first), or as a dropped frame;
	// only the padding packet is not a problem.
	counted := st.PacketsUnknownPT + st.PacketsLate + st.PacketsDuplicated + st.FramesDropped
	if want := uint64(len(wrongPT) + len(other) - 1 + readErrors); counted != want || st.PacketsUnknownPT < uint64(readErrors) {
		t.Errorf("%d bad packets counted, %d sent", counted, want)
	}
	if st.Frames != packetCount(good) {
		t.Errorf("%d frames written of %d good ones", st.Frames, packetCount(good))
	}
	f := readOggFile(t, h.path(e.File))
	if !near(ms(e.DurationMs), 8*time.Second, 20*time.Millisecond) || !near(f.decoded(), 8*time.Second, 25*time.Millisecond) || f.badPages != 0 {
		t.Errorf("file lasts %d ms, decodes to %v (%d bad pages); want 8 s", e.DurationMs, f.decoded(), f.badPages)
	}
}

// TestReadErrorsEndTrack: a source that only fails ends the track with an error instead of
// spinning for ever; what was recorded before is finished normally.
func TestReadErrorsEndTrack(t *testing.T) {
	h := newHarness(t, Options{})
	evs := opusStream().media(t, loadFrames(t, testmedia.Tone440), base, 0, time.Second, nil)
	for i := range maxReadErrors + 1 {
		evs = append(evs, event{at: base.Add(time.Second + time.Duration(i)*time.Microsecond), err: errors.New("broken")})
	}
	tr := h.add(opusInfo())
	err := tr.Run(t.Context(), newFakeSource(h.clock, evs))
	if err == nil {
		t.Fatal("a source that keeps failing must end the track with an error")
	}
	m := h.close()
	e := filesOf(m, "")[0]
	checkEntry(t, h, e)
	if e.EndReason != "read errors" || !near(ms(e.DurationMs), time.Second, 20*time.Millisecond) {
		t.Errorf("entry %+v", e)
	}
}
