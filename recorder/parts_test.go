package recorder

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// retime changes the RTP timestamp of the packet in ev by delta.
func retime(t testing.TB, ev event, delta int64) event {
	var p rtp.Packet
	if err := p.Unmarshal(ev.data); err != nil {
		t.Fatal(err)
	}
	p.Timestamp = uint32(int64(p.Timestamp) + delta)
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return event{at: ev.at, data: raw}
}

// TestStreamRestartNewPart: the sender restarts its stream (new SSRC, sequence numbers and
// timestamps) without a new track in signalling: the track continues as part 2 of the same
// logical track, at its true offset.
func TestStreamRestartNewPart(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.Tone440)
	a := opusStream()
	b := opusStream()
	b.ssrc, b.seq, b.ts0 = 0xbeef, 17, 123456789
	evs := a.media(t, frames, base, 0, 3*time.Second, nil)
	evs = append(evs, b.media(t, frames, base, 3*time.Second, 6*time.Second, nil)...)
	h.run(opusInfo(), evs)
	m := h.close()
	files := filesOf(m, "")
	if len(files) != 2 {
		t.Fatalf("want two parts, got %+v", files)
	}
	for _, e := range files {
		checkEntry(t, h, e)
		if !near(ms(e.DurationMs), 3*time.Second, 20*time.Millisecond) {
			t.Errorf("%s lasts %d ms, want 3000", e.File, e.DurationMs)
		}
	}
	if files[0].EndReason != "stream restarted" || files[1].StartOffsetMs != 3000 || files[1].Part != 2 || files[0].Track != files[1].Track {
		t.Errorf("parts: %s", describeFiles(files))
	}
	if files[0].Stats.FramesDropped+files[1].Stats.FramesDropped != 0 {
		t.Errorf("frames dropped across the restart: %s", describeFiles(files))
	}
}

// TestTimestampJumpNewPart: timestamps that jump (a sender that resets its RTP clock) and
// stay on the new timeline move the track to a new part once three frames agree.
func TestTimestampJumpNewPart(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.Tone440)
	evs := opusStream().media(t, frames, base, 0, 6*time.Second, nil)
	for i := range evs {
		if evs[i].at.Sub(base) >= 3*time.Second {
			evs[i] = retime(t, evs[i], 3600*48000)
		}
	}
	h.run(opusInfo(), evs)
	m := h.close()
	files := filesOf(m, "")
	if len(files) != 2 || files[0].EndReason != "timestamp jump" || files[1].StartOffsetMs != 3000 {
		t.Fatalf("want a new part at 3 s: %s", describeFiles(files))
	}
	for _, e := range files {
		if !near(ms(e.DurationMs), 3*time.Second, 20*time.Millisecond) || e.Stats.FramesDropped != 0 {
			t.Errorf("%s: %d ms, %d frames dropped", e.File, e.DurationMs, e.Stats.FramesDropped)
		}
	}
}

// TestStrayPacketsDoNotSplit: single packets off the timeline (a timestamp far ahead, one
// far behind, one of another SSRC with its own numbers) are dropped and counted; the file
// stays whole and as long as the call.
func TestStrayPacketsDoNotSplit(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.Tone440)
	evs := opusStream().media(t, frames, base, 0, 8*time.Second, nil)
	evs[100] = retime(t, evs[100], 4*48000)    // 4 s ahead (within the skew limit)
	evs[150] = retime(t, evs[150], -2*48000)   // 2 s back
	evs[200] = retime(t, evs[200], 1<<31-1)    // half the clock away
	evs[250] = retime(t, evs[250], 3600*48000) // an hour ahead
	stray := opusStream()
	stray.ssrc, stray.seq, stray.ts0 = 0xdead, 40000, 777
	evs = append(evs, stray.media(t, frames, base.Add(6*time.Second), 0, 20*time.Millisecond, nil)...)
	h.run(opusInfo(), evs)
	m := h.close()
	files := filesOf(m, "")
	if len(files) != 1 {
		t.Fatalf("stray packets split the file: %s", describeFiles(files))
	}
	e := files[0]
	checkEntry(t, h, e)
	f := readOggFile(t, h.path(e.File))
	if !near(ms(e.DurationMs), 8*time.Second, 20*time.Millisecond) || !near(f.decoded(), 8*time.Second, 25*time.Millisecond) {
		t.Errorf("file lasts %d ms, decodes to %v; want 8 s", e.DurationMs, f.decoded())
	}
	if e.Stats.FramesDropped != 5 || e.Stats.Frames != packetCount(evs)-5 {
		t.Errorf("stats %+v: want the 5 stray frames dropped and every other written", e.Stats)
	}
}

// TestSplitLimit: a sender whose timeline keeps jumping cannot make more files than its
// token bucket allows; beyond it the track continues in its file at arrival time, the
// jumps are counted, and the manifest says it once.
func TestSplitLimit(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.Tone440)
	evs := opusStream().media(t, frames, base, 0, 10*time.Second, nil)
	// A jump of an hour every half second.
	for i := range evs {
		evs[i] = retime(t, evs[i], int64(evs[i].at.Sub(base)/(500*time.Millisecond))*3600*48000)
	}
	tr := h.add(opusInfo())
	tr.jumpBurst, tr.jumpEvery = 3, time.Minute
	h.runOn(tr, evs)
	m := h.close()
	files := filesOf(m, "")
	if len(files) != 4 {
		t.Fatalf("want 4 files (3 splits), got %s", describeFiles(files))
	}
	last := files[3]
	if !near(ms(last.StartOffsetMs), 1500*time.Millisecond, time.Millisecond) || !near(ms(last.DurationMs), 8500*time.Millisecond, 20*time.Millisecond) {
		t.Errorf("the last part must run to the end of the call: %s", describeFiles(files))
	}
	if last.Stats.TimelineJumps != 16 {
		t.Errorf("the last part followed %d jumps at arrival time, want 16", last.Stats.TimelineJumps)
	}
	if len(m.Warnings) != 1 || !strings.Contains(m.Warnings[0], "timeline_jumps") {
		t.Errorf("warnings %q, want one about the jumps", m.Warnings)
	}
	f := readOggFile(t, h.path(last.File))
	if !near(f.decoded(), 8500*time.Millisecond, 25*time.Millisecond) {
		t.Errorf("last part decodes to %v", f.decoded())
	}
}

// TestPartsAcrossTracks: a track that ends and comes back as a new track (renegotiation, a
// new SSRC, a device switch) continues the logical track: part 2, named after its owner and
// source, listed after part 1 with its offset.
func TestPartsAcrossTracks(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.Tone440)
	h.run(opusInfo(), opusStream().media(t, frames, base.Add(time.Second), 0, 3*time.Second, nil))
	s2 := opusStream()
	s2.ssrc, s2.seq, s2.ts0 = 42, 1, 5
	h.run(opusInfo(), s2.media(t, frames, base.Add(5*time.Second), 0, 2*time.Second, nil))
	m := h.close()
	files := filesOf(m, "")
	if len(files) != 2 {
		t.Fatalf("want two parts, got %s", describeFiles(files))
	}
	if files[0].File != "alice_example.org-DEV-usermedia-audio.ogg" || files[1].File != "alice_example.org-DEV-usermedia-audio.part2.ogg" ||
		files[0].StartOffsetMs != 1000 || files[1].StartOffsetMs != 5000 || files[0].Track != files[1].Track {
		t.Errorf("parts: %s", describeFiles(files))
	}
	for _, e := range files {
		checkEntry(t, h, e)
		if e.EndReason != "track ended" || e.Source != SourceMicrophone || e.Purpose != PurposeUserMedia || e.Codec != "opus" ||
			e.CodecParams.ClockRate != 48000 || e.CodecParams.Channels != 2 {
			t.Errorf("%s: %+v", e.File, e)
		}
	}
}

func describeFiles(files []FileEntry) string {
	var b strings.Builder
	for _, e := range files {
		fmt.Fprintf(&b, "\n  %s part %d at %d ms for %d ms (%s) dropped %d", e.File, e.Part, e.StartOffsetMs, e.DurationMs, e.EndReason, e.Stats.FramesDropped)
	}
	return b.String()
}

// TestRestartBehindAndLateBurst: a sender that restarts with sequence numbers a little
// behind and a new timestamp base (what pion's ReplaceTrack does) continues in part 2
// after at most a few hundred milliseconds; a block of 25 packets that arrives late (its
// successors overtook it) is dropped and splits nothing.
func TestRestartBehindAndLateBurst(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.Tone440)
	a := opusStream()
	evs := a.media(t, frames, base, 0, 4*time.Second, nil)
	// Packets 100-124 (2.0-2.5 s) are held up until 2.8 s.
	for i := 100; i < 125; i++ {
		evs[i].at = base.Add(2800 * time.Millisecond)
	}
	b := opusStream()
	b.seq, b.ts0 = a.seq-500, 0x12345678
	evs = append(evs, b.media(t, frames, base, 4*time.Second, 8*time.Second, nil)...)
	h.run(opusInfo(), evs)
	m := h.close()
	files := filesOf(m, "")
	if len(files) != 2 || files[0].EndReason != "stream restarted" {
		t.Fatalf("want the restart as part 2: %s", describeFiles(files))
	}
	p1, p2 := files[0], files[1]
	// The late block is longer than the reorder buffer's restart run, so it was taken
	// for a restart too: harmless, its frames are stale on the part's timeline.
	if !near(ms(p1.DurationMs), 4*time.Second, 20*time.Millisecond) || len(p1.Gaps) != 1 || !near(ms(p1.Gaps[0].DurationMs), 500*time.Millisecond, 20*time.Millisecond) ||
		p1.Stats.Frames != 175 {
		t.Errorf("part 1: %d ms, stats %+v, gaps %+v; want 4 s with the late block as a gap", p1.DurationMs, p1.Stats, p1.Gaps)
	}
	if lost := 4*time.Second - ms(p2.DurationMs); p2.StartOffsetMs < 4000 || lost > 400*time.Millisecond || lost < 0 {
		t.Errorf("part 2 at %d ms for %d ms: %v of the restarted stream lost", p2.StartOffsetMs, p2.DurationMs, lost)
	}
	if ms(p2.StartOffsetMs)+ms(p2.DurationMs) != 8*time.Second {
		t.Errorf("part 2 ends at %d ms, want 8000", p2.StartOffsetMs+p2.DurationMs)
	}
}

// A part opened while the manifest is rewritten (which sorts its entries) gets the file its
// own entry names: a later track whose name sorts first must not take an earlier track's
// file name (which exists, so its writer could not be created).
func TestNewPartFileMatchesItsEntry(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.Tone440)
	zed := opusInfo()
	zed.UserID, zed.ClockDomain = "@zed:example.org", "zed"
	h.run(zed, opusStream().media(t, frames, base, 0, 2*time.Second, nil))
	// Alice's track starts long after the last manifest write: opening her part writes it.
	h.run(opusInfo(), opusStream().media(t, frames, base.Add(30*time.Second), 0, 2*time.Second, nil))
	m := h.close()
	if len(m.Tracks) != 2 {
		t.Fatalf("want a file per track: %s", describeFiles(m.Tracks))
	}
	for _, e := range m.Tracks {
		if e.Status != StatusComplete || e.Bytes == 0 {
			t.Errorf("%s: status %s, %d bytes, %q", e.File, e.Status, e.Bytes, e.EndReason)
		}
	}
}
