package livekit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/call/livekit/framecrypt"
	"github.com/matrix-recorder/matrix-recorder/recorder/codec"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// scriptReader returns scripted packets; a nil entry, and the end of the script, are read
// timeouts; eofPacket ends the track.
type scriptReader struct {
	pkts [][]byte
}

var eofPacket = []byte("eof")

type timeoutErr struct{}

func (timeoutErr) Error() string { return "timeout" }
func (timeoutErr) Timeout() bool { return true }

func (s *scriptReader) ReadRTPBytes(b []byte) (int, error) {
	if len(s.pkts) == 0 {
		return 0, timeoutErr{}
	}
	p := s.pkts[0]
	s.pkts = s.pkts[1:]
	switch {
	case p == nil:
		return 0, timeoutErr{}
	case string(p) == "eof":
		return 0, io.EOF
	}
	return copy(b, p), nil
}

func (s *scriptReader) SetReadDeadline(time.Time) error { return nil }

func packet(t *testing.T, seq uint16, marker bool, payload []byte) []byte {
	t.Helper()
	b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Marker: marker, SSRC: 1}, Payload: payload}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func seqOf(b []byte) uint16 { return uint16(b[2])<<8 | uint16(b[3]) }

// readAll reads until EOF, returning the sequence numbers in order and how many timeouts
// came back.
func readAll(t *testing.T, s *keyedSource, r *scriptReader) (seqs []uint16, timeouts int) {
	t.Helper()
	r.pkts = append(r.pkts, eofPacket)
	buf := make([]byte, 1600)
	for i := 0; i < 1000; i++ {
		n, err := s.ReadPacket(buf)
		switch {
		case err == nil:
			seqs = append(seqs, seqOf(buf[:n]))
		case isTimeoutErr(err):
			timeouts++
		case errors.Is(err, io.EOF):
			return seqs, timeouts
		default:
			t.Fatal(err)
		}
	}
	t.Fatal("no EOF")
	return nil, 0
}

// gateOf is a track's key gate over ring, as an encrypted track has.
func gateOf(ring *framecrypt.Keyring) *keyGate { return &keyGate{ring: ring, bad: map[uint8]uint64{}} }

// specOf is a codec's entry in the codec table.
func specOf(c media.Codec) *codec.Spec {
	s, _ := codec.Of(c)
	return s
}

func testLog() zerolog.Logger {
	return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(zerolog.WarnLevel)
}

// Video frames under a key that is not there wait, in order, and go out (with everything
// behind them) as soon as the key arrives; padding between frames never waits.
func TestKeyedSourceHoldsUntilKey(t *testing.T) {
	ring := framecrypt.NewKeyring()
	r := &scriptReader{}
	s := newKeyedSource(r, gateOf(ring), specOf(media.CodecVP8), nil, time.Hour, testLog())
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	r.pkts = [][]byte{
		packet(t, 1, false, []byte{1, 2}),
		packet(t, 2, true, []byte{3, 7}), // frame under key 7
		packet(t, 3, true, []byte{4, 7}),
		nil,
	}
	buf := make([]byte, 1600)
	for i := 0; i < 4; i++ {
		if n, err := s.ReadPacket(buf); err == nil {
			t.Fatalf("packet %d released without its key", seqOf(buf[:n]))
		}
	}
	if len(s.pending) != 3 {
		t.Fatalf("%d packets held, want 3", len(s.pending))
	}
	_ = ring.SetKey(7, []byte("0123456789abcdef"))
	r.pkts = [][]byte{packet(t, 4, false, nil), packet(t, 5, true, []byte{5, 7})}
	seqs, _ := readAll(t, s, r)
	want := []uint16{1, 2, 3, 4, 5}
	if len(seqs) != len(want) {
		t.Fatalf("released %v, want %v", seqs, want)
	}
	for i := range want {
		if seqs[i] != want[i] {
			t.Fatalf("released %v, want %v", seqs, want)
		}
	}
}

// A key that never comes: after the wait everything goes out (to be counted as
// undecryptable) and the source stops holding until some key arrives.
func TestKeyedSourceGivesUp(t *testing.T) {
	ring := framecrypt.NewKeyring()
	r := &scriptReader{}
	s := newKeyedSource(r, gateOf(ring), specOf(media.CodecOpus), nil, 2*time.Second, testLog())
	gaveUp := 0
	s.onGiveUp = func() { gaveUp++ }
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	buf := make([]byte, 1600)
	r.pkts = [][]byte{packet(t, 1, false, []byte{0xfc, 1}), nil}
	for i := 0; i < 2; i++ {
		if _, err := s.ReadPacket(buf); err == nil {
			t.Fatal("released without key before the wait")
		}
	}
	now = now.Add(3 * time.Second)
	r.pkts = [][]byte{nil}
	if n, err := s.ReadPacket(buf); err != nil || seqOf(buf[:n]) != 1 || gaveUp != 1 {
		t.Fatalf("after the wait: %v (gave up %d)", err, gaveUp)
	}
	r.pkts = [][]byte{packet(t, 2, false, []byte{0xfc, 1})}
	if n, err := s.ReadPacket(buf); err != nil || seqOf(buf[:n]) != 2 {
		t.Fatalf("after giving up the next frame waited: %v", err)
	}
	// A key arrives (for another index): waiting resumes for frames still without one.
	_ = ring.SetKey(0, []byte("0123456789abcdef"))
	r.pkts = [][]byte{packet(t, 3, false, []byte{0xfc, 1}), nil}
	for i := 0; i < 2; i++ {
		if _, err := s.ReadPacket(buf); err == nil {
			t.Fatal("frame without key released right after a key arrived")
		}
	}
}

// A frame that did not decrypt with the known key makes later frames of that index wait
// for a new key (a replaced key on its way).
func TestKeyedSourceWaitsAfterFailure(t *testing.T) {
	ring := framecrypt.NewKeyring()
	_ = ring.SetKey(2, []byte("0123456789abcdef"))
	r := &scriptReader{}
	s := newKeyedSource(r, gateOf(ring), specOf(media.CodecOpus), nil, time.Hour, testLog())
	buf := make([]byte, 1600)
	r.pkts = [][]byte{packet(t, 1, false, []byte{0xfc, 2})}
	if _, err := s.ReadPacket(buf); err != nil {
		t.Fatal("frame with a known key held")
	}
	s.gate.failed([]byte{0xfc, 2}, framecrypt.ErrAuthentication)
	r.pkts = [][]byte{packet(t, 2, false, []byte{0xfc, 2}), nil}
	for i := 0; i < 2; i++ {
		if _, err := s.ReadPacket(buf); err == nil {
			t.Fatal("frame under a failed key released")
		}
	}
	_ = ring.SetKey(2, []byte("fedcba9876543210"))
	r.pkts = [][]byte{nil}
	r.pkts = [][]byte{packet(t, 3, false, []byte{0xfc, 2})}
	seqs, _ := readAll(t, s, r)
	if len(seqs) != 2 || seqs[0] != 2 || seqs[1] != 3 {
		t.Fatalf("after the new key: %v", seqs)
	}
}

// Held packets are not lost when the track ends.
func TestKeyedSourceFlushesAtEOF(t *testing.T) {
	r := &scriptReader{}
	s := newKeyedSource(r, gateOf(framecrypt.NewKeyring()), specOf(media.CodecOpus), nil, time.Hour, testLog())
	r.pkts = [][]byte{packet(t, 1, false, []byte{0xfc, 9}), packet(t, 2, false, []byte{0xfc, 9})}
	seqs, _ := readAll(t, s, r)
	if len(seqs) != 2 {
		t.Fatalf("at EOF released %v", seqs)
	}
}

func TestRTPPayload(t *testing.T) {
	p := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, CSRC: []uint32{1, 2}, Extension: true, ExtensionProfile: 0xBEDE}, Payload: []byte{9, 8, 7}}
	_ = p.SetExtension(1, []byte{0xaa})
	p.Padding, p.PaddingSize = true, 3
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	pl, m, ok := rtpPayload(b)
	if !ok || !m || string(pl) != string([]byte{9, 8, 7}) {
		t.Fatalf("payload %x marker %v ok %v", pl, m, ok)
	}
	for _, bad := range [][]byte{nil, {0x80}, {0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 50}} {
		if _, _, ok := rtpPayload(bad); ok {
			t.Errorf("%x parsed", bad)
		}
	}
}

// The SFU's own frames (blank video on mute/unpublish, anything with the SIF trailer)
// become padding: same sequence number, no frame for the recorder.
func TestStripServerFrame(t *testing.T) {
	sif := []byte("LKROCKS")
	vp8Blank := append([]byte{0x90, 0x80, 0x12}, blankVP8...) // descriptor with a picture id
	for _, tc := range []struct {
		name    string
		codec   media.Codec
		payload []byte
		strip   bool
	}{
		{"vp8 blank", media.CodecVP8, vp8Blank, true},
		{"vp8 blank with trailer", media.CodecVP8, append(append([]byte(nil), vp8Blank...), sif...), true},
		{"h264 blank", media.CodecH264, blankH264, true},
		{"opus silence with trailer", media.CodecOpus, append([]byte{0xf8, 0xff, 0xfe}, sif...), true},
		{"opus frame", media.CodecOpus, []byte{0xfc, 1, 2, 3}, false},
		{"vp8 frame", media.CodecVP8, append(append([]byte{0x10}, blankVP8[:len(blankVP8)-1]...), 0x81), false},
		{"vp8 blank behind a long prefix", media.CodecVP8, append(make([]byte, 20), blankVP8...), false},
	} {
		p := packet(t, 9, true, tc.payload)
		n := stripServerFrame(p, tc.codec, sif)
		payload, _, ok := rtpPayload(p[:n])
		if !ok || (len(payload) == 0) != tc.strip || (!tc.strip && n != len(p)) {
			t.Errorf("%s: %d of %d bytes kept, payload %d bytes", tc.name, n, len(p), len(payload))
		}
		if tc.strip && seqOf(p[:n]) != 9 {
			t.Errorf("%s: sequence number changed", tc.name)
		}
	}
}

// A video frame that the SFU cut off (its marker packet never comes; the next frame has a
// new timestamp) becomes padding instead of reaching the recorder as a partial frame.
func TestSourceDropsCutOffFrame(t *testing.T) {
	r := &scriptReader{}
	s := newKeyedSource(r, nil, specOf(media.CodecVP8), nil, time.Second, testLog())
	at := func(seq uint16, ts uint32, marker bool, payload []byte) []byte {
		b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: marker, SSRC: 1}, Payload: payload}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	r.pkts = [][]byte{
		at(1, 100, false, []byte{0x10, 1, 2}), at(2, 100, false, []byte{0x00, 3, 4}), // cut off
		at(3, 200, false, []byte{0x10, 5}), at(4, 200, true, []byte{0x00, 6}), // complete
		eofPacket,
	}
	buf := make([]byte, 1600)
	var got []string
	for {
		n, err := s.ReadPacket(buf)
		if err != nil {
			break
		}
		payload, _, _ := rtpPayload(buf[:n])
		got = append(got, fmt.Sprintf("%d:%d", seqOf(buf[:n]), len(payload)))
	}
	if want := "1:0 2:0 3:2 4:2"; strings.Join(got, " ") != want {
		t.Fatalf("released %v, want %s (seq:payload bytes)", got, want)
	}
}

// A video track's packets reach the frame logic in sequence order: a packet that comes
// early waits for the missing one, which is given up for lost after reorderWait (or when
// too many wait); duplicates and packets given up already are dropped; a jump far away
// starts over.
func TestSeqOrder(t *testing.T) {
	var o seqOrder
	var got []uint16
	out := func(p []byte) { got = append(got, seqOf(p)) }
	now := time.Unix(1000, 0)
	add := func(seqs ...uint16) {
		for _, s := range seqs {
			o.add(packet(t, s, false, []byte{1}), now, out)
		}
	}
	add(10, 11, 13, 14, 12, 12, 11, 15)
	if want := []uint16{10, 11, 12, 13, 14, 15}; !slices.Equal(got, want) {
		t.Fatalf("in order: %v, want %v", got, want)
	}
	got = nil
	add(17, 18) // 16 lost
	now = now.Add(reorderWait / 2)
	o.expire(now, out)
	if len(got) != 0 {
		t.Fatalf("gave up the gap too soon: %v", got)
	}
	now = now.Add(reorderWait)
	o.expire(now, out)
	add(16, 19)
	if want := []uint16{17, 18, 19}; !slices.Equal(got, want) {
		t.Fatalf("after the gap: %v, want %v", got, want)
	}
	got = nil
	add(40000, 40001)
	if want := []uint16{40000, 40001}; !slices.Equal(got, want) {
		t.Fatalf("a new stream: %v, want %v", got, want)
	}
	got = nil
	for s := uint16(40003); s < 40003+reorderMax+1; s++ {
		add(s)
	}
	if len(got) != reorderMax+1 || got[0] != 40003 {
		t.Fatalf("a full window gives the gap up: %d packets, first %v", len(got), got[:1])
	}
	got = nil
	add(40002)
	if len(got) != 0 {
		t.Fatalf("a packet given up for lost was passed on late: %v", got)
	}
}
