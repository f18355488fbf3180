package onetoone

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/rtc"
	"github.com/matrix-recorder/matrix-recorder/call/voip"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// TestHangupsEndCallsTogether: the hang-ups of several calls in one sync response end
// each call on its own goroutine. EndSync hands them over and returns, and a call whose
// recording is slow to finalise (a slow disk, a stuck fsync) holds up neither the sync
// loop nor the end of the other calls: 200 calls hung up together end together, not one
// after the other (BENCHMARKS.md, issue 16).
func TestHangupsEndCallsTogether(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	hooks := &recorder.Hooks{OnSessionClosing: func(s *recorder.Session) {
		if strings.Contains(filepath.Base(s.Folder()), "slow") {
			<-release // the slow call's recording does not finalise until the test says so
		}
	}}
	m, fr, _ := newManagerHooks(t, rtc.Settings{IncludeLoopback: true}, 0, nil, hooks)
	t.Cleanup(free) // before the manager closes (cleanups run last first)

	calls := []string{"slow", "call-b", "call-c"}
	rooms := make([]id.RoomID, len(calls))
	for i, cid := range calls {
		rooms[i] = id.RoomID(fmt.Sprintf("!room%d:hs", i)) // one ring of a room waits for the one before
		inv := ev(voip.TypeInvite, bob, invite(cid, newPeer(t).offer(t)))
		inv.RoomID = rooms[i]
		m.handle(context.Background(), inv)
	}
	fr.wait(t, func() bool { return fr.started == len(calls) })

	m.BeginSync()
	for i, cid := range calls {
		h := roomEvent(voip.TypeHangup, bob, map[string]any{"call_id": cid, "party_id": "BOBDEV", "version": "1", "reason": "user_hangup"}, event.SourceTimeline)
		h.RoomID = rooms[i]
		m.HandleEvent(context.Background(), h)
	}
	synced := make(chan struct{})
	go func() {
		m.EndSync(context.Background())
		close(synced)
	}()
	select {
	case <-synced:
	case <-time.After(10 * time.Second):
		t.Fatal("the sync response's hang-ups wait for a call's recording to be final")
	}
	fr.wait(t, func() bool { return len(fr.ended) == len(calls)-1 })
	fr.mu.Lock()
	for _, man := range fr.ended {
		if man.CallID == "slow" || man.Status != recorder.StatusFinished {
			t.Errorf("ended while the slow call finalises: %s, %s", man.CallID, man.Status)
		}
	}
	fr.mu.Unlock()
	free()
	fr.wait(t, func() bool { return len(fr.ended) == len(calls) })
}
