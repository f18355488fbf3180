package recorder

import (
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// TestLossDuplicatesReorderWrap: 5 % loss, 2 % duplicates and 10 % of packets 40 ms late,
// across a sequence number and an RTP timestamp wrap-around, give a file exactly as long as
// the call, with every problem counted in the manifest.
func TestLossDuplicatesReorderWrap(t *testing.T) {
	h := newHarness(t, Options{})
	s := opusStream() // starts 36 packets before the sequence wrap, 2.7 s before the timestamp wrap
	clean := s.media(t, loadFrames(t, testmedia.Tone440), base, 0, 20*time.Second, nil)
	evs, lost, duped, delayed := impair(clean, 7, 0.05, 0.02, 0.10, 40*time.Millisecond)
	h.run(opusInfo(), evs)
	m := h.close()
	files := filesOf(m, "")
	if len(files) != 1 {
		t.Fatalf("want one file, got %+v", files)
	}
	e := files[0]
	checkEntry(t, h, e)
	st := e.Stats
	t.Logf("lost %d, duplicated %d, delayed %d; stats %+v", lost, duped, delayed, st)
	if st.PacketsReceived != packetCount(evs) || st.PacketsLost != uint64(lost) || st.PacketsDuplicated != uint64(duped) ||
		st.PacketsRecovered != reordered(t, newFakeSource(nil, evs).events) || st.PacketsLate != 0 || st.Frames != packetCount(clean)-uint64(lost) {
		t.Errorf("stats %+v do not match what the network did", st)
	}
	f := readOggFile(t, h.path(e.File))
	if !near(ms(e.DurationMs), 20*time.Second, 20*time.Millisecond) || !near(f.decoded(), 20*time.Second, 25*time.Millisecond) ||
		!near(f.timeline(), 20*time.Second, 25*time.Millisecond) {
		t.Errorf("file lasts %d ms, decodes to %v, granules %v; want 20 s", e.DurationMs, f.decoded(), f.timeline())
	}
}

// TestVideoLossAndPLI: lost video packets break frames; those frames are dropped (never
// written broken), a keyframe is requested at start and after each loss, at most once a
// second, and recording goes on from the next keyframe.
func TestVideoLossAndPLI(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.VP8)
	s := vp8Stream()
	s.mtu = 300 // several packets per frame
	clean := s.media(t, frames, base, 0, 20*time.Second, nil)
	evs, lost, _, _ := impair(clean, 3, 0.02, 0, 0, 0)
	h.run(vp8Info(), evs)
	m := h.close()
	e := filesOf(m, "")[0]
	checkEntry(t, h, e)
	sent := len(frameTimes(frames, 0, 20*time.Second))
	t.Logf("lost %d packets; %d PLI; stats %+v", lost, h.pli, e.Stats)
	if e.Stats.PacketsLost != uint64(lost) || e.Stats.FramesDropped == 0 || e.Stats.Frames+e.Stats.FramesDropped < uint64(sent)-1 {
		t.Errorf("stats %+v for %d frames sent, %d packets lost", e.Stats, sent, lost)
	}
	// One at start, then at most one per second of the 20 s call.
	if h.pli < 2 || h.pli > 21 || uint64(h.pli) != e.Stats.KeyframeRequests {
		t.Errorf("%d keyframe requests (manifest %d), want 2..21", h.pli, e.Stats.KeyframeRequests)
	}
	_, blocks := readWebM(t, h.path(e.File))
	if uint64(len(blocks)) != e.Stats.Frames || !blocks[0].key {
		t.Errorf("%d blocks, %d frames counted; first key %v", len(blocks), e.Stats.Frames, blocks[0].key)
	}
}

// TestWrongPayloadTypeKeepsLoss: a packet with a payload type never negotiated is dropped
// and counted; the losses before it and the packet itself still reach the depacketizer,
// so the frame around them is dropped rather than written with its middle missing.
func TestWrongPayloadTypeKeepsLoss(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.VP8)
	s := vp8Stream()
	s.mtu = 120
	evs := s.media(t, frames, base, 0, 2*time.Second, nil)
	// In frame 20 (its packets share a timestamp; more than a second after the keyframe
	// request at start): lose the second packet and give the third a foreign payload
	// type; the first and the rest stay.
	var ts uint32
	idx := []int{}
	for i, ev := range evs {
		var p rtp.Packet
		if err := p.Unmarshal(ev.data); err != nil {
			t.Fatal(err)
		}
		if p.Timestamp != ts {
			ts = p.Timestamp
			idx = append(idx, i)
		}
	}
	f3 := idx[20]
	if idx[21]-f3 < 5 {
		t.Fatalf("frame 20 has only %d packets", idx[21]-f3)
	}
	var p rtp.Packet
	_ = p.Unmarshal(evs[f3+2].data)
	p.PayloadType = 13
	raw, _ := p.Marshal()
	evs[f3+2].data = raw
	evs = append(evs[:f3+1], evs[f3+2:]...)
	h.run(vp8Info(), evs)
	m := h.close()
	e := filesOf(m, "")[0]
	if e.Stats.PacketsUnknownPT != 1 || e.Stats.PacketsLost != 1 || e.Stats.FramesDropped == 0 {
		t.Errorf("stats %+v: want the foreign packet counted, the loss counted and frame 20 dropped", e.Stats)
	}
	_, blocks := readWebM(t, h.path(e.File))
	for _, b := range blocks {
		if near(b.pts, 20*time.Second/15, time.Millisecond) {
			t.Errorf("frame 20 was written (%d bytes) although two of its packets never arrived", b.n)
		}
	}
	if h.pli < 2 {
		t.Errorf("%d keyframe requests; the broken frame must ask for one", h.pli)
	}
}

// reordered counts the packets that arrive after a packet with a higher sequence number,
// duplicates not counted: what the manifest calls recovered.
func reordered(t testing.TB, evs []event) uint64 {
	var n uint64
	seen := map[int64]bool{}
	var highest int64
	first := true
	for _, ev := range evs {
		var p rtp.Packet
		if err := p.Unmarshal(ev.data); err != nil {
			t.Fatal(err)
		}
		ext := int64(p.SequenceNumber)
		if !first {
			ext = highest + int64(int16(p.SequenceNumber-uint16(highest)))
		}
		if seen[ext] {
			continue
		}
		seen[ext] = true
		if !first && ext < highest {
			n++
		}
		if first || ext > highest {
			highest = ext
		}
		first = false
	}
	return n
}
