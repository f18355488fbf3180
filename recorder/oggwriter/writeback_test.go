package oggwriter

import (
	"path/filepath"
	"testing"

	"github.com/matrix-recorder/matrix-recorder/internal/pagecache"
)

// Flush of a file the writer owns, without WithSyncOnFlush, starts writing the file to
// disk: nothing of it is left dirty for the fsync of Close, which at the end of many
// calls at once would otherwise write up to 30 s of each one's media in one go.
func TestFlushStartsWriteback(t *testing.T) {
	w, err := New(filepath.Join(t.TempDir(), "a.ogg"), opusParams())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	writeFrames(t, w, fixturePackets(t, "sine440.ogg"), 0, nil)
	pagecache.RequireDirty(t, w.f)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, err := pagecache.Dirty(w.f); err != nil || n != 0 {
		t.Fatalf("after Flush: %d dirty pages, %v", n, err)
	}
}
