package lifecycle

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
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
	ctx := context.Background()
	folder := "20250102T030405Z_room_c"
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
	calls := 0
	var mu sync.Mutex
	a.now = func() time.Time {
		mu.Lock()
		calls++
		second := calls == 2
		mu.Unlock()
		if second { // deleteRecording's: the row is not marked removed yet
			b.retention(ctx)
		}
		return now
	}
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
