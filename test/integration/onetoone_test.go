package integration

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/caller"
	"github.com/matrix-recorder/matrix-recorder/internal/testclient"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// recordCall places a call with audio and video in a new DM, keeps it up for d, hangs up
// and returns the finished folder and manifest.
func recordCall(t *testing.T, encrypted bool, d time.Duration, opts caller.CallOptions) (string, *recorder.Manifest, string) {
	t.Helper()
	dc := startDMCall(t, encrypted, opts)
	if _, err := dc.c.WaitNotice(dc.ctx, dc.room, dc.start, func(b string) bool { return strings.Contains(b, "Recording this call") }); err != nil {
		t.Fatalf("no recording notice: %v", err)
	}
	time.Sleep(d)
	return dc.hangup(t)
}

func checkAudioVideoCall(t *testing.T, encrypted bool) {
	const d = 6 * time.Second
	dc := startDMCall(t, encrypted, caller.CallOptions{Audio: testmedia.Tone440, Video: testmedia.VP8})
	if _, err := dc.c.WaitNotice(dc.ctx, dc.room, dc.start, func(b string) bool { return strings.Contains(b, "Recording this call") }); err != nil {
		t.Fatalf("no recording notice: %v", err)
	}
	time.Sleep(d)
	folder, m, summary := dc.hangup(t)
	checkSummaryThread(t, func() []testclient.Message { return dc.c.Notices(dc.room) }, len(m.Tracks))
	t.Logf("summary:\n%s\nfiles:\n%s", summary, describe(m))
	if m.Kind != "1:1" || m.EndedAt == nil || m.StartedAt.IsZero() {
		t.Errorf("manifest header incomplete: %+v", m)
	}
	audio := mustOne(t, m, recorder.SourceMicrophone)
	video := mustOne(t, m, recorder.SourceCamera)
	for _, tr := range []recorder.FileEntry{audio, video} {
		if tr.Status != recorder.StatusComplete || tr.SHA256 == "" || tr.Bytes == 0 || tr.UserID == "" || tr.DeviceID == "" || tr.Purpose != "m.usermedia" {
			t.Errorf("manifest entry incomplete: %+v", tr)
		}
		if tr.StartOffsetMs < 0 || tr.StartOffsetMs > 3000 {
			t.Errorf("%s starts at %d ms, want within the first seconds", tr.File, tr.StartOffsetMs)
		}
		if strings.ContainsAny(tr.File, "/\\") {
			t.Errorf("file name %q is not a plain name", tr.File)
		}
	}
	checkFile(t, filepath.Join(folder, audio.File), "opus", time.Duration(audio.DurationMs)*time.Millisecond)
	info := checkFile(t, filepath.Join(folder, video.File), "vp8", time.Duration(video.DurationMs)*time.Millisecond)
	if info.Streams[0].Width != 320 || info.Streams[0].Height != 240 {
		t.Errorf("video is %dx%d, want 320x240", info.Streams[0].Width, info.Streams[0].Height)
	}
	// What was sent lasted about d; what was recorded must too (within 5%, plus set-up).
	for _, tr := range []recorder.FileEntry{audio, video} {
		got := time.Duration(tr.DurationMs) * time.Millisecond
		if got < d*95/100 || got > d+1500*time.Millisecond {
			t.Errorf("%s lasts %v, the call sent media for about %v", tr.File, got, d)
		}
	}
	if !strings.Contains(summary, "microphone") || !strings.Contains(summary, "camera") {
		t.Errorf("summary does not list the tracks: %q", summary)
	}
}

// checkSummaryThread checks the shape of the bot's summary: a short message that names
// no file, and the files with their lines in its thread.
func checkSummaryThread(t *testing.T, list func() []testclient.Message, files int) {
	t.Helper()
	var top *testclient.Message
	for _, m := range list() {
		if !m.Edit && m.Thread == "" && strings.HasPrefix(m.Body, "Recording saved") {
			top = &m
		}
	}
	if top == nil {
		t.Fatal("no summary")
	}
	if strings.Contains(top.Body, "• ") || !strings.Contains(top.Body, "in the thread") || top.Format != event.FormatHTML || !strings.Contains(top.FormattedBody, "<strong>Recording saved</strong>") {
		t.Errorf("the summary's message should be short, formatted, and point to its thread: %q / %q", top.Body, top.FormattedBody)
	}
	reply := threadOf(t, list, top.EventID, 30*time.Second)
	if !strings.HasPrefix(reply.Body, "Files of recording") || strings.Count(reply.Body, "\n• ") != files || !strings.Contains(reply.Body, " long, from ") {
		t.Errorf("the thread should list the %d files: %q", files, reply.Body)
	}
}

func TestIntegrationPlainDM(t *testing.T)     { checkAudioVideoCall(t, false) }
func TestIntegrationEncryptedDM(t *testing.T) { checkAudioVideoCall(t, true) }

// TestIntegrationLegacyShapes: integer version and the unstable metadata key still work.
func TestIntegrationLegacyShapes(t *testing.T) {
	folder, m, _ := recordCall(t, false, 3*time.Second, caller.CallOptions{Audio: testmedia.Tone660, IntVersion: true, UnstableMetadataKey: true})
	audio := mustOne(t, m, recorder.SourceMicrophone)
	checkFile(t, filepath.Join(folder, audio.File), "opus", time.Duration(audio.DurationMs)*time.Millisecond)
}

// TestIntegrationScreenshare: a screenshare added by m.call.negotiate is recorded as its own
// file, and stopping it does not disturb the other tracks.
func TestIntegrationScreenshare(t *testing.T) {
	dc := startDMCall(t, true, caller.CallOptions{Audio: testmedia.Tone440, Video: testmedia.VP8})
	ctx, call := dc.ctx, dc.call
	time.Sleep(2 * time.Second)
	if err := call.StartScreenshare(ctx, testmedia.VP9); err != nil {
		t.Fatalf("start screenshare: %v", err)
	}
	time.Sleep(4 * time.Second)
	if err := call.StopScreenshare(ctx); err != nil {
		t.Fatalf("stop screenshare: %v", err)
	}
	time.Sleep(2 * time.Second)
	folder, m, _ := dc.hangup(t)
	t.Logf("files:\n%s", describe(m))
	screen := mustOne(t, m, recorder.SourceScreenShare)
	if screen.Purpose != "m.screenshare" || screen.Codec != "vp9" {
		t.Errorf("screenshare entry: %+v", screen)
	}
	if screen.StartOffsetMs < 1500 {
		t.Errorf("screenshare starts at %d ms; it was started after about 2 s", screen.StartOffsetMs)
	}
	if d := time.Duration(screen.DurationMs) * time.Millisecond; d < 3*time.Second || d > 5500*time.Millisecond {
		t.Errorf("screenshare lasts %v, it was shared for about 4 s", d)
	}
	checkFile(t, filepath.Join(folder, screen.File), "vp9", time.Duration(screen.DurationMs)*time.Millisecond)
	cam := mustOne(t, m, recorder.SourceCamera)
	if d := time.Duration(cam.DurationMs) * time.Millisecond; d < 7500*time.Millisecond {
		t.Errorf("camera lasts %v through the renegotiations, want about 8 s", d)
	}
	checkFile(t, filepath.Join(folder, cam.File), "vp8", time.Duration(cam.DurationMs)*time.Millisecond)
}

// TestIntegrationCallerLeavesRoom: leaving the room ends the call (js-sdk as callee does not).
func TestIntegrationCallerLeavesRoom(t *testing.T) {
	s := homeserver(t)
	rb := startBot(t, botConfig(t, s))
	alice := newCaller(t, s, "alice")
	room, ctx := directRoom(t, rb, alice, false, 2*time.Minute)
	call := dial(t, ctx, alice, room, caller.CallOptions{Audio: testmedia.Tone440})
	time.Sleep(3 * time.Second)
	if err := alice.LeaveRoom(ctx, room); err != nil {
		t.Fatal(err)
	}
	folder, m := finishedFolder(t, rb)
	audio := mustOne(t, m, recorder.SourceMicrophone)
	checkFile(t, filepath.Join(folder, audio.File), "opus", time.Duration(audio.DurationMs)*time.Millisecond)
	select {
	case reason := <-call.Hangups():
		if reason != "user_hangup" {
			t.Errorf("bot hung up with %q", reason)
		}
	case <-time.After(10 * time.Second):
		// The caller left, so it may never see the hangup; the finished folder is what counts.
	}
	call.Close()
}

// TestIntegrationDTXSilence: 3 s of DTX silence inside 9 s of audio gives a 9 s file with the
// silence in place (the tone stops and resumes at the right times).
func TestIntegrationDTXSilence(t *testing.T) {
	dc := startDMCall(t, false, caller.CallOptions{Audio: testmedia.Tone440})
	call := dc.call
	snd := call.Sender("usermedia-audio")
	time.Sleep(3 * time.Second)
	pauseAt := time.Now()
	snd.Pause(testmedia.PauseDTX)
	time.Sleep(3 * time.Second)
	resumeAt := time.Now()
	snd.Resume()
	time.Sleep(3 * time.Second)
	hangupAt := time.Now()
	if err := call.Hangup(dc.ctx); err != nil { // media stops when this returns
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	waitSummary(t, dc.c, dc.room, dc.start)
	folder, m := finishedFolder(t, dc.rb)
	audio := mustOne(t, m, recorder.SourceMicrophone)
	d := time.Duration(audio.DurationMs) * time.Millisecond
	// The file must last as long as media flowed, from its first packet to the hangup,
	// 3 s of DTX silence included.
	lo, hi := hangupAt.Sub(audio.StartedAt)-300*time.Millisecond, stoppedAt.Sub(audio.StartedAt)+300*time.Millisecond
	if d < lo || d > hi || d < 8700*time.Millisecond {
		t.Errorf("file lasts %v, media flowed for %v to %v: DTX silence must not shorten it", d, lo, hi)
	}
	path := filepath.Join(folder, audio.File)
	checkFile(t, path, "opus", d)
	if len(audio.Gaps) != 1 || audio.Gaps[0].DurationMs < 2500 || audio.Gaps[0].DurationMs > 3500 {
		t.Errorf("want one ~3 s gap in the manifest, got %+v", audio.Gaps)
	}
	from := pauseAt.Sub(audio.StartedAt) + 500*time.Millisecond
	to := resumeAt.Sub(audio.StartedAt) - 300*time.Millisecond
	assertSilenceAt(t, path, from, to)
}

// TestIntegrationHostileInput: bad events never crash the bot or write outside the
// recordings folder, and a good call still works afterwards.
func TestIntegrationHostileInput(t *testing.T) {
	s := homeserver(t)
	rb := startBot(t, botConfig(t, s))
	mallory := newCaller(t, s, "mallory")
	room, ctx := directRoom(t, rb, mallory, false, 3*time.Minute)
	huge := strings.Repeat("a=x-junk:"+strings.Repeat("z", 100)+"\r\n", 3000)
	bad := []struct {
		typ     string
		content map[string]any
	}{
		{"m.call.invite", map[string]any{"call_id": "../../x", "party_id": "p", "version": "1", "lifetime": 60000, "offer": map[string]any{"type": "offer", "sdp": "v=0"}}},
		{"m.call.invite", map[string]any{"call_id": "hostile1", "party_id": "p", "version": "1", "lifetime": 60000, "offer": map[string]any{"type": "offer", "sdp": "this is not sdp"}}},
		{"m.call.invite", map[string]any{"call_id": "hostile2", "party_id": "p", "version": "1", "lifetime": 60000, "offer": map[string]any{"type": "offer", "sdp": huge}}},
		{"m.call.invite", map[string]any{"call_id": "hostile3", "party_id": "p", "version": []int{1}, "lifetime": "soon", "offer": 7}},
		{"m.call.invite", map[string]any{"call_id": "hostile4", "party_id": "p", "version": "1", "lifetime": 60000, "offer": map[string]any{"type": "offer", "sdp": pcmuOnlyOffer}}},
		{"m.call.candidates", map[string]any{"call_id": "hostile5", "party_id": "p", "version": "1", "candidates": []map[string]any{{"candidate": strings.Repeat("x", 5000)}}}},
		{"m.call.negotiate", map[string]any{"call_id": "nope", "description": map[string]any{"type": "offer", "sdp": "junk"}}},
		{"m.call.hangup", map[string]any{"call_id": strings.Repeat("h", 1000)}},
	}
	for _, b := range bad {
		if err := mallory.SendRaw(ctx, room, b.typ, b.content); err != nil {
			t.Logf("homeserver refused %s: %v", b.typ, err)
		}
	}
	for _, cmd := range []string{"!", "!" + strings.Repeat("x", 5000), "!nosuchcommand", "!help extra args", "!status", "!hangup"} {
		if err := mallory.SendMessage(ctx, room, cmd); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := mallory.WaitNotice(ctx, room, time.Time{}, func(b string) bool { return strings.Contains(b, "After the call:") }); err != nil {
		t.Fatalf("bot did not answer !help after hostile input: %v", err)
	}
	// A real call still gets answered and recorded.
	start := time.Now()
	call := dial(t, ctx, mallory, room, caller.CallOptions{Audio: testmedia.Tone440})
	time.Sleep(2 * time.Second)
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	waitSummary(t, mallory, room, start)
	// Nothing was written outside the recordings folder, and no folder escaped it.
	entries, err := filepath.Glob(filepath.Join(filepath.Dir(rb.cfg.Recordings.Dir), "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		base := filepath.Base(e)
		if base != "recordings" && base != "data" {
			t.Errorf("unexpected file next to the recordings folder: %s", e)
		}
	}
	if _, err := mallory.WaitNotice(ctx, room, time.Time{}, func(b string) bool {
		return strings.Contains(b, "did not answer") && strings.Contains(strings.ToLower(b), "codec")
	}); err != nil {
		t.Errorf("the caller was not told why the PCMU-only call was refused: %v", err)
	}
	_ = id.RoomID("")
}

// pcmuOnlyOffer is a valid offer in a codec the recorder cannot write.
const pcmuOnlyOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n" +
	"a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
	"a=setup:actpass\r\na=rtcp-mux\r\na=sendrecv\r\na=rtpmap:0 PCMU/8000\r\na=msid:s t\r\n"

// TestIntegrationCallerVanishes: a caller that disappears without m.call.hangup (browser
// crash, network gone; its hangup send failed) still gets its call ended by the bot once the
// ICE timeout passes: the folder is finished, the summary is posted, and the file holds the
// audio that was sent. Once with the default ephemeral ports, once on one shared UDP port.
func TestIntegrationCallerVanishes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sharedUDP bool
	}{{"ephemeral", false}, {"udp_port", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := homeserver(t)
			cfg := botConfig(t, s)
			cfg.Calls.ICETimeout = config.Duration(5 * time.Second)
			if tc.sharedUDP {
				cfg.WebRTC.UDPPort = freeUDPPort(t)
			}
			rb := startBot(t, cfg)
			alice := newCaller(t, s, "alice")
			room, ctx := directRoom(t, rb, alice, false, 3*time.Minute)
			start := time.Now()
			call := dial(t, ctx, alice, room, caller.CallOptions{Audio: testmedia.Tone440})
			if _, err := alice.WaitNotice(ctx, room, start, func(b string) bool { return strings.Contains(b, "Recording this call") }); err != nil {
				t.Fatalf("no recording notice: %v", err)
			}
			const sent = 4 * time.Second
			time.Sleep(sent)
			call.Close()
			vanished := time.Now()

			waitView(t, "end-of-call summary", func() []testclient.Message { return alice.Notices(room) }, start, 90*time.Second, "Recording saved", "Files of recording")
			t.Logf("summary %s after the caller vanished", time.Since(vanished).Round(time.Second))
			folder, m := finishedFolder(t, rb)
			audio := mustOne(t, m, recorder.SourceMicrophone)
			got := time.Duration(audio.DurationMs) * time.Millisecond
			if got < sent-500*time.Millisecond {
				t.Errorf("audio file is %v long, the caller sent at least %v", got, sent)
			}
			checkFile(t, filepath.Join(folder, audio.File), "opus", got)
		})
	}
}

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freeUDPPort(t *testing.T) uint16 {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	if err := pc.Close(); err != nil {
		t.Fatal(err)
	}
	return uint16(port)
}
