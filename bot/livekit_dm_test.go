package bot

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/livekit"
	"github.com/matrix-recorder/matrix-recorder/call/onetoone"
	"github.com/matrix-recorder/matrix-recorder/call/voip"
	"github.com/matrix-recorder/matrix-recorder/config"
)

// sentTypes lists the event types the bot sent to a room.
func (f *fakeHS) sentTypes(room string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.sent {
		if string(e.Room) == room {
			out = append(out, e.Type)
		}
	}
	return out
}

// A ring the bot may not answer (calls.auto_answer off) in a DM gets a decline and a
// notice, as a legacy call gets a reject; a ring in a group room gets nothing at all.
func TestRingsAnsweredOnlyInDirectRooms(t *testing.T) {
	e := newCmdEnv(t, func(c *config.Config) { c.Calls.AutoAnswer = false })
	lk := livekit.New(botMatrix{e.b}, e.b.rec, livekit.Options{}, zerolog.Nop())
	t.Cleanup(func() { _ = lk.Close(context.Background()) })
	e.b.rooms = newRooms(e.b, []call.Backend{lk})
	const dm, group = "!dm:example.org", "!group:example.org"
	e.hs.members[dm] = append(e.hs.members[dm], testBot, alice)
	e.hs.members[group] = append(e.hs.members[group], testBot, alice, bob)

	e.b.answerDirect(context.Background(), group, call.Answer{Caller: alice, Ring: "$ring1"})
	if sent := e.hs.sentTypes(group); len(sent) != 0 {
		t.Fatalf("a ring in a group room was answered with %v", sent)
	}
	e.b.answerDirect(context.Background(), dm, call.Answer{Caller: alice, Ring: "$ring2"})
	sent := strings.Join(e.hs.sentTypes(dm), ",")
	if !strings.Contains(sent, "org.matrix.msc4310.rtc.decline") {
		t.Errorf("no decline of the refused ring: %v", sent)
	}
	if n := strings.Join(e.hs.notices(dm), " | "); !strings.Contains(n, "I did not answer the call from "+string(alice)) || !strings.Contains(n, "calls.auto_answer") {
		t.Errorf("notices %q", n)
	}
}

// A legacy 1:1 call rings through the same answer path: in a room where the bot is not
// alone with the caller it is rejected (m.call.reject) with a notice that says why, as
// before it was a call backend.
func TestLegacyCallRefusedInGroupRoom(t *testing.T) {
	e := newCmdEnv(t, nil)
	var o2o *onetoone.Backend
	done := make(chan struct{})
	o2o = onetoone.New(onetoone.Config{UserID: testBot, DeviceID: "BOT", OnRing: func(ctx context.Context, room id.RoomID, ans call.Answer) {
		defer close(done)
		e.b.answerDirect(ctx, room, ans)
	}}, botMatrix{e.b}, nil, e.b.rec, zerolog.Nop())
	t.Cleanup(func() { _ = o2o.Close(context.Background()) })
	e.b.rooms = newRooms(e.b, []call.Backend{o2o})
	const group = "!group:example.org"
	e.hs.members[group] = append(e.hs.members[group], testBot, alice, bob)

	evt := &event.Event{RoomID: group, Sender: alice, ID: "$invite", Type: voip.TypeInvite}
	evt.Content.VeryRaw = json.RawMessage(`{"call_id":"c1","party_id":"ALICEDEV","version":"1","lifetime":60000,"offer":{"type":"offer","sdp":"v=0\r\n"}}`)
	evt.Mautrix.EventSource = event.SourceTimeline
	e.b.rooms.HandleEvent(context.Background(), evt)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the call did not ring the bot")
	}
	if sent := strings.Join(e.hs.sentTypes(group), ","); !strings.Contains(sent, "m.call.reject") {
		t.Errorf("no reject of the refused call: %v", sent)
	}
	if n := strings.Join(e.hs.notices(group), " | "); !strings.Contains(n, "I did not answer the call from "+string(alice)) || !strings.Contains(n, "alone with the caller") {
		t.Errorf("notices %q", n)
	}
}
