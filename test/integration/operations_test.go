package integration

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/internal/caller"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// TestIntegrationSIGTERMFinalises: the real binary, stopped with SIGTERM mid-call, hangs up,
// finalises every file (WebM with Cues and Duration) and the manifest, and exits 0.
func TestIntegrationSIGTERMFinalises(t *testing.T) {
	s := homeserver(t)
	cfg := botConfig(t, s)
	p := startProcess(t, cfg)
	alice := newCaller(t, s, "alice")
	ctx := timeout(t, 2*time.Minute)
	room, err := alice.CreateDM(ctx, id.UserID(cfg.Matrix.UserID), true)
	if err != nil {
		t.Fatal(err)
	}
	call := dial(t, ctx, alice, room, caller.CallOptions{Audio: testmedia.Tone440, Video: testmedia.VP8})
	time.Sleep(4 * time.Second)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("bot exited with %v after SIGTERM", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("bot did not exit after SIGTERM")
	}
	select {
	case reason := <-call.Hangups():
		t.Logf("caller saw hangup: %s", reason)
	case <-time.After(15 * time.Second):
		t.Error("the bot did not hang up the call before exiting")
	}
	call.Close()
	// The log of a clean stop: JSON lines with every key once, no cancelled requests.
	checkProcessLog(t, p.log.String())
	folder, m := finishedFolderIn(t, cfg.Recordings.Dir)
	for _, tr := range m.Tracks {
		if tr.Status != recorder.StatusComplete || tr.SHA256 == "" {
			t.Errorf("%s not finalised: %+v", tr.File, tr)
		}
		path := filepath.Join(folder, tr.File)
		checkFile(t, path, tr.Codec, time.Duration(tr.DurationMs)*time.Millisecond)
		if tr.Kind == "video" {
			out, err := exec.Command("mkvinfo", "-a", path).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "|+ Cues") || !strings.Contains(string(out), "Duration:") {
				t.Errorf("%s lacks Cues or Duration after a clean stop (%v)", tr.File, err)
			}
		}
	}
	if len(m.Tracks) != 2 {
		t.Errorf("want 2 files, got %s", describe(m))
	}
}

// TestIntegrationRestartKeepsKeys: the bot restarted with the same data_dir keeps its device
// and keys: a second call in the same encrypted room is answered and recorded.
func TestIntegrationRestartKeepsKeys(t *testing.T) {
	s := homeserver(t)
	cfg := botConfig(t, s)
	rb := startBot(t, cfg)
	dev := rb.bot.DeviceID()
	alice := newCaller(t, s, "alice")
	room, ctx := directRoom(t, rb, alice, true, 3*time.Minute)
	placeShortCall(t, alice, room)
	rb.stop(t)

	rb2 := startBot(t, cfg)
	if rb2.bot.DeviceID() != dev {
		t.Fatalf("device changed across restart: %s -> %s", dev, rb2.bot.DeviceID())
	}
	since := time.Now()
	placeShortCall(t, alice, room)
	if _, err := alice.WaitNotice(ctx, room, since, func(b string) bool { return strings.Contains(b, "Recording saved") }); err != nil {
		t.Fatalf("no summary after restart (the caller cannot read the bot's answer or notices?): %v", err)
	}
}

func placeShortCall(t *testing.T, c *caller.Client, room id.RoomID) {
	t.Helper()
	ctx := timeout(t, time.Minute)
	start := time.Now()
	call := dial(t, ctx, c, room, caller.CallOptions{Audio: testmedia.Tone440})
	time.Sleep(2 * time.Second)
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	waitSummary(t, c, room, start)
}

// TestIntegrationNotAlone: in a room with two other people the bot does not answer (it
// would steal the call) and says why.
func TestIntegrationNotAlone(t *testing.T) {
	s := homeserver(t)
	rb := startBot(t, botConfig(t, s))
	alice := newCaller(t, s, "alice")
	bob := newCaller(t, s, "bob")
	room, ctx := directRoom(t, rb, alice, false, 2*time.Minute)
	if _, err := alice.Matrix().InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: bob.UserID()}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Matrix().JoinRoomByID(ctx, room); err != nil {
		t.Fatal(err)
	}
	if err := alice.WaitMembership(ctx, room, bob.UserID(), event.MembershipJoin); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := alice.Call(cctx, room, caller.CallOptions{Audio: testmedia.Tone440}); err == nil {
		t.Fatal("the bot answered a call in a room with two other people")
	}
	if _, err := alice.WaitNotice(ctx, room, time.Time{}, func(b string) bool { return strings.Contains(b, "alone with the caller") }); err != nil {
		t.Errorf("no explanation in the room: %v", err)
	}
}

// TestIntegrationICERestart: an ICE restart through m.call.negotiate keeps the recording going.
func TestIntegrationICERestart(t *testing.T) {
	dc := startDMCall(t, false, caller.CallOptions{Audio: testmedia.Tone440, Video: testmedia.VP8})
	time.Sleep(2 * time.Second)
	if err := dc.call.RestartICE(dc.ctx); err != nil {
		t.Fatalf("ICE restart: %v", err)
	}
	time.Sleep(3 * time.Second)
	folder, m, _ := dc.hangup(t)
	for _, tr := range m.Tracks {
		checkFile(t, filepath.Join(folder, tr.File), tr.Codec, time.Duration(tr.DurationMs)*time.Millisecond)
		if d := time.Duration(tr.DurationMs) * time.Millisecond; tr.Part == 1 && d < 4500*time.Millisecond {
			t.Errorf("%s lasts %v across the ICE restart, want about 5 s", tr.File, d)
		}
	}
}
