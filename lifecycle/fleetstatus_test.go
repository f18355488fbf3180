package lifecycle

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/storage"
)

// !status on a shared database names the instance that holds each live recording's room
// lease and says when that lease ran out; finished recordings and other rooms are left
// out.
func TestRecordingOwners(t *testing.T) {
	ctx := context.Background()
	db, err := storage.OpenConfig(ctx, storage.Config{Engine: storage.Postgres, URI: startPostgres(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	lc := &Lifecycle{log: zerolog.Nop(), db: db, live: map[string]*liveRec{"f3": {folder: "f3"}}}
	rec := func(room, folder string, status storage.RecordingStatus) *storage.Recording {
		r := &storage.Recording{RoomID: room, CallID: folder, Kind: "mesh", Folder: folder, StartedAt: time.Now()}
		if err := db.CreateRecording(ctx, r); err != nil {
			t.Fatal(err)
		}
		r.Status = status
		if err := db.UpdateRecording(ctx, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Recordings belong to the instance that holds their room's lease (fleet.go).
	byB := rec("!a:x", "f1", storage.RecordingActive)
	local := rec("!a:x", "f3", storage.RecordingStarted) // written here
	rec("!a:x", "f5", storage.RecordingNotified)
	unleased := rec("!d:x", "f2", storage.RecordingActive)
	expired := rec("!c:x", "f4", storage.RecordingActive)
	rec("!b:x", "f6", storage.RecordingActive)
	if _, err := db.AcquireLease(ctx, storage.WatchResource("!a:x"), "rec-b/12ab", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AcquireLease(ctx, storage.WatchResource("!c:x"), "rec-c", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	got := map[string]RecordingOwner{}
	for _, room := range []string{"!a:x", "!c:x", "!d:x"} {
		owners, err := lc.RecordingOwners(ctx, room)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range owners {
			got[o.ID] = o
		}
	}
	if len(got) != 4 {
		t.Fatalf("owners %+v: want the four live recordings of the three rooms", got)
	}
	for _, c := range []struct {
		r        *storage.Recording
		instance string
		expired  bool
		local    bool
	}{{byB, "rec-b", false, false}, {local, "rec-b", false, true}, {unleased, "", false, false}, {expired, "rec-c", true, false}} {
		o := got[c.r.ID]
		if o.Instance != c.instance || o.Expired != c.expired || o.Local != c.local || o.Folder != c.r.Folder {
			t.Errorf("%s: %+v, want instance %q expired %v local %v", c.r.Folder, o, c.instance, c.expired, c.local)
		}
	}
}
