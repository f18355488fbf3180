package recorder

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// TestKeyframeGating: video that starts in the middle of a group of pictures is dropped up
// to the next keyframe, a keyframe is requested at once, and the file starts with that
// keyframe at its true place on the timeline.
func TestKeyframeGating(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.VP8)
	// Frames 5 to 44 of the asset: the next keyframe is frame 15, at 1 s.
	evs := vp8Stream().media(t, frames, base, 5*time.Second/15-time.Millisecond, 3*time.Second-time.Millisecond, nil)
	h.run(vp8Info(), evs)
	m := h.close()
	e := filesOf(m, "")[0]
	checkEntry(t, h, e)
	if h.pli < 1 || e.Stats.FramesDropped != 10 || e.Stats.Frames != 30 {
		t.Errorf("%d keyframe requests, stats %+v; want a request, 10 frames dropped, 30 written", h.pli, e.Stats)
	}
	if !near(ms(e.StartOffsetMs), time.Second, time.Millisecond) {
		t.Errorf("file starts at %d ms, want 1000 (the first keyframe)", e.StartOffsetMs)
	}
	_, blocks := readWebM(t, h.path(e.File))
	if len(blocks) != 30 || !blocks[0].key || blocks[0].pts != 0 {
		t.Errorf("%d blocks, first %+v", len(blocks), blocks[0])
	}
}

// vp8Resize rewrites the size in a VP8 keyframe header (RFC 6386 §9.1). The picture data
// stays what it was; the writer only reads the header.
func vp8Resize(f testmedia.Frame, w, h int) testmedia.Frame {
	if !f.Keyframe {
		return f
	}
	d := append([]byte(nil), f.Data...)
	d[6], d[7] = byte(w), byte(w>>8)
	d[8], d[9] = byte(h), byte(h>>8)
	f.Data = d
	return f
}

// TestResolutionChangeSameFile: VP8 that changes size at a keyframe continues in the same
// WebM file (the decoder follows the in-band change); the manifest and the track header
// give the largest size.
func TestResolutionChangeSameFile(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.VP8)
	var seq []testmedia.Frame
	seq = append(seq, frames...)
	for _, f := range frames {
		seq = append(seq, vp8Resize(f, 640, 480))
	}
	h.run(vp8Info(), vp8Stream().media(t, seq, base, 0, 6*time.Second-time.Millisecond, nil))
	m := h.close()
	files := filesOf(m, "")
	if len(files) != 1 {
		t.Fatalf("want one file, got %+v", files)
	}
	e := files[0]
	checkEntry(t, h, e)
	w, blocks := readWebM(t, h.path(e.File))
	v := w.Segment.Tracks.TrackEntry[0].Video
	if e.CodecParams.Width != 640 || e.CodecParams.Height != 480 || v == nil || v.PixelWidth != 640 || v.PixelHeight != 480 {
		t.Errorf("manifest %dx%d, track header %+v; want 640x480", e.CodecParams.Width, e.CodecParams.Height, v)
	}
	if len(blocks) != 90 || !near(ms(e.DurationMs), 6*time.Second, 5*time.Millisecond) {
		t.Errorf("%d blocks, %d ms; want 90 frames over 6 s", len(blocks), e.DurationMs)
	}
}

// h264Level rewrites level_idc in every SPS of an access unit: new parameter sets.
func h264Level(f testmedia.Frame, level byte) testmedia.Frame {
	d := append([]byte(nil), f.Data...)
	for i := 0; i+7 < len(d); i++ {
		if bytes.Equal(d[i:i+4], []byte{0, 0, 0, 1}) && d[i+4]&0x1f == 7 {
			d[i+7] = level
		}
	}
	f.Data = d
	return f
}

// TestH264NewParametersNewPart: H.264 parameter sets live in the Matroska track header,
// so a changed SPS continues as the next part of the same logical track.
func TestH264NewParametersNewPart(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.H264)
	var seq []testmedia.Frame
	seq = append(seq, frames...)
	for _, f := range frames {
		seq = append(seq, h264Level(f, 31))
	}
	h.run(h264Info(), h264Stream().media(t, seq, base, 0, 6*time.Second-time.Millisecond, nil))
	m := h.close()
	files := filesOf(m, "")
	if len(files) != 2 {
		t.Fatalf("want two parts, got %+v", files)
	}
	for _, e := range files {
		checkEntry(t, h, e)
		if !strings.HasSuffix(e.File, ".mkv") || e.Codec != "h264" {
			t.Errorf("%s: codec %s", e.File, e.Codec)
		}
		if _, blocks := readWebM(t, h.path(e.File)); len(blocks) != 45 {
			t.Errorf("%s: %d blocks, want 45", e.File, len(blocks))
		}
	}
	if files[0].EndReason != "codec parameters changed" || files[1].Part != 2 || !near(ms(files[1].StartOffsetMs), 3*time.Second, time.Millisecond) {
		t.Errorf("parts %+v", files)
	}
}

// TestVideoWithoutKeyframeIsReported: a camera whose key frame never comes has no file,
// and the manifest says so instead of leaving no trace of it.
func TestVideoWithoutKeyframeIsReported(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.VP8)
	// Frames 5 to 14 only: delta frames, the next key frame (frame 15, at 1 s) never sent.
	evs := vp8Stream().media(t, frames, base, 5*time.Second/15-time.Millisecond, time.Second-time.Millisecond, nil)
	h.run(vp8Info(), evs)
	m := h.close()
	if files := filesOf(m, ""); len(files) != 0 {
		t.Fatalf("a file was written without a key frame: %+v", files)
	}
	if len(m.Warnings) != 1 || !strings.Contains(m.Warnings[0], "camera vp8 track received") || !strings.Contains(m.Warnings[0], "no key frame arrived") {
		t.Errorf("warnings = %q, want one saying the camera had no key frame", m.Warnings)
	}
}
