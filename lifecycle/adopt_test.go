package lifecycle

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// TestManifestCopiesStoreOnlyChanges: snapshot stores a live recording's manifest when
// its bytes changed since the last copy, not every time; a copy the store failed to take
// is stored at the next snapshot; a recording that stops being live here is forgotten, so
// it is stored again if it comes back.
func TestManifestCopiesStoreOnlyChanges(t *testing.T) {
	e := newEnv(t, nil)
	puts, store := newFakeS3(t)
	e.lc.s3 = store
	f := newFleet(e.lc, "me")
	ctx := context.Background()
	s := e.start(t, recorder.KindMesh)
	stored := func(step string, s *recorder.Session) {
		t.Helper()
		f.snapshot(ctx)
		got := puts.takeManifests()
		if s == nil {
			if len(got) != 0 {
				t.Fatalf("%s: stored %d unchanged manifest copies", step, len(got))
			}
			return
		}
		want, _ := json.MarshalIndent(s.Manifest(), "", "  ")
		if len(got) != 1 || !bytes.Equal(got[0], want) {
			t.Fatalf("%s: stored %d copies, want the manifest as it is now, once", step, len(got))
		}
	}
	stored("the first snapshot", s)
	stored("a snapshot without a change", nil)
	s.AddMarker("@alice:x", "a marker", e.clock().Add(time.Second))
	stored("a snapshot after a marker", s)
	stored("the next snapshot", nil)

	// The store fails once: the change is stored at the next snapshot.
	s.AddMarker("@alice:x", "another", e.clock().Add(2*time.Second))
	puts.setDown(true)
	f.snapshot(ctx)
	puts.setDown(false)
	stored("a snapshot after a failed one", s)

	// No longer live here (the copies forget it), then live again: stored again.
	e.lc.mu.Lock()
	folder := filepath.Base(s.Folder())
	lr := e.lc.live[folder]
	delete(e.lc.live, folder)
	e.lc.mu.Unlock()
	if lr == nil {
		t.Fatalf("the recording is not live under %s", folder)
	}
	stored("a snapshot without the recording", nil)
	e.lc.mu.Lock()
	e.lc.live[folder] = lr
	e.lc.mu.Unlock()
	stored("a snapshot with the recording back", s)
}
