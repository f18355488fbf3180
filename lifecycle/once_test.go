package lifecycle

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/lifecycle/upload"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// hookChat is a fakeChat that runs onNotice (once) before its first notice.
type hookChat struct {
	*fakeChat
	once     sync.Once
	onNotice func()
}

func (c *hookChat) Notice(ctx context.Context, r id.RoomID, text string, re id.EventID, mentions ...id.UserID) id.EventID {
	if c.onNotice != nil {
		c.once.Do(c.onNotice)
	}
	return c.fakeChat.Notice(ctx, r, text, re, mentions...)
}

// retentionMembers are two instances of a fleet with retention on, both with a local copy
// of one recording that expires at expires (their clock is at now).
func retentionMembers(t *testing.T, now, expires time.Time) (a, b *Lifecycle, chatA, chatB *hookChat, recID string) {
	t.Helper()
	uri := startPostgres(t)
	a, b = fleetMember(t, uri, "rec-a"), fleetMember(t, uri, "rec-b")
	chatA, chatB = &hookChat{fakeChat: &fakeChat{}}, &hookChat{fakeChat: &fakeChat{}}
	a.chat, b.chat = chatA, chatB
	for _, lc := range []*Lifecycle{a, b} {
		lc.cfg.Recordings.ExpireAfter = config.Duration(48 * time.Hour)
		lc.cfg.Recordings.ExpireNotice = config.Duration(24 * time.Hour)
		lc.now = func() time.Time { return now }
	}
	recID = sharedRecording(t, a, storage.RecordingNotified, func(r *storage.Recording) { r.ExpiresAt = expires }, a, b)
	return a, b, chatA, chatB, recID
}

// sharedRecording makes a finished recording in the shared database, with its folder
// (a manifest and a file) on each of on.
func sharedRecording(t *testing.T, db *Lifecycle, status storage.RecordingStatus, mutate func(*storage.Recording), on ...*Lifecycle) string {
	t.Helper()
	return sharedRecordingIn(t, "20250102T030405Z_room_c", db, status, mutate, on...)
}

// sharedRecordingIn is sharedRecording in folder.
func sharedRecordingIn(t *testing.T, folder string, db *Lifecycle, status storage.RecordingStatus, mutate func(*storage.Recording), on ...*Lifecycle) string {
	t.Helper()
	ctx := context.Background()
	start := time.Now().Add(-time.Hour).UTC()
	end := start.Add(30 * time.Second)
	m := recorder.Manifest{
		Version: recorder.ManifestVersion, CallID: "c", RoomID: string(room), Kind: "1:1", Status: recorder.StatusFinished,
		StartedAt: start, EndedAt: &end, DurationMs: 30000,
		Participants: []recorder.Participant{{UserID: string(alice), DeviceID: "D", JoinedAt: start}},
		Tracks: []recorder.FileEntry{{File: "a.ogg", Track: "t", Part: 1, UserID: string(alice), DeviceID: "D", Kind: "audio", Codec: "opus",
			Source: recorder.SourceMicrophone, Status: recorder.StatusComplete, DurationMs: 30000, Bytes: 7}},
	}
	for _, lc := range on {
		dir := filepath.Join(lc.cfg.Recordings.Dir, folder)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "a.ogg"), []byte("OggS..."), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := recorder.WriteJSONAtomic(filepath.Join(dir, recorder.ManifestFile), m); err != nil {
			t.Fatal(err)
		}
	}
	r := &storage.Recording{RoomID: string(room), CallID: "c", Kind: "1:1", Folder: folder, StartedAt: start}
	if err := db.db.CreateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	db.fillFromManifest(r, m, status)
	if mutate != nil {
		mutate(r)
	}
	if err := db.db.UpdateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	return r.ID
}

func noticesWith(sub string, chats ...*hookChat) int {
	n := 0
	for _, c := range chats {
		for _, s := range c.texts(room) {
			if strings.Contains(s, sub) {
				n++
			}
		}
	}
	return n
}

// Two instances of a fleet run retention over a recording that expires soon, the second
// while the first is posting the notice: the room is told once.
func TestFleetExpiryNoticeOnce(t *testing.T) {
	now := time.Now()
	a, b, chatA, chatB, _ := retentionMembers(t, now, now.Add(time.Hour))
	ctx := context.Background()
	chatA.onNotice = func() { b.retention(ctx) }
	a.retention(ctx)
	b.retention(ctx)
	if n := noticesWith("will be deleted", chatA, chatB); n != 1 {
		t.Errorf("%d expiry notices, want 1: %q %q", n, chatA.texts(room), chatB.texts(room))
	}
}

// Two instances of a fleet run retention over an expired recording, the second while the
// first is deleting it: it is deleted and announced once, and the second instance's
// next round removes its own local copy too.
func TestFleetExpiryDeletesOnce(t *testing.T) {
	now := time.Now()
	a, b, chatA, chatB, recID := retentionMembers(t, now, now.Add(-time.Minute))
	ctx := context.Background()
	a.now = atRead(now, 2, func() { b.retention(ctx) }) // retention's, then deleteRecording's
	a.retention(ctx)
	b.retention(ctx)
	if n := noticesWith("Deleted the recording", chatA, chatB); n != 1 {
		t.Errorf("%d deletion notices, want 1: %q %q", n, chatA.texts(room), chatB.texts(room))
	}
	if r, err := a.db.Recording(ctx, recID); err != nil || r.Status != storage.RecordingExpired {
		t.Fatalf("row after retention: %v %v", r, err)
	}
	for name, lc := range map[string]*Lifecycle{"a": a, "b": b} {
		if _, err := os.Stat(filepath.Join(lc.cfg.Recordings.Dir, "20250102T030405Z_room_c")); !os.IsNotExist(err) {
			t.Errorf("instance %s still has its local copy (%v)", name, err)
		}
	}
}

// !delete on one instance of a fleet: the other's next round removes its local copy.
func TestFleetDeleteRemovesEveryLocalCopy(t *testing.T) {
	uri := startPostgres(t)
	a, b := fleetMember(t, uri, "rec-a"), fleetMember(t, uri, "rec-b")
	ctx := context.Background()
	recID := sharedRecording(t, a, storage.RecordingNotified, nil, a, b)
	r, err := a.db.Recording(ctx, recID)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.deleteRecording(ctx, r, storage.RemovedByRequest); err != nil {
		t.Fatal(err)
	}
	b.retention(ctx)
	for name, lc := range map[string]*Lifecycle{"a": a, "b": b} {
		if _, err := os.Stat(filepath.Join(lc.cfg.Recordings.Dir, r.Folder)); !os.IsNotExist(err) {
			t.Errorf("instance %s still has its local copy (%v)", name, err)
		}
	}
}

// Two instances of a fleet retry a summary that could not be posted: the room gets it
// once; an instance without the recording's folder does not try.
func TestFleetSummaryRetriedOnce(t *testing.T) {
	uri := startPostgres(t)
	a, b, c := fleetMember(t, uri, "rec-a"), fleetMember(t, uri, "rec-b"), fleetMember(t, uri, "rec-c")
	now := time.Now()
	chats := map[*Lifecycle]*hookChat{}
	for _, lc := range []*Lifecycle{a, b, c} {
		lc.now = func() time.Time { return now }
		lc.delivering, lc.notifyRetry = map[string]context.CancelFunc{}, map[string]*retryState{}
		chats[lc] = &hookChat{fakeChat: &fakeChat{}}
		lc.chat = chats[lc]
	}
	sharedRecording(t, a, storage.RecordingFailedNotify, nil, a, b)
	ctx := context.Background()
	for _, lc := range []*Lifecycle{a, b, c} {
		lc.renotify(ctx) // notes the failure; not due yet
	}
	now = now.Add(renotifyFirst)
	for _, lc := range []*Lifecycle{a, b, c} {
		lc.renotify(ctx)
	}
	for _, lc := range []*Lifecycle{a, b, c} {
		lc.wg.Wait()
	}
	if n := noticesWith("Recording", chats[a], chats[b], chats[c]); n != 1 {
		t.Errorf("%d summaries, want 1: %q | %q | %q", n, chats[a].texts(room), chats[b].texts(room), chats[c].texts(room))
	}
	if n := chats[c].postCalls(); n != 0 {
		t.Errorf("the instance without the folder tried %d posts", n)
	}
}

// askDelete runs !delete of recID on lc as admin (power 100) and returns its answer.
func askDelete(t *testing.T, lc *Lifecycle, chat *fakeChat, recID string) string {
	t.Helper()
	chat.mu.Lock()
	if chat.levels == nil {
		chat.levels = map[id.RoomID]map[id.UserID]int{}
	}
	chat.levels[room] = map[id.UserID]int{admin: 100}
	chat.mu.Unlock()
	return askWith(t, chat, admin, lc.Delete, recID)
}

// atRead is a clock at now that runs fn when it is read the nth time (once): where a
// deletion reads it (deleteRecording, as it marks the row removed), another instance
// acts while the row is not marked yet.
func atRead(now time.Time, n int, fn func()) func() time.Time {
	var mu sync.Mutex
	reads := 0
	return func() time.Time {
		mu.Lock()
		reads++
		due := reads == n
		mu.Unlock()
		if due {
			fn()
		}
		return now
	}
}

// A !delete on one instance of a fleet while another deletes the same recording because
// it expired: the recording is deleted and announced once, and the !delete says who is
// at it instead of a second deletion.
func TestFleetDeleteWhileAnotherExpiresIt(t *testing.T) {
	now := time.Now()
	a, b, chatA, chatB, recID := retentionMembers(t, now, now.Add(-time.Minute))
	ctx := context.Background()
	var answer string
	a.now = atRead(now, 2, func() { answer = askDelete(t, b, chatB.fakeChat, recID) }) // retention's, then deleteRecording's
	a.retention(ctx)
	if n := noticesWith("Deleted the recording", chatA, chatB); n != 1 {
		t.Errorf("%d deletion notices, want 1: %q %q", n, chatA.texts(room), chatB.texts(room))
	}
	if !strings.Contains(answer, "Recorder instance rec-a is handling the expiry or the deletion of the recording "+recID) {
		t.Errorf("the !delete during the expiry answered %q", answer)
	}
	// Done: a !delete now says so.
	if got := askDelete(t, b, chatB.fakeChat, recID); !strings.Contains(got, "already deleted") {
		t.Errorf("the !delete after the expiry answered %q", got)
	}
}

// Two !delete of one recording at once, on two instances of a fleet: one deletes it.
func TestFleetDeleteTwiceAtOnce(t *testing.T) {
	uri := startPostgres(t)
	a, b := fleetMember(t, uri, "rec-a"), fleetMember(t, uri, "rec-b")
	chatA, chatB := &hookChat{fakeChat: &fakeChat{}}, &hookChat{fakeChat: &fakeChat{}}
	a.chat, b.chat = chatA, chatB
	recID := sharedRecording(t, a, storage.RecordingNotified, nil, a, b)
	var answer string
	// b's !delete arrives while a's deletes (deleteRecording reads the clock as it marks
	// the row removed).
	a.now = atRead(time.Now(), 1, func() { answer = askDelete(t, b, chatB.fakeChat, recID) })
	first := askDelete(t, a, chatA.fakeChat, recID)
	if !strings.Contains(first, "Deleted the recording "+recID) {
		t.Errorf("the first !delete answered %q", first)
	}
	if !strings.Contains(answer, "Recorder instance rec-a is handling") {
		t.Errorf("the second !delete answered %q", answer)
	}
	if n := noticesWith("Deleted the recording", chatA, chatB); n != 1 {
		t.Errorf("%d deletion notices, want 1", n)
	}
}

// A !delete while another instance posts the recording's summary (its delivery waits for
// the uploads there) is refused, naming that instance; once the summary is out it
// deletes. A summary whose delivery finds a deletion at work elsewhere is not posted but
// left to the retries (which then find the recording deleted).
func TestFleetDeleteWaitsForTheSummary(t *testing.T) {
	uri := startPostgres(t)
	a, b := fleetMember(t, uri, "rec-a"), fleetMember(t, uri, "rec-b")
	chatB := &fakeChat{}
	b.chat = chatB
	recID := sharedRecording(t, a, storage.RecordingSaved, nil, a, b)
	ctx := context.Background()
	release, err := a.takeOnce(ctx, onceSummary, recID)
	if err != nil {
		t.Fatal(err)
	}
	if got := askDelete(t, b, chatB, recID); !strings.Contains(got, "Recorder instance rec-a is still uploading the recording "+recID) {
		t.Errorf("!delete during the summary answered %q", got)
	}
	if r, err := b.db.Recording(ctx, recID); err != nil || r.Status.Gone() {
		t.Fatalf("the recording after the refused !delete: %+v %v", r, err)
	}
	release()
	// The other way round: b deletes, a's delivery starts meanwhile.
	releaseB, err := b.takeOnce(ctx, onceSummary, recID)
	if err != nil {
		t.Fatal(err)
	}
	r, err := a.db.Recording(ctx, recID)
	if err != nil {
		t.Fatal(err)
	}
	if _, held := a.holdSummary(ctx, a.log, r.ID, nil); held {
		t.Error("a delivered the summary while b held its lease")
	}
	if r, err := a.db.Recording(ctx, recID); err != nil || r.Status != storage.RecordingFailedNotify {
		t.Errorf("the recording after the delivery gave way: %+v %v; want failed_notify (retried)", r, err)
	}
	releaseB()
	if got := askDelete(t, b, chatB, recID); !strings.Contains(got, "Deleted the recording "+recID) {
		t.Errorf("!delete after the summary answered %q", got)
	}
}

// On one instance (SQLite too) a !delete while the retention loop acts on the same
// recording is refused rather than done twice.
func TestDeleteWhileRetentionActsHere(t *testing.T) {
	e := newEnv(t, nil)
	e.chat.levels[room] = map[id.UserID]int{admin: 100}
	recID := e.finishedRecording(t, alice)
	release, err := e.lc.takeOnce(context.Background(), onceRemoval, recID)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.ask(t, admin, e.lc.Delete, recID); !strings.Contains(got, "This recorder is handling the expiry or the deletion") {
		t.Errorf("!delete during retention answered %q", got)
	}
	release()
	if got := e.ask(t, admin, e.lc.Delete, recID); !strings.Contains(got, "Deleted the recording "+recID) {
		t.Errorf("!delete after it answered %q", got)
	}
}

// A once-only action that runs longer than its lease keeps it: the renewal round renews
// it, so another instance cannot take it (and do the action again) until it ends; the
// other instance's round does not delete it either. Once it ends the lease is free. The
// rounds are driven here, with leases far longer than the test: the renewal is seen as an
// expiry moved further than the first lease reached (a renewal's TTL is longer).
func TestOnceLeaseRenewedWhileTheActionRuns(t *testing.T) {
	uri := startPostgres(t)
	a, b := fleetMember(t, uri, "rec-a"), fleetMember(t, uri, "rec-b")
	for _, lc := range []*Lifecycle{a, b} {
		lc.fleet.onceTTL = time.Hour
	}
	ctx := context.Background()
	res := onceResource(onceSummary, "rec1")
	ok, release := a.claimOnce(ctx, onceSummary, "rec1")
	if !ok {
		t.Fatal("a could not take a free lease")
	}
	if ok, _ := a.claimOnce(ctx, onceSummary, "rec1"); ok {
		t.Fatal("a second claim in the same process got the lease it holds")
	}
	first, err := a.db.Lease(ctx, res)
	if err != nil {
		t.Fatal(err)
	}
	a.fleet.onceTTL = 3 * time.Hour
	a.fleet.onceRound(ctx)
	b.fleet.onceRound(ctx)
	renewed, err := a.db.Lease(ctx, res)
	if err != nil {
		t.Fatalf("the lease after both rounds: %v", err)
	}
	if renewed.Owner != first.Owner || !renewed.ExpiresAt.After(first.ExpiresAt.Add(time.Hour)) {
		t.Errorf("the lease after a's round: %s until %s; before it %s until %s (want it renewed for 3h)",
			renewed.Owner, renewed.ExpiresAt, first.Owner, first.ExpiresAt)
	}
	if ok, _ := b.claimOnce(ctx, onceSummary, "rec1"); ok {
		t.Fatal("b took the lease of an action a still runs")
	}
	release()
	a.fleet.onceRound(ctx) // nothing of a's left to renew
	ok, releaseB := b.claimOnce(ctx, onceSummary, "rec1")
	if !ok {
		t.Fatal("b could not take the lease after a's action ended")
	}
	releaseB()
}

// The renewal round renews only the leases this instance holds: not one it is still
// taking or was refused (another instance holds it), which would be a false alarm (a lost
// lease, logged as an error) and must not touch the other's lease.
func TestOnceRoundRenewsOnlyHeldLeases(t *testing.T) {
	uri := startPostgres(t)
	a, b := fleetMember(t, uri, "rec-a"), fleetMember(t, uri, "rec-b")
	var logs strings.Builder
	a.log = zerolog.New(&logs)
	ctx := context.Background()
	ok, releaseB := b.claimOnce(ctx, onceSummary, "rec1")
	if !ok {
		t.Fatal("b could not take a free lease")
	}
	defer releaseB()
	// a is about to ask for the same lease (takeOnce noted it, AcquireLease is under way).
	res := onceResource(onceSummary, "rec1")
	if !a.once.start(res) {
		t.Fatal("a's registry had the action already")
	}
	defer a.once.end(res)
	a.fleet.onceRound(ctx)
	if strings.Contains(logs.String(), "Could not renew") {
		t.Errorf("a's round renewed a lease it does not hold: %s", logs.String())
	}
	if l, err := b.db.Lease(ctx, res); err != nil || !l.Held(b.fleet.owner) {
		t.Errorf("b's lease after a's round: %+v %v", l, err)
	}
}

// An instance removes its local copies of recordings deleted elsewhere: at its first look
// those its disk holds, then those deleted since its previous look (with removedOverlap),
// not every recording ever deleted at every look.
func TestSweepRemovedLooksSinceItsLastLook(t *testing.T) {
	uri := startPostgres(t)
	a, b := fleetMember(t, uri, "rec-a"), fleetMember(t, uri, "rec-b")
	ctx := context.Background()
	clock := time.Now()
	a.now = func() time.Time { return clock }
	b.now = func() time.Time { return clock }
	shared := func(folder string, deletedAt time.Time) string {
		t.Helper()
		recID := sharedRecordingIn(t, folder, a, storage.RecordingNotified, nil, a, b)
		r, err := a.db.Recording(ctx, recID)
		if err != nil {
			t.Fatal(err)
		}
		at := clock
		a.now = func() time.Time { return deletedAt }
		if err := a.deleteRecording(ctx, r, storage.RemovedByRequest); err != nil {
			t.Fatal(err)
		}
		a.now = func() time.Time { return at }
		return folder
	}
	onB := func(folder string) bool {
		_, err := os.Stat(filepath.Join(b.cfg.Recordings.Dir, folder))
		return err == nil
	}
	// Deleted long before b's first look: that look asks about its disk's folders.
	first := shared("20250102T030405Z_room_first", clock.Add(-48*time.Hour))
	b.sweepRemoved(ctx, clock)
	if onB(first) {
		t.Error("b's first look left the local copy of a recording deleted before it")
	}
	// Deleted after b's previous look, within the overlap before it by the deleter's clock.
	clock = clock.Add(time.Minute)
	second := shared("20250102T030405Z_room_second", clock.Add(-removedOverlap/2))
	b.sweepRemoved(ctx, clock)
	if onB(second) {
		t.Error("b's next look left the local copy of a recording deleted since its previous one")
	}
	// Deleted (by its row) long before b's previous look: the next looks do not see it
	// any more; a new process's first look does.
	clock = clock.Add(time.Minute)
	old := shared("20250102T030405Z_room_old", clock.Add(-3*removedOverlap))
	b.sweepRemoved(ctx, clock)
	if !onB(old) {
		t.Error("b's next look went back further than its previous look and the overlap")
	}
	b.removedLook = time.Time{} // a restart
	b.sweepRemoved(ctx, clock)
	if onB(old) {
		t.Error("a new process's first look left a deleted recording's local copy")
	}
}

// Once the summary is posted, a delivery that waits for slow uploads to edit in the links
// gives the summary's lease back: a !delete on another instance deletes the recording
// instead of being refused for as long as the uploads take, and the delivery ends when
// it finds the recording deleted.
func TestFleetDeleteOnceTheSummaryIsOut(t *testing.T) {
	uri := startPostgres(t)
	a, b := fleetMember(t, uri, "rec-a"), fleetMember(t, uri, "rec-b")
	chatA, chatB := &fakeChat{}, &fakeChat{}
	a.chat, b.chat = chatA, chatB
	ctx := context.Background()
	_, store := newFakeS3(t)
	a.s3 = store
	a.up = upload.New(ctx, a.db, store, upload.Options{Dir: a.cfg.Recordings.Dir, Log: zerolog.Nop()})
	a.uploadPoll = 10 * time.Millisecond
	a.delivering, a.notifyRetry = map[string]context.CancelFunc{}, map[string]*retryState{}
	drain, cancel := context.WithCancel(ctx)
	cancel()
	a.drainCtx = drain // post at once instead of waiting linkWait for the uploads
	recID := sharedRecording(t, a, storage.RecordingSaved, nil, a)
	// A file whose copy is not made (nothing uploads it): the summary goes out without
	// its link, and the delivery waits to edit it in.
	if err := a.db.SavePart(ctx, &storage.Part{RecordingID: recID, File: "a.ogg", Track: "t", Part: 1, Kind: "audio", Status: storage.PartSaved}); err != nil {
		t.Fatal(err)
	}
	r, err := a.db.Recording(ctx, recID)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.deliver(ctx, room, r.Folder, nil, "", nil, nil, true)
	}()
	res := onceResource(onceSummary, recID)
	waitUntil(t, "the summary posted and its lease given back", func() bool {
		_, err := a.db.LiveLease(ctx, res)
		return len(chatA.texts(room)) > 0 && errors.Is(err, storage.ErrNotFound)
	})
	select {
	case <-done:
		t.Fatal("the delivery ended before the uploads did")
	default:
	}
	if got := askDelete(t, b, chatB, recID); !strings.Contains(got, "Deleted the recording "+recID) {
		t.Errorf("!delete on b once the summary is out answered %q", got)
	}
	waitUntil(t, "the delivery ended after the deletion", func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
}

// A delivery that starts while a !delete of its recording runs in the same process (which
// holds the summary's entry in the process's registry) does not take that entry for its
// own: it gives way, and posts nothing about a recording being deleted.
func TestDeliveryGivesWayToADeleteHere(t *testing.T) {
	e := newEnv(t, nil)
	r := e.savedRecording(t, alice)
	recID := r.ID
	ctx := context.Background()
	// What a !delete here holds while it deletes.
	release, err := e.lc.takeOnce(ctx, onceSummary, recID)
	if err != nil {
		t.Fatal(err)
	}
	e.lc.deliver(ctx, room, r.Folder, nil, "", nil, nil, true)
	if got := e.chat.texts(room); len(got) != 0 {
		t.Errorf("the delivery posted during the deletion: %q", got)
	}
	release()
	// The deletion done, a delivery of the recording (a retry) posts nothing either.
	if _, err := e.lc.db.MarkRemoved(ctx, recID, storage.RemovedByRequest, e.clock()); err != nil {
		t.Fatal(err)
	}
	e.lc.deliver(ctx, room, r.Folder, nil, "", nil, nil, true)
	if got := e.chat.texts(room); len(got) != 0 {
		t.Errorf("a delivery after the deletion posted: %q", got)
	}
}

// A recording deleted on another instance while this one still uploads its files: this
// instance's next look for deletions stops those uploads and deletes what they stored
// after the deletion emptied the store, then the folder.
func TestSweepRemovedStopsUploadsAndDeletesLateCopies(t *testing.T) {
	uri := startPostgres(t)
	a, b := fleetMember(t, uri, "rec-a"), fleetMember(t, uri, "rec-b")
	ctx := context.Background()
	objects, store := newFakeS3(t)
	b.s3 = store
	b.up = upload.New(ctx, b.db, store, upload.Options{Dir: b.cfg.Recordings.Dir, Poll: time.Hour, Log: zerolog.Nop()})
	t.Cleanup(func() { _ = b.up.Close(ctx) })
	recID := sharedRecording(t, a, storage.RecordingSaved, nil, b)
	r, err := a.db.Recording(ctx, recID)
	if err != nil {
		t.Fatal(err)
	}
	b.up.Follow(recID, r.Folder, "a.ogg") // b is still uploading the file
	if err := a.deleteRecording(ctx, r, storage.RemovedByRequest); err != nil {
		t.Fatal(err)
	}
	// What b's upload stored after a's deletion.
	late := store.Key(r.Folder, "a.ogg")
	if _, err := store.Put(ctx, late, []byte("late copy")); err != nil {
		t.Fatal(err)
	}
	b.sweepRemoved(ctx, time.Now())
	if objects.has(late) {
		t.Error("the copy b stored after the deletion is still in the store")
	}
	if _, err := os.Stat(filepath.Join(b.cfg.Recordings.Dir, r.Folder)); !os.IsNotExist(err) {
		t.Errorf("b's local copy is still there (%v)", err)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.up.Wait(ended, recID); err != nil {
		t.Error("b still uploads the deleted recording's files")
	}
}
