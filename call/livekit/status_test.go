package livekit

import (
	"context"
	"testing"

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
	close(r.done)
	if s := r.Status().State; s != call.StateEnded {
		t.Errorf("after the end: %s", s)
	}
}
