package livekit

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
)

// memberEvent is a member state event of the room !r:hs as sync delivers it.
func memberEvent(sender id.UserID, stateKey string, ts time.Time, content string) *event.Event {
	evt := &event.Event{Type: matrixrtc.TypeCallMember, Sender: sender, StateKey: &stateKey, Timestamp: ts.UnixMilli(), RoomID: "!r:hs"}
	evt.Content.VeryRaw = json.RawMessage(content)
	return evt
}

// aliceSession is alice's session membership as Element Call writes it.
const aliceSession = `{"application":"m.call","call_id":"","scope":"m.room","device_id":"ALICEDEV","expires":14400000,
"focus_active":{"type":"livekit","focus_selection":"multi_sfu"},"foci_preferred":[{"type":"livekit","livekit_service_url":"https://jwt.example"}]}`

// Through the backend: bob's blank event under alice's key leaves alice in the call.
func TestBackendIgnoresForeignMembership(t *testing.T) {
	now := time.Now()
	b := New(&fakeMatrix{}, nil, Options{}, zerolog.Nop())
	defer b.Close(context.Background())
	b.HandleEvent(context.Background(), memberEvent("@alice:hs", "_@alice:hs_ALICEDEV_m.call", now.Add(-time.Second), aliceSession))
	if got := b.members("!r:hs", now); len(got) != 1 {
		t.Fatalf("alice not a member: %v", got)
	}
	b.HandleEvent(context.Background(), memberEvent("@bob:hs", "_@alice:hs_ALICEDEV_m.call", now, `{}`))
	if got := b.members("!r:hs", now); len(got) != 1 || got[0].UserID != "@alice:hs" {
		t.Fatalf("after bob's forged leave the members are %v", got)
	}
}

// The backend forgets a room's call state when nothing is left of it, and when the bot
// leaves the room.
func TestTablesPruned(t *testing.T) {
	now := time.Now()
	b := New(&fakeMatrix{}, nil, Options{}, zerolog.Nop())
	defer b.Close(context.Background())
	send := func(sender id.UserID, key, content string, room id.RoomID) {
		evt := memberEvent(sender, key, now, content)
		evt.RoomID = room
		b.HandleEvent(context.Background(), evt)
	}
	tables := func() int {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.tables)
	}
	send("@alice:hs", "_@alice:hs_ALICEDEV_m.call", aliceSession, "!r:hs")
	send("@alice:hs", "_@alice:hs_ALICEDEV_m.call", `{}`, "!r:hs")
	if n := tables(); n != 0 {
		t.Fatalf("%d tables after the only member left", n)
	}
	// Leaves and foreign events of rooms without a call create nothing.
	send("@bob:hs", "_@bob:hs_B_m.call", `{}`, "!other:hs")
	send("@bob:hs", "_@alice:hs_A_m.call", aliceSession, "!other:hs")
	if n := tables(); n != 0 {
		t.Fatalf("%d tables after leaves and refused events", n)
	}
	send("@alice:hs", "_@alice:hs_ALICEDEV_m.call", aliceSession, "!r:hs")
	sk := "@bot:hs"
	leave := &event.Event{Type: event.StateMember, StateKey: &sk, Sender: "@alice:hs", RoomID: "!r:hs"}
	leave.Content.VeryRaw = json.RawMessage(`{"membership":"leave"}`)
	b.HandleEvent(context.Background(), leave)
	if n := tables(); n != 0 {
		t.Fatalf("%d tables after the bot left the room", n)
	}
}
