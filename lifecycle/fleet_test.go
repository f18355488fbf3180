package lifecycle

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/metrics"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// stopCalls records the stops a lost room lease asks for.
type stopCalls struct {
	mu      sync.Mutex
	rooms   []id.RoomID
	resumed []ResumeRequest
	// onResume, when set, runs in Resume before it returns (outside mu).
	onResume func()
	// resumeReq, when set, runs in Resume with the request, before it returns.
	resumeReq func(ResumeRequest)
}

func (s *stopCalls) Stop(_ context.Context, room id.RoomID, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rooms = append(s.rooms, room)
}
func (s *stopCalls) Resume(_ context.Context, req ResumeRequest) (bool, string) {
	s.mu.Lock()
	s.resumed = append(s.resumed, req)
	hook, withReq := s.onResume, s.resumeReq
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	if withReq != nil {
		withReq(req)
	}
	return true, ""
}
func (s *stopCalls) HangUp(context.Context, id.RoomID, string) {}

func (s *stopCalls) stopped() []id.RoomID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]id.RoomID(nil), s.rooms...)
}

// fleetMember is an instance of a fleet on uri, as far as sharing the work goes.
func fleetMember(t *testing.T, uri, instanceID string) *Lifecycle {
	t.Helper()
	lc := claimant(t, uri, instanceID)
	lc.calls = &stopCalls{}
	lc.chat = &fakeChat{}
	lc.cfg.Recordings.Dir = t.TempDir()
	lc.m = metrics.New(func() metrics.Live { return metrics.Live{} }, func() (int64, bool) { return 0, false })
	if err := lc.claimDatabase(context.Background()); err != nil {
		t.Fatal(err)
	}
	// It has reached the database for long: it takes over rooms whose owner stopped
	// renewing at once (TestAdoptionAfterADatabaseOutage resets this).
	lc.fleet.dbUpSince = time.Now().Add(-time.Hour)
	t.Cleanup(func() {
		lc.fleet.handOver(context.Background())
		_ = lc.releaseClaim(context.Background())
		lc.wg.Wait()
	})
	return lc
}

// busyWith gives lc n live recordings of kind (in rooms of their own).
func busyWith(lc *Lifecycle, n int, kind recorder.Kind) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for i := 0; i < n; i++ {
		folder := fmt.Sprintf("%s-%d-%d", kind, len(lc.live), i)
		lc.live[folder] = &liveRec{folder: folder, roomID: id.RoomID("!busy-" + folder + ":example.org"), kind: kind}
	}
}

// With SQLite there is no fleet: every admission and every command is this instance's,
// at once.
func TestNoFleetOnSQLite(t *testing.T) {
	lc := &Lifecycle{cfg: config.Default(), live: map[string]*liveRec{}}
	ctx := context.Background()
	start := time.Now()
	if ok, err := lc.ClaimRoom(ctx, room, recorder.KindMesh); !ok || err != nil {
		t.Errorf("claim: %v %v", ok, err)
	}
	if ok, err := lc.TakeRoom(ctx, room); !ok || err != nil {
		t.Errorf("take: %v %v", ok, err)
	}
	if !lc.Route(ctx, room, "$e", true, recorder.KindMesh) || !lc.ClaimEvent(ctx, "$e") || lc.Fleet() {
		t.Error("a single instance does not handle everything")
	}
	lc.ReleaseRoom(ctx, room)
	if d := time.Since(start); d > time.Second {
		t.Errorf("a single instance waited %s", d)
	}
}

// Instances that try for the same rooms at once: each room is won by exactly one (raced
// by several goroutines per instance, many rooms), and the others learn it is taken.
func TestOneInstanceWinsEachRoom(t *testing.T) {
	uri := startPostgres(t)
	members := []*Lifecycle{fleetMember(t, uri, "rec-a"), fleetMember(t, uri, "rec-b"), fleetMember(t, uri, "rec-c")}
	ctx := context.Background()
	const rooms = 12
	var wins [rooms]atomic.Int32
	var wg sync.WaitGroup
	for r := 0; r < rooms; r++ {
		for _, lc := range members {
			for try := 0; try < 2; try++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ok, err := lc.ClaimRoom(ctx, id.RoomID(fmt.Sprintf("!r%d:example.org", r)), recorder.KindMesh)
					if err != nil {
						t.Error(err)
					}
					if ok && try == 0 {
						wins[r].Add(1)
					}
				}()
			}
		}
	}
	wg.Wait()
	for r := range wins {
		room := id.RoomID(fmt.Sprintf("!r%d:example.org", r))
		holders := 0
		for _, lc := range members {
			if lc.fleet.holds(room) {
				holders++
			}
		}
		if holders != 1 || wins[r].Load() > 1 {
			t.Errorf("room %s: %d holders, %d first tries won", room, holders, wins[r].Load())
		}
	}
}

// The least loaded instance takes a new call: a busy one waits a little per recording,
// one at its limit waits long enough for any other to take it. The waits are seconds
// apart on purpose: the test decides by who won, not by how long anything took, so a slow
// machine only makes it slower.
func TestLeastLoadedInstanceWins(t *testing.T) {
	uri := startPostgres(t)
	idle, busy := fleetMember(t, uri, "idle"), fleetMember(t, uri, "busy")
	for _, lc := range []*Lifecycle{idle, busy} {
		lc.fleet.perRecording, lc.fleet.maxLoad, lc.fleet.full = 2*time.Second, 6*time.Second, 6*time.Second
	}
	busyWith(busy, 2, recorder.KindMesh)
	race := func(room id.RoomID, kind recorder.Kind, a, b *Lifecycle) (aWon, bWon bool) {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); aWon, _ = a.ClaimRoom(context.Background(), room, kind) }()
		go func() { defer wg.Done(); bWon, _ = b.ClaimRoom(context.Background(), room, kind) }()
		wg.Wait()
		return aWon, bWon
	}
	if i, b := race("!group:example.org", recorder.KindMesh, idle, busy); !i || b {
		t.Errorf("group call: idle won %v, busy won %v; want the idle one", i, b)
	}
	// At its limit of 1:1 calls (but idle otherwise), an instance leaves a ring to one
	// that has group recordings running.
	full := fleetMember(t, uri, "full")
	full.cfg.Calls.MaxCalls = 1
	full.fleet.perRecording, full.fleet.full = 2*time.Second, 6*time.Second
	busyWith(full, 1, recorder.KindOneToOne)
	busy.fleet.perRecording = 500 * time.Millisecond
	if f, b := race("!dm:example.org", recorder.KindOneToOne, full, busy); f || !b {
		t.Errorf("1:1 call: full won %v, busy won %v; want the busy one below its limit", f, b)
	}
	if got := full.fleet.loadWait(recorder.KindMesh); got != 2*time.Second {
		t.Errorf("the full instance's wait for a group call: %s (its group slots are free)", got)
	}
}

// Commands get one answer: in a room an instance records in, that one answers and the
// others stay silent; in a room nobody records in, the first to take the command's event
// answers, once, however many instances see it.
func TestRouteGivesOneAnswer(t *testing.T) {
	uri := startPostgres(t)
	a, b := fleetMember(t, uri, "rec-a"), fleetMember(t, uri, "rec-b")
	ctx := context.Background()
	if ok, err := a.TakeRoom(ctx, room); !ok || err != nil {
		t.Fatalf("take: %v %v", ok, err)
	}
	for i := 0; i < 3; i++ {
		evt := id.EventID(fmt.Sprintf("$stop%d", i))
		if !a.Route(ctx, room, evt, false, recorder.KindMesh) || b.Route(ctx, room, evt, false, recorder.KindMesh) {
			t.Errorf("command %d in the recorded room not routed to its owner alone", i)
		}
	}
	other := id.RoomID("!other:example.org")
	for i := 0; i < 10; i++ {
		evt := id.EventID(fmt.Sprintf("$help%d", i))
		var answers atomic.Int32
		var wg sync.WaitGroup
		for _, lc := range []*Lifecycle{a, b, a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if lc.Route(ctx, other, evt, false, recorder.KindMesh) {
					answers.Add(1)
				}
			}()
		}
		wg.Wait()
		// The winner says yes each time it asks (its own lease), the other never: two
		// instances asking twice each give two yeses.
		if n := answers.Load(); n != 2 {
			t.Errorf("command %d: %d yes answers; want the winner's two", i, n)
		}
		if a.Route(ctx, other, evt, false, recorder.KindMesh) == b.Route(ctx, other, evt, false, recorder.KindMesh) {
			t.Errorf("command %d: both or neither instance answers", i)
		}
	}
	// Once a gives the room back, commands there are first come, first served.
	a.ReleaseRoom(ctx, room)
	if a.fleet.holds(room) {
		t.Fatal("a still holds the room it released")
	}
	if l, err := a.db.LiveLease(ctx, storage.WatchResource(string(room))); err == nil {
		t.Errorf("the released room's lease: %+v", l)
	}
	if !b.Route(ctx, room, "$after", false, recorder.KindMesh) || a.Route(ctx, room, "$after", false, recorder.KindMesh) {
		t.Error("after the release, the first to ask did not answer alone")
	}
}

// A room lease is kept while its owner records there, given back when nothing records
// there for the grace period, and not given back while a recording runs; one taken away
// (its renewals did not reach the database) stops the room's recording here.
func TestRoomLeaseFollowsTheRecording(t *testing.T) {
	uri := startPostgres(t)
	a, b := fleetMember(t, uri, "rec-a"), fleetMember(t, uri, "rec-b")
	a.fleet.grace = 0
	ctx := context.Background()
	if ok, _ := a.TakeRoom(ctx, room); !ok {
		t.Fatal("take")
	}
	a.mu.Lock()
	a.live["f"] = &liveRec{folder: "f", roomID: room, kind: recorder.KindLiveKit}
	a.mu.Unlock()
	a.ReleaseRoom(ctx, room) // refused: it records there
	a.fleet.sweep(ctx)
	a.fleet.sweep(ctx)
	if !a.fleet.holds(room) {
		t.Fatal("a gave the room back while recording there")
	}
	if ok, _ := b.ClaimRoom(ctx, room, recorder.KindMesh); ok {
		t.Fatal("b took a room a records in")
	}
	// a's lease is taken behind its back: the next renewal finds out and stops the room's
	// recording here.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := a.db.RenewLease(ctx, storage.WatchResource(string(room)), a.fleet.owner, time.Millisecond); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		if ok, _ := b.TakeRoom(ctx, room); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b could not take the expired room")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for len(a.calls.(*stopCalls).stopped()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a did not stop the room's recording after losing the room")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Idle rooms are given back by the sweep (grace 0: at its second look).
	b.fleet.grace = 0
	b.fleet.sweep(ctx)
	b.fleet.sweep(ctx)
	if b.fleet.holds(room) {
		t.Error("b kept an idle room")
	}
}

// A room whose owner stopped renewing its lease (killed) is taken over by exactly one of
// the instances that look for such rooms at once: it resumes the room's recording in a
// folder of the same name (its manifest made from the database's record when the owner
// stored no copy), tells the room once, and holds the room from then on.
func TestOneInstanceTakesOverADeadOwnersRecording(t *testing.T) {
	uri := startPostgres(t)
	dead := fleetMember(t, uri, "dead")
	ctx := context.Background()
	if ok, err := dead.TakeRoom(ctx, room); !ok || err != nil {
		t.Fatalf("take: %v %v", ok, err)
	}
	r := &storage.Recording{RoomID: string(room), CallID: "c1", Kind: string(recorder.KindLiveKit), Folder: "20261206T120000Z_room_element-call", Status: storage.RecordingActive}
	if err := dead.db.CreateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	// The owner dies: no renewal any more, and its lease runs out.
	dead.fleet.mu.Lock()
	dead.fleet.rooms[room].k.Stop()
	delete(dead.fleet.rooms, room)
	dead.fleet.mu.Unlock()
	if _, err := dead.db.RenewLease(ctx, storage.WatchResource(string(room)), dead.fleet.owner, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	others := []*Lifecycle{fleetMember(t, uri, "rec-b"), fleetMember(t, uri, "rec-c"), fleetMember(t, uri, "rec-d")}
	var wg sync.WaitGroup
	for _, lc := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lc.fleet.adopt(ctx)
		}()
	}
	wg.Wait()
	var took *Lifecycle
	for _, lc := range others {
		n := len(lc.calls.(*stopCalls).resumed)
		if n > 1 || (n == 1 && took != nil) {
			t.Fatalf("the recording was resumed more than once")
		}
		if n == 1 {
			took = lc
		}
	}
	if took == nil {
		t.Fatal("nobody took the recording over")
	}
	req := took.calls.(*stopCalls).resumed[0]
	if req.Room != room || req.Folder != r.Folder || req.Manifest == nil || req.Manifest.Status != recorder.StatusInterrupted ||
		!strings.Contains(req.Manifest.Interruption, "recorder instance dead stopped") {
		t.Errorf("resume request %+v (manifest %+v)", req, req.Manifest)
	}
	if m, err := recorder.ReadManifest(filepath.Join(took.cfg.Recordings.Dir, r.Folder)); err != nil || m.RoomID != string(room) {
		t.Errorf("the folder to continue in: %+v %v", m, err)
	}
	if texts := took.chat.(*fakeChat).texts(room); len(texts) != 1 || !strings.Contains(texts[0], "continues the recording") {
		t.Errorf("the room was told %q", texts)
	}
	for _, lc := range others {
		if lc != took && len(lc.chat.(*fakeChat).texts(room)) != 0 {
			t.Errorf("%s spoke too", lc.instance)
		}
	}
	// The resumed session holds the room (recorded here: the lease is kept).
	took.mu.Lock()
	took.live[r.Folder] = &liveRec{folder: r.Folder, roomID: room, kind: recorder.KindLiveKit}
	took.mu.Unlock()
	if l, err := took.db.LiveLease(ctx, storage.WatchResource(string(room))); err != nil || l.Owner != took.fleet.owner || l.Generation < 2 {
		t.Errorf("the room's lease after the take-over: %+v %v", l, err)
	}
}

// The rooms of a dead owner are taken over side by side, not one after the other: each
// resume (which joins a call and takes seconds) here waits until the other room's resume
// has begun too, which one after the other never happens.
func TestDeadOwnersRoomsAreTakenOverSideBySide(t *testing.T) {
	uri := startPostgres(t)
	dead := fleetMember(t, uri, "dead")
	ctx := context.Background()
	rooms := []id.RoomID{"!one:example.org", "!two:example.org"}
	for i, rm := range rooms {
		if ok, err := dead.TakeRoom(ctx, rm); !ok || err != nil {
			t.Fatalf("take: %v %v", ok, err)
		}
		r := &storage.Recording{RoomID: string(rm), CallID: fmt.Sprintf("c%d", i), Kind: string(recorder.KindLiveKit),
			Folder: fmt.Sprintf("20261206T12000%dZ_room_element-call", i), Status: storage.RecordingActive}
		if err := dead.db.CreateRecording(ctx, r); err != nil {
			t.Fatal(err)
		}
		dead.fleet.mu.Lock()
		dead.fleet.rooms[rm].k.Stop()
		delete(dead.fleet.rooms, rm)
		dead.fleet.mu.Unlock()
		if _, err := dead.db.RenewLease(ctx, storage.WatchResource(string(rm)), dead.fleet.owner, time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	heir := fleetMember(t, uri, "heir")
	calls := heir.calls.(*stopCalls)
	var started sync.WaitGroup
	started.Add(len(rooms))
	both := make(chan struct{})
	go func() { started.Wait(); close(both) }()
	var alone atomic.Bool
	calls.mu.Lock()
	calls.onResume = func() {
		started.Done()
		select {
		case <-both:
		case <-time.After(20 * time.Second): // a failure detector, not a timing bound
			alone.Store(true)
		}
	}
	calls.mu.Unlock()
	heir.fleet.adopt(ctx)
	if alone.Load() {
		t.Fatal("a room's recording was resumed alone: the other room's resume did not begin while it ran")
	}
	calls.mu.Lock()
	defer calls.mu.Unlock()
	if len(calls.resumed) != len(rooms) {
		t.Fatalf("resumed %d recordings, want %d", len(calls.resumed), len(rooms))
	}
}

// A new process of an instance takes back at once the rooms its dead predecessor (same
// instance id) recorded in, to recover them as a single recorder does after a crash; the
// other instances' rooms stay theirs.
func TestRestartTakesBackThePredecessorsRooms(t *testing.T) {
	uri := startPostgres(t)
	dir := t.TempDir()
	ctx := context.Background()
	first := claimantIn(t, uri, "rec-a", dir)
	if err := first.claimDatabase(ctx); err != nil {
		t.Fatal(err)
	}
	other := fleetMember(t, uri, "rec-b")
	if ok, _ := first.TakeRoom(ctx, room); !ok {
		t.Fatal("take")
	}
	otherRoom := id.RoomID("!other:example.org")
	if ok, _ := other.TakeRoom(ctx, otherRoom); !ok {
		t.Fatal("take")
	}
	first.fleet.mu.Lock()
	first.fleet.rooms[room].k.Stop() // it dies
	first.fleet.mu.Unlock()
	first.keeper.Stop()
	again := claimantIn(t, uri, "rec-a", dir)
	if err := again.claimDatabase(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { again.fleet.handOver(ctx); _ = again.releaseClaim(ctx) })
	if l, err := again.db.Lease(ctx, storage.WatchResource(string(room))); err == nil {
		t.Errorf("the dead process's room lease is still there: %+v", l)
	}
	if l, err := again.db.LiveLease(ctx, storage.WatchResource(string(otherRoom))); err != nil || l.Owner != other.fleet.owner {
		t.Errorf("the other instance's room: %+v %v", l, err)
	}
	if ok, _ := again.TakeRoom(ctx, room); !ok {
		t.Error("the restarted instance could not take its room back")
	}
}

// A fleet of one (PostgreSQL, no other instance running) does not wait before it takes a
// call, however busy it is: there is nobody to leave the call to.
func TestAloneInstanceDoesNotWait(t *testing.T) {
	uri := startPostgres(t)
	lc := fleetMember(t, uri, "alone")
	lc.fleet.perRecording, lc.fleet.maxLoad, lc.fleet.full = time.Minute, time.Minute, time.Minute
	busyWith(lc, 3, recorder.KindMesh)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if ok, err := lc.ClaimRoom(ctx, room, recorder.KindMesh); !ok || err != nil {
		t.Fatalf("claim: %v %v (it waited for nobody)", ok, err)
	}
	// With another instance running it waits (here: until the context ends).
	fleetMember(t, uri, "other")
	short, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	if ok, _ := lc.ClaimRoom(short, "!second:example.org", recorder.KindMesh); ok {
		t.Error("a busy instance took a call at once while another instance runs")
	}
}
