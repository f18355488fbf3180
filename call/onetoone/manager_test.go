package onetoone

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/rtc"
	"github.com/matrix-recorder/matrix-recorder/call/voip"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/usererr"
)

// fakeRoom captures what the manager sends; tests play the caller by hand.
type fakeRoom struct {
	mu      sync.Mutex
	sent    []sentEvent
	notify  chan struct{}
	refused []string
	ended   []recorder.Manifest
	started int
}

type sentEvent struct {
	typ     string
	content json.RawMessage
}

func newFakeRoom() *fakeRoom { return &fakeRoom{notify: make(chan struct{}, 100)} }

func (f *fakeRoom) SendMessage(_ context.Context, _ id.RoomID, t event.Type, content any) (id.EventID, error) {
	b, err := json.Marshal(content)
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	f.sent = append(f.sent, sentEvent{t.Type, b})
	f.mu.Unlock()
	f.notify <- struct{}{}
	return "$sent", nil
}
func (f *fakeRoom) ICEServers(context.Context) []webrtc.ICEServer { return nil }

// ring plays the bot (and call/rooms) for a call that rang: admit decides, a refusal is
// declined, an answered call's recording is watched until it ends.
func (f *fakeRoom) ring(m **Backend, admit func() error) func(ctx context.Context, room id.RoomID, ans call.Answer) {
	return func(ctx context.Context, room id.RoomID, ans call.Answer) {
		refuse := func(reason string) {
			_ = (*m).Decline(ctx, room, ans)
			f.mu.Lock()
			f.refused = append(f.refused, reason)
			f.mu.Unlock()
			f.notify <- struct{}{}
		}
		if admit != nil {
			if err := admit(); err != nil {
				refuse(err.Error())
				return
			}
		}
		rec, err := (*m).Start(ctx, call.StartRequest{RoomID: room, By: ans.Caller, Answer: &ans})
		var ue usererr.Error
		switch {
		case errors.As(err, &ue):
			refuse(ue.Msg)
			return
		case err != nil:
			return
		}
		f.mu.Lock()
		f.started++
		f.mu.Unlock()
		<-rec.Done()
		man, _, _ := rec.Result()
		f.mu.Lock()
		f.ended = append(f.ended, man)
		f.mu.Unlock()
		f.notify <- struct{}{}
	}
}

func (f *fakeRoom) wait(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		f.mu.Lock()
		ok := cond()
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-f.notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("condition not reached")
		}
	}
}

func (f *fakeRoom) find(typ string) []json.RawMessage {
	var out []json.RawMessage
	for _, s := range f.sent {
		if s.typ == typ {
			out = append(out, s.content)
		}
	}
	return out
}

const (
	room   = id.RoomID("!r:hs")
	bob    = id.UserID("@bob:hs")
	botID  = id.UserID("@bot:hs")
	botDev = id.DeviceID("BOTDEV")
)

func newManager(t *testing.T, admit func() error) (*Backend, *fakeRoom, string) {
	t.Helper()
	return newManagerWith(t, rtc.Settings{IncludeLoopback: true}, 0, admit)
}

// newManagerWith is newManager with the WebRTC settings and calls.max_tracks given.
func newManagerWith(t *testing.T, settings rtc.Settings, maxTracks int, admit func() error) (*Backend, *fakeRoom, string) {
	t.Helper()
	return newManagerHooks(t, settings, maxTracks, admit, nil)
}

// newManagerHooks is newManagerWith with the recorder's hooks given.
func newManagerHooks(t *testing.T, settings rtc.Settings, maxTracks int, admit func() error, hooks *recorder.Hooks) (*Backend, *fakeRoom, string) {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	f, err := rtc.NewFactory(settings, log)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rec, err := recorder.New(recorder.Options{Dir: dir, Hooks: hooks}, log)
	if err != nil {
		t.Fatal(err)
	}
	fr := newFakeRoom()
	var m *Backend
	m = New(Config{UserID: botID, DeviceID: botDev, ICETimeout: 5 * time.Second, MaxTracks: maxTracks, OnRing: fr.ring(&m, admit)}, fr, f, rec, log)
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := m.Close(sctx); err != nil {
			t.Error(err)
		}
		_ = f.Close()
	})
	return m, fr, dir
}

// peer is the test's caller: a pion connection with one Opus track.
type peer struct {
	pc    *webrtc.PeerConnection
	track *webrtc.TrackLocalStaticSample
	cands chan voip.Candidate
}

func newPeer(t *testing.T) *peer {
	t.Helper()
	pc, track, err := testmedia.OpusPeer("stream1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	p := &peer{pc: pc, track: track, cands: make(chan voip.Candidate, 64)}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			p.cands <- voip.Candidate{}
			return
		}
		j := c.ToJSON()
		p.cands <- voip.Candidate{Candidate: j.Candidate, SDPMid: j.SDPMid, SDPMLineIndex: j.SDPMLineIndex}
	})
	return p
}

func (p *peer) offer(t *testing.T) string {
	t.Helper()
	o, err := p.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.pc.SetLocalDescription(o); err != nil {
		t.Fatal(err)
	}
	return o.SDP
}

func (p *peer) gathered(t *testing.T) []voip.Candidate {
	t.Helper()
	var out []voip.Candidate
	for {
		select {
		case c := <-p.cands:
			out = append(out, c)
			if c.Candidate == "" {
				return out
			}
		case <-time.After(5 * time.Second):
			t.Fatal("peer did not finish gathering")
		}
	}
}

func (p *peer) sendTone(ctx context.Context) {
	// A valid 20 ms Opus packet (CELT silence) is enough for the recorder.
	frame := []byte{0xf8, 0xff, 0xfe}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			_ = p.track.WriteSample(media.Sample{Data: frame, Duration: 20 * time.Millisecond})
		}
	}
}

// takeAnswer waits for the bot's answer and applies it. (The answer's fields are
// call/voip/peer's: TestAnswerConnectsAndHandsOverTracks.)
func (p *peer) takeAnswer(t *testing.T, fr *fakeRoom) {
	t.Helper()
	fr.wait(t, func() bool { return len(fr.find("m.call.answer")) == 1 })
	fr.mu.Lock()
	a, err := voip.ParseAnswer(fr.find("m.call.answer")[0])
	fr.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a.Answer.SDP}); err != nil {
		t.Fatal(err)
	}
}

func ev(typ event.Type, sender id.UserID, content any) callEvent {
	b, _ := json.Marshal(content)
	return callEvent{RoomID: room, Sender: sender, Type: typ, Content: b, ReceivedAt: time.Now()}
}

func invite(callID, sdp string) map[string]any {
	return map[string]any{"call_id": callID, "party_id": "BOBDEV", "version": "1", "lifetime": 60000,
		"offer": map[string]string{"type": "offer", "sdp": sdp}, "sdp_stream_metadata": map[string]any{"stream1": map[string]string{"purpose": "m.usermedia"}}}
}

// TestAnswerWithEarlyCandidates plays js-sdk's order: candidates arrive before the invite
// is handled (same sync batch, candidates first here), then the invite.
func TestAnswerWithEarlyCandidates(t *testing.T) {
	m, fr, dir := newManager(t, nil)
	p := newPeer(t)
	sdp := p.offer(t)
	cands := p.gathered(t)
	m.handleBatch(context.Background(), []callEvent{
		ev(voip.TypeCandidates, bob, map[string]any{"call_id": "call1", "party_id": "BOBDEV", "version": "1", "candidates": cands}),
		ev(voip.TypeInvite, bob, invite("call1", sdp)),
	})
	p.takeAnswer(t, fr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.sendTone(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for p.pc.ICEConnectionState() != webrtc.ICEConnectionStateConnected {
		if time.Now().After(deadline) {
			t.Fatalf("ICE did not connect: %s", p.pc.ICEConnectionState())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	m.handle(context.Background(), ev(voip.TypeHangup, bob, map[string]any{"call_id": "call1", "party_id": "BOBDEV", "version": "1", "reason": "user_hangup"}))
	fr.wait(t, func() bool { return len(fr.ended) == 1 })
	man := fr.ended[0]
	if len(man.Tracks) != 1 || man.Tracks[0].Source != recorder.SourceMicrophone || man.Tracks[0].DurationMs < 500 {
		t.Fatalf("manifest tracks: %+v", man.Tracks)
	}
	if man.Tracks[0].UserID != string(bob) || man.Tracks[0].DeviceID != "BOBDEV" {
		t.Errorf("track owner: %+v", man.Tracks[0])
	}
	if len(fr.find("m.call.hangup")) != 0 {
		t.Error("bot echoed a hangup for a call the caller ended")
	}
	_ = dir
}

func TestRefusals(t *testing.T) {
	m, fr, _ := newManager(t, func() error { return errors.New("not alone") })
	p := newPeer(t)
	sdp := p.offer(t)
	m.handle(context.Background(), ev(voip.TypeInvite, bob, invite("call2", sdp)))
	fr.wait(t, func() bool { return len(fr.refused) == 1 && len(fr.find("m.call.reject")) == 1 })
	if fr.refused[0] != "not alone" {
		t.Errorf("refused with %q", fr.refused[0])
	}
}

func TestIgnoredInvites(t *testing.T) {
	m, fr, _ := newManager(t, nil)
	p := newPeer(t)
	sdp := p.offer(t)
	expired := ev(voip.TypeInvite, bob, invite("old", sdp))
	expired.Age = 58 * time.Second
	other := invite("other", sdp)
	other["invitee"] = "@carol:hs"
	answered := ev(voip.TypeInvite, bob, invite("answered", sdp))
	m.handleBatch(context.Background(), []callEvent{
		expired,
		ev(voip.TypeInvite, bob, other),
		ev(voip.TypeInvite, botID, invite("mine", sdp)),
		answered,
		ev(voip.TypeHangup, bob, map[string]any{"call_id": "answered", "version": "1"}),
	})
	time.Sleep(300 * time.Millisecond)
	if len(m.active()) != 0 {
		t.Errorf("calls started: %+v", m.active())
	}
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if len(fr.sent) != 0 {
		t.Errorf("bot sent events for ignored invites: %+v", fr.sent)
	}
}

// TestSelectAnswerElsewhere: the caller picks another answer; the bot ends silently.
func TestSelectAnswerElsewhere(t *testing.T) {
	m, fr, _ := newManager(t, nil)
	p := newPeer(t)
	sdp := p.offer(t)
	m.handle(context.Background(), ev(voip.TypeInvite, bob, invite("call3", sdp)))
	fr.wait(t, func() bool { return len(fr.find("m.call.answer")) == 1 })
	// A stranger cannot end the call.
	m.handle(context.Background(), ev(voip.TypeHangup, "@eve:hs", map[string]any{"call_id": "call3", "version": "1"}))
	time.Sleep(200 * time.Millisecond)
	if len(m.active()) != 1 {
		t.Fatal("a stranger's hangup ended the call")
	}
	m.handle(context.Background(), ev(voip.TypeSelectAnswer, bob, map[string]any{"call_id": "call3", "party_id": "BOBDEV", "version": "1", "selected_party_id": "OTHERDEV"}))
	fr.wait(t, func() bool { return len(fr.ended) == 1 })
	if len(fr.find("m.call.hangup")) != 0 {
		t.Error("bot sent a hangup after being deselected")
	}
}

// TestNegotiateAnswered: a renegotiation offer gets an m.call.negotiate answer.
func TestNegotiateAnswered(t *testing.T) {
	m, fr, _ := newManager(t, nil)
	p := newPeer(t)
	sdp := p.offer(t)
	m.handle(context.Background(), ev(voip.TypeInvite, bob, invite("call4", sdp)))
	p.takeAnswer(t, fr)
	o, err := p.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.pc.SetLocalDescription(o); err != nil {
		t.Fatal(err)
	}
	m.handle(context.Background(), ev(voip.TypeNegotiate, bob, map[string]any{"call_id": "call4", "party_id": "BOBDEV", "version": "1",
		"description": map[string]string{"type": "offer", "sdp": o.SDP}, "sdp_stream_metadata": map[string]any{}}))
	fr.wait(t, func() bool { return len(fr.find("m.call.negotiate")) == 1 })
	n, err := voip.ParseNegotiate(fr.find("m.call.negotiate")[0])
	if err != nil || n.Description.Type != "answer" || n.Metadata == nil {
		t.Fatalf("negotiate answer: %+v %v", n, err)
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: n.Description.SDP}); err != nil {
		t.Fatalf("answer does not apply: %v", err)
	}
}

// roomEvent is a call event as the bot's syncer hands it over.
func roomEvent(typ event.Type, sender id.UserID, content any, source event.Source) *event.Event {
	evt := &event.Event{RoomID: room, Sender: sender, Type: typ, ID: "$e"}
	evt.Content.VeryRaw, _ = json.Marshal(content)
	evt.Mautrix.EventSource = source
	return evt
}

// TestSyncBatch: call events of one sync response are handled when it is over (an invite
// hung up in the same response is not answered); one that comes alone (decrypted late) is
// handled at once; events that are not a room's timeline are ignored.
func TestSyncBatch(t *testing.T) {
	m, fr, _ := newManager(t, nil)
	p := newPeer(t)
	sdp := p.offer(t)
	m.BeginSync()
	m.HandleEvent(context.Background(), roomEvent(voip.TypeInvite, bob, invite("gone", sdp), event.SourceTimeline))
	if n := len(m.active()); n != 0 {
		t.Fatalf("%d calls before the sync response is over", n)
	}
	m.HandleEvent(context.Background(), roomEvent(voip.TypeHangup, bob, map[string]any{"call_id": "gone", "version": "1"}, event.SourceTimeline))
	m.EndSync(context.Background())
	m.HandleEvent(context.Background(), roomEvent(voip.TypeInvite, bob, invite("state", sdp), event.SourceState))
	time.Sleep(300 * time.Millisecond)
	fr.mu.Lock()
	sent := len(fr.sent)
	fr.mu.Unlock()
	if len(m.active()) != 0 || sent != 0 {
		t.Fatalf("an invite hung up in its sync, or one from room state, was answered: %d calls, %d events sent", len(m.active()), sent)
	}
	m.HandleEvent(context.Background(), roomEvent(voip.TypeInvite, bob, invite("late", sdp), event.SourceTimeline|event.SourceDecrypted))
	fr.wait(t, func() bool { return len(fr.find("m.call.answer")) == 1 })
}

// TestCallerLeaves: the caller leaving the room (a timeline member event) ends their call,
// with a hangup; someone else leaving, or the room's state replayed, does not.
func TestCallerLeaves(t *testing.T) {
	m, fr, _ := newManager(t, nil)
	p := newPeer(t)
	m.handle(context.Background(), ev(voip.TypeInvite, bob, invite("leave", p.offer(t))))
	fr.wait(t, func() bool { return len(fr.find("m.call.answer")) == 1 })
	member := func(user id.UserID, membership string, source event.Source) *event.Event {
		evt := roomEvent(event.StateMember, user, map[string]string{"membership": membership}, source)
		key := string(user)
		evt.StateKey = &key
		return evt
	}
	m.HandleEvent(context.Background(), member("@carol:hs", "leave", event.SourceTimeline))
	m.HandleEvent(context.Background(), member(bob, "leave", event.SourceState))
	m.HandleEvent(context.Background(), member(bob, "join", event.SourceTimeline))
	time.Sleep(300 * time.Millisecond)
	if len(m.active()) != 1 {
		t.Fatal("the call ended though its caller is still in the room")
	}
	m.HandleEvent(context.Background(), member(bob, "leave", event.SourceTimeline))
	fr.wait(t, func() bool { return len(fr.ended) == 1 })
	fr.mu.Lock()
	hangups := len(fr.find("m.call.hangup"))
	fr.mu.Unlock()
	if hangups != 1 {
		t.Errorf("after the caller left: %d hangups, want 1", hangups)
	}
	for deadline := time.Now().Add(5 * time.Second); len(m.active()) != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the call is still listed after it ended")
		}
	}
}

// TestHungUpWhileRinging: a call hung up while the bot decides is not answered, and not
// rejected either (the caller's client is done with it).
func TestHungUpWhileRinging(t *testing.T) {
	deciding, decide := make(chan struct{}), make(chan struct{})
	m, fr, _ := newManager(t, func() error {
		close(deciding)
		<-decide
		return nil
	})
	p := newPeer(t)
	m.handle(context.Background(), ev(voip.TypeInvite, bob, invite("gone", p.offer(t))))
	<-deciding
	m.handle(context.Background(), ev(voip.TypeHangup, bob, map[string]any{"call_id": "gone", "party_id": "BOBDEV", "version": "1"}))
	close(decide)
	time.Sleep(300 * time.Millisecond)
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if len(fr.sent) != 0 || fr.started != 0 || len(fr.refused) != 0 {
		t.Errorf("a call hung up while ringing: sent %+v, %d started, refused %q", fr.sent, fr.started, fr.refused)
	}
}

// TestUnusableOfferIsRefusedWithWhy: an offer the bot cannot answer ends the call before
// its recording starts; Start says why, for the room, and nothing is recorded.
func TestUnusableOfferIsRefusedWithWhy(t *testing.T) {
	m, fr, dir := newManager(t, nil)
	m.handle(context.Background(), ev(voip.TypeInvite, bob, invite("bad", "v=0\r\nnot an offer\r\n")))
	fr.wait(t, func() bool { return len(fr.refused) == 1 })
	if fr.started != 0 || fr.refused[0] == "" {
		t.Errorf("%d started, refused with %q", fr.started, fr.refused[0])
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("an unanswered call left %d folders", len(entries))
	}
}

// TestRingsOfARoomInTurn: a second invite in a room rings the bot only once the first one
// is decided, so a call that replaces another finds it answered.
func TestRingsOfARoomInTurn(t *testing.T) {
	var mu sync.Mutex
	deciding, maxDeciding := 0, 0
	m, fr, _ := newManager(t, func() error {
		mu.Lock()
		deciding++
		maxDeciding = max(maxDeciding, deciding)
		mu.Unlock()
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		deciding--
		mu.Unlock()
		return errors.New("no")
	})
	p := newPeer(t)
	sdp := p.offer(t)
	for _, id := range []string{"r1", "r2", "r3"} {
		m.handle(context.Background(), ev(voip.TypeInvite, bob, invite(id, sdp)))
	}
	fr.wait(t, func() bool { return len(fr.refused) == 3 })
	mu.Lock()
	defer mu.Unlock()
	if maxDeciding != 1 {
		t.Errorf("%d rings of one room decided at once", maxDeciding)
	}
}
