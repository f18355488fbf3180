package matrixrtc

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
)

// A membership of this device a crashed run left is removed in its own format, once no
// recording owns the room; other devices of the account and other people stay.
func TestStaleRemovesOwnMemberships(t *testing.T) {
	mx := &fakeMatrix{}
	now := time.Now()
	future := now.Add(time.Hour).UnixMilli()
	meshRaw := json.RawMessage(`{"m.calls":[{"m.call_id":"conf1","m.devices":[` + dev("BOTDEV", "old", future, `[]`) + `,` + dev("PHONE", "p", future, `[]`) + `]}]}`)
	sessKey := SessionStateKey("@bot:hs", "BOTDEV", "10")
	sessRaw := json.RawMessage(`{"application":"m.call","call_id":"","scope":"m.room","device_id":"BOTDEV","expires":14400000,"focus_active":{"type":"livekit"}}`)
	mx.setLocked(TypeCallMember, "@bot:hs", meshRaw)
	mx.setLocked(TypeCallMember, sessKey, sessRaw)

	var busy atomic.Bool
	busy.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rtc := NewStale(ctx, mx, func(id.RoomID) bool { return busy.Load() }, zerolog.Nop(), MatrixRTC...)
	mesh := NewStale(ctx, mx, func(id.RoomID) bool { return false }, zerolog.Nop(), FormatMSC3401)
	rtc.delay, mesh.delay = time.Millisecond, time.Millisecond

	seen := func(s *Stale, key string, raw json.RawMessage) {
		evt, c := stateEvent(TypeCallMember, "@bot:hs", key, now, string(raw))
		evt.RoomID = "!r:hs"
		s.Seen(evt, c)
	}
	// While a recording owns the room, nothing is stale; the other backend's formats are
	// not this one's.
	seen(rtc, sessKey, sessRaw)
	seen(rtc, "@bot:hs", meshRaw)
	rtc.Wait()
	if st := mx.sent(); len(st) != 0 {
		t.Fatalf("sent while busy: %+v", st)
	}
	// Someone else's membership, or one of another device, is not ours.
	other, c := stateEvent(TypeCallMember, "@alice:hs", "@alice:hs", now, string(meshRaw))
	other.RoomID = "!r:hs"
	mesh.Seen(other, c)
	mesh.Wait()

	busy.Store(false)
	seen(rtc, sessKey, sessRaw)
	seen(mesh, "@bot:hs", meshRaw)
	seen(mesh, "@bot:hs", meshRaw) // one check per room at a time
	rtc.Wait()
	mesh.Wait()
	st := mx.sent()
	if len(st) != 2 {
		t.Fatalf("sent %+v", st)
	}
	for _, s := range st {
		switch s.key {
		case sessKey:
			if string(s.content) != "{}" {
				t.Errorf("session leave %s", s.content)
			}
		case "@bot:hs":
			if got, _ := meshDevices("@bot:hs", s.content, "conf1", now); len(got) != 1 || got[0].DeviceID != "PHONE" {
				t.Errorf("MSC3401 leave %s", s.content)
			}
		default:
			t.Errorf("unexpected %+v", s)
		}
	}
	// Gone now: a replay of the old event finds nothing to remove.
	seen(rtc, sessKey, sessRaw)
	rtc.Wait()
	if n := len(mx.sent()); n != 2 {
		t.Fatalf("%d events after the replay", n)
	}
}
