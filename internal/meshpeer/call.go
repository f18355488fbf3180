package meshpeer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/matrix-recorder/matrix-recorder/call/voip"
	"github.com/matrix-recorder/matrix-recorder/internal/testclient"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// streamMeta is one entry of sdp_stream_metadata.
type streamMeta struct {
	Purpose    string `json:"purpose"`
	AudioMuted bool   `json:"audio_muted"`
	VideoMuted bool   `json:"video_muted"`
}

// Call is one peer connection with one remote device (js-sdk MatrixCall in a group call).
type Call struct {
	g             *Group
	remote        devKey
	remoteSession string
	callID        string
	outbound      bool
	log           zerolog.Logger
	pc            *webrtc.PeerConnection

	sendMu sync.Mutex // one message at a time, in seq order
	seq    int64

	mu          sync.Mutex
	encrypt     bool
	remoteCands testclient.Candidates
	ended       bool
	connectedAt time.Time
	answered    chan struct{}
	negAnswer   chan string
	hangupCh    chan string
	metadata    map[string]streamMeta
	senders     map[string]*webrtc.RTPSender
	remoteMeta  map[string]streamMeta
	remoteParty string
}

func (g *Group) newCall(remote devKey, callID string, outbound bool, session string) *Call {
	return &Call{
		g: g, remote: remote, remoteSession: session, callID: callID, outbound: outbound,
		log:      g.log.With().Stringer("remote", remote).Str("call_id", callID).Logger(),
		encrypt:  !g.c.plain,
		answered: make(chan struct{}), negAnswer: make(chan string, 4), hangupCh: make(chan string, 1),
		metadata: map[string]streamMeta{}, senders: map[string]*webrtc.RTPSender{},
	}
}

func newAPI() (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, reg); err != nil {
		return nil, err
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(testmedia.LoopbackSettings())), nil
}

func (call *Call) newPC() error {
	api, err := newAPI()
	if err != nil {
		return err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		return err
	}
	call.pc = pc
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			call.mu.Lock()
			if call.connectedAt.IsZero() {
				call.connectedAt = time.Now()
			}
			call.mu.Unlock()
			call.log.Debug().Msg("Connected")
		}
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			if _, _, err := t.Read(buf); err != nil {
				return
			}
		}
	})
	return nil
}

// addLocal adds the group's local tracks (usermedia, and the screenshare if on).
func (call *Call) addLocal() error {
	g := call.g
	g.mu.Lock()
	media, screen := g.media, g.screen
	g.mu.Unlock()
	for _, lt := range append(media.tracks(), screen) {
		if lt == nil {
			continue
		}
		if err := call.addTrack(lt); err != nil {
			return err
		}
	}
	return nil
}

func (call *Call) addTrack(lt *localTrack) error {
	sender, err := testmedia.AddTrack(call.pc, lt.track)
	if err != nil {
		return err
	}
	call.mu.Lock()
	call.senders[lt.purpose+"-"+lt.kind] = sender
	md := call.metadata[lt.stream]
	md.Purpose = "m." + lt.purpose
	call.metadata[lt.stream] = md
	call.mu.Unlock()
	return nil
}

func (call *Call) localMetadata() map[string]streamMeta {
	call.mu.Lock()
	defer call.mu.Unlock()
	out := make(map[string]streamMeta, len(call.metadata))
	for k, v := range call.metadata {
		out[k] = v
	}
	return out
}

// place makes the outgoing call (js-sdk placeCallWithCallFeeds and gotLocalOffer).
func (call *Call) place(requestScreenshare bool) {
	if err := call.newPC(); err != nil {
		call.fail("create peer connection", err)
		return
	}
	if err := call.addLocal(); err != nil {
		call.fail("add tracks", err)
		return
	}
	if requestScreenshare {
		if _, err := call.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			call.fail("add screenshare transceiver", err)
			return
		}
	}
	sdpText, err := call.localDescription(webrtc.SDPTypeOffer, nil)
	if err != nil {
		call.fail("create offer", err)
		return
	}
	content := map[string]any{
		"lifetime": 60000, "invitee": call.remote.user,
		"offer":               map[string]string{"type": "offer", "sdp": sdpText},
		"capabilities":        map[string]bool{"m.call.transferee": false, "m.call.dtmf": false},
		"sdp_stream_metadata": call.localMetadata(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := call.send(ctx, "m.call.invite", content); err != nil {
		call.fail("send invite", err)
		return
	}
	call.sendCandidates(ctx, sdpText)
	select {
	case <-call.answered:
	case <-time.After(60 * time.Second):
		call.Hangup(ctx, "invite_timeout")
	}
}

// localDescription creates an offer or answer, sets it, and gives gathering 200 ms as
// js-sdk does.
func (call *Call) localDescription(t webrtc.SDPType, opts *webrtc.OfferOptions) (string, error) {
	var desc webrtc.SessionDescription
	var err error
	if t == webrtc.SDPTypeOffer {
		desc, err = call.pc.CreateOffer(opts)
	} else {
		desc, err = call.pc.CreateAnswer(nil)
	}
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(call.pc)
	if err := call.pc.SetLocalDescription(desc); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-time.After(200 * time.Millisecond):
	}
	return call.pc.LocalDescription().SDP, nil
}

// sendCandidates sends the candidates that were not in the SDP, with the end marker.
func (call *Call) sendCandidates(ctx context.Context, sdpText string) {
	<-webrtc.GatheringCompletePromise(call.pc)
	var cands []voip.Candidate
	for _, line := range strings.Split(call.pc.LocalDescription().SDP, "\n") {
		l := strings.TrimSpace(line)
		if !strings.HasPrefix(l, "a=candidate:") || strings.Contains(sdpText, l) {
			continue
		}
		mid, idx := "0", uint16(0)
		cands = append(cands, voip.Candidate{Candidate: strings.TrimPrefix(l, "a="), SDPMid: &mid, SDPMLineIndex: &idx})
	}
	cands = append(cands, voip.Candidate{Candidate: ""})
	if err := call.send(ctx, "m.call.candidates", map[string]any{"candidates": cands}); err != nil {
		call.log.Warn().Err(err).Msg("Failed to send candidates")
	}
}

// answer handles an incoming invite (js-sdk initWithInvite, then answerWithCallFeeds).
func (call *Call) answer(inv Received, early []Received) {
	var c struct {
		Offer struct {
			Type string `json:"type"`
			SDP  string `json:"sdp"`
		} `json:"offer"`
		PartyID  string                `json:"party_id"`
		Metadata map[string]streamMeta `json:"sdp_stream_metadata"`
		Lifetime int64                 `json:"lifetime"`
		Invitee  string                `json:"invitee"`
	}
	if err := json.Unmarshal(inv.Content, &c); err != nil {
		call.g.c.violation("invite from %s: %v", call.remote, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if c.Invitee != "" && id.UserID(c.Invitee) != call.g.c.UserID() {
		call.g.c.violation("invite from %s names invitee %s", call.remote, c.Invitee)
	}
	if c.Lifetime <= 3000 {
		call.g.c.violation("invite from %s has lifetime %d: js-sdk drops it as expired", call.remote, c.Lifetime)
	}
	// js-sdk: no remote stream with tracks after setRemoteDescription, or a stream it has
	// no metadata for (pushRemoteFeed reads its purpose), ends the call.
	if why := checkOfferStreams(c.Offer.SDP, c.Metadata); why != "" {
		call.g.c.violation("invite from %s: %s (js-sdk hangs up with set_remote_description)", call.remote, why)
		call.Hangup(ctx, "set_remote_description")
		return
	}
	call.mu.Lock()
	call.remoteParty = c.PartyID
	call.remoteMeta = c.Metadata
	call.mu.Unlock()
	if err := call.newPC(); err != nil {
		call.fail("create peer connection", err)
		return
	}
	if err := call.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: c.Offer.SDP}); err != nil {
		call.g.c.violation("invite from %s: offer rejected: %v", call.remote, err)
		call.Hangup(ctx, "set_remote_description")
		return
	}
	call.setRemote()
	for _, m := range early {
		call.onEvent(m)
	}
	if err := call.addLocal(); err != nil {
		call.fail("add tracks", err)
		return
	}
	sdpText, err := call.localDescription(webrtc.SDPTypeAnswer, nil)
	if err != nil {
		call.fail("create answer", err)
		return
	}
	content := map[string]any{
		"answer":              map[string]string{"type": "answer", "sdp": sdpText},
		"capabilities":        map[string]bool{"m.call.transferee": false, "m.call.dtmf": false},
		"sdp_stream_metadata": call.localMetadata(),
	}
	if err := call.send(ctx, "m.call.answer", content); err != nil {
		call.fail("send answer", err)
		return
	}
	close(call.answered)
	call.sendCandidates(ctx, sdpText)
}

// checkOfferStreams finds a sending m-line with an msid stream described as user media or
// screenshare.
func checkOfferStreams(offer string, md map[string]streamMeta) string {
	type section struct {
		port    string
		dir     string
		streams []string
	}
	var secs []*section
	for _, line := range strings.Split(offer, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "m="):
			f := strings.Fields(line)
			if len(f) < 2 {
				return "malformed m-line"
			}
			secs = append(secs, &section{port: f[1], dir: "sendrecv"})
		case len(secs) == 0:
		case line == "a=sendrecv" || line == "a=sendonly" || line == "a=recvonly" || line == "a=inactive":
			secs[len(secs)-1].dir = strings.TrimPrefix(line, "a=")
		case strings.HasPrefix(line, "a=msid:"):
			if f := strings.Fields(strings.TrimPrefix(line, "a=msid:")); len(f) > 0 {
				secs[len(secs)-1].streams = append(secs[len(secs)-1].streams, f[0])
			}
		}
	}
	for _, s := range secs {
		if s.port == "0" || (s.dir != "sendrecv" && s.dir != "sendonly") {
			continue
		}
		for _, stream := range s.streams {
			meta, ok := md[stream]
			if !ok {
				return fmt.Sprintf("stream %s is not in sdp_stream_metadata", stream)
			}
			if meta.Purpose != "m.usermedia" && meta.Purpose != "m.screenshare" {
				return fmt.Sprintf("stream %s has purpose %q", stream, meta.Purpose)
			}
			return ""
		}
	}
	return "no stream with a track in the offer"
}

func (call *Call) setRemote() { call.remoteCands.Ready(call.pc) }

// onEvent handles a message of this call.
func (call *Call) onEvent(m Received) {
	call.mu.Lock()
	party := call.remoteParty
	call.mu.Unlock()
	var common struct {
		PartyID string `json:"party_id"`
	}
	_ = json.Unmarshal(m.Content, &common)
	if party != "" && common.PartyID != party {
		call.g.c.violation("%s in call %s from party %q, the call's party is %q", m.Type, call.callID, common.PartyID, party)
	}
	switch m.Type {
	case "m.call.answer":
		var a struct {
			Answer struct {
				SDP string `json:"sdp"`
			} `json:"answer"`
			PartyID  string                `json:"party_id"`
			Metadata map[string]streamMeta `json:"sdp_stream_metadata"`
		}
		if json.Unmarshal(m.Content, &a) != nil || !call.outbound {
			return
		}
		if a.Metadata == nil {
			call.g.c.violation("answer from %s without sdp_stream_metadata (js-sdk falls back to one stream)", call.remote)
		}
		if err := call.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a.Answer.SDP}); err != nil {
			call.g.c.violation("answer from %s rejected: %v", call.remote, err)
			return
		}
		call.mu.Lock()
		call.remoteParty = a.PartyID
		call.mu.Unlock()
		call.setRemote()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := call.send(ctx, "m.call.select_answer", map[string]any{"selected_party_id": a.PartyID}); err != nil {
			call.log.Warn().Err(err).Msg("Failed to send select_answer")
		}
		close(call.answered)
	case "m.call.candidates":
		var cs struct {
			Candidates []voip.Candidate `json:"candidates"`
		}
		if json.Unmarshal(m.Content, &cs) != nil {
			return
		}
		call.remoteCands.Add(call.pc, cs.Candidates)
	case "m.call.negotiate":
		var n struct {
			Description struct {
				Type string `json:"type"`
				SDP  string `json:"sdp"`
			} `json:"description"`
		}
		if json.Unmarshal(m.Content, &n) != nil {
			return
		}
		if n.Description.Type == "answer" {
			call.negAnswer <- n.Description.SDP
			return
		}
		go call.answerNegotiation(n.Description.SDP)
	case "m.call.hangup", "m.call.reject":
		var h struct {
			Reason string `json:"reason"`
		}
		_ = json.Unmarshal(m.Content, &h)
		if h.Reason == "" {
			h.Reason = m.Type
		}
		select {
		case call.hangupCh <- h.Reason:
		default:
		}
		call.close()
	}
}

func (call *Call) answerNegotiation(offer string) {
	if err := call.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		call.log.Warn().Err(err).Msg("Negotiate offer rejected")
		return
	}
	sdpText, err := call.localDescription(webrtc.SDPTypeAnswer, nil)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = call.send(ctx, "m.call.negotiate", map[string]any{
		"description": map[string]string{"type": "answer", "sdp": sdpText}, "sdp_stream_metadata": call.localMetadata(),
	})
}

// renegotiate sends an offer as m.call.negotiate and applies the answer.
func (call *Call) renegotiate(ctx context.Context, opts *webrtc.OfferOptions) error {
	sdpText, err := call.localDescription(webrtc.SDPTypeOffer, opts)
	if err != nil {
		return fmt.Errorf("create offer: %w", err)
	}
	<-webrtc.GatheringCompletePromise(call.pc)
	sdpText = call.pc.LocalDescription().SDP
	if err := call.send(ctx, "m.call.negotiate", map[string]any{
		"description": map[string]string{"type": "offer", "sdp": sdpText}, "lifetime": 60000,
		"sdp_stream_metadata": call.localMetadata(),
	}); err != nil {
		return fmt.Errorf("send negotiate: %w", err)
	}
	select {
	case answer := <-call.negAnswer:
		return call.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer})
	case <-ctx.Done():
		return fmt.Errorf("waiting for the negotiate answer: %w", ctx.Err())
	}
}

func (call *Call) addScreenshare(ctx context.Context, lt *localTrack) error {
	if call.isEnded() || call.pc == nil {
		return nil
	}
	if err := call.addTrack(lt); err != nil {
		return err
	}
	return call.renegotiate(ctx, nil)
}

func (call *Call) removeScreenshare(ctx context.Context, lt *localTrack) error {
	call.mu.Lock()
	sender := call.senders["screenshare-"+lt.kind]
	delete(call.senders, "screenshare-"+lt.kind)
	delete(call.metadata, lt.stream)
	call.mu.Unlock()
	if sender == nil || call.isEnded() {
		return nil
	}
	if err := call.pc.RemoveTrack(sender); err != nil {
		return err
	}
	return call.renegotiate(ctx, nil)
}

// RestartICE renegotiates with new ICE credentials, as js-sdk does when ICE fails.
func (call *Call) RestartICE(ctx context.Context) error {
	return call.renegotiate(ctx, &webrtc.OfferOptions{ICERestart: true})
}

// ConnectedAt is when media first flowed (DTLS done), zero before.
func (call *Call) ConnectedAt() time.Time {
	call.mu.Lock()
	defer call.mu.Unlock()
	return call.connectedAt
}

// Hangups returns a channel that receives the reason when the other side hangs up.
func (call *Call) Hangups() <-chan string { return call.hangupCh }

// Remote is the other device.
func (call *Call) Remote() (id.UserID, id.DeviceID) { return call.remote.user, call.remote.device }

// Outbound reports whether this side placed the call.
func (call *Call) Outbound() bool { return call.outbound }

func (call *Call) isEnded() bool {
	call.mu.Lock()
	defer call.mu.Unlock()
	return call.ended
}

// Hangup sends m.call.hangup and closes the connection.
func (call *Call) Hangup(ctx context.Context, reason string) {
	if !call.isEnded() {
		if err := call.send(ctx, "m.call.hangup", map[string]any{"reason": reason}); err != nil {
			call.log.Debug().Err(err).Msg("Failed to send hangup")
		}
	}
	call.close()
}

func (call *Call) close() {
	call.mu.Lock()
	already := call.ended
	call.ended = true
	call.mu.Unlock()
	if !already && call.pc != nil {
		_ = call.pc.Close()
	}
}

func (call *Call) fail(what string, err error) {
	call.log.Warn().Err(err).Msg("Call failed: " + what)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call.Hangup(ctx, "unknown_error")
}

// send delivers one message to the remote device with every field js-sdk adds.
func (call *Call) send(ctx context.Context, typ string, content map[string]any) error {
	call.sendMu.Lock()
	defer call.sendMu.Unlock()
	c := call.g.c
	call.g.mu.Lock()
	session := call.g.session
	call.g.mu.Unlock()
	content["version"] = "1"
	content["call_id"] = call.callID
	content["party_id"] = c.DeviceID()
	content["conf_id"] = call.g.conf
	content["device_id"] = c.DeviceID()
	content["sender_session_id"] = session
	content["dest_session_id"] = call.remoteSession
	content["seq"] = call.seq
	content["org.matrix.msgid"] = newUUID()
	call.seq++
	evtType := event.Type{Type: typ, Class: event.ToDeviceEventType}
	req := &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{
		call.remote.user: {call.remote.device: {Parsed: content}},
	}}
	call.mu.Lock()
	encrypt := call.encrypt
	call.mu.Unlock()
	if encrypt {
		enc, err := c.crypto.Machine().EncryptToDevices(ctx, evtType, req)
		if err != nil {
			return fmt.Errorf("encrypt %s: %w", typ, err)
		}
		if enc.Messages[call.remote.user][call.remote.device] == nil {
			return errors.New("no Olm session with the remote device")
		}
		_, err = c.cli.SendToDevice(ctx, event.ToDeviceEncrypted, enc)
		return err
	}
	_, err := c.cli.SendToDevice(ctx, evtType, req)
	return err
}
