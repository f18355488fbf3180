package mesh

import (
	"bytes"
	"context"
	"runtime"
	"testing"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/call/rtc"
	"github.com/matrix-recorder/matrix-recorder/call/voip"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// rtcpReaders counts the goroutines reading an RTP receiver's RTCP: the sender-report
// readers of recorded tracks.
func rtcpReaders() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("(*RTPReceiver).ReadRTCP")) {
			n++
		}
	}
	return n
}

// TestOptOutKeepsOneSenderReportReader: a track whose owner opts out and back in goes on
// in new parts, and through all of them its sender reports are read by one reader. Each
// reader takes its share of the reports, so a second one would keep reports from the part
// being written.
func TestOptOutKeepsOneSenderReportReader(t *testing.T) {
	// The count is of the whole process: start from none (earlier tests' connections close
	// their readers as they end).
	waitFor(t, "no RTCP readers from earlier tests", func() bool { return rtcpReaders() == 0 })
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	fac, err := rtc.NewFactory(rtc.Settings{IncludeLoopback: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer fac.Close()
	rec, err := recorder.New(recorder.Options{Dir: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sess, err := rec.Start(ctx, recorder.CallInfo{CallID: "c", RoomID: "!r:hs", Kind: recorder.KindMesh})
	if err != nil {
		t.Fatal(err)
	}
	alice := matrixrtc.DeviceKey{User: "@alice:hs", Device: "ALICE"}
	r := &Recording{
		ctx: ctx, cancel: cancel, sess: sess, log: log, optOut: map[id.UserID]bool{},
		status: map[matrixrtc.DeviceKey]*call.ParticipantStatus{alice: {UserID: alice.User}}, pumps: map[*pump]struct{}{},
	}

	// Alice's side: a plain pion peer (its default interceptors send sender reports).
	send, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer send.Close()
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := send.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	recv, err := fac.NewPeerConnection(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	pe := &peer{r: r, key: alice, callID: "c", log: log}
	recv.OnTrack(func(t *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) {
		pe.onTrack(recv, t, rcv, voip.PurposeUserMedia, log)
	})
	if err := testmedia.Connect(send, recv); err != nil {
		t.Fatal(err)
	}
	frames, err := testmedia.OpusFrames(testmedia.Tone440)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = testmedia.NewSender(track, frames).Run(ctx) }()

	files := func() int { return len(sess.Manifest().Tracks) }
	waitFor(t, "the first part", func() bool { return files() == 1 })
	r.mu.Lock()
	state := r.stateLocked()
	r.mu.Unlock()
	if state != call.StateConnected {
		t.Errorf("state while a track is read: %s", state)
	}
	for i := 2; i <= 4; i++ {
		r.SetOptOut(ctx, alice.User, true)
		waitFor(t, "the part to end", func() bool { return sess.Manifest().Tracks[i-2].Status == recorder.StatusComplete })
		// Everyone (Alice) opted out: the call stays connected, as LiveKit says
		// (call.RecordingState).
		r.mu.Lock()
		state := r.stateLocked()
		r.mu.Unlock()
		if state != call.StateConnected {
			t.Errorf("state with everyone opted out: %s", state)
		}
		r.SetOptOut(ctx, alice.User, false)
		waitFor(t, "the next part", func() bool { return files() == i })
	}
	if n := rtcpReaders(); n != 1 {
		t.Errorf("%d goroutines read the track's RTCP after three opt-outs, want 1", n)
	}
	if _, err := sess.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
