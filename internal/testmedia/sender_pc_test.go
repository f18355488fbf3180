package testmedia

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// newLoopbackAPI returns a pion API whose ICE uses 127.0.0.1 only, so the
// test also works in a loopback-only network namespace.
func newLoopbackAPI(t *testing.T) *webrtc.API {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	var me webrtc.MediaEngine
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(&me))
}

// Every asset goes through a real pion packetizer and depacketizer path: two
// PeerConnections in this process, no server.
func TestSenderOverPeerConnection(t *testing.T) {
	for _, a := range Assets() {
		t.Run(a.Name, func(t *testing.T) {
			frames, err := Frames(a.Name)
			if err != nil {
				t.Fatal(err)
			}
			api := newLoopbackAPI(t)
			pcSend, err := api.NewPeerConnection(webrtc.Configuration{})
			if err != nil {
				t.Fatal(err)
			}
			defer pcSend.Close()
			pcRecv, err := api.NewPeerConnection(webrtc.Configuration{})
			if err != nil {
				t.Fatal(err)
			}
			defer pcRecv.Close()

			track, err := webrtc.NewTrackLocalStaticSample(a.Capability(), "media", "testmedia")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pcSend.AddTrack(track); err != nil {
				t.Fatal(err)
			}
			got := make(chan error, 1)
			pcRecv.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
				if !strings.EqualFold(remote.Codec().MimeType, a.MimeType) {
					got <- errors.New("negotiated " + remote.Codec().MimeType)
					return
				}
				markers := 0
				for markers < 10 {
					p, _, err := remote.ReadRTP()
					if err != nil {
						got <- err
						return
					}
					if p.Marker || !a.Video {
						markers++
					}
				}
				got <- nil
			})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := Connect(pcSend, pcRecv); err != nil {
				t.Fatal(err)
			}
			sender := NewSender(track, frames)
			done := make(chan error, 1)
			go func() { done <- sender.Run(ctx) }()
			select {
			case err := <-got:
				if err != nil {
					t.Fatal(err)
				}
			case <-ctx.Done():
				t.Fatal("no media received")
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}
