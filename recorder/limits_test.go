package recorder

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// jumpStorm returns an Opus stream of d whose RTP timeline jumps by an hour every three
// packets (60 ms): each jump is confirmed (three frames agree on it), so a recorder without
// limits starts a new part for every one of them.
func jumpStorm(t testing.TB, start time.Time, d time.Duration) []event {
	evs := opusStream().media(t, loadFrames(t, testmedia.Tone440), start, 0, d, nil)
	for i := range evs {
		evs[i] = retime(t, evs[i], int64(i/3)*3600*48000)
	}
	return evs
}

func bobInfo() TrackInfo {
	i := opusInfo()
	i.UserID, i.DeviceID, i.ClockDomain = "@bob:example.org", "BOB", "bob"
	return i
}

// TestJumpStormBounded: a sender whose timeline jumps 1000 times in a minute (what a
// hostile client can send) gets a few parts, not one per jump: the rest continues in the
// same file at arrival time, counted, with one warning. Nothing of its audio is lost, the
// manifest is written a bounded number of times and stays small, and the other
// participant's tracks, added after the storm, are recorded whole (the storm used to take
// every file of the call: 501 files, a 558 KB manifest, and no new track for anyone).
func TestJumpStormBounded(t *testing.T) {
	h := newHarness(t, Options{})
	const storm = time.Minute
	alice := h.add(opusInfo())
	h.runOn(alice, jumpStorm(t, base, storm))
	writesInStorm := h.sess.writes

	bob := h.add(bobInfo())
	h.runOn(bob, opusStream().media(t, loadFrames(t, testmedia.Tone440), base.Add(storm), 0, 10*time.Second, nil))
	bobVideo := vp8Info()
	bobVideo.UserID, bobVideo.DeviceID, bobVideo.ClockDomain = "@bob:example.org", "BOB", "bob"
	h.run(bobVideo, vp8Stream().media(t, loadFrames(t, testmedia.VP8), base.Add(storm), 0, 10*time.Second, nil))
	m := h.close()

	aliceFiles := filesOf(m, alice.lid)
	// Three parts at once, one more every 20 s.
	if n, most := len(aliceFiles), 1+partJumpBurst+int(storm/partJumpEvery); n < 1+partJumpBurst || n > most {
		t.Errorf("the storm made %d files, want %d to %d: %s", n, 1+partJumpBurst, most, describeFiles(aliceFiles))
	}
	var total time.Duration
	var jumps uint64
	for _, e := range aliceFiles {
		checkEntry(t, h, e)
		f := readOggFile(t, h.path(e.File))
		if f.badPages != 0 || !f.eos || !f.playable() || f.timeline()-f.decoded() > 0 || f.decoded()-f.timeline() > 3*time.Millisecond {
			t.Errorf("%s: %d bad pages, eos %v, playable %v, decodes to %v, granules %v", e.File, f.badPages, f.eos, f.playable(), f.decoded(), f.timeline())
		}
		total += ms(e.DurationMs)
		jumps += e.Stats.TimelineJumps
	}
	if !near(total, storm, time.Second) {
		t.Errorf("alice's files hold %v of a %v storm", total, storm)
	}
	if want := uint64(1000 - len(aliceFiles) + 1); jumps+50 < want || jumps > want {
		t.Errorf("timeline_jumps add up to %d, want about %d", jumps, want)
	}
	t.Logf("%d files, %d jumps followed in them, %d manifest writes in the storm", len(aliceFiles), jumps, writesInStorm)
	var warned int
	for _, w := range m.Warnings {
		if strings.Contains(w, "@alice:example.org") && strings.Contains(w, "timeline_jumps") {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("want one warning about alice's jumps, got %q", m.Warnings)
	}
	// Two writes per part used to make this 2000 writes of a growing manifest; now at most
	// one every half flush interval, and what a flush of a track refreshes.
	if most := int(storm/(500*time.Millisecond)) + 10; writesInStorm > most {
		t.Errorf("the manifest was written %d times in a %v storm, want at most %d", writesInStorm, storm, most)
	}
	fi, err := os.Stat(filepath.Join(h.sess.Folder(), ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 32<<10 {
		t.Errorf("manifest of %d bytes", fi.Size())
	}
	for _, e := range filesOf(m, bob.lid) {
		checkEntry(t, h, e)
	}
	bobFiles := 0
	for _, e := range m.Tracks {
		if e.UserID == "@bob:example.org" {
			bobFiles++
			if e.Status != StatusComplete || !near(ms(e.DurationMs), 10*time.Second, 100*time.Millisecond) || e.Part != 1 {
				t.Errorf("bob's %s: %s for %d ms", e.File, e.Status, e.DurationMs)
			}
		}
	}
	if bobFiles != 2 {
		t.Errorf("bob has %d files, want his audio and video", bobFiles)
	}
}

// TestJumpBucketRefills: the parts for jumps come back with time (one every
// partJumpEvery), so an honest sender that restarts now and then always gets its part.
func TestJumpBucketRefills(t *testing.T) {
	var b jumpBucket
	at := func(s float64) time.Time { return base.Add(time.Duration(s * float64(time.Second))) }
	for i := range 3 {
		if !b.take(at(0), 3, 20*time.Second) {
			t.Fatalf("token %d of the burst refused", i)
		}
	}
	if b.take(at(1), 3, 20*time.Second) || b.take(at(19.9), 3, 20*time.Second) {
		t.Fatal("a fourth token before 20 s")
	}
	if !b.take(at(20), 3, 20*time.Second) || b.take(at(21), 3, 20*time.Second) {
		t.Fatal("want exactly one token at 20 s")
	}
	if !b.take(at(200), 3, 20*time.Second) || !b.take(at(200), 3, 20*time.Second) || !b.take(at(200), 3, 20*time.Second) || b.take(at(200), 3, 20*time.Second) {
		t.Fatal("want the burst back after a long quiet time, and no more")
	}
}

// TestManifestWrittenWithinFlushInterval: parts that start and end in quick succession are
// written to manifest.json together, but each one is on disk within the flush interval of
// starting (and of ending): the recovery point of the media holds for the manifest too.
func TestManifestWrittenWithinFlushInterval(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.Tone440)
	evs := opusStream().media(t, frames, base, 0, 5*time.Second, nil)
	// Three restarts 100 ms apart, from 2 s on: parts 2, 3 and 4.
	for i := range evs {
		if at := evs[i].at.Sub(base); at >= 2*time.Second {
			evs[i] = retime(t, evs[i], int64(min((at-2*time.Second)/(100*time.Millisecond)+1, 3))*3600*48000)
		}
	}
	var writesBefore, writesAfter int
	var onDisk *Manifest
	evs = append(evs,
		event{at: base.Add(1990 * time.Millisecond), fn: func() { writesBefore = h.sess.writes }},
		event{at: base.Add(3300 * time.Millisecond), fn: func() {
			writesAfter = h.sess.writes
			m, err := ReadManifest(h.sess.Folder())
			if err != nil {
				t.Fatal(err)
			}
			onDisk = m
		}})
	tr := h.add(opusInfo())
	h.runOn(tr, evs)
	m := h.close()
	if len(filesOf(m, "")) != 4 {
		t.Fatalf("want 4 parts: %s", describeFiles(filesOf(m, "")))
	}
	if onDisk == nil || len(onDisk.Tracks) != 4 {
		t.Fatalf("1.1 s after the last of three parts started, the manifest on disk lists %v", onDisk)
	}
	for _, e := range onDisk.Tracks[:3] {
		// The SHA-256 follows the status from another goroutine, in real time, while this
		// test's clock is simulated: only the status is bound to the flush interval.
		if e.Status != StatusComplete {
			t.Errorf("%s ended over a second ago but is %s on disk", e.File, e.Status)
		}
	}
	for _, e := range filesOf(m, "") {
		if e.SHA256 == "" {
			t.Errorf("%s has no SHA-256 in the finished manifest", e.File)
		}
	}
	t.Logf("%d manifest writes from 1.99 s to 3.3 s", writesAfter-writesBefore)
	if n := writesAfter - writesBefore; n > 3 {
		t.Errorf("six part changes in 300 ms took %d manifest writes, want them coalesced", n)
	}
}

// TestFileLimitPerParticipant: every participant has its own share of the call's files,
// and no share is the whole call: one participant at its limit does not keep another from
// recording.
func TestFileLimitPerParticipant(t *testing.T) {
	h := newHarness(t, Options{MaxTracks: 6})
	var tracks []*Track
	for range 3 {
		tracks = append(tracks, h.add(opusInfo()))
	}
	if _, err := h.sess.AddTrack(opusInfo()); !errors.Is(err, ErrFileLimit) {
		t.Fatalf("alice's 4th track of a call of 6 files: %v, want ErrFileLimit", err)
	}
	for range 3 {
		tracks = append(tracks, h.add(bobInfo()))
	}
	carol := opusInfo()
	carol.UserID = "@carol:example.org"
	if _, err := h.sess.AddTrack(carol); !errors.Is(err, ErrFileLimit) {
		t.Fatalf("a 7th file in a call of 6: %v, want ErrFileLimit", err)
	}
	// A track that ends without a file gives its reservation back.
	for _, tr := range tracks {
		h.runOn(tr, nil)
	}
	h.run(carol, nil) // fails the test if carol's track is refused
	h.close()
}

// TestPartsCountAgainstParticipant: the parts a track opens by itself count against its
// participant; at the limit the track stays in its file (no frame lost) and the manifest
// says why once.
func TestPartsCountAgainstParticipant(t *testing.T) {
	h := newHarness(t, Options{MaxTracks: 6})
	tr := h.add(opusInfo())
	tr.jumpBurst = 100
	h.runOn(tr, jumpStorm(t, base, 10*time.Second))
	m := h.close()
	files := filesOf(m, "")
	if len(files) != 3 {
		t.Fatalf("alice may have 3 of the call's 6 files, got %s", describeFiles(files))
	}
	var total time.Duration
	for _, e := range files {
		total += ms(e.DurationMs)
	}
	if !near(total, 10*time.Second, 200*time.Millisecond) {
		t.Errorf("files hold %v of 10 s", total)
	}
	if len(m.Warnings) != 1 || !strings.Contains(m.Warnings[0], "most one participant may have") {
		t.Errorf("warnings %q", m.Warnings)
	}
}
