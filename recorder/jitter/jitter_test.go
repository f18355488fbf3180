package jitter

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/pion/rtp"
)

const testSSRC = 0x1234abcd

// t0 is the fake clock's origin; at(ms) is a point on it. No test sleeps.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func raw(t testing.TB, seq uint16, ssrc uint32, payload ...byte) []byte {
	t.Helper()
	p := rtp.Packet{
		Header: rtp.Header{
			Version:        2,
			PayloadType:    96,
			SequenceNumber: seq,
			Timestamp:      uint32(seq) * 3000,
			SSRC:           ssrc,
		},
		Payload: payload,
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

type harness struct {
	t   *testing.T
	b   *Buffer
	out []Packet // copies of released packets (payload not kept)
	// lastSeq checks strictly increasing Seq over the whole test.
	lastSeq uint64
	any     bool
}

func newHarness(t *testing.T, maxDelay time.Duration, opts ...Option) *harness {
	return &harness{t: t, b: New(maxDelay, opts...)}
}

func (h *harness) push(seq uint16, ms int, want PushResult) {
	h.t.Helper()
	h.pushSSRC(seq, testSSRC, ms, want)
}

func (h *harness) pushSSRC(seq uint16, ssrc uint32, ms int, want PushResult) {
	h.t.Helper()
	got, err := h.b.Push(raw(h.t, seq, ssrc, byte(seq), byte(seq>>8)), at(ms))
	if err != nil {
		h.t.Fatalf("push %d: %v", seq, err)
	}
	if got != want {
		h.t.Fatalf("push %d: got %v, want %v", seq, got, want)
	}
	h.checkCounts()
}

func (h *harness) record(p *Packet) {
	h.t.Helper()
	if h.any && p.Seq <= h.lastSeq {
		h.t.Fatalf("released seq %d after %d", p.Seq, h.lastSeq)
	}
	h.any, h.lastSeq = true, p.Seq
	if uint16(p.Seq) != p.SequenceNumber {
		h.t.Fatalf("extended seq %d does not end in %d", p.Seq, p.SequenceNumber)
	}
	if want := []byte{byte(p.SequenceNumber), byte(p.SequenceNumber >> 8)}; !bytes.Equal(p.Payload, want) {
		h.t.Fatalf("seq %d: payload %x, want %x", p.SequenceNumber, p.Payload, want)
	}
	c := *p
	c.Payload = nil
	h.out = append(h.out, c)
}

// pop releases everything releasable at ms and returns the sequence numbers released.
func (h *harness) pop(ms int) []uint16 {
	h.t.Helper()
	var seqs []uint16
	for {
		p, ok := h.b.Pop(at(ms))
		if !ok {
			break
		}
		h.record(p)
		seqs = append(seqs, p.SequenceNumber)
	}
	h.checkCounts()
	return seqs
}

func (h *harness) drain() []uint16 {
	h.t.Helper()
	var seqs []uint16
	for {
		p, ok := h.b.Drain()
		if !ok {
			break
		}
		h.record(p)
		seqs = append(seqs, p.SequenceNumber)
	}
	h.checkCounts()
	return seqs
}

func (h *harness) last() Packet {
	h.t.Helper()
	if len(h.out) == 0 {
		h.t.Fatal("nothing released")
	}
	return h.out[len(h.out)-1]
}

func (h *harness) checkCounts() {
	h.t.Helper()
	if err := checkStats(h.b.Stats()); err != nil {
		h.t.Fatal(err)
	}
}

func checkStats(st Stats) error {
	if st.Received != st.Duplicates+st.Late+st.Dropped+st.Released+uint64(st.Buffered) {
		return errors.New("stats do not add up")
	}
	return nil
}

func wantSeqs(t *testing.T, got []uint16, want ...uint16) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("released %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("released %v, want %v", got, want)
		}
	}
}

func TestInOrderReleasesAtOnce(t *testing.T) {
	h := newHarness(t, 80*time.Millisecond)
	for i := range 10 {
		h.push(uint16(100+i), i*20, PushBuffered)
		wantSeqs(t, h.pop(i*20), uint16(100+i))
		p := h.last()
		if p.LostBefore != 0 || p.Reset {
			t.Fatalf("seq %d: lost %d reset %v", p.SequenceNumber, p.LostBefore, p.Reset)
		}
		if !p.Arrival.Equal(at(i * 20)) {
			t.Fatalf("arrival %v, want %v", p.Arrival, at(i*20))
		}
		if _, ok := h.b.NextDeadline(); ok {
			t.Fatal("deadline on an empty buffer")
		}
	}
	st := h.b.Stats()
	if st.Received != 10 || st.Released != 10 || st.Lost != 0 || st.Reordered != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestReorderWithinDelay(t *testing.T) {
	h := newHarness(t, 80*time.Millisecond)
	h.push(1, 0, PushBuffered)
	wantSeqs(t, h.pop(0), 1)
	h.push(3, 10, PushBuffered)
	h.push(4, 15, PushBuffered)
	wantSeqs(t, h.pop(15))
	d, ok := h.b.NextDeadline()
	if !ok || !d.Equal(at(90)) {
		t.Fatalf("deadline %v %v, want %v", d, ok, at(90))
	}
	h.push(2, 30, PushBuffered)
	wantSeqs(t, h.pop(30), 2, 3, 4)
	for _, p := range h.out {
		if p.LostBefore != 0 {
			t.Fatalf("seq %d lost %d", p.SequenceNumber, p.LostBefore)
		}
	}
	if st := h.b.Stats(); st.Reordered != 1 || st.Lost != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLossDeclaredAfterDelay(t *testing.T) {
	h := newHarness(t, 80*time.Millisecond)
	h.push(1, 0, PushBuffered)
	h.pop(0)
	h.push(4, 10, PushBuffered)
	h.push(5, 20, PushBuffered)
	if p, ok := h.b.Pop(at(89)); ok {
		t.Fatalf("released %d before the deadline", p.SequenceNumber)
	}
	wantSeqs(t, h.pop(90), 4, 5)
	if p := h.out[1]; p.LostBefore != 2 {
		t.Fatalf("lost before 4: %d, want 2", p.LostBefore)
	}
	if p := h.out[2]; p.LostBefore != 0 {
		t.Fatalf("lost before 5: %d, want 0", p.LostBefore)
	}
	// The lost ones arriving now are late.
	h.push(2, 100, PushLate)
	h.push(3, 100, PushLate)
	if st := h.b.Stats(); st.Lost != 2 || st.Late != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestDeadlineFromEarliestArrival: when a higher packet arrived before a lower one, the wait
// is measured from the earlier arrival, so no packet is held longer than the delay.
func TestDeadlineFromEarliestArrival(t *testing.T) {
	h := newHarness(t, 100*time.Millisecond)
	h.push(1, 0, PushBuffered)
	h.pop(0)
	h.push(5, 10, PushBuffered)
	h.push(3, 50, PushBuffered)
	d, _ := h.b.NextDeadline()
	if !d.Equal(at(110)) {
		t.Fatalf("deadline %v, want %v", d, at(110))
	}
	wantSeqs(t, h.pop(109))
	// 4 is still missing behind 3, and 5 arrived at 10 ms: both gaps are due.
	wantSeqs(t, h.pop(110), 3, 5)
	if h.out[1].LostBefore != 1 || h.out[2].LostBefore != 1 {
		t.Fatalf("losses %d %d", h.out[1].LostBefore, h.out[2].LostBefore)
	}
}

func TestDuplicates(t *testing.T) {
	h := newHarness(t, 80*time.Millisecond)
	h.push(1, 0, PushBuffered)
	h.pop(0)
	h.push(1, 1, PushDuplicate) // already released
	h.push(3, 2, PushBuffered)
	h.push(3, 3, PushDuplicate) // still buffered
	h.push(2, 4, PushBuffered)
	wantSeqs(t, h.pop(4), 2, 3)
	h.push(2, 5, PushDuplicate)
	if st := h.b.Stats(); st.Duplicates != 3 || st.Late != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWrapAround(t *testing.T) {
	h := newHarness(t, 80*time.Millisecond)
	seqs := []uint16{65533, 65534, 0, 65535, 1, 3, 2, 4}
	for i, s := range seqs {
		h.push(s, i, PushBuffered)
	}
	wantSeqs(t, h.pop(10), 65533, 65534, 65535, 0, 1, 2, 3, 4)
	if got := h.out[3].Seq; got != 65536 {
		t.Fatalf("extended seq of 0 after wrap: %d", got)
	}
	// A second wrap.
	for i := range 70000 {
		s := uint16(5 + i)
		h.push(s, 20+i, PushBuffered)
		wantSeqs(t, h.pop(20+i), s)
	}
	if got, want := h.last().Seq, uint64(65536+4+70000); got != want {
		t.Fatalf("extended seq %d, want %d", got, want)
	}
	// A packet from before the last one released.
	h.push(h.last().SequenceNumber-100, 80000, PushDuplicate)
	// A packet from further back than the jump limit is a new stream.
	h.push(h.last().SequenceNumber-3001, 80001, PushReset)
}

func TestJumpAheadResets(t *testing.T) {
	h := newHarness(t, 80*time.Millisecond)
	h.push(10, 0, PushBuffered)
	h.pop(0)
	h.push(10+3001, 20, PushReset)
	wantSeqs(t, h.pop(20), 10+3001)
	p := h.last()
	if !p.Reset || p.LostBefore != 0 {
		t.Fatalf("reset %v lost %d", p.Reset, p.LostBefore)
	}
	h.push(10+3002, 40, PushBuffered)
	wantSeqs(t, h.pop(40), 10+3002)
	if h.last().Reset {
		t.Fatal("reset flag on the second packet")
	}
	if st := h.b.Stats(); st.Resets != 1 || st.Lost != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Just inside the limit is a gap, not a reset.
	h.push(10+3002+3000, 60, PushBuffered)
	wantSeqs(t, h.pop(140), 10+3002+3000)
	if st := h.b.Stats(); st.Resets != 1 || st.Lost != 2999 {
		t.Fatalf("stats %+v", st)
	}
}

func TestJumpBackResetsAndKeepsSeqIncreasing(t *testing.T) {
	h := newHarness(t, 80*time.Millisecond)
	h.push(40000, 0, PushBuffered)
	h.pop(0)
	h.push(100, 10, PushReset)
	wantSeqs(t, h.pop(10), 100)
	if p := h.last(); !p.Reset || p.Seq <= 40000 {
		t.Fatalf("reset %v seq %d", p.Reset, p.Seq)
	}
	h.push(101, 20, PushBuffered)
	wantSeqs(t, h.pop(20), 101)
	// A straggler of the old stream is late, not another reset.
	h.push(39990, 30, PushLate)
	if st := h.b.Stats(); st.Resets != 1 || st.Late != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestResetDrainsOldStreamFirst: packets of the old stream still waiting behind a gap are
// released (the gap declared lost at once) before the first packet of the new stream.
func TestResetDrainsOldStreamFirst(t *testing.T) {
	h := newHarness(t, 80*time.Millisecond)
	h.push(1, 0, PushBuffered)
	h.pop(0)
	h.push(3, 5, PushBuffered)
	h.push(4, 6, PushBuffered)
	h.push(20000, 10, PushReset)
	if d, ok := h.b.NextDeadline(); !ok || d.After(at(10)) {
		t.Fatalf("deadline %v %v: should be due", d, ok)
	}
	wantSeqs(t, h.pop(10), 3, 4, 20000)
	if h.out[1].LostBefore != 1 || h.out[1].Reset {
		t.Fatalf("seq 3: %+v", h.out[1])
	}
	if !h.out[3].Reset || h.out[3].LostBefore != 0 {
		t.Fatalf("seq 20000: %+v", h.out[3])
	}
}

// TestResetNotDrained: a Push before the old stream was drained drops what is left of it.
func TestResetNotDrained(t *testing.T) {
	h := newHarness(t, 80*time.Millisecond)
	h.push(1, 0, PushBuffered)
	h.pop(0)
	h.push(3, 5, PushBuffered)
	h.push(20000, 10, PushReset)
	h.push(20001, 11, PushBuffered)
	wantSeqs(t, h.pop(11), 20000, 20001)
	if !h.out[1].Reset {
		t.Fatal("no reset flag")
	}
	if st := h.b.Stats(); st.Dropped != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSSRCChangeResets(t *testing.T) {
	h := newHarness(t, 80*time.Millisecond)
	h.push(1, 0, PushBuffered)
	h.pop(0)
	h.pushSSRC(2, 99, 10, PushReset)
	wantSeqs(t, h.pop(10), 2)
	if !h.last().Reset {
		t.Fatal("no reset flag")
	}
	if h.last().SSRC != 99 {
		t.Fatalf("ssrc %d", h.last().SSRC)
	}
	// A straggler with the old SSRC.
	h.pushSSRC(1, testSSRC, 20, PushLate)
}

func TestOverflowForcesRelease(t *testing.T) {
	h := newHarness(t, time.Second, WithCapacity(8))
	h.push(1, 0, PushBuffered)
	h.pop(0)
	// 2 is missing; 3..10 fill the buffer, 11 overflows it.
	for s := uint16(3); s <= 10; s++ {
		h.push(s, int(s), PushBuffered)
		wantSeqs(t, h.pop(int(s)))
	}
	h.push(11, 11, PushBuffered)
	wantSeqs(t, h.pop(11), 3, 4, 5, 6, 7, 8, 9, 10, 11)
	if h.out[1].LostBefore != 1 {
		t.Fatalf("lost before 3: %d", h.out[1].LostBefore)
	}
	if st := h.b.Stats(); st.Lost != 1 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestOverflowWithoutPop: memory stays fixed when the caller never pops.
func TestOverflowWithoutPop(t *testing.T) {
	h := newHarness(t, time.Second, WithCapacity(4))
	h.push(1, 0, PushBuffered)
	for s := uint16(3); s < 50; s++ {
		h.push(s, int(s), PushBuffered)
		if h.b.slots > 4+2 || len(h.b.free) > h.b.slots {
			t.Fatalf("%d slots, %d free", h.b.slots, len(h.b.free))
		}
	}
	st := h.b.Stats()
	if st.Buffered > 5 || st.Dropped != 43 {
		t.Fatalf("stats %+v", st)
	}
	got := h.pop(50)
	if len(got) == 0 || got[len(got)-1] != 49 {
		t.Fatalf("released %v", got)
	}
	if h.out[0].LostBefore == 0 {
		t.Fatal("dropped packets not reported as lost")
	}
}

func TestDrain(t *testing.T) {
	h := newHarness(t, time.Second)
	h.push(1, 0, PushBuffered)
	h.push(4, 1, PushBuffered)
	h.push(3, 2, PushBuffered)
	h.push(7, 3, PushBuffered)
	wantSeqs(t, h.pop(3), 1)
	wantSeqs(t, h.drain(), 3, 4, 7)
	if h.out[1].LostBefore != 1 || h.out[3].LostBefore != 2 {
		t.Fatalf("losses %+v", h.out)
	}
	if st := h.b.Stats(); st.Buffered != 0 || st.Lost != 3 {
		t.Fatalf("stats %+v", st)
	}
	if _, ok := h.b.NextDeadline(); ok {
		t.Fatal("deadline after drain")
	}
}

func TestMalformed(t *testing.T) {
	b := New(time.Second)
	for _, pkt := range [][]byte{
		nil,
		{0x80, 0x60},
		{0x40, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1},    // version 1
		{0x8f, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1},    // 15 CSRCs announced, none present
		{0xa0, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0}, // padding of 0 bytes
	} {
		res, err := b.Push(pkt, t0)
		if err == nil || res != PushUnknown {
			t.Fatalf("%x: %v %v", pkt, res, err)
		}
	}
	if st := b.Stats(); st.Malformed != 5 || st.Received != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPayloadIsCopied(t *testing.T) {
	b := New(time.Second)
	pkt := raw(t, 7, testSSRC, 1, 2, 3)
	if _, err := b.Push(pkt, t0); err != nil {
		t.Fatal(err)
	}
	for i := range pkt {
		pkt[i] = 0xff
	}
	p, ok := b.Pop(t0)
	if !ok || !bytes.Equal(p.Payload, []byte{1, 2, 3}) || p.SequenceNumber != 7 {
		t.Fatalf("got %v %+v", ok, p)
	}
}

func TestZeroDelay(t *testing.T) {
	h := newHarness(t, 0)
	h.push(1, 0, PushBuffered)
	h.push(3, 0, PushBuffered)
	wantSeqs(t, h.pop(0), 1, 3)
}

func TestPushResultString(t *testing.T) {
	for r, want := range map[PushResult]string{
		PushUnknown: "unknown", PushBuffered: "buffered", PushDuplicate: "duplicate",
		PushLate: "late", PushReset: "reset", PushResult(42): "unknown",
	} {
		if r.String() != want {
			t.Errorf("%d: %q, want %q", int(r), r.String(), want)
		}
	}
}

func TestOptionsClamp(t *testing.T) {
	b := New(time.Second, WithCapacity(0), WithMaxJump(1<<20))
	if b.capacity != 1 || b.maxJump != maxMaxJump || len(b.ring) != 1<<15 {
		t.Fatalf("capacity %d jump %d ring %d", b.capacity, b.maxJump, len(b.ring))
	}
	b = New(time.Second, WithCapacity(10000), WithMaxJump(100))
	if b.capacity != 127 || len(b.ring) != 128 {
		t.Fatalf("capacity %d ring %d", b.capacity, len(b.ring))
	}
}

// TestRestartBehindResets: a sender that restarts its sequence numbers a little behind
// (within the jump limit, so each packet looks late) is followed after restartRun packets
// in sequence, not dropped as late for thousands of packets. Scattered late packets are
// still late.
func TestRestartBehindResets(t *testing.T) {
	h := newHarness(t, 80*time.Millisecond)
	for i := range 100 {
		h.push(uint16(1000+i), i*20, PushBuffered)
		h.pop(i * 20)
	}
	// Isolated late packets (not in sequence with each other) stay late.
	h.push(950, 2000, PushLate)
	h.push(960, 2001, PushLate)
	// The restart: 900, 901, ... behind the 1099 released.
	ms := 2020
	for i := range restartRun - 1 {
		h.push(uint16(900+i), ms, PushLate)
		ms += 20
	}
	h.push(uint16(900+restartRun-1), ms, PushReset)
	wantSeqs(t, h.pop(ms), uint16(900+restartRun-1))
	if p := h.last(); !p.Reset {
		t.Fatalf("first packet of the restarted stream has no Reset")
	}
	h.push(uint16(900+restartRun), ms+20, PushBuffered)
	wantSeqs(t, h.pop(ms+20), uint16(900+restartRun))
	if st := h.b.Stats(); st.Resets != 1 || st.Late != uint64(restartRun-1+2) {
		t.Fatalf("stats %+v", st)
	}
}

// TestSlotsAllocatedAsNeeded: a stream that arrives in order uses a handful of slots, not
// the buffer's capacity (a video track's capacity is thousands of packets).
func TestSlotsAllocatedAsNeeded(t *testing.T) {
	h := newHarness(t, 100*time.Millisecond, WithCapacity(2048))
	for s := uint16(1); s < 1000; s++ {
		h.push(s, int(s), PushBuffered)
		wantSeqs(t, h.pop(int(s)), s)
	}
	if h.b.slots > 3 {
		t.Fatalf("%d slots for a stream in order", h.b.slots)
	}
}
