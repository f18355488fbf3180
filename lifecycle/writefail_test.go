package lifecycle

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// A full disk makes every track of a call fail together: the room hears of it once, in
// words (no path, no Go error), and once more when the last track writes again; a later
// outage is told again.
func TestWriteOutageToldOncePerRecording(t *testing.T) {
	e := newEnv(t, nil)
	s := e.start(t, "group")
	e.advance(90 * time.Second)
	full := fmt.Errorf("write %s: %w", filepath.Join(s.Folder(), "a.ogg"), syscall.ENOSPC)
	hooks := e.lc.Hooks()
	hooks.OnWriteError(s, recorder.FileEntry{File: "a.ogg"}, full)
	hooks.OnWriteError(s, recorder.FileEntry{File: "b.webm"}, full)
	hooks.OnWriteResumed(s, recorder.FileEntry{File: "a.part2.ogg"}, 5*time.Second)
	e.lc.telling.Wait()
	said := e.chat.texts("!r:x")
	if len(said) != 1 || !strings.Contains(said[0], "the recorder's disk is full") || !strings.Contains(said[0], "gap from 1:30 on") || strings.Contains(said[0], s.Folder()) {
		t.Fatalf("while two tracks fail: %q", said)
	}
	hooks.OnWriteResumed(s, recorder.FileEntry{File: "b.part2.webm"}, 6*time.Second)
	e.lc.telling.Wait()
	said = e.chat.texts("!r:x")
	if len(said) != 2 || !strings.Contains(said[1], "Writing works again") || !strings.Contains(said[1], "0:06") {
		t.Fatalf("once both write again: %q", said)
	}
	hooks.OnWriteError(s, recorder.FileEntry{File: "a.part2.ogg"}, fmt.Errorf("write: %w", syscall.EIO))
	e.lc.telling.Wait()
	if said = e.chat.texts("!r:x"); len(said) != 3 || !strings.Contains(said[2], "reports errors") {
		t.Fatalf("a second outage: %q", said)
	}
}

// The recorder writes a new part's entry to disk within the flush interval, so a crash
// can leave a row the manifest does not list: kept when its file exists, failed_write
// (nothing to upload or wait for) when it was never created.
func TestRecoverMarksUnlistedParts(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	s := e.start(t, "group")
	folder := filepath.Base(s.Folder())
	e.lc.flushRows(ctx, folder)
	rec, err := e.lc.db.RecordingByFolder(ctx, folder)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ghost.ogg", "kept.ogg"} {
		if err := e.lc.db.SavePart(ctx, &storage.Part{RecordingID: rec.ID, File: f, Track: f, Part: 1, UserID: string(alice), Kind: "audio", Codec: "opus", Status: storage.PartStarted}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.Folder(), "kept.ogg"), []byte("OggS"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The process dies here: a new lifecycle on the same database starts.
	e.lc.Recover(ctx, nil)
	parts, err := e.lc.db.Parts(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]storage.PartStatus{}
	for _, p := range parts {
		got[p.File] = p.Status
	}
	if got["ghost.ogg"] != storage.PartFailedWrite || got["kept.ogg"] != storage.PartInterrupted {
		t.Errorf("rows after the restart: %v", got)
	}
}
