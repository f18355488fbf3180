package peer

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-recorder/matrix-recorder/call/rtc"
	"github.com/matrix-recorder/matrix-recorder/call/voip"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// wire is the other party as the peer sees it: what the peer sent, and its hooks' calls.
type wire struct {
	mu       sync.Mutex
	sent     []sentMsg
	fail     func(typ string) bool
	tracks   []string // purposes
	answered int
	ended    []End
}

type sentMsg struct {
	typ     string
	content json.RawMessage
}

func (w *wire) send(_ context.Context, t event.Type, content any) error {
	b, err := json.Marshal(content)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail != nil && w.fail(t.Type) {
		return errors.New("homeserver unreachable")
	}
	w.sent = append(w.sent, sentMsg{t.Type, b})
	return nil
}

func (w *wire) find(typ string) []json.RawMessage {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []json.RawMessage
	for _, m := range w.sent {
		if m.typ == typ {
			out = append(out, m.content)
		}
	}
	return out
}

func (w *wire) state() (answered int, ended []End, tracks []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.answered, append([]End(nil), w.ended...), append([]string(nil), w.tracks...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const botParty = "BOTDEV"

func newTestPeer(t *testing.T, w *wire, mod func(*Config)) *Peer {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	f, err := rtc.NewFactory(rtc.Settings{IncludeLoopback: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		PartyID: botParty, Party: "the caller", Factory: f, ICETimeout: 5 * time.Second,
		Common: func() voip.Common { return voip.Common{CallID: "c1", PartyID: botParty, Version: voip.V1} },
		Send:   w.send,
		Answered: func() {
			w.mu.Lock()
			w.answered++
			w.mu.Unlock()
		},
		Track: func(_ *webrtc.PeerConnection, tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver, purpose string, _ zerolog.Logger) {
			w.mu.Lock()
			w.tracks = append(w.tracks, purpose)
			w.mu.Unlock()
			go rtc.Drain(tr)
		},
		Ended: func(e End) {
			w.mu.Lock()
			w.ended = append(w.ended, e)
			w.mu.Unlock()
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	p := New(context.Background(), cfg, log)
	t.Cleanup(func() {
		p.Hangup(End{Why: "test over"})
		select {
		case <-p.Done():
		case <-time.After(10 * time.Second):
			t.Error("peer did not end")
		}
		_ = f.Close()
	})
	return p
}

// caller is the test's other party: a plain pion connection sending Opus in stream "cam".
type caller struct {
	pc    *webrtc.PeerConnection
	track *webrtc.TrackLocalStaticSample
}

func newCaller(t *testing.T) *caller {
	t.Helper()
	pc, track, err := testmedia.OpusPeer("cam")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return &caller{pc: pc, track: track}
}

// offer returns an offer with every candidate in it.
func (c *caller) offer(t *testing.T) string {
	t.Helper()
	o, err := c.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(o); err != nil {
		t.Fatal(err)
	}
	<-done
	return c.pc.LocalDescription().SDP
}

// accept applies the bot's m.call.answer.
func (c *caller) accept(t *testing.T, raw json.RawMessage) {
	t.Helper()
	a, err := voip.ParseAnswer(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a.Answer.SDP}); err != nil {
		t.Fatal(err)
	}
}

func (c *caller) send(ctx context.Context) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			_ = c.track.WriteSample(media.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond})
		}
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// An incoming call is answered as js-sdk expects (version "1", the bot's party, an empty
// metadata map), media connects, the track comes with the purpose its stream's metadata
// gives it, and the caller's hangup ends the call without an echo.
func TestAnswerConnectsAndHandsOverTracks(t *testing.T) {
	w := &wire{}
	p := newTestPeer(t, w, nil)
	c := newCaller(t)
	inv := &voip.Invite{Common: voip.Common{CallID: "c1", PartyID: "BOBDEV", Version: voip.V1},
		Offer: voip.SessionDescription{Type: "offer", SDP: c.offer(t)}, Lifetime: 60000,
		Metadata: voip.StreamMetadataMap{"cam": {Purpose: voip.PurposeScreenshare}}}
	p.Answer(inv, nil)
	waitFor(t, "the answer", func() bool { return len(w.find("m.call.answer")) == 1 })
	raw := w.find("m.call.answer")[0]
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(raw, &fields)
	if string(fields["sdp_stream_metadata"]) != "{}" || string(fields["version"]) != `"1"` || string(fields["party_id"]) != `"BOTDEV"` {
		t.Errorf("answer fields: %s", raw)
	}
	c.accept(t, raw)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.send(ctx)
	waitFor(t, "the track", func() bool { _, _, tr := w.state(); return len(tr) == 1 })
	if n, _, tr := w.state(); n != 1 || tr[0] != voip.PurposeScreenshare {
		t.Errorf("answered %d times, track purposes %v", n, tr)
	}
	// Another party of the caller cannot end the call; the caller can.
	p.Receive(voip.TypeHangup.Type, mustJSON(voip.Hangup{Common: voip.Common{CallID: "c1", PartyID: "OTHER", Version: voip.V1}}), "OTHER")
	p.Receive(voip.TypeHangup.Type, mustJSON(voip.Hangup{Common: voip.Common{CallID: "c1", PartyID: "BOBDEV", Version: voip.V1}, Reason: "user_hangup"}), "BOBDEV")
	<-p.Done()
	_, ended, _ := w.state()
	if len(ended) != 1 || ended[0].Send || ended[0].Why != "the caller hung up" {
		t.Errorf("ended: %+v", ended)
	}
	if len(w.find("m.call.hangup")) != 0 {
		t.Error("the bot echoed a hangup for a call the caller ended")
	}
}

// Hostile input: messages that do not parse or break the limits are dropped without
// ending the call; early candidates are bounded; an offer pion rejects ends the call with
// set_remote_description, and one without media the recorder can write is refused.
func TestHostileInputIsBounded(t *testing.T) {
	w := &wire{}
	p := newTestPeer(t, w, nil)
	big := strings.Repeat("a", voip.MaxSDPLength+1)
	for _, m := range []struct{ typ, raw string }{
		{voip.TypeNegotiate.Type, `{"call_id":"c1","version":"1","description":{"type":"offer","sdp":"` + big + `"}}`},
		{voip.TypeNegotiate.Type, `{"call_id":"c1","version":"1","description":{"type":"pranswer","sdp":"v=0"}}`},
		{voip.TypeAnswer.Type, `{"call_id":"` + strings.Repeat("c", voip.MaxIDLength+1) + `","answer":{"sdp":"v=0"}}`},
		{voip.TypeSelectAnswer.Type, `{"call_id":"c1","selected_party_id":"bad party\n"}`},
		{voip.TypeHangup.Type, `{"call_id":`},
		{"m.call.unknown", `{}`},
	} {
		p.Receive(m.typ, []byte(m.raw), "")
	}
	many := make([]voip.Candidate, MaxEarlyCandidates+50)
	for i := range many {
		many[i] = voip.Candidate{Candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host"}
	}
	p.AddCandidates(many)
	p.AddCandidates(many)
	kept := make(chan int, 1)
	p.Post(func() { kept <- len(p.earlyCands) })
	if n := <-kept; n != MaxEarlyCandidates {
		t.Errorf("%d early candidates kept, want %d", n, MaxEarlyCandidates)
	}
	if _, ended, _ := w.state(); len(ended) != 0 {
		t.Fatalf("hostile messages ended the call: %+v", ended)
	}
	p.Answer(&voip.Invite{Common: voip.Common{CallID: "c1"}, Offer: voip.SessionDescription{Type: "offer", SDP: "v=0 garbage"}}, nil)
	<-p.Done()
	if _, ended, _ := w.state(); len(ended) != 1 || ended[0].Reason != voip.ReasonSetRemoteDesc || !ended[0].Send {
		t.Errorf("ended: %+v", ended)
	}
	if h := w.find("m.call.hangup"); len(h) != 1 || !strings.Contains(string(h[0]), voip.ReasonSetRemoteDesc) {
		t.Errorf("hangups sent: %s", h)
	}

	// Data channels only: nothing to record.
	w2 := &wire{}
	p2 := newTestPeer(t, w2, nil)
	dc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	if _, err := dc.CreateDataChannel("x", nil); err != nil {
		t.Fatal(err)
	}
	c := &caller{pc: dc}
	p2.Answer(&voip.Invite{Common: voip.Common{CallID: "c1"}, Offer: voip.SessionDescription{Type: "offer", SDP: c.offer(t)}}, nil)
	<-p2.Done()
	if _, ended, _ := w2.state(); len(ended) != 1 || !strings.Contains(ended[0].Why, "codec") {
		t.Errorf("ended: %+v", ended)
	}
}

// A select_answer that picks another party ends the call silently (answered elsewhere).
func TestSelectAnswerElsewhere(t *testing.T) {
	w := &wire{}
	p := newTestPeer(t, w, nil)
	c := newCaller(t)
	p.Answer(&voip.Invite{Common: voip.Common{CallID: "c1", PartyID: "BOBDEV"}, Offer: voip.SessionDescription{Type: "offer", SDP: c.offer(t)}}, nil)
	waitFor(t, "the answer", func() bool { return len(w.find("m.call.answer")) == 1 })
	p.Receive(voip.TypeSelectAnswer.Type, mustJSON(voip.SelectAnswer{Common: voip.Common{CallID: "c1", PartyID: "BOBDEV"}, SelectedPartyID: botParty}), "BOBDEV")
	p.Receive(voip.TypeSelectAnswer.Type, mustJSON(voip.SelectAnswer{Common: voip.Common{CallID: "c1", PartyID: "BOBDEV"}, SelectedPartyID: "OTHERDEV"}), "BOBDEV")
	<-p.Done()
	if _, ended, _ := w.state(); len(ended) != 1 || ended[0].Reason != voip.ReasonAnsweredElse || ended[0].Send {
		t.Errorf("ended: %+v", ended)
	}
	if len(w.find("m.call.hangup")) != 0 {
		t.Error("hangup sent after being deselected")
	}
}

// The bot as caller: the invite carries the setup's streams and Local metadata; the
// callee's answer is applied and selected; a renegotiation offer is answered with Local
// metadata; candidates that cannot be sent end the call when every message counts.
func TestCallAnswerSelectNegotiate(t *testing.T) {
	w := &wire{}
	local := voip.StreamMetadataMap{"bot": {Purpose: voip.PurposeUserMedia, AudioMuted: true}}
	p := newTestPeer(t, w, func(c *Config) { c.Local, c.StrictSend, c.Party = local, true, "the participant" })
	p.Call("@zoe:hs", func(pc *webrtc.PeerConnection) error {
		_, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
		return err
	})
	waitFor(t, "the invite", func() bool { return len(w.find("m.call.invite")) == 1 })
	inv, err := voip.ParseInvite(w.find("m.call.invite")[0])
	if err != nil {
		t.Fatal(err)
	}
	if inv.Invitee != "@zoe:hs" || inv.Lifetime != InviteLifetime.Milliseconds() || inv.Metadata["bot"] != local["bot"] {
		t.Errorf("invite: %+v", inv)
	}
	callee := newCaller(t)
	if err := callee.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: inv.Offer.SDP}); err != nil {
		t.Fatal(err)
	}
	ans, err := callee.pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(callee.pc)
	if err := callee.pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	<-done
	// A negotiate before the answer is ignored.
	p.Receive(voip.TypeNegotiate.Type, mustJSON(voip.Negotiate{Common: voip.Common{CallID: "c1"}, Description: voip.SessionDescription{Type: "offer", SDP: inv.Offer.SDP}}), "")
	p.Receive(voip.TypeAnswer.Type, mustJSON(voip.Answer{Common: voip.Common{CallID: "c1", PartyID: "ZOEDEV"},
		Answer: voip.SessionDescription{Type: "answer", SDP: callee.pc.LocalDescription().SDP}}), "ZOEDEV")
	waitFor(t, "select_answer", func() bool { return len(w.find("m.call.select_answer")) == 1 })
	if sa, _ := voip.ParseSelectAnswer(w.find("m.call.select_answer")[0]); sa == nil || sa.SelectedPartyID != "ZOEDEV" {
		t.Errorf("select_answer: %s", w.find("m.call.select_answer")[0])
	}
	if len(w.find("m.call.negotiate")) != 0 {
		t.Error("a negotiate before the answer was answered")
	}
	waitFor(t, "the ICE connection", func() bool { return callee.pc.ICEConnectionState() == webrtc.ICEConnectionStateConnected })
	o, err := callee.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := callee.pc.SetLocalDescription(o); err != nil {
		t.Fatal(err)
	}
	// Another party's answer is ignored from now on.
	p.Receive(voip.TypeNegotiate.Type, mustJSON(voip.Negotiate{Common: voip.Common{CallID: "c1", PartyID: "ZOEDEV"}, Description: voip.SessionDescription{Type: "offer", SDP: o.SDP}}), "ZOEDEV")
	waitFor(t, "the renegotiation answer", func() bool { return len(w.find("m.call.negotiate")) == 1 })
	n, err := voip.ParseNegotiate(w.find("m.call.negotiate")[0])
	if err != nil || n.Description.Type != "answer" || n.Metadata["bot"] != local["bot"] {
		t.Fatalf("negotiate answer: %+v %v", n, err)
	}
	if err := callee.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: n.Description.SDP}); err != nil {
		t.Fatalf("renegotiation answer does not apply: %v", err)
	}

	// Strict sending: a batch of candidates that cannot go out ends the call.
	w.mu.Lock()
	w.fail = func(typ string) bool { return typ == voip.TypeCandidates.Type }
	w.mu.Unlock()
	p.Post(func() {
		p.localCands.queue = append(p.localCands.queue, voip.Candidate{Candidate: ""})
		p.scheduleCandidates()
	})
	<-p.Done()
	if _, ended, _ := w.state(); len(ended) != 1 || ended[0].Reason != "signalling_timeout" {
		t.Errorf("ended: %+v", ended)
	}
}

// A caller that closes its connection without m.call.hangup (a crash; its hangup send
// failed) sends DTLS close_notify, and pion closes the bot's connection for it (ICE state
// "closed", never "disconnected"). The peer still ends the call after the ICE timeout, with
// ice_failed, and tells the caller.
func TestCallerVanishesWithoutHangup(t *testing.T) {
	w := &wire{}
	p := newTestPeer(t, w, func(c *Config) { c.ICETimeout = time.Second })
	c := newCaller(t)
	inv := &voip.Invite{Common: voip.Common{CallID: "c1", PartyID: "BOBDEV", Version: voip.V1},
		Offer: voip.SessionDescription{Type: "offer", SDP: c.offer(t)}, Lifetime: 60000}
	p.Answer(inv, nil)
	waitFor(t, "the answer", func() bool { return len(w.find("m.call.answer")) == 1 })
	c.accept(t, w.find("m.call.answer")[0])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.send(ctx)
	waitFor(t, "the track", func() bool { _, _, tr := w.state(); return len(tr) == 1 })
	cancel()
	if err := c.pc.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the call to end", func() bool { _, ended, _ := w.state(); return len(ended) == 1 })
	if _, ended, _ := w.state(); ended[0].Reason != voip.ReasonICEFailed || !ended[0].Send {
		t.Errorf("ended: %+v", ended)
	}
}
