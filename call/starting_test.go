package call

import (
	"sync"
	"testing"

	"maunium.net/go/mautrix/id"
)

func TestBeginStart(t *testing.T) {
	var mu sync.Mutex
	starting := map[id.RoomID]bool{}
	recording := map[id.RoomID]bool{"!busy:x": true}
	busy := func(room id.RoomID) func() bool { return func() bool { return recording[room] } }

	if _, ok := BeginStart(&mu, starting, "!busy:x", busy("!busy:x")); ok {
		t.Fatal("a start began in a room that is being recorded")
	}
	end, ok := BeginStart(&mu, starting, "!a:x", busy("!a:x"))
	if !ok {
		t.Fatal("a start in a free room was refused")
	}
	if _, ok := BeginStart(&mu, starting, "!a:x", busy("!a:x")); ok {
		t.Fatal("a second start began while the first was under way")
	}
	if _, ok := BeginStart(&mu, starting, "!b:x", busy("!b:x")); !ok {
		t.Fatal("a start in another room was refused")
	}
	end()
	if starting["!a:x"] {
		t.Fatal("the room is still marked as starting after end")
	}
	if _, ok := BeginStart(&mu, starting, "!a:x", busy("!a:x")); !ok {
		t.Fatal("a start after the first ended was refused")
	}
}
