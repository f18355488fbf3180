package mkvwriter

import (
	"path/filepath"
	"testing"

	"github.com/matrix-recorder/matrix-recorder/internal/pagecache"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// Flush of a file the writer owns, without WithSyncOnFlush, starts writing the file to
// disk: nothing of it is left dirty for the fsync of Close, which at the end of many
// calls at once would otherwise write up to 30 s of each one's media in one go.
func TestFlushStartsWriteback(t *testing.T) {
	w, err := New(filepath.Join(t.TempDir(), "v.webm"), mkvCodec(media.CodecVP8), media.TrackParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i, f := range readIVF(t, "vp8_320x240.ivf", media.CodecVP8) {
		if err := w.WriteFrame(f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	// Part of it reached the file already (the clusters before the last), the rest does
	// with Flush.
	pagecache.RequireDirty(t, w.file)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, err := pagecache.Dirty(w.file); err != nil || n != 0 {
		t.Fatalf("after Flush: %d dirty pages, %v", n, err)
	}
}
