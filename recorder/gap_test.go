package recorder

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// dtxCall is 9 s of Opus starting 500 ms into the call: tone for 3 s, then 3 s of DTX (one
// TOC-only packet every 400 ms, as Chrome sends), then tone again.
func dtxCall(t testing.TB) []event {
	frames := loadFrames(t, testmedia.Tone440)
	s := opusStream()
	start := base.Add(500 * time.Millisecond)
	inTone := func(mt time.Duration) bool { return mt < 3*time.Second || mt >= 6*time.Second }
	var evs []event
	mt := time.Duration(0)
	for i := 0; mt < 9*time.Second; i++ {
		f := frames[i%len(frames)]
		switch {
		case inTone(mt):
			for _, raw := range s.packets(t, mt, f.Data) {
				evs = append(evs, event{at: start.Add(mt), data: raw})
			}
		case (mt-3*time.Second)%(400*time.Millisecond) == 0:
			for _, raw := range s.packets(t, mt, []byte{f.Data[0] &^ 3}) {
				evs = append(evs, event{at: start.Add(mt), data: raw})
			}
		}
		mt += f.Duration
	}
	return evs
}

func packetCount(evs []event) uint64 {
	var n uint64
	for _, ev := range evs {
		if ev.data != nil {
			n++
		}
	}
	return n
}

// checkEntry verifies what every finished file entry must say about its file.
func checkEntry(t *testing.T, h *harness, e FileEntry) {
	t.Helper()
	b, err := os.ReadFile(h.path(e.File))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if e.Status != StatusComplete || e.Bytes != int64(len(b)) || e.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("%s: status %s, %d bytes, sha256 %s; the file has %d bytes, sha256 %x", e.File, e.Status, e.Bytes, e.SHA256, len(b), sum)
	}
	if e.EndedAt == nil || e.StartedAt.IsZero() || e.Track == "" || e.Part < 1 {
		t.Errorf("%s: entry incomplete: %+v", e.File, e)
	}
}

func TestGapKeepDTX(t *testing.T) {
	h := newHarness(t, Options{GapPolicy: GapKeep})
	evs := dtxCall(t)
	h.run(opusInfo(), evs)
	m := h.close()
	files := filesOf(m, "")
	if len(files) != 1 {
		t.Fatalf("want one file, got %+v", files)
	}
	e := files[0]
	checkEntry(t, h, e)
	if e.StartOffsetMs != 500 || !near(ms(e.DurationMs), 9*time.Second, 20*time.Millisecond) {
		t.Errorf("file at %d ms for %d ms, want 500 ms for 9000 ms", e.StartOffsetMs, e.DurationMs)
	}
	f := readOggFile(t, h.path(e.File))
	if !f.eos || f.badPages != 0 {
		t.Errorf("ogg file: eos %v, %d bad pages", f.eos, f.badPages)
	}
	// Decoded packet by packet the file lasts as long as its granule positions say: the
	// silence is in the file, not only in the timestamps.
	if !near(f.decoded(), 9*time.Second, 25*time.Millisecond) || !near(f.timeline(), 9*time.Second, 25*time.Millisecond) {
		t.Errorf("file decodes to %v, granules say %v; want 9 s", f.decoded(), f.timeline())
	}
	if len(e.Gaps) != 1 || e.Gaps[0].Action != GapActionKept || !near(ms(e.Gaps[0].AtMs), 3*time.Second, 30*time.Millisecond) ||
		!near(ms(e.Gaps[0].DurationMs), 3*time.Second, 30*time.Millisecond) {
		t.Errorf("want one kept 3 s gap at 3 s, got %+v", e.Gaps)
	}
	if e.Stats.PacketsReceived != packetCount(evs) || e.Stats.PacketsLost != 0 || e.Stats.FramesDropped != 0 {
		t.Errorf("stats %+v, sent %d packets", e.Stats, packetCount(evs))
	}
}

func TestGapFillDTX(t *testing.T) {
	h := newHarness(t, Options{GapPolicy: GapFill})
	h.run(opusInfo(), dtxCall(t))
	m := h.close()
	files := filesOf(m, "")
	if len(files) != 1 {
		t.Fatalf("want one file, got %+v", files)
	}
	e := files[0]
	checkEntry(t, h, e)
	f := readOggFile(t, h.path(e.File))
	if !near(f.decoded(), 9*time.Second, 25*time.Millisecond) || !near(f.timeline(), 9*time.Second, 25*time.Millisecond) {
		t.Errorf("file decodes to %v, granules say %v; want 9 s", f.decoded(), f.timeline())
	}
	if len(e.Gaps) != 1 || e.Gaps[0].Action != GapActionSilence || !near(ms(e.Gaps[0].DurationMs), 3*time.Second, 30*time.Millisecond) {
		t.Errorf("want one 3 s gap filled with silence, got %+v", e.Gaps)
	}
}

// TestGapSplit: with gap_policy split a pause of split_after or more ends the part; the
// track continues in the next part of the same logical track at its true offset, and a
// shorter pause stays in the file.
func TestGapSplit(t *testing.T) {
	h := newHarness(t, Options{GapPolicy: GapSplit, SplitAfter: 2 * time.Second})
	frames := loadFrames(t, testmedia.Tone440)
	start := base.Add(500 * time.Millisecond)
	// Tone 0-3 s, nothing 3-6 s (a muted microphone), tone 6-8 s, nothing 8-9.5 s, tone 9.5-11 s.
	evs := opusStream().media(t, frames, start, 0, 11*time.Second, func(mt time.Duration) bool {
		return mt < 3*time.Second || mt >= 6*time.Second && mt < 8*time.Second || mt >= 9500*time.Millisecond
	})
	h.run(opusInfo(), evs)
	m := h.close()
	files := filesOf(m, "")
	if len(files) != 2 {
		t.Fatalf("want two parts, got %+v", files)
	}
	p1, p2 := files[0], files[1]
	for _, e := range files {
		checkEntry(t, h, e)
	}
	if p1.Track != p2.Track || p1.Part != 1 || p2.Part != 2 || !strings.HasSuffix(p2.File, ".part2.ogg") || strings.Contains(p1.File, "part") {
		t.Errorf("parts not named as one logical track: %s (%d), %s (%d)", p1.File, p1.Part, p2.File, p2.Part)
	}
	if p1.StartOffsetMs != 500 || !near(ms(p1.DurationMs), 3*time.Second, 20*time.Millisecond) || p1.EndReason != "gap" {
		t.Errorf("part 1 at %d ms for %d ms (%s), want 500 ms for 3000 ms ended by the gap", p1.StartOffsetMs, p1.DurationMs, p1.EndReason)
	}
	if n := len(p1.Gaps); n != 1 || p1.Gaps[0].Action != GapActionNewPart || !near(ms(p1.Gaps[0].DurationMs), 3*time.Second, 30*time.Millisecond) {
		t.Errorf("part 1 must list the 3 s gap as new_part: %+v", p1.Gaps)
	}
	if p2.StartOffsetMs != 6500 || !near(ms(p2.DurationMs), 5*time.Second, 20*time.Millisecond) {
		t.Errorf("part 2 at %d ms for %d ms, want 6500 ms for 5000 ms", p2.StartOffsetMs, p2.DurationMs)
	}
	if len(p2.Gaps) != 1 || p2.Gaps[0].Action != GapActionKept || !near(ms(p2.Gaps[0].DurationMs), 1500*time.Millisecond, 30*time.Millisecond) {
		t.Errorf("the 1.5 s pause stays in part 2: %+v", p2.Gaps)
	}
	f := readOggFile(t, h.path(p2.File))
	if !near(f.decoded(), 5*time.Second, 25*time.Millisecond) {
		t.Errorf("part 2 decodes to %v, want 5 s", f.decoded())
	}
}

// TestGapVideo: a pause in video stays in the file as a jump in block timestamps.
func TestGapVideo(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.VP8)
	// Frame times are sums of 66.666666 ms: stop just before 7 s.
	end := 7*time.Second - time.Millisecond
	evs := vp8Stream().media(t, frames, base, 0, end, func(mt time.Duration) bool {
		return mt < 2*time.Second || mt >= 5*time.Second
	})
	h.run(vp8Info(), evs)
	m := h.close()
	files := filesOf(m, "")
	if len(files) != 1 {
		t.Fatalf("want one file, got %+v", files)
	}
	e := files[0]
	checkEntry(t, h, e)
	if len(e.Gaps) != 1 || e.Gaps[0].Action != GapActionTimestamp || !near(ms(e.Gaps[0].DurationMs), 3*time.Second, 70*time.Millisecond) {
		t.Errorf("want one 3 s video gap, got %+v", e.Gaps)
	}
	w, blocks := readWebM(t, h.path(e.File))
	if len(blocks) != len(frameTimes(frames, 0, 2*time.Second))+len(frameTimes(frames, 5*time.Second, end)) {
		t.Errorf("%d blocks written", len(blocks))
	}
	var jump time.Duration
	for i := 1; i < len(blocks); i++ {
		jump = max(jump, blocks[i].pts-blocks[i-1].pts)
	}
	if !near(jump, 3067*time.Millisecond, 5*time.Millisecond) {
		t.Errorf("largest step between blocks %v, want the 3 s pause", jump)
	}
	if d := time.Duration(w.Segment.Info.Duration) * time.Millisecond; !near(d, 7*time.Second, 5*time.Millisecond) || w.Segment.Cues == nil {
		t.Errorf("finished file: Duration %v, cues %v", d, w.Segment.Cues != nil)
	}
}

// TestOpusClockJitterSnapped: timestamps that miss the previous frame's end by less than the
// shortest Opus frame (seen from an SFU: 88 samples) neither leave granule jumps that players
// decode short nor lose frames as overlaps.
func TestOpusClockJitterSnapped(t *testing.T) {
	h := newHarness(t, Options{GapPolicy: GapKeep})
	frames := loadFrames(t, testmedia.Tone440)
	s := opusStream()
	start := base.Add(100 * time.Millisecond)
	var evs []event
	mt := time.Duration(0)
	for i := 0; i < 150; i++ {
		f := frames[i%len(frames)]
		at := mt
		switch i % 10 {
		case 3:
			at += 88 * time.Second / 48000 // late by 88 samples
		case 7:
			at -= 40 * time.Second / 48000 // early by 40 samples
		}
		for _, raw := range s.packets(t, at, f.Data) {
			evs = append(evs, event{at: start.Add(mt), data: raw})
		}
		mt += f.Duration
	}
	h.run(opusInfo(), evs)
	m := h.close()
	e := filesOf(m, "")[0]
	f := readOggFile(t, h.path(e.File))
	if e.Stats.FramesDropped != 0 {
		t.Errorf("%d frames dropped", e.Stats.FramesDropped)
	}
	if got := len(f.packets); got < 150 {
		t.Errorf("%d packets written, want 150", got)
	}
	if f.decoded()-f.timeline() > 3*time.Millisecond || f.timeline()-f.decoded() > 3*time.Millisecond {
		t.Errorf("decoded %v but granules say %v: jitter left jumps", f.decoded(), f.timeline())
	}
}

// TestGapOffTheOpusGrid: a sender whose timestamps jitter by other than multiples of 2.5 ms
// (the shortest Opus frame) around a gap. Only gaps of such multiples can be filled with
// packets: the file must decode to exactly its granule timeline (found by FuzzPipeline:
// a frame 3.1 ms late left 28 samples no packet could fill, and the next gap 92 more).
func TestGapOffTheOpusGrid(t *testing.T) {
	for _, policy := range []string{GapKeep, GapFill} {
		t.Run(policy, func(t *testing.T) {
			h := newHarness(t, Options{GapPolicy: policy})
			frames := loadFrames(t, testmedia.Tone440)
			evs := opusStream().media(t, frames, base, 0, 4*time.Second, func(mt time.Duration) bool {
				return mt < time.Second || mt >= 1500*time.Millisecond
			})
			// The frames after the pause come 148 and 1100 samples (3.1 and 22.9 ms) late.
			for i, ev := range evs {
				if at := ev.at.Sub(base); at == 1500*time.Millisecond {
					evs[i] = retime(t, ev, 148)
				} else if at == 2500*time.Millisecond {
					evs[i] = retime(t, ev, 1100)
				}
			}
			h.run(opusInfo(), evs)
			m := h.close()
			files := filesOf(m, "")
			if len(files) != 1 {
				t.Fatalf("want one file: %s", describeFiles(files))
			}
			f := readOggFile(t, h.path(files[0].File))
			if f.decoded()-f.timeline() > 3*time.Millisecond || f.timeline()-f.decoded() > 0 || !near(f.timeline(), 4*time.Second, 5*time.Millisecond) {
				t.Errorf("decodes to %v, granules say %v; want both 4 s", f.decoded(), f.timeline())
			}
		})
	}
}
