package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	lk "github.com/matrix-recorder/matrix-recorder/call/livekit"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/devhs"
	"github.com/matrix-recorder/matrix-recorder/internal/devjwt"
	"github.com/matrix-recorder/matrix-recorder/internal/devlivekit"
	"github.com/matrix-recorder/matrix-recorder/internal/lkpeer"
	"github.com/matrix-recorder/matrix-recorder/internal/mediacheck"
	"github.com/matrix-recorder/matrix-recorder/internal/testclient"
	"github.com/matrix-recorder/matrix-recorder/internal/testenv"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// lkEnv is what Element Call needs around the bot: a homeserver whose federation API
// answers OpenID userinfo, LiveKit SFUs, and JWT services in front of them.
type lkEnv struct {
	hs *devhs.Server
	// sfu1 sits behind jwt (lk-jwt-service ≥ 0.4: /get_token, hashed room names); sfu2
	// behind oldJWT (before 0.4: no /get_token, the room is the Matrix room id).
	sfu1, sfu2  *devlivekit.Server
	jwt, oldJWT *devjwt.Service
}

func startLKEnv(t *testing.T) *lkEnv {
	t.Helper()
	testenv.RequireIntegration(t)
	mediacheck.Require(t, mediacheck.FFmpeg, mediacheck.FFprobe)
	ctx := context.Background()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	env := &lkEnv{}
	var err error
	env.hs, err = devhs.Start(ctx, devhs.Options{Federation: true, Logger: &log})
	if err != nil {
		t.Fatalf("start dendrite: %v", err)
	}
	t.Cleanup(func() { _ = env.hs.Stop() })
	for _, s := range []**devlivekit.Server{&env.sfu1, &env.sfu2} {
		*s, err = devlivekit.Start(ctx, devlivekit.Options{Logger: &log})
		if err != nil {
			t.Fatalf("start livekit-server: %v", err)
		}
		srv := *s
		t.Cleanup(func() { _ = srv.Stop() })
		testenv.LogOnFailure(t, "livekit-server", func() string { return srv.LogTail(6000) })
	}
	hsMap := map[string]string{env.hs.ServerName(): env.hs.URL()}
	env.jwt, err = devjwt.Start(devjwt.Options{
		LiveKitURL: env.sfu1.URL(), LiveKitHTTPURL: env.sfu1.HTTPURL(), APIKey: env.sfu1.APIKey(), APISecret: env.sfu1.APISecret(),
		Homeservers: hsMap, Logger: testLogger(t).With().Str("side", "jwt").Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.jwt.Close() })
	env.oldJWT, err = devjwt.Start(devjwt.Options{
		LiveKitURL: env.sfu2.URL(), LiveKitHTTPURL: env.sfu2.HTTPURL(), APIKey: env.sfu2.APIKey(), APISecret: env.sfu2.APISecret(),
		Homeservers: hsMap, NoGetToken: true, LegacyRoomNames: true, Logger: testLogger(t).With().Str("side", "old-jwt").Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.oldJWT.Close() })
	return env
}

// botConfig is the harness's bot config for Element Call tests: the test JWT services
// run on plain http on 127.0.0.1 and Dendrite has no .well-known/matrix/client, so the bot
// trusts them only because they are listed in livekit.trusted_jwt_services.
//
// Calls are not answered by themselves (calls.auto_answer off): most of these tests record
// with !start in rooms of the bot and one caller, which the bot would otherwise take for
// direct calls and answer itself, racing the command. The tests of direct calls turn it on.
func (env *lkEnv) botConfig(t *testing.T) config.Config {
	t.Helper()
	cfg := botConfig(t, env.hs)
	cfg.Calls.AutoAnswer = false
	for _, svc := range []*devjwt.Service{env.jwt, env.oldJWT} {
		if svc != nil {
			cfg.LiveKit.TrustedJWTServices = append(cfg.LiveKit.TrustedJWTServices, svc.URL())
		}
	}
	return cfg
}

func (env *lkEnv) peer(t *testing.T, prefix string, o lkpeer.Options) *lkpeer.Peer {
	t.Helper()
	ctx := context.Background()
	local := uniq(prefix)
	acc, err := env.hs.Register(ctx, local, "pw-"+local)
	if err != nil {
		t.Fatalf("register %s: %v", local, err)
	}
	o.Homeserver, o.UserID, o.AccessToken, o.DeviceID = env.hs.URL(), acc.UserID, acc.AccessToken, acc.DeviceID
	o.DataDir = t.TempDir()
	o.Logger = testLogger(t).With().Str("side", local).Logger()
	if o.ServiceURL == "" {
		o.ServiceURL = env.jwt.URL()
	}
	p, err := lkpeer.New(ctx, o)
	if err != nil {
		t.Fatalf("start peer %s: %v", local, err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// joinCall joins peers to the Element Call call in room and returns a context for the
// rest of the call (two minutes).
func joinCall(t *testing.T, room id.RoomID, peers ...*lkpeer.Peer) context.Context {
	t.Helper()
	ctx := timeout(t, 2*time.Minute)
	for _, p := range peers {
		if err := p.Join(ctx, room); err != nil {
			t.Fatal(err)
		}
	}
	return ctx
}

// callRoom creates a room as Element does for calls (members may send call membership
// state), with everyone invited and joined.
// startedTwoSpeakerCall starts an encrypted Element Call (LiveKit) call of alice and bob in a
// new room with the bot, each publishing a tone on the microphone (alice 440 Hz, bob 660 Hz),
// and has alice type !start; it returns once the bot said it records, with the moment
// !start was sent.
func startedTwoSpeakerCall(t *testing.T, env *lkEnv, bot id.UserID) (room id.RoomID, alice, bob *lkpeer.Peer, started time.Time) {
	t.Helper()
	alice = env.peer(t, "alice", lkpeer.Options{Encrypt: true})
	bob = env.peer(t, "bob", lkpeer.Options{Encrypt: true})
	room = callRoom(t, alice, true, bot, bob)
	joinCall(t, room, alice, bob)
	mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
	mustPublish(t, bob, testmedia.Tone660, livekit.TrackSource_MICROPHONE)
	started = send(t, alice, room, "!start")
	waitMessage(t, alice, room, started, 90*time.Second, "Recording started")
	return room, alice, bob, started
}

func callRoom(t *testing.T, owner *lkpeer.Peer, encrypted bool, bot id.UserID, others ...*lkpeer.Peer) id.RoomID {
	t.Helper()
	ctx := timeout(t, time.Minute)
	invite := []id.UserID{bot}
	for _, o := range others {
		invite = append(invite, o.UserID())
	}
	req := &mautrix.ReqCreateRoom{
		Preset: "private_chat", Invite: invite,
		PowerLevelOverride: &event.PowerLevelsEventContent{Events: map[string]int{matrixrtc.TypeCallMember.Type: 0, matrixrtc.TypeRTCMember.Type: 0, lk.TypeEncryptionKeys.Type: 0}},
	}
	if encrypted {
		req.InitialState = []*event.Event{{Type: event.StateEncryption, Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}}}}
	}
	resp, err := owner.Matrix().CreateRoom(ctx, req)
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	for _, o := range others {
		if _, err := o.Matrix().JoinRoomByID(ctx, resp.RoomID); err != nil {
			t.Fatalf("join room: %v", err)
		}
	}
	for {
		members, err := owner.Matrix().JoinedMembers(ctx, resp.RoomID)
		if err == nil && members.Joined[bot].DisplayName != "" || err == nil && hasMember(members, bot) {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the bot did not join the room")
		}
		time.Sleep(200 * time.Millisecond)
	}
	return resp.RoomID
}

func hasMember(m *mautrix.RespJoinedMembers, u id.UserID) bool {
	_, ok := m.Joined[u]
	return ok
}

func send(t *testing.T, p *lkpeer.Peer, room id.RoomID, text string) time.Time {
	t.Helper()
	at := time.Now()
	if _, err := p.Matrix().SendMessageEvent(timeout(t, 30*time.Second), room, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgText, Body: text}); err != nil {
		t.Fatalf("send %q: %v", text, err)
	}
	return at
}

func waitMessage(t *testing.T, p *lkpeer.Peer, room id.RoomID, since time.Time, d time.Duration, substr string) string {
	t.Helper()
	return waitView(t, "message", func() []testclient.Message { return p.MessagesIn(room) }, since, d, substr)
}

// record starts the bot's recording, runs during while the recording goes, stops it and
// returns the finished folder.
func record(t *testing.T, rb *runningBot, owner *lkpeer.Peer, room id.RoomID, during func()) (string, *recorder.Manifest) {
	t.Helper()
	since := send(t, owner, room, "!start")
	waitMessage(t, owner, room, since, 90*time.Second, "Recording started")
	during()
	since = send(t, owner, room, "!stop")
	summary := waitMessage(t, owner, room, since, 90*time.Second, "Recording saved")
	t.Logf("summary:\n%s", summary)
	folder, m := finishedFolder(t, rb)
	keepOnFailure(t, folder)
	if m.Kind != "livekit" {
		t.Fatalf("recorded by the %q backend, want livekit", m.Kind)
	}
	t.Logf("files:\n%s", describe(m))
	return folder, m
}

// lkFiles returns the files of a user's source, in part order.
func lkFiles(m *recorder.Manifest, user id.UserID, source string) []recorder.FileEntry {
	var out []recorder.FileEntry
	for _, f := range m.Tracks {
		if f.UserID == string(user) && f.Source == source {
			out = append(out, f)
		}
	}
	return out
}

// fileOf returns the one file of a user's source.
func fileOf(t *testing.T, m *recorder.Manifest, user id.UserID, source string) recorder.FileEntry {
	t.Helper()
	var found []recorder.FileEntry
	for _, f := range m.Tracks {
		if f.UserID == string(user) && f.Source == source {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s file of %s, manifest has %d:\n%s", source, user, len(found), describe(m))
	}
	return found[0]
}

// checkAudio checks an Opus file end to end: tools accept it, it decodes, and every half
// second of it carries the sender's tone and not the other one.
func checkAudio(t *testing.T, folder string, f recorder.FileEntry, hz, other float64) {
	t.Helper()
	path := filepath.Join(folder, f.File)
	checkFile(t, path, "opus", time.Duration(f.DurationMs)*time.Millisecond)
	pcm, err := mediacheck.DecodePCM(timeout(t, time.Minute), path, pcmRate)
	if err != nil {
		t.Fatal(err)
	}
	wins := mediacheck.Windows(pcm, pcmRate, 500*time.Millisecond)
	if len(wins) < 2 {
		t.Fatalf("%s: only %d half seconds of audio", f.File, len(wins))
	}
	for i, w := range wins[:len(wins)-1] { // the last window may be partial
		a, b := mediacheck.ToneLevel(w, pcmRate, hz), mediacheck.ToneLevel(w, pcmRate, other)
		if a < 0.02 || a < 5*b {
			t.Errorf("%s: at %v the %v Hz tone is at %.4f (%v Hz at %.4f); want the tone throughout", f.File, time.Duration(i)*500*time.Millisecond, hz, a, other, b)
		}
	}
	if f.Stats.FramesUndecrypted != 0 {
		t.Errorf("%s: %d undecryptable frames", f.File, f.Stats.FramesUndecrypted)
	}
}

// checkVideo checks a video file: tools accept it and its frames decode to the test pattern
// of the asset that was sent (bit-exact decodes of the same bitstream).
func checkVideo(t *testing.T, folder string, f recorder.FileEntry, codec, asset string) {
	t.Helper()
	path := filepath.Join(folder, f.File)
	checkFile(t, path, codec, time.Duration(f.DurationMs)*time.Millisecond)
	matchTestPattern(t, path, asset, 30)
	if f.Stats.FramesUndecrypted != 0 {
		t.Errorf("%s: %d undecryptable frames", f.File, f.Stats.FramesUndecrypted)
	}
	if f.CodecParams.Width != 320 || f.CodecParams.Height != 240 {
		t.Errorf("%s: %dx%d, want 320x240", f.File, f.CodecParams.Width, f.CodecParams.Height)
	}
}

// botMembership reads the bot's call membership state in the room.
func botMembership(t *testing.T, p *lkpeer.Peer, room id.RoomID, rb *runningBot) map[string]any {
	t.Helper()
	key := matrixrtc.SessionStateKey(rb.bot.UserID(), rb.bot.DeviceID(), "10")
	var content map[string]any
	if err := p.Matrix().StateEvent(timeout(t, 30*time.Second), room, matrixrtc.TypeCallMember, key, &content); err != nil {
		t.Fatalf("read the bot's membership: %v", err)
	}
	return content
}

// Element Call as people use it: the bot finds the call from the members' memberships,
// joins every SFU they publish on, and records every track as plain media.
func TestIntegrationLiveKit(t *testing.T) {
	env := startLKEnv(t)

	// Unencrypted, multi-SFU: alice (session membership) and bob (sticky rtc.member) publish
	// on the current JWT service's SFU, carol on an old JWT service's (no /get_token; the
	// room is named by the Matrix room id). The bot joins both SFUs.
	t.Run("Unencrypted", func(t *testing.T) {
		cfg := env.botConfig(t)
		rb := startBot(t, cfg)
		alice := env.peer(t, "alice", lkpeer.Options{})
		bob := env.peer(t, "bob", lkpeer.Options{Format: lkpeer.FormatSticky})
		carol := env.peer(t, "carol", lkpeer.Options{ServiceURL: env.oldJWT.URL()})
		room := callRoom(t, alice, false, rb.bot.UserID(), bob, carol)
		joinCall(t, room, alice, bob, carol)
		mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
		mustPublish(t, alice, testmedia.VP8, livekit.TrackSource_CAMERA)
		mustPublish(t, bob, testmedia.Tone660, livekit.TrackSource_MICROPHONE)
		mustPublish(t, carol, testmedia.Tone660, livekit.TrackSource_MICROPHONE)
		var markAt time.Time
		folder, m := record(t, rb, alice, room, func() {
			if c := botMembership(t, alice, room, rb); c["device_id"] != string(rb.bot.DeviceID()) {
				t.Errorf("while recording, the bot's membership is %v", c)
			}
			time.Sleep(3 * time.Second)
			since := send(t, alice, room, "!status")
			st := waitMessage(t, alice, room, since, 30*time.Second, "Recording (livekit)")
			for _, p := range []*lkpeer.Peer{alice, bob, carol} {
				if !strings.Contains(st, string(p.UserID())+" ("+string(p.DeviceID())+")") {
					t.Errorf("!status does not list %s:\n%s", p.UserID(), st)
				}
			}
			markAt = send(t, bob, room, "!mark -2s chorus")
			time.Sleep(3 * time.Second)
		})
		// A marker set by another participant, on the group call's timeline, moved back 2 s.
		if len(m.Markers) != 1 || m.Markers[0].Text != "chorus" || m.Markers[0].UserID != string(bob.UserID()) {
			t.Errorf("markers %+v, want bob's \"chorus\"", m.Markers)
		} else if want := markAt.Add(-2 * time.Second).Sub(m.StartedAt).Milliseconds(); m.Markers[0].AtMs < want-1000 || m.Markers[0].AtMs > want+2000 {
			t.Errorf("marker at %d ms, sent for about %d ms", m.Markers[0].AtMs, want)
		}
		checkAudio(t, folder, fileOf(t, m, alice.UserID(), recorder.SourceMicrophone), 440, 660)
		checkVideo(t, folder, fileOf(t, m, alice.UserID(), recorder.SourceCamera), "vp8", testmedia.VP8)
		checkAudio(t, folder, fileOf(t, m, bob.UserID(), recorder.SourceMicrophone), 660, 440)
		checkAudio(t, folder, fileOf(t, m, carol.UserID(), recorder.SourceMicrophone), 660, 440)
		if f := fileOf(t, m, bob.UserID(), recorder.SourceMicrophone); f.DeviceID != string(bob.DeviceID()) {
			t.Errorf("bob's hashed LiveKit identity was not mapped to his device: %+v", f)
		}
		if c := botMembership(t, alice, room, rb); len(c) != 0 {
			t.Errorf("after the recording the bot's membership is still %v", c)
		}
		// Bob's membership is sticky, so the bot's would be too; Dendrite has no sticky
		// events, so it is the state event, and the token the one that goes with it.
		assertBotAccess(t, env.jwt, rb, "/sfu/get")
		assertBotAccess(t, env.oldJWT, rb, "/sfu/get")
	})

	// Encrypted: per-participant E2EE, keys over Olm to-device, sent only to cross-signed
	// devices (so the bot's cross-signing bootstrap is exercised); bob publishes H.264.
	t.Run("Encrypted", func(t *testing.T) {
		cfg := env.botConfig(t)
		rb := startBot(t, cfg)
		alice := env.peer(t, "alice", lkpeer.Options{Encrypt: true, OnlyCrossSigned: true})
		bob := env.peer(t, "bob", lkpeer.Options{Encrypt: true, OnlyCrossSigned: true, Format: lkpeer.FormatSticky})
		room := callRoom(t, alice, true, rb.bot.UserID(), bob)
		joinCall(t, room, alice, bob)
		mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
		mustPublish(t, alice, testmedia.VP8, livekit.TrackSource_CAMERA)
		mustPublish(t, bob, testmedia.Tone660, livekit.TrackSource_MICROPHONE)
		mustPublish(t, bob, testmedia.H264, livekit.TrackSource_CAMERA)
		folder, m := record(t, rb, alice, room, func() { time.Sleep(7 * time.Second) })
		checkAudio(t, folder, fileOf(t, m, alice.UserID(), recorder.SourceMicrophone), 440, 660)
		checkVideo(t, folder, fileOf(t, m, alice.UserID(), recorder.SourceCamera), "vp8", testmedia.VP8)
		checkAudio(t, folder, fileOf(t, m, bob.UserID(), recorder.SourceMicrophone), 660, 440)
		checkVideo(t, folder, fileOf(t, m, bob.UserID(), recorder.SourceCamera), "h264", testmedia.H264)
	})

	// Encrypted VP9 (Element Call's choice when VP8 is not preferred): no byte of a VP9
	// frame is left in the clear, so keyframes are only known once decrypted.
	t.Run("EncryptedVP9", func(t *testing.T) {
		rb := startBot(t, env.botConfig(t))
		alice := env.peer(t, "alice", lkpeer.Options{Encrypt: true})
		room := callRoom(t, alice, true, rb.bot.UserID())
		joinCall(t, room, alice)
		mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
		mustPublish(t, alice, testmedia.VP9, livekit.TrackSource_CAMERA)
		folder, m := record(t, rb, alice, room, func() { time.Sleep(5 * time.Second) })
		checkAudio(t, folder, fileOf(t, m, alice.UserID(), recorder.SourceMicrophone), 440, 660)
		checkVideo(t, folder, fileOf(t, m, alice.UserID(), recorder.SourceCamera), "vp9", testmedia.VP9)
	})

	// Key rotation mid-call: new keys at new indexes, used a second after they are sent.
	t.Run("KeyRotation", func(t *testing.T) {
		rb := startBot(t, env.botConfig(t))
		alice := env.peer(t, "alice", lkpeer.Options{Encrypt: true})
		room := callRoom(t, alice, true, rb.bot.UserID())
		ctx := joinCall(t, room, alice)
		mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
		mustPublish(t, alice, testmedia.VP8, livekit.TrackSource_CAMERA)
		folder, m := record(t, rb, alice, room, func() {
			time.Sleep(3 * time.Second)
			for i := 0; i < 2; i++ {
				if err := alice.RotateKey(ctx); err != nil {
					t.Fatal(err)
				}
				time.Sleep(3 * time.Second)
			}
			if alice.KeyIndex() != 2 {
				t.Fatalf("alice encrypts with key %d, want 2", alice.KeyIndex())
			}
		})
		checkAudio(t, folder, fileOf(t, m, alice.UserID(), recorder.SourceMicrophone), 440, 660)
		checkVideo(t, folder, fileOf(t, m, alice.UserID(), recorder.SourceCamera), "vp8", testmedia.VP8)
	})

	// A participant who joins late (and whose key comes late, so frames wait for it) and
	// leaves early: their files sit where they were on the call's timeline, nothing of them
	// is lost, and the manifest says when they came and went.
	t.Run("LateJoinerLeavesEarly", func(t *testing.T) {
		rb := startBot(t, env.botConfig(t))
		alice := env.peer(t, "alice", lkpeer.Options{Encrypt: true})
		bob := env.peer(t, "bob", lkpeer.Options{Encrypt: true, KeyDelay: 1500 * time.Millisecond})
		room := callRoom(t, alice, true, rb.bot.UserID(), bob)
		ctx := joinCall(t, room, alice)
		mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
		// The moments the checks below measure against, each taken around the step it
		// brackets, so that a slow join, publish or notice on a loaded machine widens the
		// window instead of failing the test: bob's file may not start before he joined or
		// later than shortly after his audio started to flow, and it ends when he leaves.
		var bobJoined, bobPublished, bobLeaving, bobLeft time.Time
		folder, m := record(t, rb, alice, room, func() {
			time.Sleep(3 * time.Second)
			bobJoined = time.Now()
			if err := bob.Join(ctx, room); err != nil {
				t.Fatal(err)
			}
			mustPublish(t, bob, testmedia.Tone660, livekit.TrackSource_MICROPHONE)
			bobPublished = time.Now()
			// Everyone in a recorded call is told: bob, who came after the start notice, by
			// a notice that mentions him.
			told := waitMessage(t, alice, room, bobJoined, 30*time.Second, "joined the call, which is being recorded")
			if !strings.Contains(told, string(bob.UserID())) || !strings.Contains(told, "skipme") {
				t.Errorf("the late joiner's notice does not name him or the opt-out: %q", told)
			}
			time.Sleep(3 * time.Second)
			bobLeaving = time.Now()
			if err := bob.Leave(ctx); err != nil {
				t.Fatal(err)
			}
			bobLeft = time.Now()
			time.Sleep(3 * time.Second)
		})
		a := fileOf(t, m, alice.UserID(), recorder.SourceMicrophone)
		b := fileOf(t, m, bob.UserID(), recorder.SourceMicrophone)
		checkAudio(t, folder, a, 440, 660)
		checkAudio(t, folder, b, 660, 440)
		// The SFU forwards bob's track once the bot has subscribed to it, which follows his
		// publication by a round of signalling: 3 s of slack after it, 0.5 s for clocks.
		on := func(at time.Time) time.Duration { return at.Sub(m.StartedAt) }
		start := time.Duration(b.StartOffsetMs) * time.Millisecond
		if start < on(bobJoined)-500*time.Millisecond || start > on(bobPublished)+3*time.Second {
			t.Errorf("bob's file starts at %v on the timeline; he joined at %v and published by %v", start, on(bobJoined), on(bobPublished))
		}
		end := start + time.Duration(b.DurationMs)*time.Millisecond
		if end < on(bobLeaving)-2*time.Second || end > on(bobLeft)+time.Second {
			t.Errorf("bob's file ends at %v on the timeline; he left between %v and %v", end, on(bobLeaving), on(bobLeft))
		}
		var left bool
		for _, p := range m.Participants {
			if p.UserID == string(bob.UserID()) && p.LeftAt != nil && p.LeftAt.Before(*m.EndedAt) {
				left = true
			}
		}
		if !left {
			t.Errorf("the manifest does not say bob left before the end: %+v", m.Participants)
		}
	})

	// Screen share (alice uses the older per-user membership list): a separate file with
	// source screen_share, from when it started to when it stopped.
	t.Run("Screenshare", func(t *testing.T) {
		rb := startBot(t, env.botConfig(t))
		alice := env.peer(t, "alice", lkpeer.Options{Format: lkpeer.FormatLegacy})
		room := callRoom(t, alice, false, rb.bot.UserID())
		joinCall(t, room, alice)
		mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
		mustPublish(t, alice, testmedia.VP8, livekit.TrackSource_CAMERA)
		folder, m := record(t, rb, alice, room, func() {
			// Share, stop, share again: the second share continues the same logical track.
			for i := 0; i < 2; i++ {
				time.Sleep(2 * time.Second)
				screen := mustPublish(t, alice, testmedia.VP8, livekit.TrackSource_SCREEN_SHARE)
				time.Sleep(3 * time.Second)
				if err := screen.Stop(); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(time.Second)
		})
		shares := lkFiles(m, alice.UserID(), recorder.SourceScreenShare)
		if len(shares) != 2 || shares[0].Part != 1 || shares[1].Part != 2 || shares[0].Track != shares[1].Track {
			t.Fatalf("want the two screen shares as parts 1 and 2 of one track:\n%s", describe(m))
		}
		for _, s := range shares {
			if s.Purpose != recorder.PurposeScreenshare {
				t.Errorf("screen share purpose %q", s.Purpose)
			}
			checkVideo(t, folder, s, "vp8", testmedia.VP8)
			if d := time.Duration(s.DurationMs) * time.Millisecond; d < 2*time.Second || d > 4*time.Second {
				t.Errorf("%s lasts %v, want about 3 s", s.File, d)
			}
		}
		if gap := shares[1].StartOffsetMs - (shares[0].StartOffsetMs + shares[0].DurationMs); gap < 1000 || gap > 3500 {
			t.Errorf("the second share starts %d ms after the first ended, want about 2 s", gap)
		}
		checkVideo(t, folder, fileOf(t, m, alice.UserID(), recorder.SourceCamera), "vp8", testmedia.VP8)
	})

	// Simulcast (as Element Call publishes cameras): the bot records the highest layer; when
	// the publisher stops sending it the SFU switches the bot to the low layer and back, and
	// the camera keeps being recorded throughout. (server-sdk-go does not mark simulcast
	// publications as encrypted, so this also covers encrypted frames on a track published as
	// unencrypted.)
	t.Run("Simulcast", func(t *testing.T) {
		rb := startBot(t, env.botConfig(t))
		alice := env.peer(t, "alice", lkpeer.Options{Encrypt: true})
		room := callRoom(t, alice, true, rb.bot.UserID())
		ctx := joinCall(t, room, alice)
		mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
		sim, err := alice.PublishSimulcast(ctx, testmedia.VP8, livekit.TrackSource_CAMERA)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sim.Stop() })
		folder, m := record(t, rb, alice, room, func() {
			time.Sleep(3 * time.Second)
			sim.High().Pause(testmedia.PauseSilent)
			time.Sleep(6 * time.Second)
			sim.High().Resume()
			time.Sleep(4 * time.Second)
		})
		checkAudio(t, folder, fileOf(t, m, alice.UserID(), recorder.SourceMicrophone), 440, 660)
		cams := lkFiles(m, alice.UserID(), recorder.SourceCamera)
		if len(cams) == 0 {
			t.Fatalf("no camera file:\n%s", describe(m))
		}
		total := time.Duration(m.DurationMs) * time.Millisecond
		var covered time.Duration
		for _, c := range cams {
			path := filepath.Join(folder, c.File)
			checkFile(t, path, "vp8", time.Duration(c.DurationMs)*time.Millisecond)
			if n := allTestPattern(t, path, testmedia.VP8); n < 15 {
				t.Errorf("%s: only %d frames", c.File, n)
			}
			if c.Stats.FramesUndecrypted != 0 {
				t.Errorf("%s: %d undecryptable frames", c.File, c.Stats.FramesUndecrypted)
			}
			covered += time.Duration(c.DurationMs) * time.Millisecond
			for _, g := range c.Gaps {
				if g.DurationMs > 3000 {
					t.Errorf("%s: %d ms without video at %d ms: the bot was not switched to the low layer", c.File, g.DurationMs, g.AtMs)
				}
			}
		}
		if covered < total-4*time.Second {
			t.Errorf("camera recorded for %v of a %v recording:\n%s", covered, total, describe(m))
		}
	})

	// The SFU drops the bot (here: the room service removes it, as an SFU restart or a lost
	// connection would end it): the bot fetches a new token, joins again, and the tracks
	// continue as the next parts of the same logical tracks, decrypted with the keys it has.
	t.Run("Reconnect", func(t *testing.T) {
		rb := startBot(t, env.botConfig(t))
		alice := env.peer(t, "alice", lkpeer.Options{Encrypt: true})
		room := callRoom(t, alice, true, rb.bot.UserID())
		ctx := joinCall(t, room, alice)
		mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
		mustPublish(t, alice, testmedia.VP8, livekit.TrackSource_CAMERA)
		folder, m := record(t, rb, alice, room, func() {
			time.Sleep(3 * time.Second)
			var grant *devjwt.Grant
			for _, g := range env.jwt.Issued() {
				if g.UserID == string(rb.bot.UserID()) {
					grant = &g
				}
			}
			if grant == nil {
				t.Fatal("the bot got no token")
			}
			rc := lksdk.NewRoomServiceClient(env.sfu1.HTTPURL(), env.sfu1.APIKey(), env.sfu1.APISecret())
			if _, err := rc.RemoveParticipant(ctx, &livekit.RoomParticipantIdentity{Room: grant.Room, Identity: grant.Identity}); err != nil {
				t.Fatalf("remove the bot from the LiveKit room: %v", err)
			}
			time.Sleep(6 * time.Second)
		})
		for _, source := range []string{recorder.SourceMicrophone, recorder.SourceCamera} {
			parts := lkFiles(m, alice.UserID(), source)
			if len(parts) != 2 || parts[1].Part != 2 {
				t.Fatalf("want alice's %s in two parts around the reconnect:\n%s", source, describe(m))
			}
			if gap := parts[1].StartOffsetMs - (parts[0].StartOffsetMs + parts[0].DurationMs); gap > 5000 {
				t.Errorf("%s: %d ms lost to the reconnect", source, gap)
			}
			for _, p := range parts {
				if source == recorder.SourceMicrophone {
					checkAudio(t, folder, p, 440, 660)
				} else {
					checkVideo(t, folder, p, "vp8", testmedia.VP8)
				}
			}
		}
		marked := false
		for _, mk := range m.Markers {
			if strings.Contains(mk.Text, "reconnecting") {
				marked = true
			}
		}
		if !marked {
			t.Errorf("no marker for the reconnect: %+v", m.Markers)
		}
		if n := len(lkGrants(env.jwt, rb)); n < 2 {
			t.Errorf("the bot fetched %d token(s), want a new one for the new connection", n)
		}
	})

	// !autorecord on: a call that begins in the room is recorded without !start; after
	// !stop it is not started again until a new call begins.
	t.Run("Autorecord", func(t *testing.T) {
		rb := startBot(t, env.botConfig(t))
		alice := env.peer(t, "alice", lkpeer.Options{})
		// A group room (bob is in it, not in the call): in a room of the bot and one
		// other person, the bot answers calls by itself (TestIntegrationLiveKitDM).
		bob := env.peer(t, "bob", lkpeer.Options{})
		room := callRoom(t, alice, false, rb.bot.UserID(), bob)
		since := send(t, alice, room, "!autorecord on")
		waitMessage(t, alice, room, since, 30*time.Second, "Autorecord is on")
		ctx := timeout(t, 2*time.Minute)
		began := time.Now()
		if err := alice.Join(ctx, room); err != nil {
			t.Fatal(err)
		}
		mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
		waitMessage(t, alice, room, began, 60*time.Second, "Recording started")
		time.Sleep(4 * time.Second)
		since = send(t, alice, room, "!stop")
		waitMessage(t, alice, room, since, 60*time.Second, "Recording saved")
		_, m := finishedFolder(t, rb)
		if f := fileOf(t, m, alice.UserID(), recorder.SourceMicrophone); f.DurationMs < 2000 {
			t.Errorf("autorecorded only %d ms", f.DurationMs)
		}
		time.Sleep(6 * time.Second)
		starts := 0
		for _, msg := range alice.MessagesIn(room) {
			if strings.Contains(msg.Body, "Recording started") && !msg.Edit {
				starts++
			}
		}
		if starts != 1 {
			t.Fatalf("recording started %d times in one call (again after !stop?): %q", starts, alice.Messages(room))
		}
	})

	// A bot whose device is not cross-signed gets no keys from clients that share them only
	// with verified devices: it says so in the room, writes no ciphertext as media, and the
	// manifest notes the frames it could not decrypt.
	t.Run("NotCrossSigned", func(t *testing.T) {
		cfg := env.botConfig(t)
		cfg.Matrix.CrossSigning = false
		rb := startBot(t, cfg)
		alice := env.peer(t, "alice", lkpeer.Options{Encrypt: true, OnlyCrossSigned: true})
		room := callRoom(t, alice, true, rb.bot.UserID())
		joinCall(t, room, alice)
		mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
		_, m := record(t, rb, alice, room, func() {
			waitMessage(t, alice, room, time.Now().Add(-time.Minute), 30*time.Second, "cross-signed")
			time.Sleep(2 * time.Second)
		})
		if len(m.Tracks) != 0 {
			t.Errorf("files written without keys:\n%s", describe(m))
		}
		noted := false
		for _, w := range m.Warnings {
			if strings.Contains(w, "could not be decrypted") && strings.Contains(w, string(alice.UserID())) {
				noted = true
			}
		}
		if !noted {
			t.Errorf("the manifest does not warn about the undecryptable frames: %+v", m.Warnings)
		}
		if len(m.Markers) != 0 {
			t.Errorf("a problem was stored as a marker: %+v", m.Markers)
		}
	})

	// !skipme: the bot stops receiving the user's tracks; !recordme: they come back as the
	// next parts of the same tracks, and the manifest records the opt-out.
	t.Run("OptOut", func(t *testing.T) {
		rb := startBot(t, env.botConfig(t))
		alice := env.peer(t, "alice", lkpeer.Options{Encrypt: true})
		bob := env.peer(t, "bob", lkpeer.Options{Encrypt: true})
		room := callRoom(t, alice, true, rb.bot.UserID(), bob)
		joinCall(t, room, alice, bob)
		mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
		mustPublish(t, bob, testmedia.Tone660, livekit.TrackSource_MICROPHONE)
		folder, m := record(t, rb, alice, room, func() {
			time.Sleep(2 * time.Second)
			since := send(t, bob, room, "!skipme")
			waitMessage(t, bob, room, since, 30*time.Second, "you are not recorded")
			time.Sleep(3 * time.Second)
			since = send(t, bob, room, "!recordme")
			waitMessage(t, bob, room, since, 30*time.Second, "recorded again")
			time.Sleep(3 * time.Second)
		})
		parts := lkFiles(m, bob.UserID(), recorder.SourceMicrophone)
		if len(parts) != 2 || parts[1].Part != 2 {
			t.Fatalf("want bob's microphone in two parts around the opt-out:\n%s", describe(m))
		}
		for _, p := range parts {
			checkAudio(t, folder, p, 660, 440)
		}
		if gap := parts[1].StartOffsetMs - (parts[0].StartOffsetMs + parts[0].DurationMs); gap < 2000 {
			t.Errorf("bob was recorded while opted out: only %d ms between his parts", gap)
		}
		if len(m.OptOuts) != 1 || m.OptOuts[0].UserID != string(bob.UserID()) || m.OptOuts[0].Until == nil {
			t.Errorf("manifest opt-outs %+v", m.OptOuts)
		}
		checkAudio(t, folder, fileOf(t, m, alice.UserID(), recorder.SourceMicrophone), 440, 660)
	})
}

// keepOnFailure copies a call folder to $MATRIX_RECORDER_KEEP_FAILED/<test> when the test
// fails, for looking at the files.
func keepOnFailure(t *testing.T, folder string) {
	dir := os.Getenv("MATRIX_RECORDER_KEEP_FAILED")
	if dir == "" {
		return
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		dst := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.CopyFS(dst, os.DirFS(folder)); err != nil {
			t.Logf("keeping %s: %v", folder, err)
			return
		}
		t.Logf("call folder kept in %s", dst)
	})
}

func mustPublish(t *testing.T, p *lkpeer.Peer, asset string, source livekit.TrackSource) *lkpeer.Track {
	t.Helper()
	tr, err := p.Publish(timeout(t, time.Minute), asset, source)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// lkGrants returns the tokens svc issued to the bot.
func lkGrants(svc *devjwt.Service, rb *runningBot) []devjwt.Grant {
	var out []devjwt.Grant
	for _, g := range svc.Issued() {
		if g.UserID == string(rb.bot.UserID()) {
			out = append(out, g)
		}
	}
	return out
}

// A membership of the bot's device left by a run that did not finish (killed before it
// could take it back) is removed when the bot starts again, so clients stop listing it.
func TestIntegrationLiveKitStaleMembership(t *testing.T) {
	s := homeserver(t)
	cfg := botConfig(t, s)
	rb := startBot(t, cfg)
	bot, device := rb.bot.UserID(), rb.bot.DeviceID()
	owner := lkTestClient(t, s, "owner")
	ctx := timeout(t, time.Minute)
	resp, err := owner.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "private_chat", Invite: []id.UserID{bot},
		PowerLevelOverride: &event.PowerLevelsEventContent{Events: map[string]int{matrixrtc.TypeCallMember.Type: 0}},
	})
	if err != nil {
		t.Fatal(err)
	}
	room := resp.RoomID
	for {
		m, err := owner.JoinedMembers(ctx, room)
		if err == nil && hasMember(m, bot) {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the bot did not join")
		}
		time.Sleep(200 * time.Millisecond)
	}
	rb.stop(t)

	// What a killed recording leaves: the bot's session membership (written here by another
	// login of the bot's account, for the bot's device).
	local := strings.TrimPrefix(strings.SplitN(string(bot), ":", 2)[0], "@")
	acc, err := s.Login(ctx, local, cfg.Matrix.Password, "")
	if err != nil {
		t.Fatal(err)
	}
	key := matrixrtc.SessionStateKey(bot, device, "10")
	stale := map[string]any{
		"application": "m.call", "call_id": "", "scope": "m.room", "device_id": device, "expires": 14400000,
		"focus_active": map[string]string{"type": "livekit", "focus_selection": "multi_sfu"}, "foci_preferred": []any{},
	}
	path := "/_matrix/client/v3/rooms/" + string(room) + "/state/" + matrixrtc.TypeCallMember.Type + "/" + key
	if err := s.Do(ctx, devhs.Account{AccessToken: acc.AccessToken}, "PUT", path, stale, nil); err != nil {
		t.Fatal(err)
	}

	restarted := startBot(t, cfg) // same data dir: the same device
	if restarted.bot.DeviceID() != device {
		t.Fatalf("restart changed the device: %s -> %s", device, restarted.bot.DeviceID())
	}
	for {
		var content map[string]any
		if err := owner.StateEvent(ctx, room, matrixrtc.TypeCallMember, key, &content); err == nil && len(content) == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatal("the stale membership was not removed")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// lkTestClient registers a plain Matrix client (no encryption) on s.
func lkTestClient(t *testing.T, s *devhs.Server, prefix string) *mautrix.Client {
	t.Helper()
	local := uniq(prefix)
	acc, err := s.Register(context.Background(), local, "pw-"+local)
	if err != nil {
		t.Fatal(err)
	}
	c, err := mautrix.NewClient(s.URL(), id.UserID(acc.UserID), acc.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// assertBotAccess checks that the bot got its token from svc through endpoint, for the
// identity clients expect of its membership: "@bot:server:DEVICE" for the state event
// (/sfu/get hands it out), the hash of that member id through /get_token.
func assertBotAccess(t *testing.T, svc *devjwt.Service, rb *runningBot, endpoint string) {
	t.Helper()
	want := string(rb.bot.UserID()) + ":" + string(rb.bot.DeviceID())
	if endpoint == "/get_token" {
		want = matrixrtc.HashedIdentity(string(rb.bot.UserID()), string(rb.bot.DeviceID()), want)
	}
	for _, g := range svc.Issued() {
		if g.UserID == string(rb.bot.UserID()) && g.Endpoint == endpoint && g.Identity == want {
			return
		}
	}
	t.Errorf("the bot got no token through %s (requests %v, grants %+v)", endpoint, svc.Requests(), svc.Issued())
}

// The recovery key a first start prints signs the device of a later install (a new device
// of the same account) from secret storage, so clients keep trusting the recorder.
func TestIntegrationCrossSigningRecoveryKey(t *testing.T) {
	s := homeserver(t)
	cfg := botConfig(t, s)
	first := startBot(t, cfg)
	keyFile := filepath.Join(cfg.DataDir, "recovery-key.txt")
	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatalf("first start wrote no recovery key: %v", err)
	}
	firstDevice := first.bot.DeviceID()
	first.stop(t)
	if !deviceCrossSigned(t, s, cfg.Matrix.UserID, cfg.Matrix.Password, firstDevice) {
		t.Fatal("the first device is not cross-signed")
	}

	// A new install: fresh data dir (so a new device), the recovery key in the config.
	cfg2 := cfg
	cfg2.DataDir = filepath.Join(t.TempDir(), "data")
	cfg2.Matrix.RecoveryKey = strings.TrimSpace(string(key))
	second := startBot(t, cfg2)
	if second.bot.DeviceID() == firstDevice {
		t.Fatal("the second install reused the device")
	}
	if !deviceCrossSigned(t, s, cfg.Matrix.UserID, cfg.Matrix.Password, second.bot.DeviceID()) {
		t.Fatal("the recovery key did not get the new device cross-signed")
	}
	if _, err := os.Stat(filepath.Join(cfg2.DataDir, "recovery-key.txt")); err == nil {
		t.Error("the second install created new cross-signing keys instead of using the recovery key")
	}
}

// deviceCrossSigned asks the homeserver whether a device carries a signature of its
// owner's self-signing key.
func deviceCrossSigned(t *testing.T, s *devhs.Server, user, password string, device id.DeviceID) bool {
	t.Helper()
	ctx := timeout(t, 30*time.Second)
	local := strings.TrimPrefix(strings.SplitN(user, ":", 2)[0], "@")
	acc, err := s.Login(ctx, local, password, "")
	if err != nil {
		t.Fatal(err)
	}
	var resp mautrix.RespQueryKeys
	if err := s.Do(ctx, acc, "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string][]string{user: {}}}, &resp); err != nil {
		t.Fatal(err)
	}
	ssk, ok := resp.SelfSigningKeys[id.UserID(user)]
	if !ok {
		return false
	}
	dk := resp.DeviceKeys[id.UserID(user)][device]
	for _, pub := range ssk.Keys {
		if _, ok := dk.Signatures[id.UserID(user)][id.NewKeyID(id.KeyAlgorithmEd25519, pub.String())]; ok {
			return true
		}
	}
	return false
}
