package onetoone

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/rtc"
	"github.com/matrix-recorder/matrix-recorder/call/voip"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// State of a call.
type State int

// Call states, in the order a call goes through them.
const (
	StateUnknown State = iota
	StateRinging
	StateConnecting
	StateConnected
	StateEnded
)

func (s State) String() string {
	switch s {
	case StateRinging:
		return "ringing"
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateEnded:
		return "ended"
	default:
		return "unknown"
	}
}

// Status is a snapshot of a call for notices and !status.
type Status struct {
	CallID    string
	RoomID    id.RoomID
	Peer      id.UserID
	PeerParty string
	State     State
	StartedAt time.Time
	Folder    string
	Tracks    int
	// Why says why the call ended, in words for the room.
	Why string
}

type endInfo struct {
	reason string // hangup reason sent
	send   bool   // send m.call.hangup
	why    string // for the room
}

// Call is one 1:1 call. All of its state is owned by its loop.
type Call struct {
	m        *Manager
	log      zerolog.Logger
	loop     *call.Loop
	roomID   id.RoomID
	callID   string
	peer     id.UserID
	invite   *voip.Invite
	received time.Time

	// owned by the loop
	state           State
	peerParty       string
	peerV1          bool
	pc              *webrtc.PeerConnection
	session         *recorder.Session
	earlyCandidates []voip.Candidate
	remoteDescSet   bool
	localCands      rtc.LocalCandidates
	candTimer       *time.Timer
	candTries       int
	answerSent      bool
	iceTimer        *time.Timer
	maxTimer        *time.Timer
	startedAt       time.Time
	ended           bool

	// Shared with pion's OnTrack callback, which starts recording at once instead of
	// queueing behind signalling on the loop (packets would pile up meanwhile and
	// arrive in a burst, blurring the track's place on the timeline).
	mediaMu     sync.Mutex
	metadata    voip.StreamMetadataMap
	recSession  *recorder.Session
	tracks      int
	mediaClosed bool

	// read by status() from other goroutines
	mu       sync.Mutex
	snapshot Status
	wg       sync.WaitGroup
}

func newCall(m *Manager, ev Event, inv *voip.Invite, log zerolog.Logger) *Call {
	c := &Call{
		m: m, log: log, roomID: ev.RoomID, callID: inv.CallID, peer: ev.Sender,
		invite: inv, received: ev.ReceivedAt, peerParty: inv.PartyID, peerV1: inv.Version.V1,
		metadata: inv.Metadata, state: StateRinging,
	}
	c.snapshot = Status{CallID: c.callID, RoomID: c.roomID, Peer: c.peer, PeerParty: c.peerParty, State: StateRinging}
	return c
}

func (c *Call) post(fn func()) {
	if !c.loop.Post(fn) {
		c.log.Trace().Msg("Call already ended; dropping work")
	}
}

func (c *Call) status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snapshot
}

func (c *Call) setState(s State) {
	c.state = s
	c.mu.Lock()
	c.snapshot.State = s
	c.mediaMu.Lock()
	c.snapshot.Tracks = c.tracks
	c.mediaMu.Unlock()
	c.snapshot.StartedAt = c.startedAt
	c.snapshot.PeerParty = c.peerParty
	if c.session != nil {
		c.snapshot.Folder = c.session.Folder()
	}
	c.mu.Unlock()
}

// sendCtx bounds one signalling request; it outlives the manager's context so that the
// final hangup still goes out during shutdown.
func (c *Call) sendCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(c.m.ctx), 15*time.Second)
}

func (c *Call) common() voip.Common {
	return voip.Common{CallID: c.callID, PartyID: string(c.m.cfg.DeviceID), Version: voip.V1}
}

func (c *Call) start() {
	c.loop = call.NewLoop(context.WithoutCancel(c.m.ctx))
	c.post(c.answer)
}

// answer sets up the peer connection, starts the recording and sends m.call.answer.
func (c *Call) answer() {
	ctx, cancel := c.sendCtx()
	defer cancel()
	c.log.Info().Msg("Answering call")

	pc, err := c.m.rtc.NewPeerConnection(c.m.sig.ICEServers(ctx))
	if err != nil {
		c.fail(voip.ReasonUnknownError, fmt.Errorf("create peer connection: %w", err))
		return
	}
	c.pc = pc
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) { c.post(func() { c.onLocalCandidate(pc, cand) }) })
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) { c.post(func() { c.onICEState(pc, s) }) })
	pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) { c.onTrack(pc, t, r) })

	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: c.invite.Offer.SDP}); err != nil {
		c.fail(voip.ReasonSetRemoteDesc, fmt.Errorf("apply the caller's offer: %w", err))
		return
	}
	c.remoteDescSet = true
	c.addRemoteCandidates(c.earlyCandidates)
	c.earlyCandidates = nil

	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		c.fail(voip.ReasonCreateAnswer, fmt.Errorf("create answer: %w", err))
		return
	}
	if !rtc.HasUsableMedia(answer.SDP) {
		c.fail(voip.ReasonUnknownError, errors.New("the call offers no audio or video in a codec the recorder can write (Opus, VP8, VP9, AV1, H.264)"))
		return
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		c.fail(voip.ReasonCreateAnswer, fmt.Errorf("set local description: %w", err))
		return
	}

	// Start recording before the answer goes out, so the first packets have a home.
	sess, err := c.m.rec.Start(ctx, recorder.CallInfo{CallID: c.callID, RoomID: string(c.roomID), Kind: "1:1"})
	if err != nil {
		c.fail(voip.ReasonUnknownError, fmt.Errorf("start recording: %w", err))
		return
	}
	c.session = sess
	c.mediaMu.Lock()
	c.recSession = sess
	c.mediaMu.Unlock()
	c.startedAt = sess.StartedAt()
	sess.AddParticipant(string(c.peer), c.peerParty, "", c.startedAt)

	// Let candidates that come at once (host, loopback) travel inside the answer.
	select {
	case <-gathered:
	case <-time.After(c.m.cfg.GatherWait):
	}
	local := pc.LocalDescription()
	// Candidates gathered so far travel in the SDP; do not send them again.
	c.localCands.Signalled(local.SDP)
	content := voip.Answer{
		Common:       c.common(),
		Answer:       voip.SessionDescription{Type: "answer", SDP: local.SDP},
		Capabilities: &voip.Capabilities{},
		// An empty map tells js-sdk we understand stream metadata, so a screenshare
		// arrives as its own stream instead of replacing the camera.
		Metadata: voip.StreamMetadataMap{},
	}
	if err := c.m.sig.SendCallEvent(ctx, c.roomID, voip.TypeAnswer, content); err != nil {
		c.fail("", fmt.Errorf("send answer: %w", err))
		return
	}
	c.answerSent = true
	c.setState(StateConnecting)
	c.log.Info().Str("folder", sess.Folder()).Msg("Call answered; recording")
	c.armICETimer()
	if d := c.m.cfg.MaxDuration; d > 0 {
		c.maxTimer = time.AfterFunc(d, func() {
			c.post(func() {
				c.end(endInfo{reason: voip.ReasonUserHangup, send: true, why: fmt.Sprintf("the maximum recording length of %s was reached", d)})
			})
		})
	}
	c.m.obs.CallStarted(ctx, c.status())
	if c.localCands.Len() > 0 {
		c.scheduleCandidates()
	}
}

func (c *Call) addRemoteCandidates(cands []voip.Candidate) {
	if c.ended {
		return
	}
	if !c.remoteDescSet {
		c.earlyCandidates = append(c.earlyCandidates, cands...)
		if len(c.earlyCandidates) > maxPendingCandidates {
			c.earlyCandidates = c.earlyCandidates[:maxPendingCandidates]
		}
		return
	}
	rtc.AddCandidates(c.pc, cands, c.log)
}

func (c *Call) onLocalCandidate(pc *webrtc.PeerConnection, cand *webrtc.ICECandidate) {
	if c.ended || pc != c.pc {
		return
	}
	if c.localCands.Add(cand) && c.answerSent {
		c.scheduleCandidates()
	}
}

func (c *Call) scheduleCandidates() {
	if c.candTimer != nil {
		return
	}
	c.candTimer = time.AfterFunc(c.m.cfg.CandidateBatch, func() { c.post(c.sendCandidates) })
}

// sendCandidates sends the queued local candidates, retrying with backoff like js-sdk.
func (c *Call) sendCandidates() {
	c.candTimer = nil
	if c.ended || c.localCands.Len() == 0 {
		return
	}
	batch := c.localCands.Take()
	ctx, cancel := c.sendCtx()
	defer cancel()
	err := c.m.sig.SendCallEvent(ctx, c.roomID, voip.TypeCandidates, voip.Candidates{Common: c.common(), Candidates: batch})
	if err == nil {
		c.candTries = 0
		if c.localCands.Len() > 0 {
			c.scheduleCandidates()
		}
		return
	}
	c.candTries++
	c.log.Warn().Err(err).Int("try", c.candTries).Msg("Failed to send candidates")
	if c.candTries > 5 {
		c.end(endInfo{reason: "signalling_timeout", send: true, why: "the bot could not send its connection details"})
		return
	}
	c.localCands.Requeue(batch)
	delay := 500 * time.Millisecond << c.candTries
	c.candTimer = time.AfterFunc(delay, func() { c.post(c.sendCandidates) })
}

func (c *Call) onICEState(pc *webrtc.PeerConnection, s webrtc.ICEConnectionState) {
	if c.ended || pc != c.pc {
		return
	}
	c.log.Debug().Stringer("ice_state", s).Msg("ICE state changed")
	switch s {
	case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
		c.stopICETimer()
		if c.state != StateConnected {
			c.setState(StateConnected)
			c.log.Info().Msg("Media connected")
		}
	case webrtc.ICEConnectionStateDisconnected, webrtc.ICEConnectionStateFailed:
		// The caller restarts ICE through m.call.negotiate; give it ice_timeout.
		c.armICETimer()
	}
}

func (c *Call) armICETimer() {
	if c.iceTimer != nil {
		return
	}
	c.iceTimer = time.AfterFunc(c.m.cfg.ICETimeout, func() {
		c.post(func() {
			c.iceTimer = nil
			if c.state != StateConnected || c.pc.ICEConnectionState() != webrtc.ICEConnectionStateConnected {
				c.end(endInfo{reason: voip.ReasonICEFailed, send: true, why: "the media connection was lost"})
			}
		})
	})
}

func (c *Call) stopICETimer() {
	if c.iceTimer != nil {
		c.iceTimer.Stop()
		c.iceTimer = nil
	}
}

// onTrack starts recording a new remote track. It runs on pion's callback goroutine.
func (c *Call) onTrack(pc *webrtc.PeerConnection, t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	log := c.log.With().Str("track", t.ID()).Str("stream", t.StreamID()).Uint32("ssrc", uint32(t.SSRC())).Str("codec", t.Codec().MimeType).Logger()
	c.mediaMu.Lock()
	sess := c.recSession
	if c.mediaClosed || sess == nil {
		c.mediaMu.Unlock()
		log.Debug().Msg("Track arrived outside a recording; ignoring it")
		go rtc.Drain(t)
		return
	}
	if c.tracks >= c.m.cfg.MaxTracks {
		c.mediaMu.Unlock()
		log.Warn().Msg("Too many tracks in this call; not recording this one")
		go rtc.Drain(t)
		return
	}
	purpose := voip.PurposeUserMedia
	if md, ok := c.metadata[t.StreamID()]; ok {
		if md.Purpose == voip.PurposeScreenshare {
			purpose = voip.PurposeScreenshare
		}
	} else if c.metadata != nil {
		// js-sdk would ignore a stream it has no metadata for; a recorder keeps it.
		log.Debug().Msg("Track's stream has no metadata; recording as user media")
	}
	c.tracks++
	c.wg.Add(1)
	c.mediaMu.Unlock()
	c.post(func() { c.setState(c.state) })

	src := rtc.NewSource(pc, t, r, log)
	info := src.Info()
	info.UserID, info.DeviceID, info.Purpose, info.ClockDomain = string(c.peer), c.peerParty, purpose, c.callID
	log.Info().Str("purpose", purpose).Msg("Recording track")
	go func() {
		defer c.wg.Done()
		// A refused track (the recorder's file limit, a codec it cannot write), or one
		// whose recording ended first, is read on until it ends.
		defer src.Drain()
		tr, err := sess.AddTrack(info)
		if err != nil {
			log.Warn().Err(err).Msg("Track not recorded")
			return
		}
		if err := tr.Run(context.WithoutCancel(c.m.ctx), src); err != nil {
			log.Warn().Err(err).Msg("Track recording ended with an error")
		}
	}()
}

func (c *Call) updateMetadata(md voip.StreamMetadataMap) {
	if md == nil {
		return
	}
	c.mediaMu.Lock()
	c.metadata = md
	c.mediaMu.Unlock()
}

func (c *Call) onSelectAnswer(sa *voip.SelectAnswer) {
	if c.ended {
		return
	}
	if sa.SelectedPartyID != string(c.m.cfg.DeviceID) {
		c.log.Info().Str("selected", sa.SelectedPartyID).Msg("Caller picked another answer")
		c.end(endInfo{reason: voip.ReasonAnsweredElse, send: false, why: "the call was answered elsewhere"})
	}
}

// onNegotiate answers a renegotiation offer (a screenshare added or removed, an ICE
// restart). The callee is always the polite side, so an offer is always accepted.
func (c *Call) onNegotiate(n *voip.Negotiate) {
	if c.ended || c.pc == nil {
		return
	}
	if n.Description.Type != "offer" {
		return // we never send offers
	}
	c.updateMetadata(n.Metadata)
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: n.Description.SDP}); err != nil {
		c.log.Warn().Err(err).Msg("Failed to apply renegotiation offer")
		return
	}
	answer, err := c.pc.CreateAnswer(nil)
	if err != nil {
		c.log.Warn().Err(err).Msg("Failed to create renegotiation answer")
		return
	}
	if err := c.pc.SetLocalDescription(answer); err != nil {
		c.log.Warn().Err(err).Msg("Failed to set renegotiation answer")
		return
	}
	ctx, cancel := c.sendCtx()
	defer cancel()
	content := voip.Negotiate{
		Common:      c.common(),
		Description: voip.SessionDescription{Type: "answer", SDP: c.pc.LocalDescription().SDP},
		Lifetime:    60000,
		Metadata:    voip.StreamMetadataMap{},
	}
	if err := c.m.sig.SendCallEvent(ctx, c.roomID, voip.TypeNegotiate, content); err != nil {
		c.log.Warn().Err(err).Msg("Failed to send renegotiation answer")
		return
	}
	c.log.Info().Msg("Answered renegotiation")
}

func (c *Call) onRemoteEnd(kind, reason string) {
	if c.ended {
		return
	}
	why := "the caller hung up"
	if kind == "reject" {
		why = "the call was rejected"
	}
	if reason != "" && reason != voip.ReasonUserHangup {
		why += " (" + reason + ")"
	}
	c.end(endInfo{send: false, why: why})
}

// fail ends a call that could not be set up, telling the caller with reason (when not empty).
func (c *Call) fail(reason string, err error) {
	c.log.Error().Err(err).Msg("Call failed")
	c.end(endInfo{reason: reason, send: reason != "", why: err.Error()})
}

// end hangs up (optionally telling the peer), finalises the recording and reports.
func (c *Call) end(info endInfo) {
	if c.ended {
		return
	}
	c.ended = true
	for _, t := range []*time.Timer{c.candTimer, c.iceTimer, c.maxTimer} {
		if t != nil {
			t.Stop()
		}
	}
	ctx, cancel := c.sendCtx()
	defer cancel()
	if info.send {
		h := voip.Hangup{Common: c.common(), Reason: info.reason}
		if err := c.m.sig.SendCallEvent(ctx, c.roomID, voip.TypeHangup, h); err != nil {
			c.log.Warn().Err(err).Msg("Failed to send hangup")
		}
	}
	if c.pc != nil {
		if err := c.pc.Close(); err != nil {
			c.log.Debug().Err(err).Msg("Closing peer connection")
		}
	}
	c.snapshotWhy(info.why)
	c.mediaMu.Lock()
	c.mediaClosed = true
	c.mediaMu.Unlock()
	var (
		manifest recorder.Manifest
		err      error
	)
	if c.session != nil {
		manifest, err = c.session.Close(ctx)
		if err != nil {
			c.log.Error().Err(err).Msg("Finalising the recording")
		}
	}
	c.wg.Wait()
	c.setState(StateEnded)
	c.log.Info().Str("why", info.why).Msg("Call ended")
	if c.session != nil {
		c.m.obs.CallEnded(ctx, c.status(), manifest, err)
	} else if info.reason != voip.ReasonAnsweredElse && info.why != "" {
		// The call never got as far as recording: tell the room why.
		c.m.obs.CallRefused(ctx, c.roomID, c.peer, info.why)
	}
	c.loop.Stop()
	c.m.forget(c)
}

func (c *Call) snapshotWhy(why string) {
	c.mu.Lock()
	c.snapshot.Why = why
	c.mu.Unlock()
}
