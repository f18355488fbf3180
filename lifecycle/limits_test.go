package lifecycle

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

func TestMaxDurationWarnsThenStops(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Recordings.MaxDuration = config.Duration(20 * time.Minute) })
	e.start(t, "group")
	ctx := context.Background()
	e.advance(18 * time.Minute)
	e.lc.checkLimits(ctx)
	if said, stops := e.log(); said != "" || stops != "" {
		t.Fatalf("too early: %q %q", said, stops)
	}
	e.advance(time.Minute + time.Second)
	e.lc.checkLimits(ctx)
	e.lc.checkLimits(ctx)
	if said, _ := e.log(); !strings.Contains(said, "maximum length (20:00) in 0:59") || strings.Count(said, "|") != 0 {
		t.Fatalf("warning: %q", said)
	}
	e.advance(time.Minute)
	e.lc.checkLimits(ctx)
	e.lc.checkLimits(ctx)
	if _, stops := e.log(); stops != "!r:x: the maximum recording length of 20:00 was reached" {
		t.Fatalf("stops: %q", stops)
	}
}

func TestCallsMaxDurationAppliesToOneToOne(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Recordings.MaxDuration = config.Duration(time.Hour)
		c.Calls.MaxDuration = config.Duration(30 * time.Second)
	})
	if d := e.lc.maxDuration("1:1"); d != 30*time.Second {
		t.Errorf("1:1 limit %v", d)
	}
	if d := e.lc.maxDuration("group"); d != time.Hour {
		t.Errorf("group limit %v", d)
	}
	if l := warnLead(30 * time.Second); l != 15*time.Second {
		t.Errorf("lead for a short limit: %v", l)
	}
}

func TestMaxSizeWarnsThenStops(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Recordings.MaxSize = 10 << 20 })
	s := e.start(t, "1:1")
	ctx := context.Background()
	write := func(n int) {
		if err := os.WriteFile(filepath.Join(s.Folder(), "x.ogg"), make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(5 << 20)
	e.lc.checkLimits(ctx)
	write(9<<20 + 512<<10)
	e.lc.checkLimits(ctx)
	if said, stops := e.log(); !strings.Contains(said, "used 95% of its 10 MB limit (10 MB)") || stops != "" {
		t.Fatalf("at 95%%: %q %q", said, stops)
	}
	write(10 << 20)
	e.lc.checkLimits(ctx)
	if _, stops := e.log(); !strings.Contains(stops, "!r:x: the maximum recording size of 10 MB") {
		t.Fatalf("stops: %q", stops)
	}
}

// TestDiskGuard: a full disk stops every recording with a notice-worthy reason, and a new
// recording is refused before its folder exists.
func TestDiskGuard(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Recordings.MinFreeSpace = 1 << 30 })
	e.start(t, "group")
	e.start(t, "1:1")
	e.setFree(300 << 20)
	e.lc.checkLimits(context.Background())
	_, stops := e.log()
	if strings.Count(stops, "disk is almost full") != 2 {
		t.Fatalf("stops: %q", stops)
	}
	_, err := e.rec.Start(context.Background(), recorder.CallInfo{CallID: "c2", RoomID: "!r:x", Kind: "group"})
	if err == nil || !strings.Contains(err.Error(), "315 MB free") {
		t.Fatalf("start on a full disk: %v", err)
	}
	entries, _ := os.ReadDir(e.lc.cfg.Recordings.Dir)
	if len(entries) != 2 {
		t.Errorf("a refused recording left a folder: %d folders", len(entries))
	}
}

// TestHooksKeepTheDatabaseInStep: the rows follow the recording to its end, once its
// queue has written them.
func TestHooksKeepTheDatabaseInStep(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Recordings.ExpireAfter = config.Duration(48 * time.Hour) })
	s := e.start(t, "1:1")
	ctx := context.Background()
	e.lc.flushRows(ctx, filepath.Base(s.Folder()))
	r, err := e.lc.db.RecordingByFolder(ctx, filepath.Base(s.Folder()))
	if err != nil || r.Status != storage.RecordingStarted {
		t.Fatalf("row at start: %+v %v", r, err)
	}
	if _, err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	e.lc.flushRows(ctx, filepath.Base(s.Folder()))
	r, _ = e.lc.db.Recording(ctx, r.ID)
	if r.Status != storage.RecordingSaved || r.EndedAt.IsZero() || !r.ExpiresAt.Equal(r.EndedAt.Add(48*time.Hour)) {
		t.Errorf("row at the end: %+v", r)
	}
	e.lc.mu.Lock()
	defer e.lc.mu.Unlock()
	if len(e.lc.live) != 0 || len(e.lc.queues) != 0 {
		t.Errorf("session still followed after its end: %d live, %d queues", len(e.lc.live), len(e.lc.queues))
	}
}

// TestProgressEditsAtMostOncePerInterval: the start notice is edited with the time and size
// so far, never more often than recordings.progress_interval.
func TestProgressEditsAtMostOncePerInterval(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {})
	s := e.start(t, "group")
	if err := os.WriteFile(filepath.Join(s.Folder(), "x.ogg"), make([]byte, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	e.lc.Started(s.Folder(), "$start", "🔴 Recording started by "+string(alice), alice)
	ctx := context.Background()
	e.advance(30 * time.Second)
	e.lc.progress(ctx)
	if edits := e.chat.edits("!r:x"); len(edits) != 0 {
		t.Fatalf("edited after 30 s: %q", edits)
	}
	e.advance(31 * time.Second)
	e.lc.progress(ctx)
	e.lc.progress(ctx)
	if edits := e.chat.edits("!r:x"); len(edits) != 1 || !strings.Contains(edits[0], "🔴 Recording started by @alice:example.org\n⏺ 1:01 recorded so far, 3.1 MB, 0 tracks live.") {
		t.Fatalf("edits: %q", edits)
	}
	// The edit keeps the notice's mentions, so that its pills stay pills.
	e.chat.mu.Lock()
	last := e.chat.sent[len(e.chat.sent)-1]
	e.chat.mu.Unlock()
	if last.replace != "$start" || len(last.mentions) != 1 || last.mentions[0] != alice {
		t.Errorf("edit: %+v", last)
	}
	e.advance(time.Minute)
	e.lc.progress(ctx)
	if edits := e.chat.edits("!r:x"); len(edits) != 2 {
		t.Fatalf("edits after two minutes: %q", edits)
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		168 * time.Hour: "7 days", 720 * time.Hour: "30 days", 24 * time.Hour: "24 hours", 90 * time.Minute: "90 minutes",
		time.Hour: "60 minutes", 11 * time.Second: "11 seconds", time.Second: "1 second", 47*time.Hour + 59*time.Minute: "48 hours",
	} {
		if got := HumanDuration(d); got != want {
			t.Errorf("HumanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// One room, one inviter's rooms and group recordings in all are bounded, and the refusal
// says which limit; a slot frees when a recording ends.
func TestRecordingsAtOnceAreBounded(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Recordings.MaxPerRoom = 2
		c.Recordings.MaxPerInviter = 3
		c.Calls.MaxGroupRecordings = 3
	})
	ctx := context.Background()
	for _, r := range []string{"!a:x", "!b:x", "!c:x"} {
		if err := e.lc.SetInviter(ctx, id.RoomID(r), "@eve:evil.example"); err != nil {
			t.Fatal(err)
		}
	}
	mustStart := func(room id.RoomID, call string, kind recorder.Kind) *recorder.Session {
		t.Helper()
		s, err := e.startIn(room, call, kind)
		if err != nil {
			t.Fatalf("%s in %s: %v", call, room, err)
		}
		return s
	}
	refused := func(room id.RoomID, call string, kind recorder.Kind, want string) {
		t.Helper()
		if err := e.lc.Admit(ctx, room, kind); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("admit %s in %s: %v, want %q", call, room, err, want)
		}
		if _, err := e.startIn(room, call, kind); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("start %s in %s: %v, want %q", call, room, err, want)
		}
	}
	a1 := mustStart("!a:x", "a1", "1:1")
	mustStart("!a:x", "a2", "group")
	refused("!a:x", "a3", "1:1", "recordings.max_per_room")
	mustStart("!b:x", "b1", "group")
	refused("!c:x", "c1", "group", "recordings.max_per_inviter")
	// Someone else's rooms are not Eve's to fill.
	mustStart("!d:x", "d1", "group")
	refused("!e:x", "e1", "group", "calls.max_group_recordings")
	mustStart("!e:x", "e2", "1:1") // 1:1 calls have calls.max_calls
	// So has a direct MatrixRTC call the bot answered: it is no group recording.
	mustStart("!f:x", "f1", recorder.KindDirect)
	// A slot frees when a recording ends.
	if _, err := a1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	mustStart("!c:x", "c2", "1:1")
}

// With the disk running low, the room that uses more than its share is stopped first and
// the others go on; below min_free_space everything stops.
func TestDiskShare(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Recordings.MinFreeSpace = 1 << 30
		c.Recordings.LowFreeSpace = 4 << 30
	})
	hog, err := e.startIn("!hog:x", "h", "group")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.startIn("!quiet:x", "q", "1:1"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hog.Folder(), "big.webm"), make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e.setFree(5 << 30) // above low_free_space: nothing happens
	e.lc.checkLimits(ctx)
	if _, stops := e.log(); stops != "" {
		t.Fatalf("stopped with plenty of space: %q", stops)
	}
	e.setFree(2 << 30)
	e.lc.checkLimits(ctx)
	e.lc.checkLimits(ctx)
	if _, stops := e.log(); strings.Count(stops, "|") != 0 || !strings.HasPrefix(stops, "!hog:x: ") || !strings.Contains(stops, "than its share") {
		t.Fatalf("low disk: stops %q, want only the hog's", stops)
	}
	e.setFree(512 << 20)
	e.lc.checkLimits(ctx)
	if _, stops := e.log(); !strings.Contains(stops, "!quiet:x: the recorder's disk is almost full") {
		t.Fatalf("below the floor: stops %q", stops)
	}
}

// A single room recording alone is never above its share: only the floor stops it.
func TestDiskShareAlone(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Recordings.MinFreeSpace = 1 << 30 })
	s := e.start(t, "group")
	if err := os.WriteFile(filepath.Join(s.Folder(), "big.webm"), make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	e.setFree(3 << 29) // 1.5 GiB: under twice the floor
	e.lc.checkLimits(context.Background())
	if _, stops := e.log(); stops != "" {
		t.Fatalf("stopped alone above the floor: %q", stops)
	}
}
