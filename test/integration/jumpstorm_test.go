package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/meshpeer"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// TestIntegrationMeshJumpStorm: in a mesh group call, mallory's microphone jumps its RTP
// timeline by an hour after every third packet (about 16 jumps a second, each confirmed by
// the packets after it). The bot gives her track a few parts and follows the rest of the
// jumps in the same file, with one warning; alice's tracks, including a screenshare she
// starts in the middle of the storm (a new track that needs a new file), are recorded
// whole. The bot used to open a part per jump and run out of files for the call.
func TestIntegrationMeshJumpStorm(t *testing.T) {
	s := homeserver(t)
	rb := startBot(t, botConfig(t, s))
	botID := rb.bot.UserID()
	ctx := timeout(t, 5*time.Minute)
	alice := newMeshPeer(t, s, "alice", false)
	mallory := newMeshPeer(t, s, "mallory", false)
	room := meshRoom(t, ctx, alice, botID, mallory)
	conf, err := alice.CreateCall(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	ga, err := alice.Enter(ctx, room, conf, meshpeer.Media{Audio: testmedia.Tone440, Video: testmedia.VP8})
	if err != nil {
		t.Fatal(err)
	}
	gm, err := mallory.Enter(ctx, room, conf, meshpeer.Media{Audio: testmedia.Tone660, Video: testmedia.VP8,
		AudioOptions: []testmedia.SenderOption{testmedia.WithTimestampJumps(3, time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	if err := alice.SendMessage(ctx, room, "!start"); err != nil {
		t.Fatal(err)
	}
	waitNoticeOf(t, alice, room, since, "recording started", func(b string) bool { return strings.Contains(b, "Recording started") })
	if _, err := ga.WaitConnected(ctx, botID); err != nil {
		t.Fatal(err)
	}
	if _, err := gm.WaitConnected(ctx, botID); err != nil {
		t.Fatal(err)
	}

	// 12 s of storm, then alice shares her screen for 4 s while it goes on.
	const storm = 20 * time.Second
	time.Sleep(12 * time.Second)
	if err := ga.StartScreenshare(ctx, testmedia.VP9); err != nil {
		t.Fatalf("start screenshare: %v", err)
	}
	time.Sleep(4 * time.Second)
	if err := ga.StopScreenshare(ctx); err != nil {
		t.Fatalf("stop screenshare: %v", err)
	}
	time.Sleep(storm - 16*time.Second)
	since = time.Now()
	if err := alice.SendMessage(ctx, room, "!stop"); err != nil {
		t.Fatal(err)
	}
	waitNoticeOf(t, alice, room, since, "summary", func(b string) bool { return strings.Contains(b, "Recording saved") })
	folder, m := finishedFolder(t, rb)
	t.Logf("files:\n%s", describe(m))
	t.Logf("warnings: %q", m.Warnings)

	// mallory: a few parts (3 at once, one more every 20 s), the rest of the jumps
	// followed in the files and counted.
	mAudio := filesOf(m, mallory.UserID(), recorder.PurposeUserMedia, "audio")
	var jumps uint64
	for _, e := range mAudio {
		jumps += e.Stats.TimelineJumps
	}
	if len(mAudio) < 2 || len(mAudio) > 6 || jumps < 100 {
		t.Errorf("mallory's microphone: %d files following %d jumps, want 2 to 6 files and the storm's jumps (about 16 a second) counted", len(mAudio), jumps)
	}
	warned := 0
	for _, w := range m.Warnings {
		if strings.Contains(w, string(mallory.UserID())) && strings.Contains(w, "timeline_jumps") {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("want one warning about mallory's jumps: %q", m.Warnings)
	}
	if len(m.Tracks) > 12 {
		t.Errorf("%d files in a call of two people with a camera, a microphone and one screenshare", len(m.Tracks))
	}
	// alice: every track one whole file that plays.
	for _, c := range []struct {
		purpose, kind, codec string
		min                  time.Duration
	}{
		{recorder.PurposeUserMedia, "audio", "opus", storm - 2*time.Second},
		{recorder.PurposeUserMedia, "video", "vp8", storm - 2*time.Second},
		{recorder.PurposeScreenshare, "video", "vp9", 3 * time.Second},
	} {
		files := filesOf(m, alice.UserID(), c.purpose, c.kind)
		if len(files) != 1 {
			t.Errorf("alice's %s %s: %d files, want 1", c.purpose, c.kind, len(files))
			continue
		}
		e := files[0]
		d := time.Duration(e.DurationMs) * time.Millisecond
		if e.Status != recorder.StatusComplete || d < c.min {
			t.Errorf("alice's %s: %s, %v long, want complete and at least %v", e.File, e.Status, d, c.min)
			continue
		}
		checkFile(t, filepath.Join(folder, e.File), c.codec, d)
	}
	// mallory's files play too, each as long as the manifest says.
	for _, e := range mAudio {
		if d := time.Duration(e.DurationMs) * time.Millisecond; d >= time.Second {
			checkFile(t, filepath.Join(folder, e.File), "opus", d)
		}
	}
}
