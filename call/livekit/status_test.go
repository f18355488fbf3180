package livekit

import (
	"context"
	"testing"
	"time"

	lksdk "github.com/livekit/server-sdk-go/v2"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// Status reports the call's state as every backend does (call.RecordingState): connecting
// until a subscribed track is recorded, connected while one is, ended once the recording is.
func TestStatusState(t *testing.T) {
	log := testLogger(t)
	rec, err := recorder.New(recorder.Options{Dir: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sess, err := rec.Start(ctx, recorder.CallInfo{CallID: "c", RoomID: "!r:hs", Kind: recorder.KindLiveKit})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = sess.Close(ctx) }()
	b := New(&fakeMatrix{}, nil, Options{}, log)
	defer b.Close(ctx)
	r := &Recording{b: b, room: "!r:hs", log: log, sess: sess, tracks: map[*trackRec]struct{}{},
		present: matrixrtc.NewPresence(), done: make(chan struct{})}
	if s := r.Status().State; s != call.StateConnecting {
		t.Errorf("without a track: %s", s)
	}
	r.tracks[&trackRec{device: matrixrtc.DeviceKey{User: "@alice:hs", Device: "A"}}] = struct{}{}
	if st := r.Status(); st.State != call.StateConnected || st.Backend != "livekit" {
		t.Errorf("with a track: %+v", st)
	}

	// Everyone opted out: their tracks are unsubscribed, yet the bot is in the call and
	// nothing is wrong, so the call stays connected, as mesh says (it goes on receiving
	// them); before the bot is in the call, it is still connecting.
	alice := matrixrtc.DeviceKey{User: "@alice:hs", Device: "A"}
	r.present.Update([]matrixrtc.Member{{UserID: alice.User, DeviceID: alice.Device}}, time.Now())
	r.tracks = map[*trackRec]struct{}{}
	r.optOut = map[id.UserID]bool{alice.User: true}
	if s := r.Status().State; s != call.StateConnecting {
		t.Errorf("everyone opted out, not in the call: %s", s)
	}
	r.conns = map[string]*connection{"https://sfu": {room: lksdk.NewRoom(nil)}}
	if st := r.Status(); st.State != call.StateConnected || st.Tracks != 0 || len(st.Participants) != 1 || !st.Participants[0].OptedOut {
		t.Errorf("everyone opted out, in the call: %+v", st)
	}
	close(r.done)
	if s := r.Status().State; s != call.StateEnded {
		t.Errorf("after the end: %s", s)
	}
}
