package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/devhs"
	"github.com/matrix-recorder/matrix-recorder/internal/mediacheck"
	"github.com/matrix-recorder/matrix-recorder/internal/meshpeer"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// newMeshPeer registers a user whose id starts with prefix and starts a js-sdk-like group
// call participant for it. User ids sort by prefix: "alice" and "bob" call the bot
// ("recorder…"), the bot calls "zoe".
func newMeshPeer(t *testing.T, s *devhs.Server, prefix string, plain bool) *meshpeer.Client {
	t.Helper()
	ctx := context.Background()
	local := uniq(prefix)
	acc, err := s.Register(ctx, local, "pw-"+local)
	if err != nil {
		t.Fatalf("register %s: %v", local, err)
	}
	c, err := meshpeer.New(ctx, meshpeer.Options{
		Homeserver: s.URL(), UserID: acc.UserID, AccessToken: acc.AccessToken, DeviceID: acc.DeviceID,
		DataDir: t.TempDir(), Logger: testLogger(t).With().Str("side", local).Logger(), Plain: plain,
	})
	if err != nil {
		t.Fatalf("start participant: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// meshRoom creates a room by host with the others and the bot joined.
func meshRoom(t *testing.T, ctx context.Context, host *meshpeer.Client, bot id.UserID, others ...*meshpeer.Client) id.RoomID {
	t.Helper()
	invite := []id.UserID{bot}
	for _, o := range others {
		invite = append(invite, o.UserID())
	}
	room, err := host.CreateRoom(ctx, invite, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range others {
		if err := o.JoinRoom(ctx, room); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range invite {
		if err := host.WaitJoined(ctx, room, u); err != nil {
			t.Fatal(err)
		}
	}
	return room
}

// checkEditKeepsPills checks that an edit of the notice orig keeps its HTML body with the
// users' pills and its mentions.
func checkEditKeepsPills(t *testing.T, edit, orig meshpeer.Notice, users ...id.UserID) {
	t.Helper()
	if !edit.Edit || edit.Replaces != orig.EventID {
		t.Errorf("not an edit of the start notice %s: %+v", orig.EventID, edit)
	}
	if edit.Format != event.FormatHTML {
		t.Errorf("the edit has no HTML body: %+v", edit)
	}
	for _, u := range users {
		if !strings.Contains(edit.FormattedBody, `href="https://matrix.to/#/`+string(u)+`"`) || !slices.Contains(edit.Mentions, u) {
			t.Errorf("the edit lost the pill or the mention of %s: %q, mentions %v", u, edit.FormattedBody, edit.Mentions)
		}
		if !strings.Contains(orig.FormattedBody, `href="https://matrix.to/#/`+string(u)+`"`) || !slices.Contains(orig.Mentions, u) {
			t.Errorf("the start notice has no pill or mention of %s: %q, mentions %v", u, orig.FormattedBody, orig.Mentions)
		}
	}
}

func waitNoticeOf(t *testing.T, c *meshpeer.Client, room id.RoomID, since time.Time, what string, match func(string) bool) meshpeer.Notice {
	t.Helper()
	n, err := c.WaitNotice(timeout(t, 60*time.Second), room, since, match)
	if err != nil {
		var seen []string
		for _, n := range c.Notices(room) {
			seen = append(seen, n.Body)
		}
		t.Fatalf("no notice %s: %v (seen: %q)", what, err, seen)
	}
	return n
}

// near checks that got is within tol of want.
func near(t *testing.T, what string, got, want time.Time, tol time.Duration) {
	t.Helper()
	if d := got.Sub(want); d > tol || d < -tol {
		t.Errorf("%s: %s, want %s ±%v (off by %v)", what, got.Format("15:04:05.000"), want.Format("15:04:05.000"), tol, d)
	}
}

// filesOf returns the files of user's device (and purpose, kind), in part order.
func filesOf(m *recorder.Manifest, user id.UserID, purpose, kind string) []recorder.FileEntry {
	var out []recorder.FileEntry
	for _, tr := range m.Tracks {
		if tr.UserID == string(user) && tr.Purpose == purpose && tr.Kind == kind {
			out = append(out, tr)
		}
	}
	slices.SortFunc(out, func(a, b recorder.FileEntry) int { return a.Part - b.Part })
	return out
}

func participantsOf(m *recorder.Manifest, user id.UserID) []recorder.Participant {
	var out []recorder.Participant
	for _, p := range m.Participants {
		if p.UserID == string(user) {
			out = append(out, p)
		}
	}
	return out
}

// botMemberDevices reads the bot's member entry for conf as a participant sees it.
func botMemberDevices(c *meshpeer.Client, room id.RoomID, bot id.UserID, conf string) []matrixrtc.Member {
	key := string(bot)
	evt := &event.Event{Type: matrixrtc.TypeCallMember, StateKey: &key, Sender: bot, Timestamp: time.Now().UnixMilli()}
	u, _ := matrixrtc.Parse(evt, c.MemberContent(room, bot), time.Now())
	var out []matrixrtc.Member
	for _, m := range u.Only(matrixrtc.FormatMSC3401).Members {
		if m.SlotID == conf {
			out = append(out, m)
		}
	}
	return out
}

func checkAllFiles(t *testing.T, folder string, m *recorder.Manifest) {
	t.Helper()
	for _, tr := range m.Tracks {
		if tr.Status != recorder.StatusComplete {
			t.Errorf("%s: status %s (%s)", tr.File, tr.Status, tr.EndReason)
		}
		checkFile(t, filepath.Join(folder, tr.File), tr.Codec, time.Duration(tr.DurationMs)*time.Millisecond)
	}
}

// TestIntegrationMeshGroupCall records a full-mesh call through the real homeserver with
// three js-sdk-like participants: alice (Olm-encrypted signalling, calls the bot) is there
// from the start, shares her screen for a while, restarts ICE and switches microphones; zoe (plain signalling,
// called by the bot) reloads her page and comes back with a new session; bob joins late and
// leaves early. bob may not record, so his !start is refused. Every file is checked with
// ffprobe, ffmpeg, opusinfo and mkvinfo, and every offset against when it really happened.
func TestIntegrationMeshGroupCall(t *testing.T) {
	s := homeserver(t)
	cfg := botConfig(t, s)
	cfg.Recordings.ProgressInterval = config.Duration(10 * time.Second) // the shortest allowed
	rb := startBot(t, cfg)
	botID := rb.bot.UserID()
	ctx := timeout(t, 5*time.Minute)
	alice := newMeshPeer(t, s, "alice", false)
	bob := newMeshPeer(t, s, "bob", false)
	zoe := newMeshPeer(t, s, "zoe", true)
	room := meshRoom(t, ctx, alice, botID, bob, zoe)
	conf, err := alice.CreateCall(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	ga, err := alice.Enter(ctx, room, conf, meshpeer.Media{Audio: testmedia.Tone440, Video: testmedia.VP8})
	if err != nil {
		t.Fatal(err)
	}
	gz, err := zoe.Enter(ctx, room, conf, meshpeer.Media{Audio: testmedia.Tone660, Video: testmedia.VP8})
	if err != nil {
		t.Fatal(err)
	}

	// bob has power level 0; starting a recording needs the state level (50).
	since := time.Now()
	if err := bob.SendMessage(ctx, room, "!start"); err != nil {
		t.Fatal(err)
	}
	refusal := waitNoticeOf(t, bob, room, since, "refusing bob", func(b string) bool { return strings.Contains(b, string(bob.UserID())) })
	if !strings.Contains(refusal.Body, "Sorry") || !strings.Contains(refusal.Body, "power level") {
		t.Errorf("refusal is not a polite explanation: %q", refusal.Body)
	}

	since = time.Now()
	if err := alice.SendMessage(ctx, room, "!start"); err != nil {
		t.Fatal(err)
	}
	started := waitNoticeOf(t, alice, room, since, "recording started", func(b string) bool { return strings.Contains(b, "Recording started") })
	if !strings.Contains(started.Body, string(alice.UserID())) || !strings.Contains(started.Body, string(zoe.UserID())) || strings.Contains(started.Body, string(bob.UserID())) {
		t.Errorf("start notice should name alice and zoe (in the call) and not bob: %q", started.Body)
	}
	aliceUp, err := ga.WaitConnected(ctx, botID)
	if err != nil {
		t.Fatal(err)
	}
	zoeUp, err := gz.WaitConnected(ctx, botID)
	if err != nil {
		t.Fatal(err)
	}
	if devs := botMemberDevices(alice, room, botID, conf); len(devs) != 1 || devs[0].DeviceID != rb.bot.DeviceID() ||
		time.Until(devs[0].ExpiresAt) < 30*time.Minute || len(devs[0].Feeds) == 0 {
		t.Errorf("bot's member entry while recording: %+v", devs)
	}
	if c := gz.Call(botID); c == nil || c.Outbound() {
		t.Error("the bot should have called zoe (her user id sorts after the bot's)")
	}
	if c := ga.Call(botID); c == nil || !c.Outbound() {
		t.Error("alice should have called the bot (her user id sorts before the bot's)")
	}

	// bob joins late: recorded from then on, and told so with a mention.
	time.Sleep(2 * time.Second)
	since = time.Now()
	gb, err := bob.Enter(ctx, room, conf, meshpeer.Media{Audio: testmedia.Tone440, Video: testmedia.VP8})
	if err != nil {
		t.Fatal(err)
	}
	bobEntered := gb.EnteredAt()
	late := waitNoticeOf(t, alice, room, since, "about the late joiner", func(b string) bool {
		return strings.Contains(b, string(bob.UserID())) && strings.Contains(b, "joined")
	})
	if !slices.Contains(late.Mentions, bob.UserID()) {
		t.Errorf("late-joiner notice does not mention bob: %+v", late)
	}
	bobUp, err := gb.WaitConnected(ctx, botID)
	if err != nil {
		t.Fatal(err)
	}

	// alice shares her screen for 3 s, then restarts ICE.
	time.Sleep(time.Second)
	screenOn := time.Now()
	if err := ga.StartScreenshare(ctx, testmedia.VP9); err != nil {
		t.Fatalf("start screenshare: %v", err)
	}
	time.Sleep(3 * time.Second)
	screenOff := time.Now()
	if err := ga.StopScreenshare(ctx); err != nil {
		t.Fatalf("stop screenshare: %v", err)
	}
	if err := ga.Call(botID).RestartICE(ctx); err != nil {
		t.Fatalf("ICE restart: %v", err)
	}

	// zoe reloads: the old connection dies without a hangup, she comes back with a new session.
	time.Sleep(time.Second)
	oldSession := gz.Session()
	if err := gz.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	zoeBack := gz.EnteredAt()
	if gz.Session() == oldSession {
		t.Fatal("reload kept the session id")
	}
	zoeUp2, err := gz.WaitConnected(ctx, botID)
	if err != nil {
		t.Fatal(err)
	}

	// bob leaves early; alice picks another microphone.
	time.Sleep(time.Second)
	bobLeft := time.Now()
	if err := gb.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	micSwitch := time.Now()
	if err := ga.SwitchMicrophone(testmedia.Tone660); err != nil {
		t.Fatal(err)
	}

	since = time.Now()
	if err := alice.SendMessage(ctx, room, "!status"); err != nil {
		t.Fatal(err)
	}
	status := waitNoticeOf(t, alice, room, since, "status", func(b string) bool { return strings.Contains(b, "Recording (mesh)") })
	if !strings.Contains(status.Body, string(alice.UserID())) || !strings.Contains(status.Body, string(zoe.UserID())) || strings.Contains(status.Body, string(bob.UserID())) {
		t.Errorf("status should list alice and zoe, not bob who left: %q", status.Body)
	}

	// The start notice is edited with the progress, and keeps its pills and mentions:
	// clients show m.new_content, which has the HTML and m.mentions of the notice.
	progress := waitNoticeOf(t, alice, room, started.At, "progress edit", func(b string) bool { return strings.Contains(b, "recorded so far") })
	checkEditKeepsPills(t, progress, started, alice.UserID(), zoe.UserID())

	time.Sleep(2 * time.Second)
	since = time.Now()
	stopAt := time.Now()
	if err := alice.SendMessage(ctx, room, "!stop"); err != nil {
		t.Fatal(err)
	}
	waitNoticeOf(t, alice, room, since, "summary", func(b string) bool { return strings.Contains(b, "Recording saved") })
	ended := waitNoticeOf(t, alice, room, since, "the start notice's last edit", func(b string) bool { return strings.Contains(b, "Recording ended after") })
	checkEditKeepsPills(t, ended, started, alice.UserID(), zoe.UserID())
	folder, m := finishedFolder(t, rb)
	t.Logf("files:\n%s", describe(m))
	t0 := m.StartedAt
	at := func(ms int64) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

	// Participants and when they came and went.
	pa := participantsOf(m, alice.UserID())
	if len(pa) != 1 || !pa[0].JoinedAt.Equal(t0) {
		t.Errorf("alice, in the call before the start, should have joined at the start: %+v", pa)
	}
	pb := participantsOf(m, bob.UserID())
	if len(pb) != 1 || pb[0].LeftAt == nil {
		t.Fatalf("bob: %+v", pb)
	}
	near(t, "bob joined_at", pb[0].JoinedAt, bobEntered, 200*time.Millisecond)
	near(t, "bob left_at", *pb[0].LeftAt, bobLeft, 500*time.Millisecond)
	pz := participantsOf(m, zoe.UserID())
	if len(pz) != 2 {
		t.Fatalf("zoe should appear twice (before and after her reload): %+v", pz)
	}
	near(t, "zoe's second joined_at", pz[1].JoinedAt, zoeBack, 200*time.Millisecond)

	// Tracks: every file where it belongs on the timeline.
	// One file through screenshare, ICE restart and the microphone switch (440 Hz before
	// it, 660 Hz after).
	aAudio := filesOf(m, alice.UserID(), recorder.PurposeUserMedia, "audio")
	if len(aAudio) != 1 {
		t.Errorf("alice's microphone should be one file through screenshare, ICE restart and microphone switch: %+v", aAudio)
	} else {
		near(t, "alice's audio start", at(aAudio[0].StartOffsetMs), aliceUp, 200*time.Millisecond)
		if end := at(aAudio[0].StartOffsetMs + aAudio[0].DurationMs); end.Before(stopAt.Add(-time.Second)) {
			t.Errorf("alice's audio ends at %s, before the stop at %s", end.Format("15:04:05.000"), stopAt.Format("15:04:05.000"))
		}
		pcm, err := mediacheck.DecodePCM(ctx, filepath.Join(folder, aAudio[0].File), pcmRate)
		if err != nil {
			t.Fatal(err)
		}
		switchAt := micSwitch.Sub(at(aAudio[0].StartOffsetMs))
		window := func(from time.Duration) []int16 {
			a := max(0, int(from.Seconds()*pcmRate))
			return pcm[min(a, len(pcm)):min(a+pcmRate/2, len(pcm))]
		}
		before, after := window(switchAt-time.Second), window(switchAt+500*time.Millisecond)
		b440, b660 := mediacheck.ToneLevel(before, pcmRate, 440), mediacheck.ToneLevel(before, pcmRate, 660)
		a440, a660 := mediacheck.ToneLevel(after, pcmRate, 440), mediacheck.ToneLevel(after, pcmRate, 660)
		if b440 < 0.02 || b440 < 20*b660 || a660 < 0.02 || a660 < 20*a440 {
			t.Errorf("alice's audio: 440/660 Hz levels %.3f/%.3f before the switch, %.3f/%.3f after it", b440, b660, a440, a660)
		}
	}
	if v := filesOf(m, alice.UserID(), recorder.PurposeUserMedia, "video"); len(v) == 0 {
		t.Error("alice's camera was not recorded")
	}
	screen := filesOf(m, alice.UserID(), recorder.PurposeScreenshare, "video")
	if len(screen) != 1 || screen[0].Codec != "vp9" {
		t.Errorf("alice's screenshare: %+v", screen)
	} else {
		start := at(screen[0].StartOffsetMs)
		if start.Before(screenOn.Add(-200*time.Millisecond)) || start.After(screenOn.Add(1500*time.Millisecond)) {
			t.Errorf("screenshare starts at %s; it was started at %s", start.Format("15:04:05.000"), screenOn.Format("15:04:05.000"))
		}
		near(t, "screenshare end", at(screen[0].StartOffsetMs+screen[0].DurationMs), screenOff, 1500*time.Millisecond)
	}
	zAudio := filesOf(m, zoe.UserID(), recorder.PurposeUserMedia, "audio")
	if len(zAudio) != 2 || zAudio[0].Track != zAudio[1].Track || zAudio[1].Part != 2 {
		t.Errorf("zoe's microphone should continue as part 2 of the same track after her reload: %+v", zAudio)
	} else {
		near(t, "zoe's audio start", at(zAudio[0].StartOffsetMs), zoeUp, 200*time.Millisecond)
		near(t, "zoe's audio after the reload", at(zAudio[1].StartOffsetMs), zoeUp2, 200*time.Millisecond)
	}
	if zVideo := filesOf(m, zoe.UserID(), recorder.PurposeUserMedia, "video"); len(zVideo) != 2 {
		t.Errorf("zoe's camera should be two parts: %+v", zVideo)
	}
	bAudio := filesOf(m, bob.UserID(), recorder.PurposeUserMedia, "audio")
	if len(bAudio) != 1 {
		t.Errorf("bob's microphone: %+v", bAudio)
	} else {
		near(t, "bob's audio start", at(bAudio[0].StartOffsetMs), bobUp, 200*time.Millisecond)
		near(t, "bob's audio end", at(bAudio[0].StartOffsetMs+bAudio[0].DurationMs), bobLeft, 500*time.Millisecond)
	}
	checkAllFiles(t, folder, m)

	// The bot left the call: its member entry is gone.
	deadline := time.Now().Add(10 * time.Second)
	for len(botMemberDevices(alice, room, botID, conf)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if devs := botMemberDevices(alice, room, botID, conf); len(devs) > 0 {
		t.Errorf("the bot's member entry is still there after !stop: %+v", devs)
	}

	// Signalling as js-sdk expects it: no violations, nothing stuck behind a seq gap,
	// encrypted to alice and bob, plain to zoe once she showed she signals in plain.
	for _, p := range []struct {
		c *meshpeer.Client
		g *meshpeer.Group
	}{{alice, ga}, {bob, gb}, {zoe, gz}} {
		if v := p.c.Violations(); len(v) > 0 {
			t.Errorf("%s saw protocol violations: %q", p.c.UserID(), v)
		}
		if n := p.g.Blocked(); n > 0 {
			t.Errorf("%s: %d messages stuck behind a seq gap", p.c.UserID(), n)
		}
	}
	count := func(c *meshpeer.Client, encrypted bool) int {
		n := 0
		for _, r := range c.Received() {
			if r.Sender == botID && r.Encrypted == encrypted {
				n++
			}
		}
		return n
	}
	if count(alice, false) > 0 || count(alice, true) == 0 {
		t.Errorf("alice got %d plain and %d encrypted messages from the bot; want only encrypted", count(alice, false), count(alice, true))
	}
	if count(zoe, false) == 0 {
		t.Errorf("zoe signals in plain but got no plain messages from the bot")
	}
}

// clickOnsets returns where each loud burst starts in a mono PCM signal at pcmRate: the
// first sample above a quarter of full scale after at least 200 ms below it.
func clickOnsets(pcm []int16) []time.Duration {
	var out []time.Duration
	quietSince := 0
	for i, s := range pcm {
		if s > 8000 || s < -8000 {
			if i-quietSince >= pcmRate/5 {
				out = append(out, time.Duration(i)*time.Second/pcmRate)
			}
			quietSince = i + 1
		}
	}
	return out
}

// clickClip encodes 600 ms of silence with a 10 ms 1 kHz burst at 200 ms, with libopus in
// 20 ms CELT packets, one per Ogg page.
func clickClip(t *testing.T) *meshpeer.Click {
	t.Helper()
	path := filepath.Join(t.TempDir(), "click.ogg")
	out, err := exec.Command(mediacheck.FFmpeg, "-nostdin", "-v", "error", "-f", "lavfi",
		"-i", "aevalsrc=exprs='if(between(t,0.2,0.21),0.8*sin(2*PI*1000*t),0)':s=48000:d=0.6",
		"-c:a", "libopus", "-application", "lowdelay", "-frame_duration", "20", "-b:a", "96k",
		"-page_duration", "20000", path).CombinedOutput()
	if err != nil {
		t.Fatalf("encode the click: %v: %s", err, out)
	}
	clip, err := meshpeer.ReadClick(path, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return clip
}

// TestIntegrationMeshClickAlignment is issue 3's alignment check across peer connections:
// two participants, one calling the bot and one called by it, send a click at the same
// wall-clock moments; on the call's timeline (file time + start_offset_ms) the clicks of
// the two files land within ±20 ms of each other, and near when they really happened.
func TestIntegrationMeshClickAlignment(t *testing.T) {
	s := homeserver(t)
	rb := startBot(t, botConfig(t, s))
	botID := rb.bot.UserID()
	ctx := timeout(t, 3*time.Minute)
	alice := newMeshPeer(t, s, "alice", false)
	zoe := newMeshPeer(t, s, "zoe", true)
	room := meshRoom(t, ctx, alice, botID, zoe)
	conf, err := alice.CreateCall(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	clip := clickClip(t)
	var groups []*meshpeer.Group
	for _, c := range []*meshpeer.Client{alice, zoe} {
		g, err := c.Enter(ctx, room, conf, meshpeer.Media{Click: clip})
		if err != nil {
			t.Fatal(err)
		}
		groups = append(groups, g)
	}
	since := time.Now()
	if err := alice.SendMessage(ctx, room, "!start"); err != nil {
		t.Fatal(err)
	}
	waitNoticeOf(t, alice, room, since, "recording started", func(b string) bool { return strings.Contains(b, "Recording started") })
	for _, g := range groups {
		if _, err := g.WaitConnected(ctx, botID); err != nil {
			t.Fatal(err)
		}
	}
	// Let a few RTCP sender reports arrive, then click three times, a second apart.
	first := time.Now().Add(3 * time.Second).Truncate(20 * time.Millisecond)
	var clicks []time.Time
	for i := 0; i < 3; i++ {
		at := first.Add(time.Duration(i) * time.Second)
		clicks = append(clicks, at)
		for _, g := range groups {
			g.Click(at)
		}
	}
	time.Sleep(time.Until(clicks[2].Add(1500 * time.Millisecond)))
	since = time.Now()
	if err := alice.SendMessage(ctx, room, "!stop"); err != nil {
		t.Fatal(err)
	}
	waitNoticeOf(t, alice, room, since, "summary", func(b string) bool { return strings.Contains(b, "Recording saved") })
	folder, m := finishedFolder(t, rb)
	t.Logf("files:\n%s", describe(m))
	var timelines [][]time.Duration
	for _, c := range []*meshpeer.Client{alice, zoe} {
		files := filesOf(m, c.UserID(), recorder.PurposeUserMedia, "audio")
		if len(files) != 1 {
			t.Fatalf("%s: want one audio file, got %+v", c.UserID(), files)
		}
		f := files[0]
		checkFile(t, filepath.Join(folder, f.File), "opus", time.Duration(f.DurationMs)*time.Millisecond)
		pcm, err := mediacheck.DecodePCM(ctx, filepath.Join(folder, f.File), pcmRate)
		if err != nil {
			t.Fatal(err)
		}
		onsets := clickOnsets(pcm)
		if len(onsets) != len(clicks) {
			t.Fatalf("%s: found clicks at %v, want %d", f.File, onsets, len(clicks))
		}
		var tl []time.Duration
		for _, o := range onsets {
			tl = append(tl, time.Duration(f.StartOffsetMs)*time.Millisecond+o)
		}
		t.Logf("%s: start_offset_ms %d, clicks in file at %v, on the timeline at %v", f.File, f.StartOffsetMs, onsets, tl)
		timelines = append(timelines, tl)
	}
	for i, at := range clicks {
		want := at.Sub(m.StartedAt)
		t.Logf("click %d happened at %v on the timeline", i+1, want)
		a, b := timelines[0][i], timelines[1][i]
		if d := a - b; d > 20*time.Millisecond || d < -20*time.Millisecond {
			t.Errorf("click %d: %v in alice's file, %v in zoe's: %v apart, want ±20 ms", i+1, a, b, d)
		}
		for _, got := range []time.Duration{a, b} {
			if d := got - want; d > 100*time.Millisecond || d < -100*time.Millisecond {
				t.Errorf("click %d at %v on the timeline, it happened at %v", i+1, got, want)
			}
		}
	}
}

// roomFolder waits for the finished call folder of room in the bot's recordings dir.
func roomFolder(t *testing.T, rb *runningBot, room id.RoomID, within time.Duration) (string, *recorder.Manifest) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		entries, _ := os.ReadDir(rb.cfg.Recordings.Dir)
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			folder := filepath.Join(rb.cfg.Recordings.Dir, e.Name())
			if m, err := recorder.ReadManifest(folder); err == nil && m.RoomID == string(room) && m.Status == recorder.StatusFinished {
				return folder, m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished call folder for %s", room)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestIntegrationMeshEndsAndConsent runs three recordings at once, in three rooms, each
// ending its own way: the call is terminated (room A), the last participant leaves (room
// B), the bot is kicked (room C). In room A, zoe opts out for a while: her packets are not
// written meanwhile, her parts say so, and the manifest lists her opt-out.
func TestIntegrationMeshEndsAndConsent(t *testing.T) {
	s := homeserver(t)
	rb := startBot(t, botConfig(t, s))
	botID := rb.bot.UserID()
	ctx := timeout(t, 4*time.Minute)
	alice := newMeshPeer(t, s, "alice", false)
	zoe := newMeshPeer(t, s, "zoe", false)
	bob := newMeshPeer(t, s, "bob", true)
	carol := newMeshPeer(t, s, "carol", false)

	roomA := meshRoom(t, ctx, alice, botID, zoe)
	roomB := meshRoom(t, ctx, bob, botID)
	roomC := meshRoom(t, ctx, carol, botID)
	audio := meshpeer.Media{Audio: testmedia.Tone440}
	enter := func(c *meshpeer.Client, room id.RoomID, conf string) *meshpeer.Group {
		g, err := c.Enter(ctx, room, conf, audio)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	confA, err := alice.CreateCall(ctx, roomA)
	if err != nil {
		t.Fatal(err)
	}
	ga, gz := enter(alice, roomA, confA), enter(zoe, roomA, confA)
	confB, err := bob.CreateCall(ctx, roomB)
	if err != nil {
		t.Fatal(err)
	}
	gb := enter(bob, roomB, confB)
	confC, err := carol.CreateCall(ctx, roomC)
	if err != nil {
		t.Fatal(err)
	}
	gc := enter(carol, roomC, confC)
	for _, r := range []struct {
		c    *meshpeer.Client
		room id.RoomID
	}{{alice, roomA}, {bob, roomB}, {carol, roomC}} {
		since := time.Now()
		if err := r.c.SendMessage(ctx, r.room, "!start"); err != nil {
			t.Fatal(err)
		}
		waitNoticeOf(t, r.c, r.room, since, "recording started", func(b string) bool { return strings.Contains(b, "Recording started") })
	}
	for _, g := range []*meshpeer.Group{ga, gz, gb, gc} {
		if _, err := g.WaitConnected(ctx, botID); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second)

	// Each room's status shows its own call only.
	since := time.Now()
	if err := bob.SendMessage(ctx, roomB, "!status"); err != nil {
		t.Fatal(err)
	}
	st := waitNoticeOf(t, bob, roomB, since, "status", func(b string) bool { return strings.Contains(b, "Recording (mesh)") })
	if !strings.Contains(st.Body, string(bob.UserID())) || strings.Contains(st.Body, string(alice.UserID())) {
		t.Errorf("room B's status: %q", st.Body)
	}

	// zoe opts out for two seconds.
	since = time.Now()
	skipAt := time.Now()
	if err := zoe.SendMessage(ctx, roomA, "!skipme"); err != nil {
		t.Fatal(err)
	}
	waitNoticeOf(t, zoe, roomA, since, "opt-out confirmation", func(b string) bool { return strings.Contains(b, "not recorded") })
	time.Sleep(2 * time.Second)
	since = time.Now()
	recordAt := time.Now()
	if err := zoe.SendMessage(ctx, roomA, "!recordme"); err != nil {
		t.Fatal(err)
	}
	waitNoticeOf(t, zoe, roomA, since, "opt-in confirmation", func(b string) bool { return strings.Contains(b, "recorded again") })
	time.Sleep(2 * time.Second)

	// Room C: the bot is kicked. Room A: the call is terminated. Room B: bob leaves.
	if _, err := carol.Matrix().KickUser(ctx, roomC, &mautrix.ReqKickUser{UserID: botID, Reason: "no recording here"}); err != nil {
		t.Fatal(err)
	}
	since = time.Now()
	if err := alice.EndCall(ctx, roomA, confA); err != nil {
		t.Fatal(err)
	}
	endedA := waitNoticeOf(t, alice, roomA, since, "summary in room A", func(b string) bool { return strings.Contains(b, "Recording saved") })
	if !strings.Contains(endedA.Body, "the call was ended") {
		t.Errorf("room A's summary does not say why it stopped: %q", endedA.Body)
	}
	leftB := time.Now()
	if err := gb.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	endedB := waitNoticeOf(t, bob, roomB, leftB, "summary in room B", func(b string) bool { return strings.Contains(b, "Recording saved") })
	if !strings.Contains(endedB.Body, "everyone left") {
		t.Errorf("room B's summary does not say why it stopped: %q", endedB.Body)
	}

	folderA, mA := roomFolder(t, rb, roomA, 10*time.Second)
	folderB, mB := roomFolder(t, rb, roomB, 10*time.Second)
	folderC, mC := roomFolder(t, rb, roomC, 10*time.Second)
	for _, f := range []struct {
		folder string
		m      *recorder.Manifest
	}{{folderA, mA}, {folderB, mB}, {folderC, mC}} {
		t.Logf("%s:\n%s", filepath.Base(f.folder), describe(f.m))
		checkAllFiles(t, f.folder, f.m)
	}
	if len(mB.Tracks) != 1 || len(mC.Tracks) != 1 {
		t.Errorf("rooms B and C should have one file each: %d and %d", len(mB.Tracks), len(mC.Tracks))
	}
	if end := mB.EndedAt.Sub(leftB); end < 10*time.Second || end > 30*time.Second {
		t.Errorf("room B ended %v after bob left; want after the grace for rejoins", end)
	}

	// Consent: zoe's audio stops at !skipme and starts again at !recordme.
	zAudio := filesOf(mA, zoe.UserID(), recorder.PurposeUserMedia, "audio")
	if len(zAudio) != 2 {
		t.Fatalf("zoe's audio should be two parts around her opt-out: %+v", zAudio)
	}
	t0 := mA.StartedAt
	near(t, "zoe's part 1 end", t0.Add(time.Duration(zAudio[0].StartOffsetMs+zAudio[0].DurationMs)*time.Millisecond), skipAt, 400*time.Millisecond)
	p2 := t0.Add(time.Duration(zAudio[1].StartOffsetMs) * time.Millisecond)
	if p2.Before(recordAt) || p2.After(recordAt.Add(time.Second)) {
		t.Errorf("zoe's part 2 starts at %s, she opted in at %s", p2.Format("15:04:05.000"), recordAt.Format("15:04:05.000"))
	}
	if len(mA.OptOuts) != 1 || mA.OptOuts[0].UserID != string(zoe.UserID()) || mA.OptOuts[0].Until == nil {
		t.Fatalf("manifest opt-outs: %+v", mA.OptOuts)
	}
	near(t, "opt-out from", mA.OptOuts[0].From, skipAt, 500*time.Millisecond)
	near(t, "opt-out until", *mA.OptOuts[0].Until, recordAt, 500*time.Millisecond)
	if a := filesOf(mA, alice.UserID(), recorder.PurposeUserMedia, "audio"); len(a) != 1 {
		t.Errorf("alice's audio should be unaffected by zoe's opt-out: %+v", a)
	}

	// The bot left each call it could: no member entry in A and B.
	time.Sleep(time.Second)
	if devs := botMemberDevices(alice, roomA, botID, confA); len(devs) > 0 {
		t.Errorf("bot still in call A: %+v", devs)
	}
	if devs := botMemberDevices(bob, roomB, botID, confB); len(devs) > 0 {
		t.Errorf("bot still in call B: %+v", devs)
	}
	for _, c := range []*meshpeer.Client{alice, zoe, bob, carol} {
		if v := c.Violations(); len(v) > 0 {
			t.Errorf("%s saw protocol violations: %q", c.UserID(), v)
		}
	}
}
