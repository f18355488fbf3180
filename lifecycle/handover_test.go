package lifecycle

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
	"github.com/matrix-recorder/matrix-recorder/storage/s3store"
	"github.com/rs/zerolog"
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

// An instance at its limit of group recordings waits fullWait before taking a room over,
// like before a new call (busyWait serves both).
func TestAdoptWaitAtTheLimit(t *testing.T) {
	uri := startPostgres(t)
	owner, heir := fleetMember(t, uri, "owner"), fleetMember(t, uri, "heir")
	busyWith(heir, heir.cfg.Calls.MaxGroupRecordings, recorder.KindMesh)
	busyWith(heir, 1, recorder.KindOneToOne)
	deadOwnersRoom(t, owner, "!r:example.org", "20261206T120000Z_r_element-call", false)
	expired, err := heir.db.ExpiredLeases(context.Background(), storage.WatchResource(""))
	if err != nil || len(expired) != 1 {
		t.Fatalf("expired: %+v %v", expired, err)
	}
	if w := heir.fleet.adoptWait(context.Background(), expired); w != heir.fleet.full {
		t.Errorf("at its limit of group recordings the wait is %s; want %s", w, heir.fleet.full)
	}
	if w := heir.fleet.loadWait(recorder.KindOneToOne); w != min(time.Duration(heir.cfg.Calls.MaxGroupRecordings+1)*perRecordingWait, maxLoadWait) {
		t.Errorf("for a 1:1 call (below that limit) the wait is %s", w)
	}
}

// The end of a clean stop (handOver) hands the rooms of the recordings it paused over
// with the store's hand-over: the lease says so, and an instance that has only just
// reached the database again (which leaves expired leases to their holders for a lease
// period) takes the room at once.
func TestPausedRoomHandedOverAtTheEnd(t *testing.T) {
	uri := startPostgres(t)
	owner := fleetMember(t, uri, "owner")
	rm := id.RoomID("!paused:example.org")
	folder := "20261206T120000Z_paused_element-call"
	roomWithRecording(t, owner, rm, folder)
	ctx := context.Background()
	r, err := owner.db.RecordingByFolder(ctx, folder)
	if err != nil {
		t.Fatal(err)
	}
	r.Status = storage.RecordingPaused
	if err := owner.db.UpdateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	owner.mu.Lock()
	owner.pausedHere = append(owner.pausedHere, folder)
	owner.mu.Unlock()
	owner.fleet.handOver(ctx)
	l, err := owner.db.Lease(ctx, storage.WatchResource(string(rm)))
	if err != nil || l.Owner != owner.fleet.owner || !l.HandedOver() {
		t.Fatalf("the paused room's lease after the stop: %+v %v; want the stopped instance's, handed over", l, err)
	}
	heir := fleetMember(t, uri, "heir")
	heir.fleet.dbUpFor(context.DeadlineExceeded) // its last look failed
	heir.fleet.adopt(ctx)
	calls := heir.calls.(*stopCalls)
	calls.mu.Lock()
	defer calls.mu.Unlock()
	if len(calls.resumed) != 1 || calls.resumed[0].Room != rm {
		t.Fatalf("resumed %+v; want the paused room at once", calls.resumed)
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

// stopAtOnce runs the first step of a clean stop (HandOverLive) on every instance at the
// same time, as their signal handlers would, with a shutdown time that leaves a few
// seconds to wait for a taker.
func stopAtOnce(t *testing.T, lcs ...*Lifecycle) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), handOverReserve+4*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, lc := range lcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lc.HandOverLive(ctx)
		}()
	}
	wg.Wait()
}

// liveGroupRecording makes lc record a group call in rm as far as a hand-over goes: the
// room's lease, the recording's row, and a live session (on store, an object store) with
// one track being written (its source holds after a few packets until the test ends).
func liveGroupRecording(t *testing.T, lc *Lifecycle, rm id.RoomID, store *s3store.Store) {
	t.Helper()
	s := liveGroupSession(t, lc, rm, store)
	src, err := testmedia.NewOpusRTP(testmedia.Tone440, 0)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := s.AddTrack(recorder.TrackInfo{UserID: string(alice), DeviceID: "DEV", MimeType: "audio/opus", ClockRate: 48000, Channels: 2, PayloadType: 111, SSRC: 42})
	if err != nil {
		t.Fatal(err)
	}
	held := &heldSource{RTPSource: src, after: 10, release: make(chan struct{})}
	ran := make(chan error, 1)
	go func() { ran <- tr.Run(context.Background(), recorder.Packets(held)) }()
	t.Cleanup(func() {
		close(held.release)
		<-ran
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if m := s.Manifest(); len(m.Tracks) == 1 && m.Tracks[0].Status == recorder.StatusRecording {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the track did not start")
		}
	}
}

// liveGroupSession is liveGroupRecording without a track (nobody sends media yet).
func liveGroupSession(t *testing.T, lc *Lifecycle, rm id.RoomID, store *s3store.Store) *recorder.Session {
	t.Helper()
	ctx := context.Background()
	lc.s3 = store
	if ok, err := lc.TakeRoom(ctx, rm); !ok || err != nil {
		t.Fatalf("take: %v %v", ok, err)
	}
	rec, err := recorder.New(recorder.Options{Dir: lc.cfg.Recordings.Dir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s, err := rec.Start(ctx, recorder.CallInfo{CallID: "c-" + string(rm), RoomID: string(rm), Kind: recorder.KindLiveKit})
	if err != nil {
		t.Fatal(err)
	}
	folder := filepath.Base(s.Folder())
	r := &storage.Recording{RoomID: string(rm), CallID: "c-" + string(rm), Kind: string(recorder.KindLiveKit), Folder: folder, Status: storage.RecordingActive}
	if err := lc.db.CreateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = s.Close(context.Background()) }) // after the track's end (cleanups run last first)
	lc.mu.Lock()
	lc.live[folder] = &liveRec{sess: s, folder: folder, roomID: rm, kind: recorder.KindLiveKit, id: r.ID}
	lc.mu.Unlock()
	return s
}

// roomWithRecording makes lc record a group call in rm (its room lease and its row).
func roomWithRecording(t *testing.T, lc *Lifecycle, rm id.RoomID, folder string) {
	t.Helper()
	ctx := context.Background()
	if ok, err := lc.TakeRoom(ctx, rm); !ok || err != nil {
		t.Fatalf("take: %v %v", ok, err)
	}
	r := &storage.Recording{RoomID: string(rm), CallID: "c-" + folder, Kind: string(recorder.KindLiveKit), Folder: folder, Status: storage.RecordingActive}
	if err := lc.db.CreateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
}

// takerWritesParts makes lc's call backend, when it resumes a recording, write a part row
// of its own for each track of the recording, as a taker's first frames do.
func takerWritesParts(t *testing.T, lc *Lifecycle) {
	lc.calls.(*stopCalls).resumeReq = func(req ResumeRequest) {
		ctx := context.Background()
		r, err := lc.db.RecordingByFolder(ctx, req.Folder)
		if err != nil || req.Manifest == nil {
			t.Errorf("the taker's resume of %s: %v", req.Folder, err)
			return
		}
		for _, tr := range req.Manifest.Tracks {
			p := &storage.Part{RecordingID: r.ID, File: "taker-" + tr.File, Track: tr.Track, Part: 2, UserID: tr.UserID, Kind: tr.Kind,
				Codec: tr.Codec, Source: tr.Source, Status: storage.PartActive}
			if err := lc.db.SavePart(ctx, p); err != nil {
				t.Error(err)
			}
		}
	}
}

// Two instances stopped at the same time while a third runs: each stops counting as
// running before it looks for a taker, and a stopping instance takes nothing over, so both
// hand their rooms to the third (their manifests' copies stored first), which takes both
// while they still record; neither takes the other's.
func TestTwoStoppingAtOnceHandOverToTheThird(t *testing.T) {
	uri := startPostgres(t)
	a, b, c := fleetMember(t, uri, "a"), fleetMember(t, uri, "b"), fleetMember(t, uri, "c")
	s3, store := newFakeS3(t)
	roomA, roomB := id.RoomID("!a:example.org"), id.RoomID("!b:example.org")
	liveGroupRecording(t, a, roomA, store)
	liveGroupRecording(t, b, roomB, store)
	c.s3 = store
	takerWritesParts(t, c)
	ctx := context.Background()

	// The third looks for rooms to take over as its loop does, and so do the stopping
	// ones (which must take nothing).
	stop := make(chan struct{})
	looked := make(chan struct{})
	go func() {
		defer close(looked)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			for _, lc := range []*Lifecycle{a, b, c} {
				lc.fleet.adopt(ctx)
			}
		}
	}()
	stopAtOnce(t, a, b)
	close(stop)
	<-looked
	if owners, err := c.db.LiveOwners(ctx, storage.InstanceResource("")); err != nil || len(owners) != 1 || owners[0] != c.fleet.owner {
		t.Fatalf("running instances after two stopped: %v %v; want only %s", owners, err, c.fleet.owner)
	}
	for _, lc := range []*Lifecycle{a, b} {
		if got := lc.calls.(*stopCalls); len(got.resumed) != 0 {
			t.Fatalf("a stopping instance took over %+v", got.resumed)
		}
	}
	calls := c.calls.(*stopCalls)
	calls.mu.Lock()
	var took []string
	for _, r := range calls.resumed {
		took = append(took, string(r.Room))
	}
	calls.mu.Unlock()
	slices.Sort(took)
	if strings.Join(took, " ") != string(roomA)+" "+string(roomB) {
		t.Errorf("the running instance took over %q; want both rooms", took)
	}
	for _, rm := range []id.RoomID{roomA, roomB} {
		if l, err := c.db.Lease(ctx, storage.WatchResource(string(rm))); err != nil || l.Owner != c.fleet.owner {
			t.Errorf("%s's lease after the stops: %+v %v; want the running instance's", rm, l, err)
		}
	}
	if puts := s3.putsOf(recorder.ManifestFile); len(puts) != 2 {
		t.Errorf("manifest copies stored for the hand-over: %q; want one per room", puts)
	}
}

// Two instances stopped at the same time with no third: neither counts the other as
// running, or, when one looked before the other stopped counting, nobody takes the room
// it handed over and it takes it back; either way both keep their rooms with a lease not
// marked handed over (their recordings pause, as a lone instance's do), and neither takes
// the other's.
func TestTwoStoppingAtOnceWithNoOtherPause(t *testing.T) {
	uri := startPostgres(t)
	a, b := fleetMember(t, uri, "a"), fleetMember(t, uri, "b")
	_, store := newFakeS3(t)
	roomA, roomB := id.RoomID("!a:example.org"), id.RoomID("!b:example.org")
	liveGroupRecording(t, a, roomA, store)
	liveGroupRecording(t, b, roomB, store)
	ctx := context.Background()

	stopAtOnce(t, a, b)
	for lc, rm := range map[*Lifecycle]id.RoomID{a: roomA, b: roomB} {
		l, err := lc.db.Lease(ctx, storage.WatchResource(string(rm)))
		if err != nil || l.Owner != lc.fleet.owner || l.HandedOver() {
			t.Errorf("%s's room lease after both stopped: %+v %v; want still its own, not handed over", lc.instance, l, err)
		}
		if !lc.fleet.holds(rm) {
			t.Errorf("%s gave its room up", lc.instance)
		}
		if lc.fleet.wasHanded(lc.liveFolders()[0]) {
			t.Errorf("%s's recording is still marked handed over", lc.instance)
		}
		lc.fleet.adopt(ctx)
		if got := lc.calls.(*stopCalls); len(got.resumed) != 0 {
			t.Errorf("%s took over %+v while stopping", lc.instance, got.resumed)
		}
	}
}

// liveFolders lists lc's live recordings' folders.
func (lc *Lifecycle) liveFolders() []string {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	var out []string
	for folder := range lc.live {
		out = append(out, folder)
	}
	return out
}

// A stopping instance that hands its room over while another runs, but nobody takes it
// within the wait, takes the room back: its lease is its own again and not marked handed
// over, and its recording's manifest copies are its own to store again.
func TestHandOverNotTakenIsTakenBack(t *testing.T) {
	t.Run("with a track", func(t *testing.T) { testHandOverNotTakenIsTakenBack(t, liveGroupRecording) })
	// No track is written (nobody sends media): no part row to wait for either, but the
	// room is not left to nobody.
	t.Run("without tracks", func(t *testing.T) {
		testHandOverNotTakenIsTakenBack(t, func(t *testing.T, lc *Lifecycle, rm id.RoomID, store *s3store.Store) {
			liveGroupSession(t, lc, rm, store)
		})
	})
}

func testHandOverNotTakenIsTakenBack(t *testing.T, record func(*testing.T, *Lifecycle, id.RoomID, *s3store.Store)) {
	uri := startPostgres(t)
	a, b := fleetMember(t, uri, "a"), fleetMember(t, uri, "b")
	s3, store := newFakeS3(t)
	rm := id.RoomID("!a:example.org")
	record(t, a, rm, store)
	ctx := context.Background()

	stopAtOnce(t, a) // b runs, but does not look for rooms to take over
	if puts := s3.putsOf(recorder.ManifestFile); len(puts) != 1 {
		t.Errorf("manifest copies stored for the hand-over: %q; want one", puts)
	}
	l, err := a.db.Lease(ctx, storage.WatchResource(string(rm)))
	if err != nil || l.Owner != a.fleet.owner || l.HandedOver() {
		t.Errorf("the room's lease after nobody took it: %+v %v; want a's again, not handed over", l, err)
	}
	if !a.fleet.holds(rm) || a.fleet.wasHanded(a.liveFolders()[0]) {
		t.Errorf("a holds the room: %v; its recording still marked handed over: %v", a.fleet.holds(rm), a.fleet.wasHanded(a.liveFolders()[0]))
	}
	if got := b.calls.(*stopCalls); len(got.resumed) != 0 {
		t.Errorf("b took over %+v", got.resumed)
	}
}

// A snapshot whose manifest copy is on its way to the store when the room is handed over
// does not land after the hand-over's copy: the taker starts from the manifest as the
// hand-over stored it. (Without the hand-over waiting for the snapshot, the test sees the
// hand-over's PUT while the snapshot's is held; the bound on that wait only decides
// whether the old behaviour is caught, never fails a correct hand-over.)
func TestSnapshotInFlightDoesNotOverwriteTheHandOversCopy(t *testing.T) {
	uri := startPostgres(t)
	a := fleetMember(t, uri, "a")
	s3, store := newFakeS3(t)
	rm := id.RoomID("!a:example.org")
	s := liveGroupSession(t, a, rm, store)
	ctx := context.Background()
	key := store.Key(filepath.Base(s.Folder()), recorder.ManifestFile)
	inFlight, release, handOverPut := make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
	var puts atomic.Int32
	s3.setBeforePut(func(k string) {
		if k != key {
			return
		}
		if puts.Add(1) == 1 {
			close(inFlight) // the snapshot's copy, held until released
			<-release
			return
		}
		select {
		case handOverPut <- struct{}{}:
		default:
		}
	})
	snapshotted := make(chan struct{})
	go func() {
		defer close(snapshotted)
		a.fleet.snapshot(ctx)
	}()
	<-inFlight
	s.AddMarker(string(alice), "after the snapshot", time.Now()) // the hand-over stores a newer manifest
	handed := make(chan []*handing, 1)
	go func() { handed <- a.fleet.handOverRooms(ctx) }()
	select {
	case <-handOverPut:
	case <-time.After(time.Second):
	}
	close(release)
	<-snapshotted
	if hs := <-handed; len(hs) != 1 {
		t.Fatalf("handed over %d rooms, want 1", len(hs))
	}
	want, err := json.MarshalIndent(s.Manifest(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if got := s3.object(key); !bytes.Equal(got, want) {
		t.Errorf("the manifest's copy after the hand-over is not the hand-over's (%d bytes, want %d): an older snapshot landed over it", len(got), len(want))
	}
}
