package caller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/voip"
	"github.com/matrix-recorder/matrix-recorder/internal/testclient"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// CallOptions say what the caller sends.
type CallOptions struct {
	// Audio and Video name testmedia assets; empty means none.
	Audio string
	Video string
	// Lifetime of the invite (js-sdk: 60 s).
	Lifetime time.Duration
	// Invitee, when set, is put in the invite.
	Invitee id.UserID
	// IntVersion sends version as the integer 1 instead of js-sdk's string "1".
	IntVersion bool
	// UnstableMetadataKey sends org.matrix.msc3077.sdp_stream_metadata instead of the stable key.
	UnstableMetadataKey bool
	// CandidateDelay is when the early m.call.candidates go out after the invite.
	CandidateDelay time.Duration
	// AudioMedia and VideoMedia, when set, are sent instead of the Audio and Video assets
	// (media a test made itself).
	AudioMedia, VideoMedia *Media
	// Network, when set, impairs the outgoing RTP (loss, duplicates, reordering).
	Network *Impairment
}

// Call is one outgoing call.
type Call struct {
	c      *Client
	room   id.RoomID
	callID string
	party  string
	opts   CallOptions
	pc     *webrtc.PeerConnection
	ctx    context.Context
	cancel context.CancelFunc

	mu         sync.Mutex
	answered   chan struct{}
	answer     *voip.Answer
	negAnswer  chan string
	hangup     chan string
	remote     testclient.Candidates
	metadata   voip.StreamMetadataMap
	senders    map[string]*testmedia.Sender
	rtpSenders map[string]*webrtc.RTPSender
	locals     map[string]*webrtc.TrackLocalStaticSample
	streams    map[string]string
	stops      map[string]func()
	network    *impairFactory
	wg         sync.WaitGroup
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newAPI(network *impairFactory) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	if network != nil {
		// First, so that it sits next to the wire, below the NACK responder.
		reg.Add(network)
	}
	if err := webrtc.RegisterDefaultInterceptors(m, reg); err != nil {
		return nil, err
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(testmedia.LoopbackSettings())), nil
}

// Call places a call in room and waits for the answer.
func (c *Client) Call(ctx context.Context, room id.RoomID, o CallOptions) (*Call, error) {
	if o.Lifetime == 0 {
		o.Lifetime = 60 * time.Second
	}
	if o.CandidateDelay == 0 {
		o.CandidateDelay = 150 * time.Millisecond
	}
	var network *impairFactory
	if o.Network != nil {
		network = newImpairFactory(*o.Network)
	}
	api, err := newAPI(network)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	call := &Call{
		c: c, room: room, callID: strconv.FormatInt(time.Now().UnixMilli(), 10) + randomID(8),
		party: string(c.cli.DeviceID), opts: o, pc: pc, ctx: cctx, cancel: cancel,
		answered: make(chan struct{}), negAnswer: make(chan string, 4), hangup: make(chan string, 1),
		metadata: voip.StreamMetadataMap{}, senders: map[string]*testmedia.Sender{}, rtpSenders: map[string]*webrtc.RTPSender{},
		locals: map[string]*webrtc.TrackLocalStaticSample{}, streams: map[string]string{}, stops: map[string]func(){},
		network: network,
	}
	stream := "usermedia-" + randomID(6)
	for _, m := range []struct {
		asset string
		media *Media
	}{{o.Audio, o.AudioMedia}, {o.Video, o.VideoMedia}} {
		media := m.media
		if media == nil && m.asset != "" {
			if media, err = AssetMedia(m.asset); err != nil {
				return nil, errors.Join(err, pc.Close())
			}
		}
		if media == nil {
			continue
		}
		if err := call.addTrack(media, stream, "usermedia"); err != nil {
			return nil, errors.Join(err, pc.Close())
		}
	}
	call.metadata[stream] = voip.StreamMetadata{Purpose: voip.PurposeUserMedia}

	var localCands []voip.Candidate
	var candMu sync.Mutex
	gathered := make(chan struct{})
	var gatherOnce sync.Once
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		candMu.Lock()
		defer candMu.Unlock()
		if cand == nil {
			// Renegotiations gather again; their candidates travel in the SDP.
			gatherOnce.Do(func() {
				localCands = append(localCands, voip.Candidate{Candidate: ""})
				close(gathered)
			})
			return
		}
		j := cand.ToJSON()
		localCands = append(localCands, voip.Candidate{Candidate: j.Candidate, SDPMid: j.SDPMid, SDPMLineIndex: j.SDPMLineIndex, UsernameFragment: j.UsernameFragment})
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, errors.Join(err, pc.Close())
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		return nil, errors.Join(err, pc.Close())
	}
	c.mu.Lock()
	c.calls[call.callID] = call
	c.mu.Unlock()

	// The invite carries the offer as created: no candidates (as js-sdk's do).
	inv := map[string]any{
		"call_id": call.callID, "party_id": call.party, "version": call.version(),
		"lifetime": o.Lifetime.Milliseconds(), "offer": map[string]string{"type": "offer", "sdp": offer.SDP},
		"capabilities":     map[string]bool{"m.call.transferee": false, "m.call.dtmf": false},
		call.metadataKey(): call.metadata,
	}
	if o.Invitee != "" {
		inv["invitee"] = o.Invitee
	}
	if err := c.SendRaw(ctx, room, voip.TypeInvite.Type, inv); err != nil {
		return nil, errors.Join(fmt.Errorf("send invite: %w", err), pc.Close())
	}
	// Early candidates, before any answer exists, ending with the empty candidate.
	select {
	case <-gathered:
	case <-time.After(o.CandidateDelay):
	}
	candMu.Lock()
	batch := localCands
	localCands = nil
	candMu.Unlock()
	if err := c.SendRaw(ctx, room, voip.TypeCandidates.Type, call.withCommon(map[string]any{"candidates": batch})); err != nil {
		return nil, errors.Join(fmt.Errorf("send candidates: %w", err), pc.Close())
	}

	select {
	case <-call.answered:
	case reason := <-call.hangup:
		call.Close()
		return nil, fmt.Errorf("%w: the bot hung up (%s)", errNoAnswer, reason)
	case <-ctx.Done():
		call.Close()
		return nil, fmt.Errorf("%w: %w", errNoAnswer, ctx.Err())
	}
	call.mu.Lock()
	ans := call.answer
	call.mu.Unlock()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans.Answer.SDP}); err != nil {
		call.Close()
		return nil, fmt.Errorf("apply answer: %w", err)
	}
	call.remote.Ready(pc)
	if err := c.SendRaw(ctx, room, voip.TypeSelectAnswer.Type, call.withCommon(map[string]any{"selected_party_id": ans.PartyID})); err != nil {
		call.Close()
		return nil, fmt.Errorf("send select_answer: %w", err)
	}
	// Late local candidates (if any) in a second batch.
	candMu.Lock()
	batch = localCands
	localCands = nil
	candMu.Unlock()
	if len(batch) > 0 {
		_ = c.SendRaw(ctx, room, voip.TypeCandidates.Type, call.withCommon(map[string]any{"candidates": batch}))
	}
	call.startSenders()
	return call, nil
}

func (call *Call) version() any {
	if call.opts.IntVersion {
		return 1
	}
	return "1"
}

func (call *Call) metadataKey() string {
	if call.opts.UnstableMetadataKey {
		return "org.matrix.msc3077.sdp_stream_metadata"
	}
	return "sdp_stream_metadata"
}

func (call *Call) withCommon(m map[string]any) map[string]any {
	m["call_id"] = call.callID
	m["party_id"] = call.party
	m["version"] = call.version()
	return m
}

// ID is the call id.
func (call *Call) ID() string { return call.callID }

// PeerConnection exposes the caller's connection (tests check its state).
func (call *Call) PeerConnection() *webrtc.PeerConnection { return call.pc }

func (call *Call) addTrack(m *Media, stream, label string) error {
	kind := "audio"
	if m.Video {
		kind = "video"
	}
	track, err := webrtc.NewTrackLocalStaticSample(m.Capability, label+"-"+kind+"-"+randomID(4), stream)
	if err != nil {
		return err
	}
	sender, err := testmedia.AddTrack(call.pc, track)
	if err != nil {
		return err
	}
	name := label + "-" + kind
	call.mu.Lock()
	call.senders[name] = testmedia.NewSender(track, m.Frames)
	call.rtpSenders[name] = sender
	call.locals[name] = track
	call.streams[name] = stream
	call.mu.Unlock()
	return nil
}

func (call *Call) startSenders() {
	call.mu.Lock()
	names := make([]string, 0, len(call.senders))
	for name := range call.senders {
		names = append(names, name)
	}
	call.mu.Unlock()
	for _, name := range names {
		call.runSender(name)
	}
}

// runSender starts the media sender of a track; stopSender stops it and waits.
func (call *Call) runSender(name string) {
	call.mu.Lock()
	defer call.mu.Unlock()
	s := call.senders[name]
	if s == nil || call.stops[name] != nil {
		return
	}
	ctx, cancel := context.WithCancel(call.ctx)
	done := make(chan struct{})
	call.stops[name] = func() { cancel(); <-done }
	call.wg.Add(1)
	go func() {
		defer call.wg.Done()
		defer close(done)
		_ = s.Run(ctx)
	}()
}

func (call *Call) stopSender(name string) {
	call.mu.Lock()
	stop := call.stops[name]
	delete(call.stops, name)
	call.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Sender returns the media sender of a track ("usermedia-audio", "usermedia-video",
// "screenshare-video"), to pause and resume it.
func (call *Call) Sender(name string) *testmedia.Sender {
	call.mu.Lock()
	defer call.mu.Unlock()
	return call.senders[name]
}

func (call *Call) onEvent(typ string, raw json.RawMessage) {
	switch typ {
	case voip.TypeAnswer.Type:
		a, err := voip.ParseAnswer(raw)
		if err != nil {
			return
		}
		call.mu.Lock()
		if call.answer == nil {
			call.answer = a
			close(call.answered)
		}
		call.mu.Unlock()
	case voip.TypeCandidates.Type:
		cs, err := voip.ParseCandidates(raw)
		if err != nil {
			return
		}
		call.remote.Add(call.pc, cs.Candidates)
	case voip.TypeNegotiate.Type:
		n, err := voip.ParseNegotiate(raw)
		if err != nil || n.Description.Type != "answer" {
			return
		}
		call.negAnswer <- n.Description.SDP
	case voip.TypeHangup.Type, voip.TypeReject.Type:
		h, _ := voip.ParseHangup(raw)
		reason := typ
		if h != nil && h.Reason != "" {
			reason = h.Reason
		}
		select {
		case call.hangup <- reason:
		default:
		}
	}
}

// WaitConnected waits until ICE is connected.
func (call *Call) WaitConnected(ctx context.Context) error {
	for {
		s := call.pc.ICEConnectionState()
		if s == webrtc.ICEConnectionStateConnected || s == webrtc.ICEConnectionStateCompleted {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the media connection (state %s): %w", s, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Hangups returns a channel that receives the reason when the bot hangs up.
func (call *Call) Hangups() <-chan string { return call.hangup }

// renegotiate sends an offer as m.call.negotiate and applies the answer.
func (call *Call) renegotiate(ctx context.Context, opts *webrtc.OfferOptions) error {
	offer, err := call.pc.CreateOffer(opts)
	if err != nil {
		return fmt.Errorf("create offer: %w", err)
	}
	if err := call.pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("set local offer: %w", err)
	}
	<-webrtc.GatheringCompletePromise(call.pc)
	call.mu.Lock()
	md := voip.StreamMetadataMap{}
	for k, v := range call.metadata {
		md[k] = v
	}
	call.mu.Unlock()
	content := call.withCommon(map[string]any{
		"description": map[string]string{"type": "offer", "sdp": call.pc.LocalDescription().SDP},
		"lifetime":    60000, call.metadataKey(): md,
	})
	if err := call.c.SendRaw(ctx, call.room, voip.TypeNegotiate.Type, content); err != nil {
		return fmt.Errorf("send negotiate: %w", err)
	}
	select {
	case sdp := <-call.negAnswer:
		return call.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp})
	case <-ctx.Done():
		return fmt.Errorf("waiting for the negotiate answer: %w", ctx.Err())
	}
}

// StartScreenshare adds a screenshare stream with a video track (js-sdk's
// setScreensharingEnabled with metadata support) and renegotiates.
func (call *Call) StartScreenshare(ctx context.Context, asset string) error {
	stream := "screenshare-" + randomID(6)
	m, err := AssetMedia(asset)
	if err != nil {
		return err
	}
	if err := call.addTrack(m, stream, "screenshare"); err != nil {
		return err
	}
	call.mu.Lock()
	call.metadata[stream] = voip.StreamMetadata{Purpose: voip.PurposeScreenshare, AudioMuted: true}
	call.mu.Unlock()
	if err := call.renegotiate(ctx, nil); err != nil {
		return err
	}
	call.runSender("screenshare-video")
	return nil
}

// StopScreenshare removes the screenshare track and renegotiates.
func (call *Call) StopScreenshare(ctx context.Context) error {
	call.mu.Lock()
	sender := call.rtpSenders["screenshare-video"]
	for k, v := range call.metadata {
		if v.Purpose == voip.PurposeScreenshare {
			delete(call.metadata, k)
		}
	}
	call.mu.Unlock()
	if sender == nil {
		return errors.New("no screenshare")
	}
	call.stopSender("screenshare-video")
	if err := call.pc.RemoveTrack(sender); err != nil {
		return err
	}
	return call.renegotiate(ctx, nil)
}

// RestartICE renegotiates with new ICE credentials.
func (call *Call) RestartICE(ctx context.Context) error {
	return call.renegotiate(ctx, &webrtc.OfferOptions{ICERestart: true})
}

// Hangup sends m.call.hangup and closes the connection.
func (call *Call) Hangup(ctx context.Context) error {
	err := call.c.SendRaw(ctx, call.room, voip.TypeHangup.Type, call.withCommon(map[string]any{"reason": "user_hangup"}))
	call.Close()
	return err
}

// Close stops media and the connection without signalling (a crash or network loss).
func (call *Call) Close() {
	call.cancel()
	_ = call.pc.Close()
	call.wg.Wait()
	call.c.mu.Lock()
	delete(call.c.calls, call.callID)
	call.c.mu.Unlock()
}
