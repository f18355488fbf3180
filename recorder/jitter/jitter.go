// Package jitter reorders the RTP packets of one stream, waiting a bounded time for missing ones.
//
// A Buffer releases a packet as soon as every packet before it has been released or declared
// lost. A missing packet is waited for until the packets behind it have been held for the
// buffer's maximum delay; then it is declared lost and the buffer moves on. Memory is fixed at
// construction: the buffer owns its packet slots and copies each pushed packet into one, so a
// read loop that reuses one read buffer allocates nothing per packet.
//
// A Buffer is not safe for concurrent use; it belongs to the goroutine that reads its track.
package jitter

import (
	"fmt"
	"time"

	"github.com/pion/rtp"
)

// Packet is a released packet. It points into the buffer's own storage and stays valid until
// the next call to Push, Pop or Drain on the same Buffer.
type Packet struct {
	rtp.Packet
	// Seq is the extended sequence number: its low 16 bits are the RTP sequence number, and it
	// increases strictly over the life of the Buffer, across wrap-arounds and resets.
	Seq uint64
	// Arrival is the time passed to Push with this packet.
	Arrival time.Time
	// LostBefore is the number of packets lost right before this one: sequence numbers that
	// never arrived in time, plus packets the buffer had to discard (see Stats.Dropped).
	LostBefore int
	// Reset is true for the first packet of a new stream: the sequence numbers jumped (see
	// WithMaxJump) or the SSRC changed. Frames in flight before it will not be completed; the
	// caller should reset its depacketizer and may start a new part.
	Reset bool
}

// Stats counts what a Buffer has seen. Every well-formed pushed packet ends up in exactly one
// of Duplicates, Late, Dropped, Released or Buffered:
//
//	Received == Duplicates + Late + Dropped + Released + Buffered
type Stats struct {
	// Received counts well-formed packets passed to Push.
	Received uint64
	// Malformed counts Push calls whose bytes were not an RTP packet (not in Received).
	Malformed uint64
	// Duplicates counts packets dropped because the same sequence number was already buffered
	// or released.
	Duplicates uint64
	// Late counts packets dropped because their sequence number had already been declared lost,
	// or was too old to tell.
	Late uint64
	// Reordered counts accepted packets that arrived after a packet with a higher sequence number.
	Reordered uint64
	// Lost counts sequence numbers declared lost.
	Lost uint64
	// Dropped counts received packets discarded unreleased: the oldest packets when Push ran
	// out of slots because Pop was not called, and the rest of an old stream when a reset was
	// not drained by Pop before the next Push. With the read loop shown in the package example
	// it stays 0.
	Dropped uint64
	// Released counts packets returned by Pop and Drain.
	Released uint64
	// Resets counts stream restarts.
	Resets uint64
	// Buffered is the number of packets held at the time of the Stats call.
	Buffered int
}

// slot is one packet's storage. Slots are allocated as first needed, at most capacity+2 of
// them, and then cycle between the free list, the ring, the pending position and the
// released position.
type slot struct {
	buf []byte
	pkt Packet
	ext int64
}

// Buffer is a time-bounded reorder buffer for the RTP packets of one stream (one SSRC).
type Buffer struct {
	maxDelay time.Duration
	capacity int
	maxJump  int64
	mask     int64

	ring     []*slot  // indexed by extended sequence number & mask; nil when empty
	released []uint64 // bit per ring position: 1 if that sequence number was released, 0 if lost
	free     []*slot
	slots    int   // slots allocated so far: at most capacity+2
	out      *slot // returned by the last Pop; goes back to free on the next call
	pending  *slot // first packet of a new stream, held until the old stream is drained

	started    bool
	ssrc       uint32
	next       int64 // next extended sequence number to release
	highest    int64 // highest extended sequence number accepted in this stream
	epochStart int64 // first extended sequence number of this stream
	count      int   // packets in the ring
	lostRun    int   // losses to report with the next released packet
	resetNext  bool  // the next released packet starts a new stream

	// The stream before the last reset, so that its stragglers do not reset again.
	hasPrev     bool
	prevSSRC    uint32
	prevHighest int64

	oldest   time.Time // earliest arrival among the packets in the ring, valid if oldestOK
	oldestOK bool

	// lateRun counts late packets in a row with consecutive sequence numbers, the next
	// of which would be lateNext (see restartRun).
	lateRun  int
	lateNext int64

	stats Stats
}

// New returns a Buffer that waits at most maxDelay for a missing packet. A maxDelay of 0 or
// less declares a gap lost as soon as Pop finds it.
func New(maxDelay time.Duration, opts ...Option) *Buffer {
	cfg := config{capacity: DefaultCapacity, maxJump: DefaultMaxJump}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.normalise()

	ringSize := ringSizeFor(cfg.maxJump)
	b := &Buffer{
		maxDelay: max(maxDelay, 0),
		capacity: cfg.capacity,
		maxJump:  int64(cfg.maxJump),
		mask:     int64(ringSize - 1),
		ring:     make([]*slot, ringSize),
		released: make([]uint64, (ringSize+63)/64),
	}
	// Push starts with at most capacity packets in the ring and nothing pending or released,
	// so one slot more is the packet being pushed. Then the ring may hold one packet over
	// capacity, or a new stream may be pending, until Pop runs; one more slot is the packet
	// Pop last released. Slots are allocated as the stream needs them: a steady stream
	// cycles through a few, and a video track's full capacity (hundreds of kilobytes) is
	// only paid for by a stream that really holds that many packets (takeFree).
	return b
}

// Push copies one raw RTP packet into the buffer. It returns an error, and counts the packet
// as Malformed, when raw is not an RTP version 2 packet. raw may be reused as soon as Push
// returns. Call Pop until it reports false after every Push.
func (b *Buffer) Push(raw []byte, arrival time.Time) (PushResult, error) {
	b.recycleOut()
	if b.pending != nil {
		// The caller did not drain the old stream: give it up.
		b.dropAll()
		b.installPending()
	}
	for b.count > b.capacity {
		// The caller did not pop after the last overflow.
		b.dropHead()
	}

	s := b.takeFree()
	s.buf = append(s.buf[:0], raw...)
	if err := s.pkt.Unmarshal(s.buf); err != nil {
		b.free = append(b.free, s)
		b.stats.Malformed++
		return PushUnknown, fmt.Errorf("parse rtp packet: %w", err)
	}
	if s.pkt.Version != 2 {
		b.free = append(b.free, s)
		b.stats.Malformed++
		return PushUnknown, fmt.Errorf("rtp version %d: %w", s.pkt.Version, errBadVersion)
	}
	b.stats.Received++
	s.pkt.Arrival = arrival

	if !b.started {
		b.started = true
		b.ssrc = s.pkt.SSRC
		b.startEpoch(s, int64(s.pkt.SequenceNumber))
		return PushBuffered, nil
	}

	seq := s.pkt.SequenceNumber
	ext := b.highest + int64(int16(seq-uint16(b.highest)))
	if s.pkt.SSRC != b.ssrc || ext-b.next >= b.maxJump || b.next-ext > b.maxJump {
		if b.isStraggler(&s.pkt.Header) {
			b.free = append(b.free, s)
			b.stats.Late++
			return PushLate, nil
		}
		return b.restart(s, seq), nil
	}

	switch {
	case ext < b.next:
		if ext >= b.epochStart && ext >= b.next-int64(len(b.ring)) && b.wasReleased(ext) {
			b.free = append(b.free, s)
			b.stats.Duplicates++
			return PushDuplicate, nil
		}
		if b.lateRun > 0 && ext == b.lateNext {
			b.lateRun++
		} else {
			b.lateRun = 1
		}
		b.lateNext = ext + 1
		if b.lateRun < restartRun {
			b.free = append(b.free, s)
			b.stats.Late++
			return PushLate, nil
		}
		// A run of late packets in sequence is not late: the sender restarted its
		// sequence numbers a little behind the ones it used before.
		return b.restart(s, seq), nil
	case b.ring[ext&b.mask] != nil:
		b.free = append(b.free, s)
		b.stats.Duplicates++
		return PushDuplicate, nil
	}

	if ext < b.highest {
		b.stats.Reordered++
	} else {
		b.highest = ext
	}
	b.insert(s, ext)
	return PushBuffered, nil
}

// Pop returns the next packet in sequence order if it can be released at time now: when every
// packet before it has been released, or when the missing ones have been waited for long enough
// and are declared lost (counted in the packet's LostBefore). ok is false when nothing can be
// released yet; NextDeadline tells when that changes. The packet is valid until the next call
// to Push, Pop or Drain.
func (b *Buffer) Pop(now time.Time) (pkt *Packet, ok bool) {
	return b.pop(now, false)
}

// Drain releases the buffered packets in order without waiting for missing ones. Call it until
// it reports false at the end of a stream.
func (b *Buffer) Drain() (pkt *Packet, ok bool) {
	return b.pop(time.Time{}, true)
}

// NextDeadline reports when Pop will next release a packet if nothing else is pushed. ok is
// false when the buffer is empty. A deadline that is not after the current time means Pop has a
// packet to release right away.
func (b *Buffer) NextDeadline() (deadline time.Time, ok bool) {
	if b.count == 0 {
		if b.pending != nil {
			return b.pending.pkt.Arrival, true
		}
		return time.Time{}, false
	}
	oldest := b.oldestArrival()
	if b.pending != nil || b.count > b.capacity || b.ring[b.next&b.mask] != nil {
		return oldest, true
	}
	return oldest.Add(b.maxDelay), true
}

// Stats returns the counters so far.
func (b *Buffer) Stats() Stats {
	st := b.stats
	st.Buffered = b.count
	if b.pending != nil {
		st.Buffered++
	}
	return st
}

func (b *Buffer) pop(now time.Time, force bool) (*Packet, bool) {
	b.recycleOut()
	if b.count == 0 {
		if b.pending == nil {
			return nil, false
		}
		b.installPending()
	}
	s := b.ring[b.next&b.mask]
	if s == nil {
		if !force && b.pending == nil && b.count <= b.capacity &&
			now.Before(b.oldestArrival().Add(b.maxDelay)) {
			return nil, false
		}
		s = b.skipGap()
	}
	b.release(s)
	return &s.pkt, true
}

// restart makes s, with sequence number seq, the first packet of a new stream.
func (b *Buffer) restart(s *slot, seq uint16) PushResult {
	b.hasPrev, b.prevSSRC, b.prevHighest = true, b.ssrc, b.highest
	b.ssrc = s.pkt.SSRC
	b.stats.Resets++
	b.lateRun = 0
	if b.count == 0 {
		b.startEpoch(s, b.rebase(seq))
	} else {
		b.pending = s
	}
	return PushReset
}

// startEpoch makes s, with extended sequence number ext, the first packet of a stream.
func (b *Buffer) startEpoch(s *slot, ext int64) {
	b.next, b.highest, b.epochStart = ext, ext, ext
	b.lostRun = 0
	b.resetNext = b.stats.Resets > 0
	b.insert(s, ext)
}

// isStraggler reports whether a packet that would reset the stream is a late packet of the
// stream before the last reset: its SSRC, with a sequence number at or shortly before the
// highest one that stream reached.
func (b *Buffer) isStraggler(h *rtp.Header) bool {
	if !b.hasPrev || h.SSRC != b.prevSSRC {
		return false
	}
	behind := int64(int16(uint16(b.prevHighest) - h.SequenceNumber))
	return behind >= 0 && behind <= b.maxJump
}

// rebase gives seq the smallest extended sequence number not yet used that has seq as its low
// 16 bits, so that released numbers keep increasing across a reset.
func (b *Buffer) rebase(seq uint16) int64 {
	return b.next + int64(seq-uint16(b.next))
}

func (b *Buffer) installPending() {
	s := b.pending
	b.pending = nil
	b.startEpoch(s, b.rebase(s.pkt.SequenceNumber))
}

func (b *Buffer) insert(s *slot, ext int64) {
	s.ext = ext
	b.ring[ext&b.mask] = s
	b.count++
	switch {
	case b.count == 1:
		b.oldest, b.oldestOK = s.pkt.Arrival, true
	case b.oldestOK && s.pkt.Arrival.Before(b.oldest):
		b.oldest = s.pkt.Arrival
	}
}

// skipGap declares the missing packets at the head lost and returns the first buffered one.
// The ring must not be empty.
func (b *Buffer) skipGap() *slot {
	lost := 0
	for b.ring[b.next&b.mask] == nil {
		b.markReleased(b.next, false)
		b.next++
		lost++
	}
	b.stats.Lost += uint64(lost)
	b.lostRun += lost
	return b.ring[b.next&b.mask]
}

// release removes s, the packet at the head, from the ring and makes it the returned packet.
func (b *Buffer) release(s *slot) {
	b.ring[s.ext&b.mask] = nil
	b.count--
	b.markReleased(s.ext, true)
	b.next = s.ext + 1
	if b.oldestOK && !s.pkt.Arrival.After(b.oldest) {
		b.oldestOK = false
	}
	s.pkt.Seq = uint64(s.ext)
	s.pkt.LostBefore = b.lostRun
	s.pkt.Reset = b.resetNext
	b.lostRun = 0
	b.resetNext = false
	b.stats.Released++
	b.out = s
}

// dropHead discards the packet at the head, after declaring the gap before it lost, as a loss
// reported to the next released packet.
func (b *Buffer) dropHead() {
	s := b.ring[b.next&b.mask]
	if s == nil {
		s = b.skipGap()
	}
	b.ring[s.ext&b.mask] = nil
	b.count--
	b.markReleased(s.ext, false)
	b.next = s.ext + 1
	b.oldestOK = false
	b.lostRun++
	b.stats.Dropped++
	b.free = append(b.free, s)
}

// dropAll discards every buffered packet of the current stream.
func (b *Buffer) dropAll() {
	for b.count > 0 {
		b.dropHead()
	}
}

// takeFree returns a free slot, allocating one when every slot so far is in use. At the
// start of Push the ring holds at most capacity packets and nothing is pending or released,
// so a buffer never holds more than capacity+2 slots.
func (b *Buffer) takeFree() *slot {
	if len(b.free) == 0 {
		b.slots++
		return &slot{buf: make([]byte, 0, maxSlotPrealloc)}
	}
	s := b.free[len(b.free)-1]
	b.free = b.free[:len(b.free)-1]
	return s
}

func (b *Buffer) recycleOut() {
	if b.out != nil {
		b.free = append(b.free, b.out)
		b.out = nil
	}
}

// oldestArrival returns the earliest arrival time among the packets in the ring, which must not
// be empty.
func (b *Buffer) oldestArrival() time.Time {
	if b.oldestOK {
		return b.oldest
	}
	first := true
	for ext := b.next; ext <= b.highest; ext++ {
		s := b.ring[ext&b.mask]
		if s == nil {
			continue
		}
		if first || s.pkt.Arrival.Before(b.oldest) {
			b.oldest = s.pkt.Arrival
			first = false
		}
	}
	b.oldestOK = !first
	return b.oldest
}

func (b *Buffer) markReleased(ext int64, released bool) {
	i := ext & b.mask
	if released {
		b.released[i/64] |= 1 << (i % 64)
	} else {
		b.released[i/64] &^= 1 << (i % 64)
	}
}

func (b *Buffer) wasReleased(ext int64) bool {
	i := ext & b.mask
	return b.released[i/64]&(1<<(i%64)) != 0
}
