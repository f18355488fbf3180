package onetoone

import (
	"context"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/matrix-recorder/matrix-recorder/call/rtc"
	"github.com/matrix-recorder/matrix-recorder/call/voip"
)

// TestRefusedTrackIsDrained: a track the bot does not record (here: over calls.max_tracks)
// is still read and discarded, not left to fill pion's buffers. What the bot read shows in
// its peer connection's inbound statistics, which count packets as the track is read.
func TestRefusedTrackIsDrained(t *testing.T) {
	m, fr, _ := newManagerWith(t, rtc.Settings{IncludeLoopback: true, Stats: true}, 1, nil)

	p := newPeer(t)
	second, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "b", "stream2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.pc.AddTrack(second); err != nil {
		t.Fatal(err)
	}
	sdp := p.offer(t)
	m.handle(context.Background(), ev(voip.TypeInvite, bob, invite("drain", sdp)))
	p.takeAnswer(t, fr)
	sendCtx, stop := context.WithCancel(context.Background())
	defer stop()
	go p.sendTone(sendCtx)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sendCtx.Done():
				return
			case <-tick.C:
				_ = second.WriteSample(media.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond})
			}
		}
	}()

	// Both tracks arrive; one is recorded, the other refused. After two seconds of media,
	// the bot must have read (about 100 packets of) each.
	var reads []uint32
	deadline := time.Now().Add(15 * time.Second)
	for {
		reads = inboundPackets(t, m)
		if len(reads) == 2 && reads[0] >= 50 && reads[1] >= 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("packets read per inbound track: %v, want both tracks read", reads)
		}
		time.Sleep(200 * time.Millisecond)
	}
	m.handle(context.Background(), ev(voip.TypeHangup, bob, map[string]any{"call_id": "drain", "party_id": "BOBDEV", "version": "1", "reason": "user_hangup"}))
	fr.wait(t, func() bool { return len(fr.ended) == 1 })
	if n := len(fr.ended[0].Tracks); n != 1 {
		t.Errorf("%d files, want the one track under the limit", n)
	}
}

// inboundPackets returns the packets the bot's peer connection of the test call read per
// inbound stream.
func inboundPackets(t *testing.T, m *Backend) []uint32 {
	t.Helper()
	m.mu.Lock()
	var pc *webrtc.PeerConnection
	for _, c := range m.calls {
		pc = c.p.PC()
	}
	m.mu.Unlock()
	if pc == nil {
		return nil
	}
	var out []uint32
	for _, s := range pc.GetStats() {
		if in, ok := s.(webrtc.InboundRTPStreamStats); ok {
			out = append(out, in.PacketsReceived)
		}
	}
	return out
}
