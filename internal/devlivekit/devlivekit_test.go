package devlivekit

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/webrtc/v4"

	"github.com/matrix-recorder/matrix-recorder/internal/testenv"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// A server-sdk-go publisher sends an Opus track through the SFU to a
// server-sdk-go subscriber (the shape of the LiveKit recorder backend). In a
// loopback-only network namespace this path goes through the server's TURN.
func TestIntegrationPublishSubscribeOpus(t *testing.T) {
	testenv.RequireIntegration(t)
	ctx := testenv.Context(t)
	srv, err := Start(ctx, Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	testenv.LogOnFailure(t, "livekit-server", func() string { return srv.LogTail(16000) })
	if len(srv.APISecret()) < 32 {
		t.Fatalf("API secret %q shorter than 32 characters", srv.APISecret())
	}

	type result struct {
		mime    string
		packets int
		err     error
	}
	got := make(chan result, 1)
	const wantPackets = 50 // one second of 20 ms packets
	cb := lksdk.NewRoomCallback()
	cb.OnTrackSubscribed = func(track *webrtc.TrackRemote, _ *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
		r := result{mime: track.Codec().MimeType}
		for r.packets < wantPackets {
			p, _, err := track.ReadRTP()
			if err != nil {
				r.err = err
				break
			}
			if len(p.Payload) > 0 {
				r.packets++
			}
		}
		select {
		case got <- r:
		default:
		}
	}
	sub, err := lksdk.ConnectToRoom(srv.URL(), lksdk.ConnectInfo{
		APIKey: srv.APIKey(), APISecret: srv.APISecret(),
		RoomName: "devlivekit-test", ParticipantIdentity: "recorder",
	}, cb, lksdk.WithLogger(logger.GetDiscardLogger()))
	if err != nil {
		t.Fatalf("subscriber connecting: %v", err)
	}
	defer sub.Disconnect()

	pub, err := lksdk.ConnectToRoom(srv.URL(), lksdk.ConnectInfo{
		APIKey: srv.APIKey(), APISecret: srv.APISecret(),
		RoomName: "devlivekit-test", ParticipantIdentity: "alice",
	}, lksdk.NewRoomCallback(), lksdk.WithLogger(logger.GetDiscardLogger()))
	if err != nil {
		t.Fatalf("publisher connecting: %v", err)
	}
	defer pub.Disconnect()

	asset, err := testmedia.Lookup(testmedia.Tone440)
	if err != nil {
		t.Fatal(err)
	}
	frames, err := testmedia.OpusFrames(asset.Name)
	if err != nil {
		t.Fatal(err)
	}
	track, err := webrtc.NewTrackLocalStaticSample(asset.Capability(), "audio", "alice-mic")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.LocalParticipant.PublishTrack(track, &lksdk.TrackPublicationOptions{Name: "mic"}); err != nil {
		t.Fatalf("publishing: %v", err)
	}
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	sender := testmedia.NewSender(track, frames)
	sent := make(chan error, 1)
	go func() { sent <- sender.Run(sendCtx) }()

	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("reading subscribed track: %v", r.err)
		}
		if !strings.EqualFold(r.mime, webrtc.MimeTypeOpus) {
			t.Fatalf("subscribed track is %s, want Opus", r.mime)
		}
	case <-time.After(30 * time.Second):
		n, _ := sender.Sent()
		t.Fatalf("subscriber got no %d Opus packets within 30 s (publisher sent %d frames)", wantPackets, n)
	}
	stopSending()
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}
