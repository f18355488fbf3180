package lifecycle

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// deadOwnersRoom makes owner record in rm and stop renewing the room's lease, which has
// run out; handedOver: it handed the room over (a clean stop) instead.
func deadOwnersRoom(t *testing.T, owner *Lifecycle, rm id.RoomID, folder string, handedOver bool) *storage.Recording {
	t.Helper()
	ctx := context.Background()
	if ok, err := owner.TakeRoom(ctx, rm); !ok || err != nil {
		t.Fatalf("take: %v %v", ok, err)
	}
	r := &storage.Recording{RoomID: string(rm), CallID: "c-" + folder, Kind: string(recorder.KindLiveKit), Folder: folder, Status: storage.RecordingActive}
	if err := owner.db.CreateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	owner.fleet.mu.Lock()
	owner.fleet.rooms[rm].k.Stop()
	delete(owner.fleet.rooms, rm)
	owner.fleet.mu.Unlock()
	var err error
	if handedOver {
		_, err = owner.db.HandOverLease(ctx, storage.WatchResource(string(rm)), owner.fleet.owner)
	} else {
		_, err = owner.db.RenewLease(ctx, storage.WatchResource(string(rm)), owner.fleet.owner, time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	return r
}

// After the database was unreachable (down or restarted for every instance), an instance
// does not take over the rooms whose leases ran out meanwhile until the database has
// answered it for a whole lease period: their holders could not renew either, renew
// within a third of the lease once it is back, and go on recording (one recording, one
// summary). A room handed over at a clean stop is taken at once.
func TestAdoptionAfterADatabaseOutage(t *testing.T) {
	uri := startPostgres(t)
	owner := fleetMember(t, uri, "owner")
	ctx := context.Background()
	deadOwnersRoom(t, owner, "!expired:example.org", "20261206T120000Z_expired_element-call", false)
	deadOwnersRoom(t, owner, "!handed:example.org", "20261206T120001Z_handed_element-call", true)
	heir := fleetMember(t, uri, "heir")
	calls := heir.calls.(*stopCalls)
	heir.fleet.dbUpFor(context.DeadlineExceeded) // its last look failed: the database was down
	heir.fleet.adopt(ctx)
	calls.mu.Lock()
	resumed := append([]ResumeRequest(nil), calls.resumed...)
	calls.mu.Unlock()
	if len(resumed) != 1 || resumed[0].Room != "!handed:example.org" {
		t.Fatalf("right after the outage it resumed %+v; want only the handed-over room", resumed)
	}
	if !strings.Contains(resumed[0].Manifest.Interruption, "handed the recording over") {
		t.Errorf("the handed-over recording's interruption: %q", resumed[0].Manifest.Interruption)
	}
	if l, err := heir.db.Lease(ctx, storage.WatchResource("!expired:example.org")); err != nil || l.Owner != owner.fleet.owner {
		t.Errorf("the expired room's lease: %+v %v; want it left to its holder", l, err)
	}
	// The holder did not come back within a lease period: the room is taken.
	heir.fleet.dbMu.Lock()
	heir.fleet.dbUpSince = time.Now().Add(-heir.fleet.ttl)
	heir.fleet.dbMu.Unlock()
	heir.fleet.adopt(ctx)
	calls.mu.Lock()
	defer calls.mu.Unlock()
	if len(calls.resumed) != 2 || calls.resumed[1].Room != "!expired:example.org" {
		t.Fatalf("a lease period after the outage it resumed %+v; want the expired room too", calls.resumed)
	}
}

// The holder of a room lease that ran out during an outage renews it when the database
// is back (nobody took it): the keeper goes on, and the room stays its.
func TestLeaseRenewedAfterItRanOutUnTaken(t *testing.T) {
	uri := startPostgres(t)
	lc := fleetMember(t, uri, "holder")
	ctx := context.Background()
	rm := id.RoomID("!outage:example.org")
	if ok, err := lc.TakeRoom(ctx, rm); !ok || err != nil {
		t.Fatalf("take: %v %v", ok, err)
	}
	// As if no renewal went through for longer than the lease.
	if _, err := lc.db.RenewLease(ctx, storage.WatchResource(string(rm)), lc.fleet.owner, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(lc.fleet.ttl/3 + time.Second)
	if !lc.fleet.holds(rm) {
		t.Fatal("the holder gave the room up")
	}
	if l, err := lc.db.LiveLease(ctx, storage.WatchResource(string(rm))); err != nil || l.Owner != lc.fleet.owner {
		t.Errorf("after the next renewal: %+v %v", l, err)
	}
}

// The instance that takes over rooms whose owner stopped waits for nobody when no other
// instance runs but that owner (still listed as running, its own lease not run out), and
// a little per recording it runs when another instance could take them.
func TestAdoptWaitLeavesOutTheStoppedOwner(t *testing.T) {
	uri := startPostgres(t)
	owner := fleetMember(t, uri, "owner")
	heir := fleetMember(t, uri, "heir")
	busyWith(heir, 2, recorder.KindMesh)
	ctx := context.Background()
	deadOwnersRoom(t, owner, "!r:example.org", "20261206T120000Z_r_element-call", false)
	expired, err := heir.db.ExpiredLeases(ctx, storage.WatchResource(""))
	if err != nil || len(expired) != 1 {
		t.Fatalf("expired: %+v %v", expired, err)
	}
	if w := heir.fleet.adoptWait(ctx, expired); w != 0 {
		t.Errorf("with only the stopped owner running, the wait is %s; want none", w)
	}
	fleetMember(t, uri, "third")
	if w := heir.fleet.adoptWait(ctx, expired); w != 2*adoptPerRecording {
		t.Errorf("with a third instance running, the wait is %s; want %s", w, 2*adoptPerRecording)
	}
}

// A recording handed over while it was written: the taker's manifest lists the other
// instance's parts as that one's copy left them (interrupted, shorter); once the other
// instance finished them (their rows say saved), the taker's manifest has their real
// end, and the resume says the files overlap (interrupted_at after resumed_at).
func TestPartsFromElsewhere(t *testing.T) {
	uri := startPostgres(t)
	lc := fleetMember(t, uri, "taker")
	ctx := context.Background()
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	r := &storage.Recording{RoomID: string(room), CallID: "c", Kind: string(recorder.KindLiveKit), Folder: "20261206T120000Z_r_element-call", Status: storage.RecordingSaved}
	if err := lc.db.CreateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	handedAt, resumedAt, endedThere := t0.Add(10*time.Second), t0.Add(12*time.Second), t0.Add(14*time.Second)
	m := recorder.Manifest{Version: recorder.ManifestVersion, RoomID: string(room), StartedAt: t0, Status: recorder.StatusFinished,
		Tracks: []recorder.FileEntry{
			{File: "a-1.ogg", UserID: "@a:x", Kind: "audio", StartOffsetMs: 0, DurationMs: 9000, Status: recorder.StatusInterrupted, EndReason: "written on recorder instance rec-a, which went on writing it during the hand-over"},
			{File: "a-2.ogg", UserID: "@a:x", Kind: "audio", StartOffsetMs: 12000, DurationMs: 5000, Status: recorder.StatusComplete},
		},
		Resumes: []recorder.Resume{{InterruptedAt: handedAt, ResumedAt: resumedAt, Instance: "taker", PreviousInstance: "rec-a"}}}
	dir := filepath.Join(lc.cfg.Recordings.Dir, r.Folder)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := recorder.WriteJSONAtomic(filepath.Join(dir, recorder.ManifestFile), m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a-2.ogg"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*storage.Part{
		{RecordingID: r.ID, File: "a-1.ogg", Track: "a", Part: 1, UserID: "@a:x", Kind: "audio", Status: storage.PartSaved,
			StartedAt: t0, EndedAt: endedThere, DurationMs: 14000, Bytes: 1234, SHA256: "abc"},
		// The taker's own part: its row is not newer than its entry.
		{RecordingID: r.ID, File: "a-2.ogg", Track: "a", Part: 2, UserID: "@a:x", Kind: "audio", Status: storage.PartSaved, DurationMs: 1},
	} {
		if err := lc.db.SavePart(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	lc.partsFromElsewhere(ctx, r)
	got, err := recorder.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	a1, a2 := got.Tracks[0], got.Tracks[1]
	if a1.Status != recorder.StatusComplete || a1.DurationMs != 14000 || a1.SHA256 != "abc" || a1.Bytes != 1234 || a1.EndReason != "" ||
		a1.EndedAt == nil || !a1.EndedAt.Equal(endedThere) {
		t.Errorf("the other instance's part: %+v", a1)
	}
	if a2.DurationMs != 5000 || a2.Status != recorder.StatusComplete {
		t.Errorf("the taker's own part changed: %+v", a2)
	}
	if res := got.Resumes[0]; !res.InterruptedAt.Equal(endedThere) || !res.InterruptedAt.After(res.ResumedAt) {
		t.Errorf("the resume %+v; want interrupted_at %s, after resumed_at", res, endedThere)
	}
	if end := a1.StartOffsetMs + a1.DurationMs; a2.StartOffsetMs >= end {
		t.Errorf("no overlap: the taker's part starts at %d ms, the other's ends at %d ms", a2.StartOffsetMs, end)
	}
}
