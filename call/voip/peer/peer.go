// Package peer is the recorder's one MSC2746 peer: a pion PeerConnection driven by Matrix
// VoIP events (invite, answer, candidates in and out, select_answer, negotiate, hangup) as
// matrix-js-sdk expects of the other party. Legacy 1:1 calls (room events, call/onetoone)
// and full-mesh group calls (to-device messages, call/mesh) both use it; what differs
// between them (how a message travels, its common fields, what becomes of a remote track,
// what happens when the call is answered, connects or ends) is given in Config.
//
// A Peer's state is owned by its loop; the exported methods post work to it and never
// block, so they may be called from pion's callbacks and from any goroutine. The Config's
// hooks, except Track, run on that loop too: a backend may keep its per-call state there.
package peer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-recorder/matrix-recorder/call/rtc"
	"github.com/matrix-recorder/matrix-recorder/call/voip"
	"github.com/matrix-recorder/matrix-recorder/serial"
)

// Timings as matrix-js-sdk uses them.
const (
	// InviteLifetime is js-sdk's CALL_TIMEOUT_MS: an invite's lifetime and how long a
	// caller waits for an answer.
	InviteLifetime = 60 * time.Second
	// defaultGatherWait lets candidates found at once travel inside the offer or answer.
	defaultGatherWait = 200 * time.Millisecond
	// defaultCandidateBatch collects later candidates into one message.
	defaultCandidateBatch = 500 * time.Millisecond
	defaultICETimeout     = 30 * time.Second
	// candidateTries: a batch of candidates that cannot be sent is tried again this often,
	// with a backoff from 1 s, before the call is given up (js-sdk: more than 5 tries).
	candidateTries = 5
)

// MaxEarlyCandidates bounds the remote candidates kept for a call before its remote
// description is set.
const MaxEarlyCandidates = voip.MaxCandidates

// End says how a call ends.
type End struct {
	// Reason is the hangup reason sent to the other party (with Send).
	Reason string
	// Send: tell the other party with m.call.hangup.
	Send bool
	// Why says why, in words, for logs and the room.
	Why string
}

// Config is what a backend gives a peer. Factory, Common and Send are required.
type Config struct {
	// PartyID is the bot's party_id (its device id); a select_answer naming another party
	// ends the call.
	PartyID string
	// Party names the other side in words ("the caller", "the participant").
	Party string
	// Factory makes the peer connection; ICEServers (optional) gives its STUN/TURN servers.
	Factory    *rtc.Factory
	ICEServers func(ctx context.Context) []webrtc.ICEServer
	// ICETimeout ends a call whose media connection stays lost (or never comes) this long.
	ICETimeout time.Duration
	// GatherWait is how long an offer or answer waits for local candidates, so that most of
	// them travel inside its SDP, as js-sdk does.
	GatherWait time.Duration
	// CandidateBatch is how long later local candidates are collected before they are sent.
	CandidateBatch time.Duration
	// StrictSend: every message must arrive (to-device messages are ordered by seq, and a
	// lost one stalls the rest), so a message that Send could not deliver ends the call;
	// Send does its own retries. Otherwise a batch of candidates is retried with a backoff
	// and a renegotiation answer that cannot be sent is only logged.
	StrictSend bool
	// Local describes the streams the bot sends when it places the call (Call): it goes
	// into the invite and into renegotiation answers. Answers of incoming calls say {}.
	Local voip.StreamMetadataMap

	// Common returns the fields of the next message (call_id, party_id, version; to-device
	// fields and the next seq for group calls).
	Common func() voip.Common
	// Send delivers one message to the other party. ctx outlives the call, so the final
	// hangup still goes out; Send bounds its own time.
	Send func(ctx context.Context, typ event.Type, content any) error
	// BeforeAnswer runs once an incoming call's answer is set locally, before it is sent
	// (a 1:1 call starts its recording there, so the first packets have a home). An error
	// fails the call with unknown_error.
	BeforeAnswer func(ctx context.Context) error
	// Answered runs once the call is set up: our answer sent, or theirs applied.
	Answered func()
	// Connected runs when media first connects.
	Connected func()
	// Track gets every remote track, on pion's goroutine (recording starts at once rather
	// than waiting behind signalling), with its purpose from sdp_stream_metadata. It owns the
	// track from then on: it must record it or drain it (rtc.Drain).
	Track func(pc *webrtc.PeerConnection, t *webrtc.TrackRemote, r *webrtc.RTPReceiver, purpose string, log zerolog.Logger)
	// Ended runs once, when the call is over and its connection closed.
	Ended func(End)
}

func (c *Config) fill() {
	if c.ICETimeout <= 0 {
		c.ICETimeout = defaultICETimeout
	}
	if c.GatherWait <= 0 {
		c.GatherWait = defaultGatherWait
	}
	if c.CandidateBatch <= 0 {
		c.CandidateBatch = defaultCandidateBatch
	}
	if c.Party == "" {
		c.Party = "the other party"
	}
}

// Peer is one MSC2746 call with one device.
type Peer struct {
	cfg  Config
	ctx  context.Context
	log  zerolog.Logger
	loop *serial.Loop
	done chan struct{}

	// owned by the loop
	outbound      bool
	remoteParty   string
	pc            *webrtc.PeerConnection
	remoteDescSet bool
	earlyCands    []voip.Candidate
	localCands    localCandidates
	signalled     bool // our invite or answer went out: the other side knows the call
	answered      bool
	connected     bool
	candTimer     *time.Timer
	candTries     int
	iceTimer      *time.Timer
	inviteTimer   *time.Timer
	ended         bool

	// shared with pion's OnTrack callback and PC
	mu       sync.Mutex
	metadata voip.StreamMetadataMap
	closed   bool
	shared   *webrtc.PeerConnection
}

// New returns a peer whose loop runs until the call ends; ctx is the backend's (only its
// values are kept: a call that is ending still says so to the other party).
func New(ctx context.Context, cfg Config, log zerolog.Logger) *Peer {
	cfg.fill()
	ctx = context.WithoutCancel(ctx)
	return &Peer{cfg: cfg, ctx: ctx, log: log, loop: serial.New(ctx), done: make(chan struct{})}
}

// Post runs fn on the peer's loop. It reports false when the call is over.
func (p *Peer) Post(fn func()) bool {
	if !p.loop.Post(fn) {
		p.log.Trace().Msg("Call already ended; dropping work")
		return false
	}
	return true
}

// Done is closed when the call is over.
func (p *Peer) Done() <-chan struct{} { return p.done }

// PC returns the peer connection (nil before it is made).
func (p *Peer) PC() *webrtc.PeerConnection {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.shared
}

// Call places the call to invitee: setup adds what the bot sends and receives (matrix-js-
// sdk's callee hangs up on an offer without a stream of ours), then the invite goes out.
func (p *Peer) Call(invitee string, setup func(pc *webrtc.PeerConnection) error) {
	p.Post(func() { p.call(invitee, setup) })
}

// Answer accepts an incoming call with a receive-only answer. early are the candidates
// that arrived before the invite was handled.
func (p *Peer) Answer(inv *voip.Invite, early []voip.Candidate) {
	p.Post(func() { p.answer(inv, early) })
}

// Receive handles one message of the other party of this call: answer, select_answer,
// negotiate, sdp_stream_metadata_changed, hangup or reject (candidates: AddCandidates).
// partyID is the message's party_id.
func (p *Peer) Receive(typ string, raw []byte, partyID string) {
	p.Post(func() { p.receive(typ, raw, partyID) })
}

// AddCandidates adds the other party's candidates; before the remote description is set
// they wait (at most MaxEarlyCandidates).
func (p *Peer) AddCandidates(cands []voip.Candidate) {
	p.Post(func() { p.addRemoteCandidates(cands) })
}

// Hangup ends the call.
func (p *Peer) Hangup(e End) {
	p.Post(func() { p.end(e) })
}

func (p *Peer) newPC() (*webrtc.PeerConnection, error) {
	var servers []webrtc.ICEServer
	if p.cfg.ICEServers != nil {
		ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
		servers = p.cfg.ICEServers(ctx)
		cancel()
	}
	pc, err := p.cfg.Factory.NewPeerConnection(servers)
	if err != nil {
		return nil, err
	}
	p.pc = pc
	p.mu.Lock()
	p.shared = pc
	p.mu.Unlock()
	pc.OnICECandidate(func(c *webrtc.ICECandidate) { p.Post(func() { p.onLocalCandidate(pc, c) }) })
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) { p.Post(func() { p.onICEState(pc, s) }) })
	pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) { p.onTrack(pc, t, r) })
	return pc, nil
}

func (p *Peer) call(invitee string, setup func(pc *webrtc.PeerConnection) error) {
	if p.ended {
		return
	}
	p.outbound = true
	p.log.Info().Msg("Calling participant device")
	pc, err := p.newPC()
	if err != nil {
		p.fail("", fmt.Errorf("create peer connection: %w", err))
		return
	}
	if setup != nil {
		if err := setup(pc); err != nil {
			p.fail("", err)
			return
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		p.fail("create_offer", fmt.Errorf("create offer: %w", err))
		return
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		p.fail("set_local_description", fmt.Errorf("set local description: %w", err))
		return
	}
	p.waitGather(gathered)
	content := voip.Invite{
		Common:       p.cfg.Common(),
		Offer:        voip.SessionDescription{Type: "offer", SDP: p.takeLocalSDP()},
		Lifetime:     InviteLifetime.Milliseconds(),
		Invitee:      invitee,
		Capabilities: &voip.Capabilities{},
		Metadata:     p.cfg.Local,
	}
	if err := p.send(voip.TypeInvite, content); err != nil {
		p.fail("", fmt.Errorf("send invite: %w", err))
		return
	}
	p.signalled = true
	p.inviteTimer = time.AfterFunc(InviteLifetime, func() {
		p.Post(func() {
			if !p.answered {
				p.end(End{Reason: voip.ReasonInviteTimeout, Send: true, Why: "the device did not answer"})
			}
		})
	})
	if p.localCands.Len() > 0 {
		p.scheduleCandidates()
	}
}

func (p *Peer) answer(inv *voip.Invite, early []voip.Candidate) {
	if p.ended {
		return
	}
	p.log.Info().Msg("Answering call")
	p.remoteParty = inv.PartyID
	p.setMetadata(inv.Metadata)
	pc, err := p.newPC()
	if err != nil {
		p.fail(voip.ReasonUnknownError, fmt.Errorf("create peer connection: %w", err))
		return
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: inv.Offer.SDP}); err != nil {
		p.fail(voip.ReasonSetRemoteDesc, fmt.Errorf("apply the caller's offer: %w", err))
		return
	}
	p.remoteDescSet = true
	p.addRemoteCandidates(append(early, p.earlyCands...))
	p.earlyCands = nil
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		p.fail(voip.ReasonCreateAnswer, fmt.Errorf("create answer: %w", err))
		return
	}
	if !hasUsableMedia(answer.SDP) {
		p.fail(voip.ReasonUnknownError, errors.New("the call offers no audio or video in a codec the recorder can write (Opus, VP8, VP9, AV1, H.264)"))
		return
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		p.fail(voip.ReasonCreateAnswer, fmt.Errorf("set local description: %w", err))
		return
	}
	if p.cfg.BeforeAnswer != nil {
		if err := p.cfg.BeforeAnswer(p.ctx); err != nil {
			p.fail(voip.ReasonUnknownError, err)
			return
		}
	}
	p.waitGather(gathered)
	content := voip.Answer{
		Common:       p.cfg.Common(),
		Answer:       voip.SessionDescription{Type: "answer", SDP: p.takeLocalSDP()},
		Capabilities: &voip.Capabilities{},
		// An empty map tells js-sdk we understand stream metadata, so a screenshare
		// arrives as its own stream instead of replacing the camera.
		Metadata: voip.StreamMetadataMap{},
	}
	if err := p.send(voip.TypeAnswer, content); err != nil {
		p.fail("", fmt.Errorf("send answer: %w", err))
		return
	}
	p.signalled = true
	p.setUp()
	if p.localCands.Len() > 0 {
		p.scheduleCandidates()
	}
}

// setUp marks the call set up (answered either way).
func (p *Peer) setUp() {
	p.answered = true
	p.armICETimer()
	if p.cfg.Answered != nil {
		p.cfg.Answered()
	}
}

func (p *Peer) waitGather(gathered <-chan struct{}) {
	select {
	case <-gathered:
	case <-time.After(p.cfg.GatherWait):
	}
}

// takeLocalSDP returns the local description and remembers the candidates in it, so they
// are not sent again.
func (p *Peer) takeLocalSDP() string {
	sdp := p.pc.LocalDescription().SDP
	p.localCands.Signalled(sdp)
	return sdp
}

func (p *Peer) send(typ event.Type, content any) error {
	return p.cfg.Send(p.ctx, typ, content)
}

func (p *Peer) receive(typ string, raw []byte, partyID string) {
	if p.ended {
		return
	}
	if p.remoteParty != "" && partyID != "" && partyID != p.remoteParty {
		p.log.Debug().Str("party_id", partyID).Str("type", typ).Msg("Ignoring a message from another party")
		return
	}
	var err error
	switch typ {
	case voip.TypeAnswer.Type:
		var a *voip.Answer
		if a, err = voip.ParseAnswer(raw); err == nil {
			p.onAnswer(a)
		}
	case voip.TypeSelectAnswer.Type:
		var sa *voip.SelectAnswer
		if sa, err = voip.ParseSelectAnswer(raw); err == nil && !p.outbound && sa.SelectedPartyID != p.cfg.PartyID {
			p.log.Info().Str("selected", sa.SelectedPartyID).Msg("The other side picked another answer")
			p.end(End{Reason: voip.ReasonAnsweredElse, Why: "the call was answered elsewhere"})
		}
	case voip.TypeNegotiate.Type:
		var n *voip.Negotiate
		if n, err = voip.ParseNegotiate(raw); err == nil {
			p.onNegotiate(n)
		}
	case voip.TypeSDPStreamMetadataChanged.Type, voip.TypeSDPStreamMetadataChangedU.Type:
		var mc *voip.MetadataChanged
		if mc, err = voip.ParseMetadataChanged(raw); err == nil {
			p.setMetadata(mc.Metadata)
		}
	case voip.TypeHangup.Type:
		var h *voip.Hangup
		if h, err = voip.ParseHangup(raw); err == nil {
			p.onRemoteEnd("hung up", h.Reason)
		}
	case voip.TypeReject.Type:
		var r *voip.Reject
		if r, err = voip.ParseReject(raw); err == nil {
			p.onRemoteEnd("rejected the call", r.Reason)
		}
	default:
		p.log.Debug().Str("type", typ).Msg("Ignoring call message type")
	}
	if err != nil {
		p.log.Warn().Err(err).Str("type", typ).Msg("Dropping bad call message")
	}
}

func (p *Peer) onAnswer(a *voip.Answer) {
	if !p.outbound || p.answered || p.pc == nil {
		return
	}
	p.setMetadata(a.Metadata)
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a.Answer.SDP}); err != nil {
		p.fail(voip.ReasonSetRemoteDesc, fmt.Errorf("apply the answer: %w", err))
		return
	}
	p.remoteParty = a.PartyID
	p.remoteDescSet = true
	if p.inviteTimer != nil {
		p.inviteTimer.Stop()
	}
	p.addRemoteCandidates(p.earlyCands)
	p.earlyCands = nil
	if err := p.send(voip.TypeSelectAnswer, voip.SelectAnswer{Common: p.cfg.Common(), SelectedPartyID: a.PartyID}); err != nil {
		p.log.Warn().Err(err).Msg("Failed to send select_answer")
	}
	p.setUp()
	p.log.Info().Msg("Participant device answered")
}

// onNegotiate answers a renegotiation offer (a screenshare added or removed, an ICE
// restart). The bot never renegotiates itself, so it is the polite side and accepts every
// offer once the call is set up.
func (p *Peer) onNegotiate(n *voip.Negotiate) {
	if p.pc == nil || !p.answered {
		p.log.Debug().Msg("Ignoring negotiate before the call is set up")
		return
	}
	if n.Description.Type != "offer" {
		return // we never send offers
	}
	p.setMetadata(n.Metadata)
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: n.Description.SDP}); err != nil {
		p.log.Warn().Err(err).Msg("Failed to apply renegotiation offer")
		return
	}
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		p.log.Warn().Err(err).Msg("Failed to create renegotiation answer")
		return
	}
	if err := p.pc.SetLocalDescription(answer); err != nil {
		p.log.Warn().Err(err).Msg("Failed to set renegotiation answer")
		return
	}
	local := voip.StreamMetadataMap{}
	if p.outbound && p.cfg.Local != nil {
		local = p.cfg.Local
	}
	content := voip.Negotiate{
		Common:      p.cfg.Common(),
		Description: voip.SessionDescription{Type: "answer", SDP: p.pc.LocalDescription().SDP},
		Lifetime:    InviteLifetime.Milliseconds(),
		Metadata:    local,
	}
	if err := p.send(voip.TypeNegotiate, content); err != nil {
		if p.cfg.StrictSend {
			p.fail("", fmt.Errorf("send renegotiation answer: %w", err))
			return
		}
		p.log.Warn().Err(err).Msg("Failed to send renegotiation answer")
		return
	}
	p.log.Info().Msg("Answered renegotiation")
}

// setMetadata merges an sdp_stream_metadata update into what is known, as js-sdk does,
// bounded to voip.MaxStreams streams.
func (p *Peer) setMetadata(md voip.StreamMetadataMap) {
	if md == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.metadata == nil {
		p.metadata = voip.StreamMetadataMap{}
	}
	for k, v := range md {
		if _, known := p.metadata[k]; !known && len(p.metadata) >= voip.MaxStreams {
			continue
		}
		p.metadata[k] = v
	}
}

func (p *Peer) addRemoteCandidates(cands []voip.Candidate) {
	if p.ended {
		return
	}
	if !p.remoteDescSet {
		p.earlyCands = append(p.earlyCands, cands...)
		if len(p.earlyCands) > MaxEarlyCandidates {
			p.earlyCands = p.earlyCands[:MaxEarlyCandidates]
		}
		return
	}
	rtc.AddCandidates(p.pc, cands, p.log)
}

func (p *Peer) onLocalCandidate(pc *webrtc.PeerConnection, c *webrtc.ICECandidate) {
	if p.ended || pc != p.pc {
		return
	}
	if p.localCands.Add(c) && p.signalled {
		p.scheduleCandidates()
	}
}

func (p *Peer) scheduleCandidates() {
	if p.candTimer != nil {
		return
	}
	p.candTimer = time.AfterFunc(p.cfg.CandidateBatch, func() { p.Post(p.sendCandidates) })
}

// sendCandidates sends the queued local candidates, retrying with a backoff as js-sdk does
// (or, with StrictSend, giving up the call when Send could not deliver them).
func (p *Peer) sendCandidates() {
	p.candTimer = nil
	if p.ended || p.localCands.Len() == 0 {
		return
	}
	batch := p.localCands.Take()
	err := p.send(voip.TypeCandidates, voip.Candidates{Common: p.cfg.Common(), Candidates: batch})
	if err == nil {
		p.candTries = 0
		if p.localCands.Len() > 0 {
			p.scheduleCandidates()
		}
		return
	}
	p.candTries++
	p.log.Warn().Err(err).Int("try", p.candTries).Msg("Failed to send candidates")
	if p.cfg.StrictSend || p.candTries > candidateTries {
		p.end(End{Reason: "signalling_timeout", Send: true, Why: "the bot could not send its connection details"})
		return
	}
	p.localCands.Requeue(batch)
	p.candTimer = time.AfterFunc(500*time.Millisecond<<p.candTries, func() { p.Post(p.sendCandidates) })
}

func (p *Peer) onICEState(pc *webrtc.PeerConnection, s webrtc.ICEConnectionState) {
	if p.ended || pc != p.pc {
		return
	}
	p.log.Debug().Stringer("ice_state", s).Msg("ICE state changed")
	switch s {
	case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
		p.stopICETimer()
		if !p.connected {
			p.connected = true
			p.log.Info().Msg("Media connected")
			if p.cfg.Connected != nil {
				p.cfg.Connected()
			}
		}
	case webrtc.ICEConnectionStateDisconnected, webrtc.ICEConnectionStateFailed:
		// js-sdk restarts ICE through m.call.negotiate; give it the ICE timeout.
		p.armICETimer()
	case webrtc.ICEConnectionStateClosed:
		// Only pion closes our connection outside end: the caller closed its own and sent
		// DTLS close_notify (a crash, or its m.call.hangup never reached the homeserver).
		// Nothing restores a closed connection, but its hangup may still come through sync
		// and say why, so end it after the ICE timeout, like a lost connection.
		p.armICETimer()
	}
}

func (p *Peer) armICETimer() {
	if p.iceTimer != nil {
		return
	}
	p.iceTimer = time.AfterFunc(p.cfg.ICETimeout, func() {
		p.Post(func() {
			p.iceTimer = nil
			if s := p.pc.ICEConnectionState(); s != webrtc.ICEConnectionStateConnected && s != webrtc.ICEConnectionStateCompleted {
				p.end(End{Reason: voip.ReasonICEFailed, Send: true, Why: "the media connection was lost"})
			}
		})
	})
}

func (p *Peer) stopICETimer() {
	if p.iceTimer != nil {
		p.iceTimer.Stop()
		p.iceTimer = nil
	}
}

// onTrack hands a new remote track, with its purpose, to the backend. It runs on pion's
// callback goroutine.
func (p *Peer) onTrack(pc *webrtc.PeerConnection, t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	log := p.log.With().Str("track", t.ID()).Str("stream", t.StreamID()).Uint32("ssrc", uint32(t.SSRC())).Str("codec", t.Codec().MimeType).Logger()
	p.mu.Lock()
	if p.closed || p.cfg.Track == nil {
		p.mu.Unlock()
		log.Debug().Msg("Track arrived outside a recording; ignoring it")
		go rtc.Drain(t)
		return
	}
	purpose := voip.PurposeUserMedia
	if md, ok := p.metadata[t.StreamID()]; ok {
		if md.Purpose == voip.PurposeScreenshare {
			purpose = voip.PurposeScreenshare
		}
	} else if p.metadata != nil {
		// js-sdk would ignore a stream it has no metadata for; a recorder keeps it.
		log.Debug().Msg("Track's stream has no metadata; recording it as user media")
	}
	p.mu.Unlock()
	p.cfg.Track(pc, t, r, purpose, log)
}

func (p *Peer) onRemoteEnd(what, reason string) {
	why := p.cfg.Party + " " + what
	if reason != "" && reason != voip.ReasonUserHangup {
		why += " (" + bound(reason, 64) + ")"
	}
	p.end(End{Why: why})
}

// fail ends a call that broke, telling the other party with reason when it is not empty.
func (p *Peer) fail(reason string, err error) {
	p.log.Warn().Err(err).Msg("Call failed")
	p.end(End{Reason: reason, Send: reason != "", Why: err.Error()})
}

// end hangs up (telling the other party if asked and it knows of the call), closes the
// connection (the tracks then end) and tells the backend.
func (p *Peer) end(e End) {
	if p.ended {
		return
	}
	p.ended = true
	for _, t := range []*time.Timer{p.candTimer, p.iceTimer, p.inviteTimer} {
		if t != nil {
			t.Stop()
		}
	}
	// An incoming call is known to the caller from its invite on; ours from our invite on.
	if e.Send && (p.signalled || !p.outbound) {
		if err := p.send(voip.TypeHangup, voip.Hangup{Common: p.cfg.Common(), Reason: e.Reason}); err != nil {
			p.log.Warn().Err(err).Msg("Failed to send hangup")
		}
	}
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	if p.pc != nil {
		if err := p.pc.Close(); err != nil {
			p.log.Debug().Err(err).Msg("Closing peer connection")
		}
	}
	p.log.Info().Str("why", e.Why).Msg("Call ended")
	if p.cfg.Ended != nil {
		p.cfg.Ended(e)
	}
	p.loop.Stop()
	close(p.done)
}

// bound shortens s to at most n bytes.
func bound(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
