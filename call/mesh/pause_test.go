package mesh

import (
	"context"
	"path/filepath"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// A pause leaves the call as a stop does (hangs up, takes the member entry back, so
// clients see the bot go and it calls them again when it is back) and leaves the folder to
// be resumed; the next start (StartRequest.Resume) continues the same folder.
func TestPauseLeavesTheCallAndTheFolderResumable(t *testing.T) {
	f := newFakeRoom(map[id.UserID]string{"@alice:hs": "sessA", "@zoe:hs": "sessZ"})
	b := newTestBackend(t, f, Config{})
	rec, err := b.Start(context.Background(), call.StartRequest{RoomID: room, By: "@alice:hs"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an invite to zoe", func() bool { return len(messagesTo(f, "@zoe:hs")) > 0 })
	m, err := rec.(call.Pauser).Pause(context.Background(), "restart")
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != recorder.StatusInterrupted || m.Interruption != "restart" {
		t.Errorf("manifest after the pause: %s %q", m.Status, m.Interruption)
	}
	states := f.sentStates()
	if last := states[len(states)-1]; hasDevice(last.content, botUser, botDevice) {
		t.Errorf("member entry not removed at the pause: %s", last.content)
	}
	if msgs := messagesTo(f, "@zoe:hs"); msgs[len(msgs)-1].typ != "m.call.hangup" {
		t.Errorf("last message to zoe: %s", msgs[len(msgs)-1].typ)
	}
	folder := filepath.Base(rec.Status().Folder)
	rec2, err := b.Start(recorder.WithResume(context.Background(), folder), call.StartRequest{RoomID: room, By: "@rec:hs", Resume: folder})
	if err != nil {
		t.Fatal(err)
	}
	if got := filepath.Base(rec2.Status().Folder); got != folder {
		t.Errorf("resumed in %s, want %s", got, folder)
	}
	m, err = rec2.Stop(context.Background(), "test")
	if err != nil || len(m.Resumes) != 1 || m.Status != recorder.StatusFinished {
		t.Errorf("after the resume: %v, resumes %+v, %s", err, m.Resumes, m.Status)
	}
}
