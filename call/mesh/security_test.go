package mesh

import (
	"context"
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
)

// A member event under someone else's state key (here a blank one, as a "leave") does not
// remove them from the recording.
func TestForeignMemberEventIgnored(t *testing.T) {
	f := newFakeRoom(map[id.UserID]string{"@alice:hs": "sessA"})
	f.setState(event.StateMember.Type, "@mallory:hs", `{"membership":"join"}`)
	b := newTestBackend(t, f, Config{})
	rec, err := b.Start(context.Background(), call.StartRequest{RoomID: room})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Status().Participants); n != 1 {
		t.Fatalf("%d participants at the start", n)
	}
	key := "@alice:hs"
	forged := &event.Event{Type: event.Type{Type: typeMember, Class: event.StateEventType}, StateKey: &key,
		Sender: "@mallory:hs", RoomID: room, Timestamp: time.Now().UnixMilli()}
	forged.Content.VeryRaw = []byte(`{"m.calls":[]}`)
	b.HandleEvent(context.Background(), forged)
	time.Sleep(300 * time.Millisecond)
	st := rec.Status()
	if len(st.Participants) != 1 || st.Participants[0].UserID != "@alice:hs" {
		t.Fatalf("after mallory's event under alice's key the participants are %+v", st.Participants)
	}
	if _, err := rec.Stop(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
}

// Signalling from people who are not in the call keeps no state in the recording: the seq
// reorder buffer takes messages of call members only.
func TestSignallingFromNonMembersKeepsNoState(t *testing.T) {
	f := newFakeRoom(map[id.UserID]string{"@alice:hs": "sessA"})
	f.setState(event.StateMember.Type, "@mallory:hs", `{"membership":"join"}`)
	b := newTestBackend(t, f, Config{})
	rec, err := b.Start(context.Background(), call.StartRequest{RoomID: room})
	if err != nil {
		t.Fatal(err)
	}
	r := rec.(*Recording)
	for i := 0; i < 100; i++ {
		for _, sender := range []id.UserID{"@mallory:hs", "@eve:elsewhere"} {
			typ := "m.call.candidates"
			if sender == "@eve:elsewhere" {
				typ = "m.call.invite" // not in the room at all
			}
			b.HandleEvent(context.Background(), toDevice(sender, typ, map[string]any{
				"call_id": fmt.Sprintf("c%d", i), "party_id": "MDEV", "version": "1", "conf_id": "conf1", "device_id": "MDEV",
				"sender_session_id": "sessM", "dest_session_id": r.session, "seq": 3, "candidates": []any{},
				"offer": map[string]string{"type": "offer", "sdp": "v=0"}, "lifetime": 60000,
			}, ""))
		}
	}
	got := make(chan int, 1)
	waitFor(t, "the messages to be handled", func() bool {
		r.post(func() { got <- len(r.reorder.calls) })
		select {
		case n := <-got:
			if n != 0 {
				t.Fatalf("%d calls of non-members tracked in the seq buffer", n)
			}
			return true
		case <-time.After(time.Second):
			return false
		}
	})
	if _, err := rec.Stop(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
}
