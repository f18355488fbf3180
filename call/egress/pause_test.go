package egress

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/livekit/protocol/livekit"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// A clean stop pauses an Egress recording: its egresses go on (nothing is stopped), the
// folder is left resumable with the state file, and the next start takes it over with
// nothing to repair; the file Egress finished meanwhile is recorded in full.
func TestPauseLeavesEgressesRunning(t *testing.T) {
	h := newHarness(t, nil)
	h.api.setRoom("room1", participant("ann", "Ann", mic("TR_a1")))
	r := startTracks(t, h, "room1")
	eg := h.api.egressOf(t, "TR_a1")
	r.sync(func() { r.onInfo(h.api.set(eg, livekit.EgressStatus_EGRESS_ACTIVE, nil, "")) })
	folder := r.sess.Folder()
	req := h.api.trackReq(eg)
	m, err := r.Pause(context.Background(), "restart")
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != recorder.StatusInterrupted || h.api.stops() != 0 {
		t.Fatalf("after the pause: manifest %s, %d egresses stopped", m.Status, h.api.stops())
	}
	select {
	case <-r.Done():
	default:
		t.Error("Done is not closed after the pause")
	}
	if reports, err := recorder.RecoverInterrupted(h.rec.Dir(), zerolog.Nop()); err != nil || len(reports) != 0 {
		t.Fatalf("a paused folder needed repairs: %v %d", err, len(reports))
	}

	be2 := h.restarted(t)
	if p := be2.Probe(context.Background(), "!r:example.org", nil); !p.OK || p.Priority < 300 {
		t.Fatalf("probe of the paused room: %+v", p)
	}
	got, err := be2.Start(context.Background(), call.StartRequest{RoomID: "!r:example.org", Resume: filepath.Base(folder)})
	if err != nil {
		t.Fatal(err)
	}
	r2 := got.(*Recording)
	if r2.sess.Folder() != folder || len(h.api.tracks) != 1 {
		t.Fatalf("taken over in %s with %d egresses", r2.sess.Folder(), len(h.api.tracks))
	}
	fi := writeFile(t, req, "ann's audio, all of it")
	r2.sync(func() { r2.onInfo(h.api.set(eg, livekit.EgressStatus_EGRESS_COMPLETE, fi, "")) })
	m, err = r2.Stop(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Resumes) != 1 || m.Resumes[0].Reason != "restart" || len(m.Tracks) != 1 || m.Tracks[0].Status != recorder.StatusComplete || m.Tracks[0].Bytes != int64(len("ann's audio, all of it")) {
		t.Fatalf("after the take-over: resumes %+v, files %+v", m.Resumes, m.Tracks)
	}
}
