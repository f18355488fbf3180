package integration

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/devhs"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// TestIntegrationBrowserOneToOne: Element Web's call code, matrix-js-sdk's MatrixCall, in
// headless Chromium with its fake camera and microphone, calls the bot through Dendrite:
// the SDK must reach "connected", the bot must record every track (a screenshare too when
// headless Chromium can capture one) into files that decode, and the SDK's user must see
// the bot's summary. Encrypted: the SDK's rust crypto (IndexedDB) on both sides of the
// signalling.
func TestIntegrationBrowserOneToOne(t *testing.T) {
	for _, tc := range []struct {
		name      string
		encrypted bool
	}{{"plain", false}, {"encrypted", true}} {
		t.Run(tc.name, func(t *testing.T) { browserOneToOne(t, tc.encrypted) })
	}
}

type jsCallStatus struct {
	CallID        string   `json:"callId"`
	State         string   `json:"state"`
	States        []string `json:"states"`
	Errors        []string `json:"errors"`
	HangupParty   string   `json:"hangupParty"`
	HangupReason  string   `json:"hangupReason"`
	Screensharing bool     `json:"screensharing"`
	Metadata      bool     `json:"opponentSupportsMetadata"`
}

type jsNotices struct {
	Bodies        []string `json:"bodies"`
	Undecryptable []string `json:"undecryptable"`
}

func (n jsNotices) has(sub string) bool { return n.find(sub) != "" }

// find returns the first notice that contains sub.
func (n jsNotices) find(sub string) string {
	for _, b := range n.Bodies {
		if strings.Contains(b, sub) {
			return b
		}
	}
	return ""
}

func browserOneToOne(t *testing.T, encrypted bool) {
	page := startBrowser(t, "matrixcall.html", "--use-file-for-fake-audio-capture="+toneWAV(t, 440))
	s := homeserver(t)
	rb := startBot(t, botConfig(t, s))
	ctx := timeout(t, 3*time.Minute)

	// The user logs in in the browser (a fresh device with the rust crypto, as Element Web
	// always has), then the DM with the bot is created over the client-server API with the
	// registration's own token, as if from another of the user's devices.
	local := uniq("browser")
	acc, err := s.Register(ctx, local, "pw-"+local)
	if err != nil {
		t.Fatal(err)
	}
	var me struct {
		UserID   string `json:"userId"`
		DeviceID string `json:"deviceId"`
		VoIP     bool   `json:"voip"`
	}
	page.must(ctx, &me, "login", map[string]any{"homeserver": s.URL(), "user": local, "password": "pw-" + local, "encryption": true})
	if !me.VoIP {
		t.Fatal("matrix-js-sdk says this browser does not support VoIP")
	}
	room := createDMOverAPI(ctx, t, s, acc, rb.bot.UserID().String(), encrypted)
	join := func(v string) bool { return v == "join" }
	if _, err := waitPage(timeout(t, time.Minute), page, "the bot to join (as the SDK sees it)", join, "membership", room, rb.bot.UserID().String()); err != nil {
		t.Fatal(err)
	}
	if encrypted {
		if _, err := waitPage(ctx, page, "the SDK to treat the room as encrypted", func(v bool) bool { return v }, "encrypted", room); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	var callID string
	page.must(ctx, &callID, "placeVideoCall", room, true)
	st, err := waitPage(timeout(t, 45*time.Second), page, "the call to connect", func(s jsCallStatus) bool {
		return s.State == "connected" || s.State == "ended"
	}, "callStatus")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "connected" {
		t.Fatalf("the call ended before it connected: %+v", st)
	}
	connected := time.Now()
	t.Logf("call %s connected after %v (states %v)", callID, connected.Sub(start).Round(time.Millisecond), st.States)
	if !st.Metadata {
		t.Error("the SDK does not see sdp_stream_metadata in the bot's answer: a screenshare would replace the camera")
	}
	notices, err := waitPage(timeout(t, 30*time.Second), page, "the 'recording' notice", func(n jsNotices) bool { return n.has("Recording this call") }, "notices", room)
	if err != nil {
		t.Fatal(err)
	}

	// Keep the call 8 s; share the screen from 2 s to 6 s when headless Chromium can.
	const hold = 8 * time.Second
	time.Sleep(2 * time.Second)
	var share struct {
		Sharing bool   `json:"sharing"`
		Reason  string `json:"reason"`
	}
	page.must(ctx, &share, "screenshare", true)
	shared := share.Sharing
	var shareStart, shareEnd time.Time
	if shared {
		shareStart = time.Now()
		t.Log("screenshare started through the SDK")
		time.Sleep(4 * time.Second)
		page.must(ctx, &share, "screenshare", false)
		shareEnd = time.Now()
		if share.Sharing {
			t.Errorf("the SDK did not stop the screenshare: %s", share.Reason)
		}
	} else {
		t.Logf("SCREENSHARE SKIPPED: headless Chromium could not share a screen here: %s", share.Reason)
	}
	if d := hold - time.Since(connected); d > 0 {
		time.Sleep(d)
	}
	if err := page.call(ctx, &st, "callStatus"); err != nil {
		t.Fatal(err)
	}
	if st.State != "connected" {
		t.Fatalf("the call did not stay connected: %+v", st)
	}
	page.must(ctx, nil, "hangup")
	hungUp := time.Now()
	held := hungUp.Sub(connected)

	// The summary, and its files in its thread (a message of its own, sent after it).
	notices, err = waitPage(timeout(t, time.Minute), page, "the bot's summary and its thread", func(n jsNotices) bool {
		return n.has("Recording saved") && n.has("Files of recording")
	}, "notices", room)
	if err != nil {
		t.Fatal(err)
	}
	if len(notices.Undecryptable) > 0 {
		t.Errorf("the SDK could not decrypt %d event(s): %v", len(notices.Undecryptable), notices.Undecryptable)
	}
	if err := page.call(ctx, &st, "callStatus"); err != nil {
		t.Fatal(err)
	}
	if st.State != "ended" || st.HangupParty != "local" || len(st.Errors) > 0 {
		t.Errorf("call status after hang-up: %+v", st)
	}

	folder, m := finishedFolder(t, rb)
	summary := notices.find("Recording saved")
	t.Logf("summary: %q\nfiles:\n%s", summary, describe(m))
	if m.Kind != "1:1" || m.EndedAt == nil {
		t.Errorf("manifest header: %+v", m)
	}
	audio := mustOne(t, m, recorder.SourceMicrophone)
	video := mustOne(t, m, recorder.SourceCamera)
	for _, tr := range []recorder.FileEntry{audio, video} {
		if tr.Status != recorder.StatusComplete || tr.UserID != me.UserID || tr.DeviceID != me.DeviceID || tr.Purpose != "m.usermedia" {
			t.Errorf("manifest entry: %+v (browser is %s %s)", tr, me.UserID, me.DeviceID)
		}
		got := time.Duration(tr.DurationMs) * time.Millisecond
		if got < held*95/100 || got > held+2*time.Second {
			t.Errorf("%s lasts %v; the browser was connected for %v", tr.File, got, held)
		}
		info := checkFile(t, filepath.Join(folder, tr.File), tr.Codec, got)
		if tr.Kind == "audio" {
			checkFakeMicrophone(t, filepath.Join(folder, tr.File))
		}
		if tr.Kind == "video" && (info.Streams[0].Width == 0 || info.Streams[0].Height == 0) {
			t.Errorf("%s: no picture size: %+v", tr.File, info.Streams[0])
		}
	}
	screens := trackBySource(m, recorder.SourceScreenShare)
	switch {
	case shared && len(screens) != 1:
		t.Errorf("the browser shared its screen for %v but the manifest has %d screenshare files", shareEnd.Sub(shareStart), len(screens))
	case shared:
		sc := screens[0]
		got := time.Duration(sc.DurationMs) * time.Millisecond
		want := shareEnd.Sub(shareStart)
		if sc.Purpose != "m.screenshare" || got < want-1500*time.Millisecond || got > want+1500*time.Millisecond {
			t.Errorf("screenshare entry %+v lasts %v, shared for %v", sc, got, want)
		}
		checkFile(t, filepath.Join(folder, sc.File), sc.Codec, got)
	case len(screens) > 0:
		t.Errorf("no screenshare was started but the manifest has %+v", screens)
	}
	// The files are listed in the summary's thread.
	if all := strings.Join(notices.Bodies, "\n"); !strings.Contains(all, "Files of recording") || !strings.Contains(all, "microphone") || !strings.Contains(all, "camera") {
		t.Errorf("the summary's thread does not list the tracks: %q", notices.Bodies)
	}
}

// createDMOverAPI creates a direct room of acc with invitee over the client-server API.
func createDMOverAPI(ctx context.Context, t *testing.T, s *devhs.Server, acc devhs.Account, invitee string, encrypted bool) string {
	t.Helper()
	req := map[string]any{"preset": "trusted_private_chat", "invite": []string{invitee}, "is_direct": true}
	if encrypted {
		req["initial_state"] = []map[string]any{{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}
	}
	var resp struct {
		RoomID string `json:"room_id"`
	}
	if err := s.Do(ctx, acc, "POST", "/_matrix/client/v3/createRoom", req, &resp); err != nil {
		t.Fatalf("create the DM: %v", err)
	}
	return resp.RoomID
}
