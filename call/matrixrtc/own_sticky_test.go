package matrixrtc

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// fakeSticky adds sticky events (MSC4354) to fakeMatrix; refuse makes the homeserver
// advertise them but refuse the parameter.
type fakeSticky struct {
	*fakeMatrix
	supported bool
	refuse    bool
	sticky    []sentSticky
}

type sentSticky struct {
	typ      string
	content  json.RawMessage
	duration time.Duration
	delay    time.Duration
}

func (f *fakeSticky) SupportsStickyEvents(context.Context) bool { return f.supported }
func (f *fakeSticky) SendSticky(_ context.Context, _ id.RoomID, t event.Type, content any, duration, delay time.Duration) (id.EventID, string, error) {
	if f.refuse {
		return "", "", ErrNoStickyEvents
	}
	b, _ := json.Marshal(content)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sticky = append(f.sticky, sentSticky{typ: t.Type, content: b, duration: duration, delay: delay})
	if delay > 0 {
		return "", "stickydelay", nil
	}
	return "$sticky", "", nil
}

// fakeStickyDelayed has delayed events too.
type fakeStickyDelayed struct{ *fakeSticky }

func (f fakeStickyDelayed) SupportsDelayedEvents(context.Context) bool { return true }
func (f fakeStickyDelayed) SendDelayedState(context.Context, id.RoomID, event.Type, string, any, time.Duration) (string, error) {
	return "statedelay", nil
}
func (f fakeStickyDelayed) UpdateDelayedEvent(_ context.Context, delayID, action string) error {
	f.mu.Lock()
	f.updates = append(f.updates, delayID+":"+action)
	f.mu.Unlock()
	return nil
}

// keysOf returns an object's keys, sorted.
func keysOf(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The bot's sticky membership has exactly the shape matrix-js-sdk 43 writes and accepts
// (StickyEventMembershipManager.makeMyMembership, checkRtcMembershipData in
// membershipData/rtc.ts): its identity on LiveKit is the hashed one of its member id.
func TestOwnStickyMatchesJSSDK43(t *testing.T) {
	mx := &fakeSticky{fakeMatrix: &fakeMatrix{}, supported: true}
	o := NewOwn(mx, "!r:hs", OwnSpec{Format: FormatSticky, MemberID: "0b7c5a8e-1f2d-4c3b-9a6e-5d4c3b2a1f0e"}, zerolog.Nop())
	foci := []Transport{{Type: "livekit", ServiceURL: "https://jwt.example", Alias: "!r:hs"}}
	if err := o.Publish(context.Background(), foci); err != nil {
		t.Fatal(err)
	}
	if len(mx.states) != 0 || len(mx.sticky) != 1 {
		t.Fatalf("state events %+v, sticky events %+v", mx.states, mx.sticky)
	}
	s := mx.sticky[0]
	if s.typ != "org.matrix.msc4143.rtc.member" || s.duration != time.Hour || s.delay != 0 {
		t.Fatalf("sent %s for %v (delay %v)", s.typ, s.duration, s.delay)
	}
	// Field by field, as js-sdk 43 names them.
	if got, want := keysOf(t, s.content), []string{"application", "member", "msc4354_sticky_key", "slot_id", "transports", "versions"}; !reflect.DeepEqual(got, want) {
		t.Errorf("top-level fields %v, want %v", got, want)
	}
	var c struct {
		SlotID      string            `json:"slot_id"`
		Application map[string]any    `json:"application"`
		Member      map[string]string `json:"member"`
		Transports  struct {
			Published    []map[string]string `json:"published"`
			CanSubscribe []string            `json:"can_subscribe"`
		} `json:"transports"`
		Versions  []string `json:"versions"`
		StickyKey string   `json:"msc4354_sticky_key"`
	}
	if err := json.Unmarshal(s.content, &c); err != nil {
		t.Fatal(err)
	}
	if c.SlotID != "m.call#ROOM" || !reflect.DeepEqual(c.Application, map[string]any{"type": "m.call"}) ||
		!reflect.DeepEqual(c.Member, map[string]string{"user_id": "@bot:hs", "device_id": "BOTDEV", "id": "0b7c5a8e-1f2d-4c3b-9a6e-5d4c3b2a1f0e"}) ||
		!reflect.DeepEqual(c.Transports.Published, []map[string]string{{"type": "livekit", "livekit_service_url": "https://jwt.example"}}) ||
		!reflect.DeepEqual(c.Transports.CanSubscribe, []string{"livekit"}) || c.Versions == nil || len(c.Versions) != 0 ||
		c.StickyKey != c.Member["id"] {
		t.Errorf("membership %s", s.content)
	}
	// It reads back as a sticky membership of the bot, with the identity the bot must
	// join LiveKit as.
	evt := &event.Event{Type: TypeRTCMember, Sender: "@bot:hs", Timestamp: time.Now().UnixMilli(), ID: "$s", RoomID: "!r:hs"}
	u, err := Parse(evt, s.content, time.Now())
	want := HashedIdentity("@bot:hs", "BOTDEV", "0b7c5a8e-1f2d-4c3b-9a6e-5d4c3b2a1f0e")
	if err != nil || len(u.Members) != 1 || u.Members[0].Format != FormatSticky || u.Members[0].Identity != want || u.Members[0].Transports[0].ServiceURL != "https://jwt.example" {
		t.Fatalf("reads back as %+v (%v)", u.Members, err)
	}
	if o.Format() != FormatSticky || o.Identity() != want || o.MemberID() != c.Member["id"] {
		t.Errorf("Own says format %v, identity %q, member %q", o.Format(), o.Identity(), o.MemberID())
	}
	// Leaving: the slot and the sticky key only (js-sdk isLeftMembershipContent).
	if err := o.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := keysOf(t, mx.sticky[1].content), []string{"msc4354_sticky_key", "slot_id"}; len(mx.sticky) != 2 || !reflect.DeepEqual(got, want) {
		t.Fatalf("leave %s", mx.sticky[1].content)
	}
	if l, _ := Parse(evt, mx.sticky[1].content, time.Now()); l.Key != u.Key || len(l.Members) != 0 {
		t.Errorf("the leave does not empty the membership's key: %+v", l)
	}
}

// Each recording gets a fresh member id (Element Call makes one per call): a UUID.
func TestOwnStickyMemberIDs(t *testing.T) {
	a := NewOwn(&fakeSticky{fakeMatrix: &fakeMatrix{}}, "!r:hs", OwnSpec{Format: FormatSticky}, zerolog.Nop()).MemberID()
	b := NewOwn(&fakeSticky{fakeMatrix: &fakeMatrix{}}, "!r:hs", OwnSpec{Format: FormatSticky}, zerolog.Nop()).MemberID()
	if a == b || len(a) != 36 || a[14] != '4' {
		t.Fatalf("member ids %q, %q", a, b)
	}
}

// Where the homeserver lacks sticky events (Dendrite), or refuses them, the membership is
// the session state event, and the identity that goes with it "@bot:server:DEVICE".
func TestOwnStickyFallsBackToState(t *testing.T) {
	for _, tc := range []struct {
		name string
		mx   *fakeSticky
	}{
		{"not advertised", &fakeSticky{fakeMatrix: &fakeMatrix{}}},
		{"refused", &fakeSticky{fakeMatrix: &fakeMatrix{}, supported: true, refuse: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOwn(tc.mx, "!r:hs", OwnSpec{Format: FormatSticky, RoomVersion: "10"}, zerolog.Nop())
			if err := o.Publish(context.Background(), []Transport{{Type: "livekit", ServiceURL: "https://jwt.example"}}); err != nil {
				t.Fatal(err)
			}
			st := tc.mx.sent()
			if len(st) != 1 || st[0].typ != TypeCallMember.Type || st[0].key != "_@bot:hs_BOTDEV_m.call" || len(tc.mx.sticky) != 0 {
				t.Fatalf("sent %+v, sticky %+v", st, tc.mx.sticky)
			}
			evt, c := stateEvent(TypeCallMember, "@bot:hs", st[0].key, time.Now(), string(st[0].content))
			if u, err := Parse(evt, c, time.Now()); err != nil || len(u.Members) != 1 || u.Members[0].Format != FormatSession || time.Until(u.Members[0].ExpiresAt) < 3*time.Hour {
				t.Fatalf("fallback parses as %+v (%v)", u.Members, err)
			}
			if o.Format() != FormatSession || o.Identity() != "@bot:hs:BOTDEV" || o.MemberID() != "@bot:hs:BOTDEV" {
				t.Errorf("Own says format %v, identity %q, member %q", o.Format(), o.Identity(), o.MemberID())
			}
			if err := o.Remove(context.Background()); err != nil || string(tc.mx.sent()[1].content) != "{}" {
				t.Fatalf("leave: %v %+v", err, tc.mx.sent())
			}
		})
	}
}

// With delayed events, the sticky membership's delayed leave is a sticky leave under its
// own key, scheduled before the join and cancelled at the end.
func TestOwnStickyDelayedLeave(t *testing.T) {
	mx := &fakeSticky{fakeMatrix: &fakeMatrix{}, supported: true}
	o := NewOwn(fakeStickyDelayed{mx}, "!r:hs", OwnSpec{Format: FormatSticky, MemberID: "m1"}, zerolog.Nop())
	if err := o.Publish(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if len(mx.sticky) != 2 || mx.sticky[0].delay != leaveDelay || string(mx.sticky[0].content) != `{"msc4354_sticky_key":"m1","slot_id":"m.call#ROOM"}` {
		t.Fatalf("want a delayed sticky leave, then the membership: %+v", mx.sticky)
	}
	if got := keysOf(t, mx.sticky[1].content); !slices.Contains(got, "member") {
		t.Fatalf("membership %s", mx.sticky[1].content)
	}
	if err := o.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(mx.updates) != 1 || mx.updates[0] != "stickydelay:cancel" || len(mx.sticky) != 3 {
		t.Fatalf("remove: updates %v, sticky %+v", mx.updates, mx.sticky)
	}
}

// A sticky membership of this device a previous run left is ended under its own key once
// no recording owns the room.
func TestStaleEndsStickyMembership(t *testing.T) {
	mx := &fakeSticky{fakeMatrix: &fakeMatrix{}, supported: true}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var busy bool
	var mu sync.Mutex
	s := NewStale(ctx, mx, func(id.RoomID) bool { mu.Lock(); defer mu.Unlock(); return busy }, zerolog.Nop(), MatrixRTC...)
	s.delay = time.Millisecond
	content := string(func() []byte {
		b, _ := json.Marshal(stickyContent(DeviceKey{User: "@bot:hs", Device: "BOTDEV"}, "old-member", nil))
		return b
	}())
	evt := &event.Event{Type: TypeRTCMember, Sender: "@bot:hs", Timestamp: time.Now().UnixMilli(), ID: "$old", RoomID: "!r:hs"}
	mu.Lock()
	busy = true
	mu.Unlock()
	s.Seen(evt, json.RawMessage(content))
	s.Wait()
	if len(mx.sticky) != 0 {
		t.Fatalf("ended while a recording owns the room: %+v", mx.sticky)
	}
	mu.Lock()
	busy = false
	mu.Unlock()
	s.Seen(evt, json.RawMessage(content))
	s.Wait()
	if len(mx.sticky) != 1 || string(mx.sticky[0].content) != `{"msc4354_sticky_key":"old-member","slot_id":"m.call#ROOM"}` || mx.sticky[0].typ != TypeRTCMember.Type {
		t.Fatalf("sent %+v", mx.sticky)
	}
}
