package jitter

import (
	"testing"
	"time"
)

// BenchmarkPushPop pushes a stream with one packet in 20 swapped with its neighbour and pops
// after every push, as a track's read loop does.
func BenchmarkPushPop(b *testing.B) {
	const n = 4096
	pkts := make([][]byte, n)
	seqs := make([]uint16, n)
	for i := range pkts {
		seq := uint16(i)
		switch i % 20 {
		case 5:
			seq++
		case 6:
			seq--
		}
		seqs[i] = seq
		pkts[i] = raw(b, seq, testSSRC, make([]byte, 1000)...)
	}
	buf := New(80 * time.Millisecond)
	now := t0
	var round uint16
	b.ReportAllocs()
	b.SetBytes(int64(len(pkts[0])))
	b.ResetTimer()
	for i := range b.N {
		p := pkts[i%n]
		// Keep sequence numbers continuous across the rounds.
		s := seqs[i%n] + round
		p[2], p[3] = byte(s>>8), byte(s)
		now = now.Add(time.Millisecond)
		if _, err := buf.Push(p, now); err != nil {
			b.Fatal(err)
		}
		for {
			if _, ok := buf.Pop(now); !ok {
				break
			}
		}
		if i%n == n-1 {
			round += n
		}
	}
	b.StopTimer()
	if st := buf.Stats(); st.Lost != 0 || st.Duplicates != 0 || st.Late != 0 || (b.N > 20 && st.Reordered == 0) {
		b.Fatalf("stats %+v", st)
	}
}
