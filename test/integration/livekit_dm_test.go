package integration

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/matrix-recorder/matrix-recorder/internal/lkpeer"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// TestIntegrationLiveKitDM: Element X style calls to the bot in an encrypted DM, with the
// Go stand-in of Element Call (the browser test EncryptedDMRing has the real client):
// a call whose ring expired before the bot saw it is not recorded, not even when the
// session it rang for goes on; the next call, an audio call that rings, is recorded with
// nobody typing a command, as audio only (the stand-in publishes its camera too, which an
// audio call's recording leaves out), and ends when the caller hangs up.
func TestIntegrationLiveKitDM(t *testing.T) {
	env := startLKEnv(t)
	cfg := env.botConfig(t)
	cfg.Calls.AutoAnswer = true
	rb := startBot(t, cfg)
	alice := env.peer(t, "alice", lkpeer.Options{Encrypt: true, Intent: "audio"})
	room := callRoom(t, alice, true, rb.bot.UserID())
	ctx := timeout(t, 4*time.Minute)

	// The first call rings with a ring that expired on its way (sent 100 s ago, for 90 s).
	if err := alice.Join(ctx, room); err != nil {
		t.Fatal(err)
	}
	mic := mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
	if _, err := alice.Ring(ctx, time.Now().Add(-100*time.Second), 90*time.Second); err != nil {
		t.Fatal(err)
	}
	// Long enough for the bot to see the session begin (it looks 3 s after a call begins)
	// and decide; the second call shows it was there to answer.
	time.Sleep(8 * time.Second)
	if entries, _ := os.ReadDir(rb.cfg.Recordings.Dir); len(entries) != 0 {
		t.Fatalf("a call whose ring expired was recorded: %v", entries)
	}
	_ = mic.Stop()
	if err := alice.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)

	// The second call rings now: the bot answers, records her microphone only, and stops
	// when she hangs up.
	joined := time.Now()
	if err := alice.Join(ctx, room); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
	mustPublish(t, alice, testmedia.VP8, livekit.TrackSource_CAMERA)
	if _, err := alice.Ring(ctx, time.Now(), 90*time.Second); err != nil {
		t.Fatal(err)
	}
	notice := waitMessage(t, alice, room, joined, 90*time.Second, "Recording this call")
	t.Logf("the bot: %s", notice)
	time.Sleep(6 * time.Second)
	if err := alice.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	left := time.Now()
	summary := waitMessage(t, alice, room, left, 90*time.Second, "Recording saved")
	t.Logf("summary: %s", summary)
	folder, m := finishedFolder(t, rb)
	keepOnFailure(t, folder)
	t.Logf("files:\n%s", describe(m))
	if m.Kind != recorder.KindDirect || m.EndedAt == nil || m.StartedAt.Before(joined) {
		t.Fatalf("manifest: kind %q, started %v (second call joined %v), ended %v", m.Kind, m.StartedAt, joined, m.EndedAt)
	}
	if d := m.EndedAt.Sub(left); d > 10*time.Second {
		t.Errorf("the recording ended %v after the caller hung up; a DM call ends with its caller", d.Round(time.Second))
	}
	if !strings.Contains(summary, "left the call") {
		t.Errorf("the summary does not say the caller left: %q", summary)
	}
	for _, f := range m.Tracks {
		if f.Kind != "audio" {
			t.Errorf("an audio call's recording has %s (%s)", f.File, f.Kind)
		}
	}
	checkAudio(t, folder, fileOf(t, m, alice.UserID(), recorder.SourceMicrophone), 440, 660)
}
