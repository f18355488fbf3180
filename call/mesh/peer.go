package mesh

import (
	"context"
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/call/voip"
	voippeer "github.com/matrix-recorder/matrix-recorder/call/voip/peer"
)

// peer is one call with one participant device: the MSC2746 peer (call/voip/peer) with
// what full mesh adds, the to-device fields and seq of every message, and the choice of
// Olm-encrypted or plain signalling.
type peer struct {
	*voippeer.Peer
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

	// owned by the peer's loop
	seq          int64
	encrypt      bool
	sawEncrypted bool
}

func newPeer(r *Recording, key matrixrtc.DeviceKey, callID string, outbound bool, session string, encrypt bool) *peer {
	pe := &peer{
		r: r, key: key, callID: callID, outbound: outbound, remoteSession: session, encrypt: encrypt,
		name: r.rs.joined[key.User],
	}
	dir := "inbound"
	if outbound {
		dir = "outbound"
	}
	pe.log = r.log.With().Stringer("participant", key.User).Stringer("device_id", key.Device).Str("call_id", callID).Str("direction", dir).Logger()
	var local voip.StreamMetadataMap
	if outbound {
		local = r.silent.metadata()
	}
	pe.Peer = voippeer.New(r.b.ctx, voippeer.Config{
		PartyID: string(r.b.mx.DeviceID()), Party: "the participant",
		Factory: r.b.rtc, ICEServers: r.b.mx.ICEServers, ICETimeout: r.cfg.ICETimeout,
		StrictSend: true, Local: local,
		Common:    pe.common,
		Send:      pe.send,
		Connected: func() { r.post(func() { r.peerConnected(pe) }) },
		Track:     pe.onTrack,
		Ended:     func(e voippeer.End) { r.post(func() { r.peerEnded(pe, e) }) },
	}, pe.log)
	return pe
}

// call places the call: an offer with our silent audio (js-sdk's callee hangs up on an
// offer without a stream of ours) and room for the peer's camera and screenshare.
func (pe *peer) call() {
	pe.Call(string(pe.key.User), func(pc *webrtc.PeerConnection) error {
		sender, err := pc.AddTrack(pe.r.silent.track)
		if err != nil {
			return fmt.Errorf("add our audio track: %w", err)
		}
		go drainRTCP(sender)
		videos := 1
		if pe.screensharing {
			videos = 2
		}
		for i := 0; i < videos; i++ {
			if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				return fmt.Errorf("add video transceiver: %w", err)
			}
		}
		return nil
	})
}

// receive passes a message of the device to the peer, following its choice of encrypted
// or plain signalling.
func (pe *peer) receive(m inMsg) {
	pe.noteMode(m.encrypted)
	pe.Receive(m.typ, m.raw, m.common.PartyID)
}

// candidates passes the device's candidates to the peer.
func (pe *peer) candidates(cands []voip.Candidate, encrypted bool) {
	pe.noteMode(encrypted)
	pe.AddCandidates(cands)
}

// noteMode follows the peer's choice of encrypted or plain signalling (on the peer's
// loop). A peer that has sent encrypted messages is never answered in plain.
func (pe *peer) noteMode(encrypted bool) {
	pe.Post(func() {
		if encrypted {
			pe.sawEncrypted = true
		}
		pe.encrypt = encrypted
	})
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
	sendTimeout = 20 * time.Second
)

// send delivers one message to the peer device, encrypted or plain as the peer uses. If
// Olm encryption fails for a device that never sent us anything encrypted (it may have no
// keys), the message goes plain.
func (pe *peer) send(ctx context.Context, typ event.Type, content any) error {
	var err error
	for i := 0; i < sendTries; i++ {
		if i > 0 {
			time.Sleep(sendBackoff << (i - 1))
		}
		tctx, cancel := context.WithTimeout(ctx, sendTimeout)
		err = pe.r.b.mx.SendToDevice(tctx, typ, map[id.UserID]map[id.DeviceID]any{pe.key.User: {pe.key.Device: content}}, pe.encrypt)
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
