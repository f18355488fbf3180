package jitter

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// FuzzBuffer drives a Buffer with arbitrary pushes, pops, drains and clock steps and checks
// its invariants: released sequence numbers strictly increase and match the RTP sequence
// number, payloads come out as they went in, counters add up, memory stays fixed, and no
// packet is held past its deadline once Pop is called.
//
// Each operation takes 4 bytes: op, a, b, c.
func FuzzBuffer(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 2, 0, 0, 10})
	f.Add([]byte{0, 1, 0, 0, 0, 3, 0, 0, 2, 0, 0, 100, 0, 2, 0, 0})
	f.Add([]byte{0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 0})
	f.Add([]byte{0, 1, 0, 0, 1, 0x40, 0, 0, 2, 0, 0, 0, 0, 2, 0, 0})
	f.Add([]byte{0, 1, 0, 0, 0, 9, 0, 0, 0, 3, 0, 0, 0, 8, 0, 0, 3, 0, 0, 0, 4, 1, 2, 3})
	f.Add([]byte{5, 7, 0, 0, 0, 1, 0, 0, 5, 8, 0, 0, 2, 0, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const maxDelay = 50 * time.Millisecond
		b := New(maxDelay, WithCapacity(16), WithMaxJump(100))
		now := t0
		var seq uint16 = 1000
		ssrc := uint32(1)
		var last uint64
		released := false
		buf := make([]byte, 0, 64)

		check := func(p *Packet) {
			if released && p.Seq <= last {
				t.Fatalf("seq %d released after %d", p.Seq, last)
			}
			released, last = true, p.Seq
			if uint16(p.Seq) != p.SequenceNumber {
				t.Fatalf("extended seq %d does not end in %d", p.Seq, p.SequenceNumber)
			}
			if p.LostBefore < 0 {
				t.Fatalf("negative loss %d", p.LostBefore)
			}
			if len(p.Payload) != 2 || binary.BigEndian.Uint16(p.Payload) != p.SequenceNumber {
				t.Fatalf("seq %d: payload %x", p.SequenceNumber, p.Payload)
			}
		}

		for len(ops) >= 4 {
			op, a, c := ops[0], ops[1], ops[2:4]
			ops = ops[4:]
			switch op % 6 {
			case 0, 1: // push near the current position, in [-64, 63]
				s := seq + uint16(int16(int8(a))>>1)
				if op%6 == 0 && int8(a) > 0 {
					seq = s
				}
				buf = marshal(t, buf, s, ssrc)
				if _, err := b.Push(buf, now); err != nil {
					t.Fatal(err)
				}
			case 2: // time passes, then pop everything due
				now = now.Add(time.Duration(binary.BigEndian.Uint16(c)) * time.Millisecond / 16)
				for {
					p, ok := b.Pop(now)
					if !ok {
						break
					}
					check(p)
				}
				// Nothing left is overdue.
				if d, ok := b.NextDeadline(); ok && !d.After(now) {
					t.Fatalf("deadline %v not after %v with nothing released", d, now)
				}
			case 3: // far jump
				seq += binary.BigEndian.Uint16(c)
				buf = marshal(t, buf, seq, ssrc)
				if _, err := b.Push(buf, now); err != nil {
					t.Fatal(err)
				}
			case 4: // too short to be RTP
				if _, err := b.Push(ops[:min(len(ops), int(a%12))], now); err == nil {
					t.Fatal("short packet accepted")
				}
			case 5: // new SSRC, or drain
				if a&1 == 0 {
					ssrc++
					break
				}
				for {
					p, ok := b.Drain()
					if !ok {
						break
					}
					check(p)
				}
				if st := b.Stats(); st.Buffered != 0 {
					t.Fatalf("buffered %d after drain", st.Buffered)
				}
			}
			st := b.Stats()
			if st.Received != st.Duplicates+st.Late+st.Dropped+st.Released+uint64(st.Buffered) {
				t.Fatalf("stats do not add up: %+v", st)
			}
			if st.Buffered > b.capacity+1 {
				t.Fatalf("buffered %d over capacity %d", st.Buffered, b.capacity)
			}
			if b.slots > b.capacity+2 || len(b.free) > b.slots {
				t.Fatalf("%d slots, %d free, capacity %d", b.slots, len(b.free), b.capacity)
			}
		}
	})
}

// marshal writes a packet with a 2-byte payload (the sequence number) into buf.
func marshal(t *testing.T, buf []byte, seq uint16, ssrc uint32) []byte {
	p := rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq), SSRC: ssrc},
		Payload: binary.BigEndian.AppendUint16(nil, seq),
	}
	buf = buf[:cap(buf)]
	n, err := p.MarshalTo(buf)
	if err != nil {
		t.Fatal(fmt.Errorf("marshal: %w", err))
	}
	return buf[:n]
}
