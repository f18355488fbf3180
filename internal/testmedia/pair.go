package testmedia

import (
	"errors"
	"fmt"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// Connect signals two peer connections of one process to each other without a server:
// an offer from offerer, the answer from answerer, every candidate inside the descriptions.
func Connect(offerer, answerer *webrtc.PeerConnection) error {
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(offerer)
	if err := offerer.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("set offer: %w", err)
	}
	<-gathered
	if err := answerer.SetRemoteDescription(*offerer.LocalDescription()); err != nil {
		return fmt.Errorf("take offer: %w", err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		return fmt.Errorf("create answer: %w", err)
	}
	gathered = webrtc.GatheringCompletePromise(answerer)
	if err := answerer.SetLocalDescription(answer); err != nil {
		return fmt.Errorf("set answer: %w", err)
	}
	<-gathered
	if err := offerer.SetRemoteDescription(*answerer.LocalDescription()); err != nil {
		return fmt.Errorf("take answer: %w", err)
	}
	return nil
}

// OpusPeer is a plain pion peer connection for a test's other party: host candidates on
// loopback UDP4 only (no mDNS names), pion's default codecs and interceptors, and one Opus
// track in stream.
func OpusPeer(stream string) (*webrtc.PeerConnection, *webrtc.TrackLocalStaticSample, error) {
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(LoopbackSettings())).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, nil, err
	}
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", stream)
	if err != nil {
		return nil, nil, errors.Join(err, pc.Close())
	}
	if _, err := pc.AddTrack(track); err != nil {
		return nil, nil, errors.Join(err, pc.Close())
	}
	return pc, track, nil
}

// AddTrack adds track to pc and reads the sender's RTCP until the connection closes (pion
// needs a sender's RTCP read for its interceptors to run).
func AddTrack(pc *webrtc.PeerConnection, track webrtc.TrackLocal) (*webrtc.RTPSender, error) {
	sender, err := pc.AddTrack(track)
	if err != nil {
		return nil, err
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	return sender, nil
}

// LoopbackSettings are the ICE settings of the harness's peers, which talk to the bot on
// 127.0.0.1: host candidates on loopback UDP4 only, without mDNS names.
func LoopbackSettings() webrtc.SettingEngine {
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return se
}
