package integration

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	lk "github.com/matrix-recorder/matrix-recorder/call/livekit"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/internal/lkpeer"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// countingService is an HTTP(S) server on 127.0.0.1 that counts the connections it gets
// (a TLS handshake that fails still counts) and answers every request with 500.
type countingService struct {
	srv   *httptest.Server
	conns atomic.Int64
}

func startCountingService(t *testing.T, tls bool) *countingService {
	t.Helper()
	cs := &countingService{}
	cs.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	cs.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			cs.conns.Add(1)
		}
	}
	if tls {
		cs.srv.StartTLS()
	} else {
		cs.srv.Start()
	}
	t.Cleanup(cs.srv.Close)
	return cs
}

// joinPlain invites a plain client into room and joins it.
func joinPlain(t *testing.T, owner *lkpeer.Peer, c *mautrix.Client, room id.RoomID) {
	t.Helper()
	ctx := timeout(t, 30*time.Second)
	if _, err := owner.Matrix().InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: c.UserID}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.JoinRoomByID(ctx, room); err != nil {
		t.Fatal(err)
	}
}

// sessionMembership is a session membership (Element Call's compatibility mode) naming one
// JWT service.
func sessionMembership(device id.DeviceID, room id.RoomID, serviceURL string) map[string]any {
	return map[string]any{
		"application": "m.call", "call_id": "", "scope": "m.room", "device_id": device, "expires": 14400000,
		"focus_active":   map[string]string{"type": "livekit", "focus_selection": matrixrtc.SelectMultiSFU},
		"foci_preferred": []any{map[string]string{"type": "livekit", "livekit_service_url": serviceURL, "livekit_alias": string(room)}},
	}
}

// A call member names JWT services on 127.0.0.1 that the operator does not list (plain
// http, and https): the bot sends them nothing (they see no connection at all), tells the
// room once per service, and records the call on the listed service as usual.
func TestIntegrationLiveKitUntrustedFocus(t *testing.T) {
	env := startLKEnv(t)
	rb := startBot(t, env.botConfig(t))
	plain, tls := startCountingService(t, false), startCountingService(t, true)
	alice := env.peer(t, "alice", lkpeer.Options{})
	mallory := lkTestClient(t, env.hs, "mallory")
	room := callRoom(t, alice, false, rb.bot.UserID())
	joinPlain(t, alice, mallory, room)
	ctx := timeout(t, 30*time.Second)
	for dev, svc := range map[id.DeviceID]string{"MDEV1": plain.srv.URL, "MDEV2": tls.srv.URL} {
		key := matrixrtc.SessionStateKey(mallory.UserID, dev, "10")
		if _, err := mallory.SendStateEvent(ctx, room, matrixrtc.TypeCallMember, key, sessionMembership(dev, room, svc)); err != nil {
			t.Fatal(err)
		}
	}
	joinCall(t, room, alice)
	mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
	folder, m := record(t, rb, alice, room, func() {
		time.Sleep(4 * time.Second)
		if n := plain.conns.Load() + tls.conns.Load(); n != 0 {
			t.Errorf("the untrusted services got %d connection(s) from the bot", n)
		}
		for _, svc := range []string{plain.srv.URL, tls.srv.URL} {
			msg, err := alice.WaitMessage(timeout(t, 20*time.Second), room, time.Now().Add(-2*time.Minute), func(b string) bool { return strings.Contains(b, svc) })
			if err != nil {
				t.Errorf("the room was not told that %s is not used: %v", svc, err)
				continue
			}
			if !strings.Contains(msg.Body, lk.TrustedServicesKey) || !strings.Contains(msg.Body, string(mallory.UserID)) {
				t.Errorf("the notice about %s does not name the member and the config key: %q", svc, msg.Body)
			}
		}
	})
	checkAudio(t, folder, fileOf(t, m, alice.UserID(), recorder.SourceMicrophone), 440, 660)
	if n := plain.conns.Load() + tls.conns.Load(); n != 0 {
		t.Errorf("the untrusted services got %d connection(s) from the bot over the whole call", n)
	}
	assertBotAccess(t, env.jwt, rb, "/get_token")
	notices := 0
	for _, msg := range alice.Messages(room) {
		if strings.Contains(msg, lk.TrustedServicesKey) {
			notices++
		}
	}
	if notices != 2 {
		t.Errorf("%d notices about refused services, want one per service: %q", notices, alice.Messages(room))
	}
}

// Someone else writes a membership under a member's state key (here bob blanks alice's,
// as a leave would): the bot ignores it, alice stays in the call and is recorded to the end.
func TestIntegrationLiveKitForeignMembership(t *testing.T) {
	env := startLKEnv(t)
	rb := startBot(t, env.botConfig(t))
	alice := env.peer(t, "alice", lkpeer.Options{})
	bob := lkTestClient(t, env.hs, "bob")
	room := callRoom(t, alice, false, rb.bot.UserID())
	joinPlain(t, alice, bob, room)
	joinCall(t, room, alice)
	mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
	var forgedAt time.Time
	folder, m := record(t, rb, alice, room, func() {
		time.Sleep(2 * time.Second)
		key := matrixrtc.SessionStateKey(alice.UserID(), alice.DeviceID(), "10")
		forgedAt = time.Now()
		if _, err := bob.SendStateEvent(timeout(t, 30*time.Second), room, matrixrtc.TypeCallMember, key, map[string]any{}); err != nil {
			t.Fatalf("bob's state event under alice's key: %v", err)
		}
		// The bot re-checks memberships every 2 s; give it a few rounds.
		time.Sleep(6 * time.Second)
		since := send(t, alice, room, "!status")
		st := waitMessage(t, alice, room, since, 30*time.Second, "Recording (livekit)")
		if !strings.Contains(st, string(alice.UserID())+" ("+string(alice.DeviceID())+")") {
			t.Errorf("after bob's event under alice's key, !status does not list alice:\n%s", st)
		}
	})
	checkAudio(t, folder, fileOf(t, m, alice.UserID(), recorder.SourceMicrophone), 440, 660)
	for _, p := range m.Participants {
		if p.UserID == string(alice.UserID()) && p.LeftAt != nil && m.EndedAt != nil && p.LeftAt.Before(m.EndedAt.Add(-2*time.Second)) {
			t.Errorf("alice left the call at %s (bob's event at %s), before the recording ended at %s", p.LeftAt, forgedAt, m.EndedAt)
		}
	}
	var content map[string]any
	key := matrixrtc.SessionStateKey(alice.UserID(), alice.DeviceID(), "10")
	if err := alice.Matrix().StateEvent(timeout(t, 30*time.Second), room, matrixrtc.TypeCallMember, key, &content); err != nil || len(content) != 0 {
		t.Fatalf("the forged event is not the room's state (content %v, err %v): the test did not test anything", content, err)
	}
}
