package call

import (
	"sync"

	"maunium.net/go/mautrix/id"
)

// BeginStart marks room as starting in the backend's starting set, under the backend's
// own mutex, unless a start is already under way there or recording reports (called
// with mu held) that the room is being recorded. It returns false then. Otherwise the
// returned func clears the mark; Start defers it.
func BeginStart(mu sync.Locker, starting map[id.RoomID]bool, room id.RoomID, recording func() bool) (end func(), ok bool) {
	mu.Lock()
	defer mu.Unlock()
	if starting[room] || recording() {
		return nil, false
	}
	starting[room] = true
	return func() {
		mu.Lock()
		delete(starting, room)
		mu.Unlock()
	}, true
}
