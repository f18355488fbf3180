package recorder

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder/mkvwriter"
)

// TestSimulcastSwitchKeepsKeyframe: an SFU that moves a subscriber to another simulcast
// layer (LiveKit does as the bandwidth estimate grows; seen with livekit-client in
// Chromium) forwards the new layer's key frame with the RTP timestamp of the old layer's
// last frame (or one tick after it). The file gets one picture for that instant, the key
// frame (what follows depends on it), not two blocks at one time, which ffmpeg and players
// take as non-monotonic timestamps.
func TestSimulcastSwitchKeepsKeyframe(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.VP8) // 15 fps, key frames at 0 and 1 s
	s := vp8Stream()
	var evs []event
	send := func(mt time.Duration, f testmedia.Frame) {
		for _, raw := range s.packets(t, mt, f.Data) {
			evs = append(evs, event{at: base.Add(mt), data: raw})
		}
	}
	mt := time.Duration(0)
	for i := 0; i < 30; i++ {
		f := frames[i]
		send(mt, f)
		switch i {
		case 0: // the switch: the larger layer's key frame at the same timestamp
			send(mt, vp8Resize(f, 640, 480))
		case 15: // LiveKit's "reference slightly behind": one tick after the last frame
			send(mt+time.Second/90000, vp8Resize(f, 640, 480))
		}
		mt += f.Duration
	}
	h.run(vp8Info(), evs)
	m := h.close()
	files := filesOf(m, "")
	if len(files) != 1 {
		t.Fatalf("want one file, got %+v", files)
	}
	e := files[0]
	checkEntry(t, h, e)
	_, blocks := readWebM(t, h.path(e.File))
	if len(blocks) != 30 || e.Stats.Frames != 30 {
		t.Fatalf("%d blocks, %d frames in the manifest; want 30, one per instant", len(blocks), e.Stats.Frames)
	}
	for i := 1; i < len(blocks); i++ {
		if blocks[i].pts <= blocks[i-1].pts {
			t.Errorf("block %d at %v, not after block %d at %v", i, blocks[i].pts, i-1, blocks[i-1].pts)
		}
	}
	if b := blocks[15]; !b.key || !near(b.pts, time.Second, 2*time.Millisecond) {
		t.Errorf("block at the switch %+v; want a key frame at 1 s", b)
	}
	// Only the new layer's key frames are 640x480: the size says which of the two was kept.
	if e.Stats.FramesDropped != 0 || e.CodecParams.Width != 640 {
		t.Errorf("stats %+v, size %dx%d; want nothing dropped and the new layer's 640x480", e.Stats, e.CodecParams.Width, e.CodecParams.Height)
	}
}

// TestPausedVideoReachesFile: the video frame held back for a possible layer switch is not
// kept from the file when the stream pauses (a camera turned off): the next flush writes
// it, so a crash during the pause loses nothing sent before it.
func TestPausedVideoReachesFile(t *testing.T) {
	h := newHarness(t, Options{FlushInterval: time.Second})
	dir := t.TempDir()
	vt := h.add(vp8Info())
	frames := loadFrames(t, testmedia.VP8)
	evs := vp8Stream().media(t, frames, base, 0, 2*time.Second, nil)
	last := frameTimes(frames, 0, 2*time.Second)
	var got time.Duration
	h.runOn(vt, append(evs, event{at: base.Add(3500 * time.Millisecond), fn: func() {
		copyDir(t, h.sess.Folder(), dir)
		r, err := mkvwriter.Repair(filepath.Join(dir, vt.lid+".webm"))
		if err != nil {
			t.Errorf("repair the video file of a crash: %v", err)
		}
		got = r.Duration
	}}))
	h.close()
	// Repair ends a file at its last frame plus one frame interval (66.7 ms here).
	if lastAt := last[len(last)-1]; got < lastAt+50*time.Millisecond {
		t.Errorf("during the pause the file plays %v; the last frame before it is at %v", got, lastAt)
	}
}
