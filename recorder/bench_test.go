package recorder

import (
	"context"
	"encoding/binary"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// loopSource replays one stream's packets for ever, rewriting sequence numbers and
// timestamps so that it never repeats, with each packet arriving at its media time on a
// fake clock. It allocates nothing per packet.
type loopSource struct {
	clock    *fakeClock
	pkts     [][]byte
	at       []time.Duration // arrival of each packet within one loop
	loopDur  time.Duration
	loopTS   uint32
	limit, i int

	// Steady state: heap allocations between the first and the last tenth of the run.
	m0, m1 runtime.MemStats
}

func newLoopSource(t testing.TB, clock *fakeClock, s *rtpStream, frames []testmedia.Frame, limit int) *loopSource {
	var loop time.Duration
	for _, f := range frames {
		loop += f.Duration
	}
	evs := s.media(t, frames, base, 0, loop-time.Microsecond, nil)
	src := &loopSource{clock: clock, loopDur: loop, loopTS: uint32(int64(loop) * int64(s.rate) / int64(time.Second)), limit: limit}
	for _, ev := range evs {
		src.pkts = append(src.pkts, ev.data)
		src.at = append(src.at, ev.at.Sub(base))
	}
	return src
}

func (s *loopSource) SetReadDeadline(time.Time) error { return nil }

func (s *loopSource) ReadPacket(b []byte) (int, error) {
	if s.i >= s.limit {
		return 0, io.EOF
	}
	switch s.i {
	case s.limit / 10:
		runtime.ReadMemStats(&s.m0)
	case s.limit - s.limit/10:
		runtime.ReadMemStats(&s.m1)
	}
	k, loops := s.i%len(s.pkts), s.i/len(s.pkts)
	p := s.pkts[k]
	n := copy(b, p)
	binary.BigEndian.PutUint16(b[2:], binary.BigEndian.Uint16(p[2:])+uint16(loops*len(s.pkts)))
	binary.BigEndian.PutUint32(b[4:], binary.BigEndian.Uint32(p[4:])+uint32(loops)*s.loopTS)
	s.clock.set(base.Add(time.Duration(loops)*s.loopDur + s.at[k]))
	s.i++
	return n, nil
}

// benchTrack records b.N packets of a stream through the whole track pipeline (reorder
// buffer, depacketizer, timeline, container writer, flushes and manifest updates every
// simulated second) into a file; one op is one packet.
func benchTrack(b *testing.B, info TrackInfo, s *rtpStream, asset string) {
	frames := loadFrames(b, asset)
	clock := newFakeClock()
	rec, err := New(Options{Dir: b.TempDir(), Now: clock.Now}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	sess, err := rec.Start(context.Background(), CallInfo{CallID: "bench", RoomID: "!r:x", Kind: "1:1"})
	if err != nil {
		b.Fatal(err)
	}
	tr, err := sess.AddTrack(info)
	if err != nil {
		b.Fatal(err)
	}
	src := newLoopSource(b, clock, s, frames, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	if err := tr.Run(context.Background(), Packets(src)); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if steady := src.limit - 2*(src.limit/10); steady > 0 && src.m1.Mallocs > 0 {
		b.ReportMetric(float64(src.m1.Mallocs-src.m0.Mallocs)/float64(steady), "steady-allocs/pkt")
	}
	m, err := sess.Close(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	if b.N > 1000 && m.Tracks[0].Stats.Frames == 0 {
		b.Fatalf("nothing written: %+v", m.Tracks[0])
	}
}

// BenchmarkTrackOpusToOgg: one Opus packet (20 ms) per op.
func BenchmarkTrackOpusToOgg(b *testing.B) {
	benchTrack(b, opusInfo(), opusStream(), testmedia.Tone440)
}

// BenchmarkTrackVP8ToWebM: one VP8 packet per op (the 150 kbit/s test pattern, about one
// packet per frame, keyframes split in four).
func BenchmarkTrackVP8ToWebM(b *testing.B) {
	benchTrack(b, vp8Info(), vp8Stream(), testmedia.VP8)
}

// TestPacketPathDoesNotAllocate: in steady state a packet goes through the reorder buffer,
// the depacketizer, the timeline and the container writer without a heap allocation (the
// periodic flush and manifest refresh are not per packet and not counted here).
func TestPacketPathDoesNotAllocate(t *testing.T) {
	for _, c := range []struct {
		name  string
		info  TrackInfo
		s     *rtpStream
		asset string
	}{
		{"opus", opusInfo(), opusStream(), testmedia.Tone440},
		{"vp8", vp8Info(), vp8Stream(), testmedia.VP8},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			tr := h.add(c.info)
			defer h.close()
			defer h.sess.trackDone(tr)
			src := newLoopSource(t, h.clock, c.s, loadFrames(t, c.asset), 1<<30)
			p := newPipeline(tr, Packets(src), nil)
			defer p.finish()
			buf := make([]byte, 1600)
			step := func() {
				n, _ := src.ReadPacket(buf)
				now := h.clock.Now()
				if _, err := p.jb.Push(buf[:n], now); err != nil {
					t.Fatal(err)
				}
				for pkt, ok := p.jb.Pop(now); ok; pkt, ok = p.jb.Pop(now) {
					p.packet(pkt)
				}
			}
			// Warm up: the first keyframe, buffers grown to their working size.
			for range 2000 {
				step()
			}
			if allocs := testing.AllocsPerRun(5000, step); allocs != 0 {
				t.Errorf("%v allocations per packet", allocs)
			}
			if p.cur == nil || p.cur.frames < 1000 {
				t.Fatalf("nothing was written")
			}
		})
	}
}
