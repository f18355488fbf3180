package bot

import (
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/livekit"
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
