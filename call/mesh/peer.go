package mesh

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/call/rtc"
	"github.com/matrix-recorder/matrix-recorder/call/voip"
)

// Signalling timings, as matrix-js-sdk uses them.
const (
	// inviteLifetime is js-sdk's CALL_TIMEOUT_MS: the invite's lifetime and how long the
	// caller waits for an answer.
	inviteLifetime = 60 * time.Second
	// gatherWait lets candidates found at once travel inside the offer or answer.
	gatherWait = 200 * time.Millisecond
	// candidateBatch collects later candidates into one message.
	candidateBatch = 500 * time.Millisecond
)

type endInfo struct {
	reason string // hangup reason sent
	send   bool   // send m.call.hangup
	why    string // in words, for logs and notices
}

// peer is one peer connection with one participant device: one call id, its own loop.
type peer struct {
	r             *Recording
	key           matrixrtc.DeviceKey
	callID        string
	outbound      bool
	remoteSession string
	// screensharing asks for a second video stream in our offer (js-sdk's
	// requestScreenshareFeed), for a participant whose entry says it shares its screen.
	screensharing bool
	name          string
	log           zerolog.Logger
	loop          *call.Loop
	done          chan struct{}

	// owned by the loop
	seq           int64
	encrypt       bool
	sawEncrypted  bool
	remoteParty   string
	pc            *webrtc.PeerConnection
	remoteDescSet bool
	earlyCands    []voip.Candidate
	localCands    rtc.LocalCandidates
	signalled     bool
	answered      bool
	connected     bool
	candTimer     *time.Timer
	candTries     int
	iceTimer      *time.Timer
	inviteTimer   *time.Timer
	ended         bool

	// shared with pion's OnTrack callback
	mediaMu  sync.Mutex
	metadata voip.StreamMetadataMap
	closed   bool
}

func newPeer(r *Recording, key matrixrtc.DeviceKey, callID string, outbound bool, session string, encrypt bool) *peer {
	pe := &peer{
		r: r, key: key, callID: callID, outbound: outbound, remoteSession: session, encrypt: encrypt,
		name: r.rs.joined[key.User], done: make(chan struct{}),
	}
	dir := "inbound"
	if outbound {
		dir = "outbound"
	}
	pe.log = r.log.With().Stringer("participant", key.User).Stringer("device_id", key.Device).Str("call_id", callID).Str("direction", dir).Logger()
	return pe
}

// start runs the peer's loop and its first step: placing the call (first == nil) or
// answering.
func (pe *peer) start(first func()) {
	pe.loop = call.NewLoop(context.WithoutCancel(pe.r.b.ctx))
	if first == nil {
		first = pe.call
	}
	pe.post(first)
}

func (pe *peer) post(fn func()) {
	if pe.loop == nil || !pe.loop.Post(fn) {
		pe.log.Trace().Msg("Peer already ended; dropping work")
	}
}

// sendCtx bounds one signalling request; it survives the recording's end so the final
// hangup still goes out.
func (pe *peer) sendCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(pe.r.b.ctx), 20*time.Second)
}

func (pe *peer) newPC() (*webrtc.PeerConnection, error) {
	ctx, cancel := pe.sendCtx()
	defer cancel()
	pc, err := pe.r.b.rtc.NewPeerConnection(pe.r.b.mx.ICEServers(ctx))
	if err != nil {
		return nil, err
	}
	pe.pc = pc
	pc.OnICECandidate(func(c *webrtc.ICECandidate) { pe.post(func() { pe.onLocalCandidate(pc, c) }) })
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) { pe.post(func() { pe.onICEState(pc, s) }) })
	pc.OnTrack(func(t *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) { pe.onTrack(pc, t, rcv) })
	return pc, nil
}

// call places the call: an offer with our silent audio (js-sdk's callee hangs up on an
// offer without a stream of ours) and room for the peer's camera and screenshare.
func (pe *peer) call() {
	pe.log.Info().Msg("Calling participant device")
	pc, err := pe.newPC()
	if err != nil {
		pe.fail("", fmt.Errorf("create peer connection: %w", err))
		return
	}
	sender, err := pc.AddTrack(pe.r.silent.track)
	if err != nil {
		pe.fail("", fmt.Errorf("add our audio track: %w", err))
		return
	}
	go drainRTCP(sender)
	videos := 1
	if pe.screensharing {
		videos = 2
	}
	for i := 0; i < videos; i++ {
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			pe.fail("", fmt.Errorf("add video transceiver: %w", err))
			return
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		pe.fail("create_offer", fmt.Errorf("create offer: %w", err))
		return
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		pe.fail("set_local_description", fmt.Errorf("set local description: %w", err))
		return
	}
	waitGather(gathered)
	sdp := pe.takeLocalSDP()
	content := voip.Invite{
		Common:       pe.common(),
		Offer:        voip.SessionDescription{Type: "offer", SDP: sdp},
		Lifetime:     inviteLifetime.Milliseconds(),
		Invitee:      string(pe.key.User),
		Capabilities: &voip.Capabilities{},
		Metadata:     pe.r.silent.metadata(),
	}
	if err := pe.send(voip.TypeInvite, content); err != nil {
		pe.fail("", fmt.Errorf("send invite: %w", err))
		return
	}
	pe.signalled = true
	pe.inviteTimer = time.AfterFunc(inviteLifetime, func() {
		pe.post(func() {
			if !pe.answered {
				pe.end(endInfo{reason: voip.ReasonInviteTimeout, send: true, why: "the device did not answer"})
			}
		})
	})
	if pe.localCands.Len() > 0 {
		pe.scheduleCandidates()
	}
}

// answer accepts an incoming call with a receive-only answer.
func (pe *peer) answer(inv *voip.Invite, early []voip.Candidate) {
	pe.log.Info().Msg("Answering participant device")
	pe.setMetadata(inv.Metadata)
	pc, err := pe.newPC()
	if err != nil {
		pe.fail(voip.ReasonUnknownError, fmt.Errorf("create peer connection: %w", err))
		return
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: inv.Offer.SDP}); err != nil {
		pe.fail(voip.ReasonSetRemoteDesc, fmt.Errorf("apply the offer: %w", err))
		return
	}
	pe.remoteDescSet = true
	pe.addRemoteCandidates(append(early, pe.earlyCands...))
	pe.earlyCands = nil
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		pe.fail(voip.ReasonCreateAnswer, fmt.Errorf("create answer: %w", err))
		return
	}
	if !rtc.HasUsableMedia(answer.SDP) {
		pe.fail(voip.ReasonUnknownError, errors.New("the call offers no audio or video in a codec the recorder can write"))
		return
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		pe.fail(voip.ReasonCreateAnswer, fmt.Errorf("set local description: %w", err))
		return
	}
	waitGather(gathered)
	content := voip.Answer{
		Common:       pe.common(),
		Answer:       voip.SessionDescription{Type: "answer", SDP: pe.takeLocalSDP()},
		Capabilities: &voip.Capabilities{},
		// An empty map says we understand stream metadata, so every stream of the
		// participant arrives as its own (camera and screenshare).
		Metadata: voip.StreamMetadataMap{},
	}
	if err := pe.send(voip.TypeAnswer, content); err != nil {
		pe.fail("", fmt.Errorf("send answer: %w", err))
		return
	}
	pe.signalled = true
	pe.answered = true
	pe.armICETimer()
	if pe.localCands.Len() > 0 {
		pe.scheduleCandidates()
	}
}

func waitGather(gathered <-chan struct{}) {
	select {
	case <-gathered:
	case <-time.After(gatherWait):
	}
}

// takeLocalSDP returns the local description and remembers the candidates in it, so they
// are not sent again.
func (pe *peer) takeLocalSDP() string {
	sdp := pe.pc.LocalDescription().SDP
	pe.localCands.Signalled(sdp)
	return sdp
}

// onMessage handles answer, select_answer, negotiate and metadata changes.
func (pe *peer) onMessage(m inMsg) {
	if pe.ended {
		return
	}
	pe.noteMode(m.encrypted)
	if pe.remoteParty != "" && m.common.PartyID != "" && m.common.PartyID != pe.remoteParty {
		pe.log.Debug().Str("party_id", m.common.PartyID).Msg("Ignoring a message from another party")
		return
	}
	switch m.typ {
	case voip.TypeAnswer.Type:
		a, err := voip.ParseAnswer(m.raw)
		if err != nil {
			pe.log.Warn().Err(err).Msg("Dropping bad answer")
			return
		}
		pe.onAnswer(a)
	case voip.TypeSelectAnswer.Type:
		sa, err := voip.ParseSelectAnswer(m.raw)
		if err != nil || pe.outbound {
			return
		}
		if sa.SelectedPartyID != string(pe.r.b.mx.DeviceID()) {
			pe.end(endInfo{reason: voip.ReasonAnsweredElse, send: false, why: "the call was answered elsewhere"})
		}
	case voip.TypeNegotiate.Type:
		n, err := voip.ParseNegotiate(m.raw)
		if err != nil {
			pe.log.Warn().Err(err).Msg("Dropping bad negotiate")
			return
		}
		pe.onNegotiate(n)
	case voip.TypeSDPStreamMetadataChanged.Type, voip.TypeSDPStreamMetadataChangedU.Type:
		mc, err := voip.ParseMetadataChanged(m.raw)
		if err == nil {
			pe.setMetadata(mc.Metadata)
		}
	}
}

// noteMode follows the peer's choice of encrypted or plain signalling. A peer that has sent
// encrypted messages is never answered in plain.
func (pe *peer) noteMode(encrypted bool) {
	if encrypted {
		pe.sawEncrypted = true
	}
	pe.encrypt = encrypted
}

func (pe *peer) onAnswer(a *voip.Answer) {
	if !pe.outbound || pe.answered || pe.pc == nil {
		return
	}
	pe.setMetadata(a.Metadata)
	if err := pe.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a.Answer.SDP}); err != nil {
		pe.fail(voip.ReasonSetRemoteDesc, fmt.Errorf("apply the answer: %w", err))
		return
	}
	pe.answered = true
	pe.remoteParty = a.PartyID
	pe.remoteDescSet = true
	if pe.inviteTimer != nil {
		pe.inviteTimer.Stop()
	}
	pe.addRemoteCandidates(pe.earlyCands)
	pe.earlyCands = nil
	if err := pe.send(voip.TypeSelectAnswer, voip.SelectAnswer{Common: pe.common(), SelectedPartyID: a.PartyID}); err != nil {
		pe.log.Warn().Err(err).Msg("Failed to send select_answer")
	}
	pe.armICETimer()
	pe.log.Info().Msg("Participant device answered")
}

// onNegotiate answers a renegotiation offer (screenshare on or off, ICE restart). The bot
// never renegotiates itself, so it is always ready for an offer once the call is set up.
func (pe *peer) onNegotiate(n *voip.Negotiate) {
	if pe.pc == nil || !pe.answered {
		pe.log.Debug().Msg("Ignoring negotiate before the call is set up")
		return
	}
	if n.Description.Type != "offer" {
		return
	}
	pe.setMetadata(n.Metadata)
	if err := pe.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: n.Description.SDP}); err != nil {
		pe.log.Warn().Err(err).Msg("Failed to apply renegotiation offer")
		return
	}
	answer, err := pe.pc.CreateAnswer(nil)
	if err != nil {
		pe.log.Warn().Err(err).Msg("Failed to create renegotiation answer")
		return
	}
	if err := pe.pc.SetLocalDescription(answer); err != nil {
		pe.log.Warn().Err(err).Msg("Failed to set renegotiation answer")
		return
	}
	content := voip.Negotiate{
		Common:      pe.common(),
		Description: voip.SessionDescription{Type: "answer", SDP: pe.pc.LocalDescription().SDP},
		Lifetime:    inviteLifetime.Milliseconds(),
		Metadata:    pe.localMetadata(),
	}
	if err := pe.send(voip.TypeNegotiate, content); err != nil {
		pe.fail("", fmt.Errorf("send renegotiation answer: %w", err))
		return
	}
	pe.log.Info().Msg("Answered renegotiation")
}

// localMetadata describes what we send: the silent stream when we placed the call.
func (pe *peer) localMetadata() voip.StreamMetadataMap {
	if pe.outbound {
		return pe.r.silent.metadata()
	}
	return voip.StreamMetadataMap{}
}

func (pe *peer) setMetadata(md voip.StreamMetadataMap) {
	if md == nil {
		return
	}
	pe.mediaMu.Lock()
	if pe.metadata == nil {
		pe.metadata = voip.StreamMetadataMap{}
	}
	// js-sdk merges updates into what it knew.
	for k, v := range md {
		if len(pe.metadata) >= voip.MaxStreams && pe.metadata[k] == (voip.StreamMetadata{}) {
			break
		}
		pe.metadata[k] = v
	}
	pe.mediaMu.Unlock()
}

func (pe *peer) onCandidates(cands []voip.Candidate, encrypted bool) {
	if pe.ended {
		return
	}
	pe.noteMode(encrypted)
	pe.addRemoteCandidates(cands)
}

func (pe *peer) addRemoteCandidates(cands []voip.Candidate) {
	if pe.ended {
		return
	}
	if !pe.remoteDescSet {
		pe.earlyCands = append(pe.earlyCands, cands...)
		if len(pe.earlyCands) > maxEarlyCandidates {
			pe.earlyCands = pe.earlyCands[:maxEarlyCandidates]
		}
		return
	}
	rtc.AddCandidates(pe.pc, cands, pe.log)
}

func (pe *peer) onLocalCandidate(pc *webrtc.PeerConnection, c *webrtc.ICECandidate) {
	if pe.ended || pc != pe.pc {
		return
	}
	if pe.localCands.Add(c) && pe.signalled {
		pe.scheduleCandidates()
	}
}

func (pe *peer) scheduleCandidates() {
	if pe.candTimer != nil {
		return
	}
	pe.candTimer = time.AfterFunc(candidateBatch, func() { pe.post(pe.sendCandidates) })
}

// sendCandidates sends queued local candidates, retrying with backoff as js-sdk does.
func (pe *peer) sendCandidates() {
	pe.candTimer = nil
	if pe.ended || pe.localCands.Len() == 0 {
		return
	}
	batch := pe.localCands.Take()
	err := pe.send(voip.TypeCandidates, voip.Candidates{Common: pe.common(), Candidates: batch})
	if err == nil {
		pe.candTries = 0
		if pe.localCands.Len() > 0 {
			pe.scheduleCandidates()
		}
		return
	}
	pe.fail("signalling_timeout", fmt.Errorf("send candidates: %w", err))
}

func (pe *peer) onICEState(pc *webrtc.PeerConnection, s webrtc.ICEConnectionState) {
	if pe.ended || pc != pe.pc {
		return
	}
	pe.log.Debug().Stringer("ice_state", s).Msg("ICE state changed")
	switch s {
	case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
		pe.stopICETimer()
		if !pe.connected {
			pe.connected = true
			pe.log.Info().Msg("Media connected")
			pe.r.post(func() { pe.r.peerConnected(pe) })
		}
	case webrtc.ICEConnectionStateDisconnected, webrtc.ICEConnectionStateFailed:
		// js-sdk restarts ICE through m.call.negotiate; give it the ICE timeout.
		pe.armICETimer()
	}
}

func (pe *peer) armICETimer() {
	if pe.iceTimer != nil {
		return
	}
	pe.iceTimer = time.AfterFunc(pe.r.cfg.ICETimeout, func() {
		pe.post(func() {
			pe.iceTimer = nil
			if s := pe.pc.ICEConnectionState(); s != webrtc.ICEConnectionStateConnected && s != webrtc.ICEConnectionStateCompleted {
				pe.end(endInfo{reason: voip.ReasonICEFailed, send: true, why: "the media connection failed"})
			}
		})
	})
}

func (pe *peer) stopICETimer() {
	if pe.iceTimer != nil {
		pe.iceTimer.Stop()
		pe.iceTimer = nil
	}
}

func (pe *peer) onRemoteEnd(kind, reason string) {
	if pe.ended {
		return
	}
	why := "the participant " + kind
	if reason != "" && reason != voip.ReasonUserHangup {
		why += " (" + bound(reason, 64) + ")"
	}
	pe.end(endInfo{send: false, why: why})
}

// fail ends a peer that broke, telling the participant with reason when not empty.
func (pe *peer) fail(reason string, err error) {
	pe.log.Warn().Err(err).Msg("Peer connection failed")
	pe.end(endInfo{reason: reason, send: reason != "", why: err.Error()})
}

// end hangs up (optionally telling the participant) and closes the connection; the
// tracks then finalise their files on their own.
func (pe *peer) end(info endInfo) {
	if pe.ended {
		return
	}
	pe.ended = true
	for _, t := range []*time.Timer{pe.candTimer, pe.iceTimer, pe.inviteTimer} {
		if t != nil {
			t.Stop()
		}
	}
	// An incoming call is known to the caller from its invite on; ours from our invite on.
	if info.send && (pe.signalled || !pe.outbound) {
		if err := pe.send(voip.TypeHangup, voip.Hangup{Common: pe.common(), Reason: info.reason}); err != nil {
			pe.log.Debug().Err(err).Msg("Failed to send hangup")
		}
	}
	pe.mediaMu.Lock()
	pe.closed = true
	pe.mediaMu.Unlock()
	if pe.pc != nil {
		if err := pe.pc.Close(); err != nil {
			pe.log.Debug().Err(err).Msg("Closing peer connection")
		}
	}
	pe.log.Info().Str("why", info.why).Msg("Peer connection ended")
	r := pe.r
	r.post(func() { r.peerEnded(pe, info) })
	pe.loop.Stop()
	close(pe.done)
}

// common returns the fields every message of this call carries, with the next seq.
func (pe *peer) common() voip.Common {
	seq := pe.seq
	pe.seq++
	self := string(pe.r.b.mx.DeviceID())
	return voip.Common{
		CallID: pe.callID, PartyID: self, Version: voip.V1,
		ConfID: pe.r.confID, DeviceID: self,
		SenderSessionID: pe.r.session, DestSessionID: pe.remoteSession,
		Seq: &seq, MsgID: newUUID(),
	}
}

// sendTries and sendBackoff: a message that cannot be sent is retried with the same seq
// (a skipped seq would stall every later message at the peer), then the call is given up.
const (
	sendTries   = 4
	sendBackoff = 500 * time.Millisecond
)

// send delivers one message to the peer device, encrypted or plain as the peer uses. If
// Olm encryption fails for a device that never sent us anything encrypted (it may have no
// keys), the message goes plain.
func (pe *peer) send(typ event.Type, content any) error {
	var err error
	for i := 0; i < sendTries; i++ {
		if i > 0 {
			time.Sleep(sendBackoff << (i - 1))
		}
		ctx, cancel := pe.sendCtx()
		err = pe.r.b.mx.SendToDevice(ctx, typ, map[id.UserID]map[id.DeviceID]any{pe.key.User: {pe.key.Device: content}}, pe.encrypt)
		cancel()
		if err == nil {
			return nil
		}
		if pe.encrypt && !pe.sawEncrypted {
			pe.log.Warn().Err(err).Msg("Encrypted signalling failed; sending plain to this device")
			pe.encrypt = false
			continue
		}
		pe.log.Debug().Err(err).Int("try", i+1).Msg("Sending call message failed")
	}
	return err
}
