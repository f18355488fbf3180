package livekit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// roomEvent is a timeline event of !r:hs.
func roomEvent(typ event.Type, sender id.UserID, evtID id.EventID, ts time.Time, content string) *event.Event {
	evt := &event.Event{Type: typ, Sender: sender, ID: evtID, Timestamp: ts.UnixMilli(), RoomID: "!r:hs"}
	evt.Content.VeryRaw = json.RawMessage(content)
	evt.Mautrix.EventSource = event.SourceTimeline | event.SourceJoin
	return evt
}

// ringContent is the ring matrix-js-sdk 43 sends for a membership, sent at sent.
func ringContent(membership id.EventID, sent time.Time, intent string) string {
	return fmt.Sprintf(`{"slot_id":"m.call#ROOM","m.mentions":{"user_ids":[],"room":true},"notification_type":"ring",
"m.relates_to":{"event_id":%q,"rel_type":"m.reference"},"sender_ts":%d,"lifetime":90000,"msc4354_sticky_key":"m.call#ROOM","m.call.intent":%q}`,
		membership, sent.UnixMilli(), intent)
}

func declineContent(ring id.EventID) string {
	return fmt.Sprintf(`{"m.relates_to":{"event_id":%q,"rel_type":"m.reference"},"msc4354_sticky_key":%q}`, ring, ring)
}

// ringBackend is a backend whose OnRing calls are recorded; alice is in the room's call
// with the membership event $alice.
func ringBackend(t *testing.T) (*Backend, func() []matrixrtc.Ring) {
	t.Helper()
	var mu sync.Mutex
	var rings []matrixrtc.Ring
	b := New(&fakeMatrix{}, nil, Options{OnRing: func(_ context.Context, _ id.RoomID, r matrixrtc.Ring) {
		mu.Lock()
		rings = append(rings, r)
		mu.Unlock()
	}}, zerolog.Nop())
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	member := memberEvent("@alice:hs", "_@alice:hs_ALICEDEV_m.call", time.Now().Add(-2*time.Second), aliceSession)
	member.ID = "$alice"
	b.HandleEvent(context.Background(), member)
	return b, func() []matrixrtc.Ring {
		// OnRing runs on its own goroutine.
		deadline := time.Now().Add(2 * time.Second)
		for {
			mu.Lock()
			n := len(rings)
			mu.Unlock()
			if n > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		return append([]matrixrtc.Ring(nil), rings...)
	}
}

// A ring for the bot reaches the bot once (sticky events come in the timeline and the
// sticky section of a sync), with the caller's intent; DirectCall names it.
func TestRingAnswered(t *testing.T) {
	b, rings := ringBackend(t)
	now := time.Now()
	ring := roomEvent(matrixrtc.TypeRTCNotification, "@alice:hs", "$ring", now, ringContent("$alice", now, "audio"))
	b.HandleEvent(context.Background(), ring)
	b.HandleEvent(context.Background(), ring)
	got := rings()
	if len(got) != 1 || got[0].Sender != "@alice:hs" || got[0].EventID != "$ring" || got[0].Intent != "audio" {
		t.Fatalf("rings %+v", got)
	}
	ans, err := b.DirectCall("!r:hs", "@alice:hs")
	if err != nil || ans.Ring != "$ring" || ans.Caller != "@alice:hs" || ans.Intent != "audio" {
		t.Fatalf("answer %+v, %v", ans, err)
	}
	if err := b.answerable("!r:hs", &ans, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// A ring that was declined (by the bot's account on another device) or whose lifetime is
// over is not answered: nothing is recorded, also when the session it rang for is seen
// later.
func TestRingDeclinedOrExpired(t *testing.T) {
	t.Run("declined", func(t *testing.T) {
		b, rings := ringBackend(t)
		now := time.Now()
		b.HandleEvent(context.Background(), roomEvent(matrixrtc.TypeRTCNotification, "@alice:hs", "$ring", now, ringContent("$alice", now, "video")))
		b.HandleEvent(context.Background(), roomEvent(matrixrtc.TypeRTCDecline, "@bot:hs", "$no", now, declineContent("$ring")))
		if len(rings()) != 1 {
			t.Fatal("the ring before its decline did not reach the bot")
		}
		if _, err := b.DirectCall("!r:hs", "@alice:hs"); !errors.Is(err, ErrNotAnswered) {
			t.Fatalf("DirectCall after a decline: %v", err)
		}
		_, err := b.Start(context.Background(), call.StartRequest{RoomID: "!r:hs", By: "@alice:hs", Answer: &call.Answer{Caller: "@alice:hs", Ring: "$ring"}})
		if !errors.Is(err, ErrNotAnswered) {
			t.Fatalf("Start of a declined call: %v", err)
		}
	})
	t.Run("declined before the bot saw the ring", func(t *testing.T) {
		b, rings := ringBackend(t)
		now := time.Now()
		b.HandleEvent(context.Background(), roomEvent(matrixrtc.TypeRTCDecline, "@bot:hs", "$no", now, declineContent("$ring")))
		b.HandleEvent(context.Background(), roomEvent(matrixrtc.TypeRTCNotification, "@alice:hs", "$ring", now, ringContent("$alice", now, "video")))
		if got := rings(); len(got) != 0 {
			t.Fatalf("a declined ring reached the bot: %+v", got)
		}
		if _, err := b.DirectCall("!r:hs", "@alice:hs"); !errors.Is(err, ErrNotAnswered) {
			t.Fatalf("DirectCall: %v", err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		b, rings := ringBackend(t)
		sent := time.Now().Add(-100 * time.Second)
		member := memberEvent("@alice:hs", "_@alice:hs_ALICEDEV_m.call", sent.Add(-time.Second), aliceSession)
		member.ID = "$alice"
		b.HandleEvent(context.Background(), member)
		b.HandleEvent(context.Background(), roomEvent(matrixrtc.TypeRTCNotification, "@alice:hs", "$ring", sent, ringContent("$alice", sent, "video")))
		if got := rings(); len(got) != 0 {
			t.Fatalf("an expired ring reached the bot: %+v", got)
		}
		if _, err := b.DirectCall("!r:hs", "@alice:hs"); !errors.Is(err, ErrNotAnswered) {
			t.Fatalf("DirectCall: %v", err)
		}
	})
	t.Run("the caller's own decline does not count", func(t *testing.T) {
		b, _ := ringBackend(t)
		now := time.Now()
		b.HandleEvent(context.Background(), roomEvent(matrixrtc.TypeRTCNotification, "@alice:hs", "$ring", now, ringContent("$alice", now, "video")))
		b.HandleEvent(context.Background(), roomEvent(matrixrtc.TypeRTCDecline, "@alice:hs", "$no", now, declineContent("$ring")))
		if ans, err := b.DirectCall("!r:hs", "@alice:hs"); err != nil || ans.Ring != "$ring" {
			t.Fatalf("DirectCall: %+v %v", ans, err)
		}
	})
}

// A call that did not ring (or whose ring belongs to an earlier call of the caller's) is
// answered as the session it is.
func TestDirectCallWithoutRing(t *testing.T) {
	b, rings := ringBackend(t)
	old := time.Now().Add(-3 * time.Minute)
	// An old, expired ring for an earlier membership of alice's.
	b.HandleEvent(context.Background(), roomEvent(matrixrtc.TypeRTCNotification, "@alice:hs", "$old", old, ringContent("$earlier", old, "video")))
	if len(rings()) != 0 {
		t.Fatal("an old ring reached the bot")
	}
	ans, err := b.DirectCall("!r:hs", "@alice:hs")
	if err != nil || ans.Ring != "" || ans.Caller != "@alice:hs" {
		t.Fatalf("answer %+v, %v", ans, err)
	}
	if _, err := b.DirectCall("!r:hs", "@bob:hs"); err == nil {
		t.Fatal("answered for someone not in the call")
	}
}

// Rings of other rooms, rings that do not ring (a "notification"), and rings of other
// people's calls reach nobody; the bot keeps a bounded number of them.
func TestRingsBounded(t *testing.T) {
	b, rings := ringBackend(t)
	now := time.Now()
	for i := range 3 * ringRoomsMax {
		evt := roomEvent(matrixrtc.TypeRTCNotification, "@alice:hs", id.EventID(fmt.Sprintf("$n%d", i)), now,
			`{"slot_id":"m.call#ROOM","m.mentions":{"room":true},"notification_type":"notification","sender_ts":`+fmt.Sprint(now.UnixMilli())+`,"lifetime":90000}`)
		evt.RoomID = id.RoomID(fmt.Sprintf("!r%d:hs", i%(2*ringRoomsMax)))
		b.HandleEvent(context.Background(), evt)
	}
	if got := rings(); len(got) != 0 {
		t.Fatalf("notifications rang: %+v", got)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.rings) > ringRoomsMax {
		t.Fatalf("%d rooms of rings kept", len(b.rings))
	}
	for _, recs := range b.rings {
		if len(recs) > ringsPerRoom {
			t.Fatalf("%d rings kept in a room", len(recs))
		}
	}
}

// A direct call the bot answers is recorded as a 1:1 call (limits, notices, metrics), not
// as a LiveKit group recording; a call recorded on !start stays a group recording. (Start
// itself needs a LiveKit server: TestIntegrationLiveKitDM covers it.)
func TestAnsweredCallIsOneToOne(t *testing.T) {
	answered := kindOf(call.StartRequest{RoomID: "!r:hs", Answer: &call.Answer{Caller: "@alice:hs"}})
	if !answered.OneToOne() || answered.Label() != "1:1" {
		t.Errorf("an answered call is kind %q (1:1: %v, metrics %q)", answered, answered.OneToOne(), answered.Label())
	}
	if answered == recorder.KindOneToOne {
		t.Error("an answered MatrixRTC call would be taken for a legacy call, which cannot resume")
	}
	started := kindOf(call.StartRequest{RoomID: "!r:hs"})
	if started != recorder.KindLiveKit || started.OneToOne() {
		t.Errorf("a !start recording is kind %q", started)
	}
}
