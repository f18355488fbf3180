package upload

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
	"github.com/matrix-recorder/matrix-recorder/recorder/mkvwriter"
)

// writeWebM writes about n bytes of VP8 (real key frame headers, padded frames) with the
// recorder's writer, calling step after every flush with the file's size so far.
func writeWebM(t *testing.T, path string, n int, step func(size int64)) {
	t.Helper()
	frames, err := testmedia.VideoFrames(testmedia.VP8)
	if err != nil {
		t.Fatal(err)
	}
	w, err := mkvwriter.New(path, mkvwriter.VP8, media.TrackParams{ClockRate: 90000})
	if err != nil {
		t.Fatal(err)
	}
	pad := make([]byte, 60<<10)
	written := 0
	for i := 0; written < n; i++ {
		f := frames[i%len(frames)]
		data := append(append([]byte(nil), f.Data...), pad...)
		if err := w.WriteFrame(media.Frame{Data: data, PTS: time.Duration(i) * time.Second / 15, Keyframe: f.Keyframe}); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		written += len(data)
		if i%7 == 0 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			fi, _ := os.Stat(path)
			step(fi.Size())
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMKVTrackerPredictsFinalBytes: the bytes the tracker lets go while a real WebM grows,
// patched as it says, are the bytes of the finished file past its header.
func TestMKVTrackerPredictsFinalBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.webm")
	tr := &mkvTracker{}
	var predicted []byte
	var headerEnd int64 = -1
	writeWebM(t, path, 12<<20, func(size int64) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		tr.advance(f, size)
		if tr.bad {
			t.Fatal("tracker does not understand the writer's WebM")
		}
		safe := tr.safeEnd(size)
		if safe > size {
			t.Fatalf("safe end %d beyond the file (%d)", safe, size)
		}
		buf := make([]byte, safe)
		if _, err := f.ReadAt(buf, 0); err != nil {
			t.Fatal(err)
		}
		tr.patch(buf, 0)
		predicted = buf
		if headerEnd < 0 && len(tr.clusters) > 0 {
			headerEnd = tr.clusters[0].sizeOff - 4
		}
	})
	final, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(predicted) < 10<<20 {
		t.Fatalf("only %d bytes could be sent before the end", len(predicted))
	}
	if !bytes.Equal(predicted[headerEnd:], final[headerEnd:len(predicted)]) {
		for i := headerEnd; i < int64(len(predicted)); i++ {
			if predicted[i] != final[i] {
				t.Fatalf("prediction differs from the final file at %d (header ends at %d)", i, headerEnd)
			}
		}
	}
	if headerEnd > 4096 {
		t.Errorf("header region of %d bytes", headerEnd)
	}
}

// TestGrowingWebMSendsPartsOnce: uploading a real WebM while it is written sends every
// part once, except the first (its header changes at Close) and the last.
func TestGrowingWebMSendsPartsOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.uploader(ctx, nil)
	defer u.Close(ctx)
	path := e.path("v.webm")
	u.Follow(e.rec, e.folder, "v.webm")
	writeWebM(t, path, 17<<20, func(size int64) {
		// Let the uploader keep up, as a real call (seconds between flushes) does.
		want := int(size/MinPartSize) - 1
		deadline := time.Now().Add(2 * time.Second)
		for want > 0 && e.store.sent(want) == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	})
	size, _ := e.finish(t, u, "v.webm")
	parts := int((size + MinPartSize - 1) / MinPartSize)
	for n := 2; n < parts; n++ {
		if got := e.store.sent(n); got != 1 {
			t.Errorf("part %d of %d sent %d times, want once", n, parts, got)
		}
	}
	if e.store.sent(1) > 2 {
		t.Errorf("part 1 sent %d times", e.store.sent(1))
	}
}

// FuzzMKVTracker: any bytes, grown in any steps, never panic the tracker or make it let
// go of bytes past the end, and patches stay inside the buffer.
func FuzzMKVTracker(f *testing.F) {
	f.Add([]byte{0x1A, 0x45, 0xDF, 0xA3, 0x80, 0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0x43, 0xB6, 0x75, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xE7, 0x81, 0x00, 0xA3, 0x82, 1, 2, 0x1F, 0x43, 0xB6, 0x75, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		tr := &mkvTracker{}
		r := bytes.NewReader(data)
		s := int64(step%32) + 1
		for size := s; ; size += s {
			size = min(size, int64(len(data)))
			tr.advance(r, size)
			if end := tr.safeEnd(size); end > size || end < 0 {
				t.Fatalf("safe end %d for size %d", end, size)
			}
			if size == int64(len(data)) {
				break
			}
		}
		buf := append([]byte(nil), data...)
		tr.patch(buf[len(buf)/2:], int64(len(buf)/2))
	})
}
