package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/internal/lkpeer"
	"github.com/matrix-recorder/matrix-recorder/internal/meshpeer"
	"github.com/matrix-recorder/matrix-recorder/internal/testclient"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// Restarts: a clean stop (SIGTERM) pauses recordings and the next start continues them;
// a kill -9 is resumed the same way, with the files repaired. Both through the real binary.

// stopProcess sends SIGTERM and waits for a clean exit.
func stopProcess(t *testing.T, p *process) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("bot exited with %v after SIGTERM", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("bot did not exit after SIGTERM")
	}
}

// onlyFolder returns the one call folder in dir.
func onlyFolder(t *testing.T, dir string) string {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	var folders []string
	for _, e := range entries {
		if e.IsDir() {
			folders = append(folders, e.Name())
		}
	}
	if len(folders) != 1 {
		t.Fatalf("want one call folder, have %v", folders)
	}
	return filepath.Join(dir, folders[0])
}

// botDisplayName reads the bot's display name in a room from its member state event.
func botDisplayName(t *testing.T, cli *mautrix.Client, room id.RoomID, bot id.UserID) string {
	t.Helper()
	var c struct {
		DisplayName string `json:"displayname"`
	}
	if err := cli.StateEvent(timeout(t, 30*time.Second), room, event.StateMember, string(bot), &c); err != nil {
		t.Fatalf("read the bot's member event: %v", err)
	}
	return c.DisplayName
}

// waitDisplayName waits until the bot's display name in room does (marked) or does not
// carry the recording mark.
func waitDisplayName(t *testing.T, cli *mautrix.Client, room id.RoomID, bot id.UserID, marked bool, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		name := botDisplayName(t, cli, room, bot)
		if strings.HasPrefix(name, "🔴 Recording") == marked {
			return name
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bot's display name is %q; want it marked: %v", name, marked)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// botSaid lists the bot's messages (not edits) in a list of received messages, after since
// and before until (zero: no end).
func botSaid(msgs []testclient.Message, bot id.UserID, since, until time.Time) []string {
	var out []string
	for _, m := range msgs {
		if m.Sender != bot || m.Edit || m.At.Before(since) || (!until.IsZero() && m.At.After(until)) {
			continue
		}
		out = append(out, m.Body)
	}
	return out
}

func countContaining(texts []string, sub string) int {
	n := 0
	for _, s := range texts {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

// waitParts waits until the manifest of folder lists at least n files that are part 2 or
// later (tracks that came back after a restart).
func waitParts(t *testing.T, folder string, n int, within time.Duration) *recorder.Manifest {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		m, err := recorder.ReadManifest(folder)
		later := 0
		if err == nil {
			for _, tr := range m.Tracks {
				if tr.Part >= 2 {
					later++
				}
			}
		}
		if later >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d tracks came back after the restart: %s", later, n, describe(m))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkContinued checks a finished folder that one restart interrupted: one resume with
// the reason, every file decoding (and complete, but for first parts a crash cut short),
// each track's later part after its first.
func checkContinued(t *testing.T, folder string, m *recorder.Manifest, reason string, crashed bool) {
	t.Helper()
	if m.Status != recorder.StatusFinished || len(m.Resumes) != 1 || !strings.Contains(m.Resumes[0].Reason, reason) {
		t.Fatalf("manifest after the restart: status %s, resumes %+v", m.Status, m.Resumes)
	}
	ends := map[string]int64{}
	for _, tr := range m.Tracks {
		if tr.Part == 1 {
			ends[tr.Track] = tr.StartOffsetMs + tr.DurationMs
		}
	}
	resumedAt := m.Resumes[0].ResumedAt.Sub(m.StartedAt).Milliseconds()
	for _, tr := range m.Tracks {
		if tr.Part >= 2 && (tr.StartOffsetMs < ends[tr.Track] || tr.StartOffsetMs < resumedAt-1000) {
			t.Errorf("%s starts at %d ms: before its first part ends (%d ms) or the resume (%d ms)", tr.File, tr.StartOffsetMs, ends[tr.Track], resumedAt)
		}
		if tr.Status != recorder.StatusComplete && !(crashed && tr.Part == 1 && tr.Status == recorder.StatusInterrupted) {
			t.Errorf("%s: status %s (%s)", tr.File, tr.Status, tr.EndReason)
		}
		checkFile(t, filepath.Join(folder, tr.File), tr.Codec, time.Duration(tr.DurationMs)*time.Millisecond)
	}
}

// TestIntegrationMeshPausedBySIGTERM: the real binary, stopped with SIGTERM while it
// records a full-mesh group call, pauses the recording (files finalised, the manifest
// interrupted, no summary, the bot's call membership taken back, its display name still
// marked); started again, it continues in the same folder with one notice, keeps the
// opt-out typed before the restart, and !stop then posts one summary for the whole call,
// after which the display name is the plain one again.
func TestIntegrationMeshPausedBySIGTERM(t *testing.T) {
	s := homeserver(t)
	cfg := botConfig(t, s)
	p := startProcess(t, cfg)
	bot := id.UserID(cfg.Matrix.UserID)
	ctx := timeout(t, 5*time.Minute)
	alice := newMeshPeer(t, s, "alice", false)
	zoe := newMeshPeer(t, s, "zoe", true)
	room := meshRoom(t, ctx, alice, bot, zoe)
	conf, err := alice.CreateCall(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	ga, err := alice.Enter(ctx, room, conf, meshpeer.Media{Audio: "tone440.ogg"})
	if err != nil {
		t.Fatal(err)
	}
	gz, err := zoe.Enter(ctx, room, conf, meshpeer.Media{Audio: "tone660.ogg"})
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := alice.SendMessage(ctx, room, "!start"); err != nil {
		t.Fatal(err)
	}
	waitNoticeOf(t, alice, room, begin, "recording started", func(b string) bool { return strings.Contains(b, "Recording started") })
	for _, g := range []*meshpeer.Group{ga, gz} {
		if _, err := g.WaitConnected(ctx, bot); err != nil {
			t.Fatal(err)
		}
	}
	waitDisplayName(t, alice.Matrix(), room, bot, true, 30*time.Second)
	time.Sleep(2 * time.Second)
	optedOut := time.Now()
	if err := zoe.SendMessage(ctx, room, "!skipme"); err != nil {
		t.Fatal(err)
	}
	waitNoticeOf(t, zoe, room, optedOut, "opt-out", func(b string) bool { return strings.Contains(b, "you are not recorded") })
	time.Sleep(2 * time.Second)

	stopped := time.Now()
	stopProcess(t, p)
	folder := onlyFolder(t, cfg.Recordings.Dir)
	paused, err := recorder.ReadManifest(folder)
	if err != nil || paused.Status != recorder.StatusInterrupted || !strings.Contains(paused.Interruption, "restart") {
		t.Fatalf("manifest after SIGTERM: %+v %v", paused, err)
	}
	for _, tr := range paused.Tracks {
		if tr.Status != recorder.StatusComplete || tr.SHA256 == "" {
			t.Errorf("%s not finalised at the pause: %+v", tr.File, tr)
		}
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		devs := botMemberDevices(alice, room, bot, conf)
		if len(devs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the bot is still a member of the call while it is down: %+v", devs)
			break
		}
	}
	if name := botDisplayName(t, alice.Matrix(), room, bot); !strings.HasPrefix(name, "🔴 Recording") {
		t.Errorf("a paused recording lost the display name's mark: %q", name)
	}
	db := stateDB(t, cfg)
	r, err := db.RecordingByFolder(ctx, filepath.Base(folder))
	if err != nil || r.Status != storage.RecordingPaused {
		t.Fatalf("row after SIGTERM: %+v %v", r, err)
	}

	restarted := time.Now()
	startProcess(t, cfg)
	n := waitNoticeOf(t, alice, room, restarted, "continues", func(b string) bool { return strings.Contains(b, "recording continues") })
	t.Logf("notice: %s", n.Body)
	// Alice's microphone comes back as part 2; zoe, who opted out, does not.
	waitParts(t, folder, 1, 60*time.Second)
	time.Sleep(4 * time.Second)
	stopAt := time.Now()
	if err := alice.SendMessage(ctx, room, "!stop"); err != nil {
		t.Fatal(err)
	}
	summary := waitNoticeOf(t, alice, room, stopAt, "summary", func(b string) bool { return strings.Contains(b, "Recording saved") })
	t.Logf("summary:\n%s", summary.Body)

	between := botSaid(alice.Notices(room), bot, stopped, stopAt)
	if len(between) != 1 || !strings.Contains(between[0], "recording continues") {
		t.Errorf("between the stop and !stop the bot said %q; want one notice that the recording continues", between)
	}
	all := botSaid(alice.Notices(room), bot, begin, time.Time{})
	if c := countContaining(all, "Recording saved"); c != 1 {
		t.Errorf("%d summaries, want 1: %q", c, all)
	}
	if c := countContaining(all, "Recording started"); c != 1 {
		t.Errorf("%d start notices, want 1: %q", c, all)
	}
	if onlyFolder(t, cfg.Recordings.Dir) != folder {
		t.Fatal("the recording went on in another folder")
	}
	_, m := finishedFolderIn(t, cfg.Recordings.Dir)
	t.Logf("files:\n%s", describe(m))
	checkContinued(t, folder, m, "restart", false)
	if len(filesOf(m, alice.UserID(), "m.usermedia", "audio")) != 2 {
		t.Errorf("alice's microphone: want 2 parts:\n%s", describe(m))
	}
	resumedAt := m.Resumes[0].ResumedAt.Sub(m.StartedAt).Milliseconds()
	for _, tr := range filesOf(m, zoe.UserID(), "m.usermedia", "audio") {
		if tr.StartOffsetMs+tr.DurationMs > resumedAt {
			t.Errorf("zoe opted out before the restart and was recorded after it: %s", tr.File)
		}
	}
	if !strings.Contains(summary.Body, "restarted 1 time") {
		t.Errorf("the summary does not mention the restart")
	}
	r = waitRecording(t, db, r.ID, 20*time.Second, "notified", func(r *storage.Recording) bool { return r.Status == storage.RecordingNotified })
	if r.Interruptions != 1 {
		t.Errorf("row: %+v", r)
	}
	waitDisplayName(t, alice.Matrix(), room, bot, false, 45*time.Second)
}

// lkBotMemberships lists the bot's non-empty MatrixRTC state memberships in room.
func lkBotMemberships(t *testing.T, cli *mautrix.Client, room id.RoomID, bot id.UserID) []string {
	t.Helper()
	st, err := cli.State(timeout(t, 30*time.Second), room)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for key, evt := range st[matrixrtc.TypeCallMember] {
		if strings.Contains(key, string(bot)) && evt != nil && len(evt.Content.Raw) > 0 {
			out = append(out, key)
		}
	}
	return out
}

// TestIntegrationLiveKitPausedBySIGTERM: the same for an end-to-end encrypted Element
// Call call over LiveKit: SIGTERM pauses (the bot's membership is taken back, so the
// participants see it leave), the next start rejoins with a new membership, gets the media
// keys again, continues in the same folder, and !stop posts one summary; the second parts
// decode to each sender's tone.
func TestIntegrationLiveKitPausedBySIGTERM(t *testing.T) {
	env := startLKEnv(t)
	cfg := env.botConfig(t)
	p := startProcess(t, cfg)
	bot := id.UserID(cfg.Matrix.UserID)
	room, alice, bob, begin := startedTwoSpeakerCall(t, env, bot)
	waitDisplayName(t, alice.Matrix(), room, bot, true, 30*time.Second)
	time.Sleep(5 * time.Second)

	stopped := time.Now()
	stopProcess(t, p)
	folder := onlyFolder(t, cfg.Recordings.Dir)
	keepOnFailure(t, folder)
	if m, err := recorder.ReadManifest(folder); err != nil || m.Status != recorder.StatusInterrupted || len(m.Tracks) != 2 {
		t.Fatalf("manifest after SIGTERM: %+v %v", m, err)
	}
	if left := lkBotMemberships(t, alice.Matrix(), room, bot); len(left) != 0 {
		t.Errorf("the bot's call membership is still there while it is down: %v", left)
	}

	restarted := time.Now()
	startProcess(t, cfg)
	waitMessage(t, alice, room, restarted, 90*time.Second, "recording continues")
	waitParts(t, folder, 2, 60*time.Second)
	time.Sleep(5 * time.Second)
	stopAt := send(t, alice, room, "!stop")
	summary := waitMessage(t, alice, room, stopAt, 90*time.Second, "Recording saved")
	t.Logf("summary:\n%s", summary)
	between := botSaid(alice.MessagesIn(room), bot, stopped, stopAt)
	if len(between) != 1 || !strings.Contains(between[0], "recording continues") {
		t.Errorf("between the stop and !stop the bot said %q; want one notice that the recording continues", between)
	}
	if c := countContaining(botSaid(alice.MessagesIn(room), bot, begin, time.Time{}), "Recording saved"); c != 1 {
		t.Errorf("%d summaries, want 1", c)
	}
	_, m := finishedFolderIn(t, cfg.Recordings.Dir)
	t.Logf("files:\n%s", describe(m))
	checkContinued(t, folder, m, "restart", false)
	for _, who := range []struct {
		p         *lkpeer.Peer
		hz, other float64
	}{{alice, 440, 660}, {bob, 660, 440}} {
		parts := lkFiles(m, who.p.UserID(), recorder.SourceMicrophone)
		if len(parts) != 2 {
			t.Errorf("%s: %d microphone parts, want 2", who.p.UserID(), len(parts))
			continue
		}
		for _, f := range parts {
			checkAudio(t, folder, f, who.hz, who.other)
		}
	}
	waitDisplayName(t, alice.Matrix(), room, bot, false, 45*time.Second)
}

// TestIntegrationLiveKitResumesAfterKill: kill -9 of the real binary while it records an
// end-to-end encrypted Element X style direct call it answered; the ring expires while it
// is down. Started again, it tells the room, rejoins with a new membership, is sent the
// media keys again, and records the call on in the same folder, as the direct call it
// was: it ends as soon as the caller hangs up. Both parts decode to the caller's tone.
func TestIntegrationLiveKitResumesAfterKill(t *testing.T) {
	env := startLKEnv(t)
	cfg := env.botConfig(t)
	cfg.Calls.AutoAnswer = true
	p := startProcess(t, cfg)
	bot := id.UserID(cfg.Matrix.UserID)
	alice := env.peer(t, "alice", lkpeer.Options{Encrypt: true, Intent: "audio"})
	room := callRoom(t, alice, true, bot)
	ctx := timeout(t, 5*time.Minute)
	joined := time.Now()
	if err := alice.Join(ctx, room); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
	ringLife := 20 * time.Second
	if _, err := alice.Ring(ctx, time.Now(), ringLife); err != nil {
		t.Fatal(err)
	}
	ringEnds := time.Now().Add(ringLife)
	waitMessage(t, alice, room, joined, 90*time.Second, "Recording this call")
	waitDisplayName(t, alice.Matrix(), room, bot, true, 30*time.Second)
	time.Sleep(5 * time.Second)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	folder := onlyFolder(t, cfg.Recordings.Dir)
	keepOnFailure(t, folder)
	if wait := time.Until(ringEnds.Add(2 * time.Second)); wait > 0 {
		time.Sleep(wait) // the ring expires while the bot is down
	}

	restarted := time.Now()
	startProcess(t, cfg)
	n := waitMessage(t, alice, room, restarted, 90*time.Second, "same folder")
	t.Logf("notice: %s", n)
	waitParts(t, folder, 1, 60*time.Second)
	time.Sleep(5 * time.Second)
	if err := alice.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	left := time.Now()
	summary := waitMessage(t, alice, room, left, 90*time.Second, "Recording saved")
	t.Logf("summary:\n%s", summary)
	if !strings.Contains(summary, "left the call") {
		t.Errorf("the resumed direct call did not end with its caller: %q", summary)
	}
	_, m := finishedFolderIn(t, cfg.Recordings.Dir)
	t.Logf("files:\n%s", describe(m))
	if d := m.EndedAt.Sub(left); d > 10*time.Second {
		t.Errorf("the resumed direct call ended %v after the caller left; a DM call ends with its caller", d.Round(time.Second))
	}
	checkContinued(t, folder, m, "unexpectedly", true)
	parts := lkFiles(m, alice.UserID(), recorder.SourceMicrophone)
	if len(parts) != 2 {
		t.Fatalf("alice's microphone: %d parts, want 2", len(parts))
	}
	for _, f := range parts {
		checkAudio(t, folder, f, 440, 660)
	}
	waitDisplayName(t, alice.Matrix(), room, bot, false, 45*time.Second)
}
