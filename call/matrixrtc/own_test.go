package matrixrtc

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// fakeMatrix records the state events sent and serves them back as the room's state.
type fakeMatrix struct {
	mu      sync.Mutex
	states  []sentState
	updates []string
	room    mautrix.RoomStateMap
}

type sentState struct {
	typ     string
	key     string
	content json.RawMessage
	delay   time.Duration
}

func (f *fakeMatrix) UserID() id.UserID     { return "@bot:hs" }
func (f *fakeMatrix) DeviceID() id.DeviceID { return "BOTDEV" }
func (f *fakeMatrix) SendState(_ context.Context, _ id.RoomID, t event.Type, key string, content any) error {
	b, _ := json.Marshal(content)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states = append(f.states, sentState{typ: t.Type, key: key, content: b})
	f.setLocked(t, key, b)
	return nil
}

func (f *fakeMatrix) setLocked(t event.Type, key string, content json.RawMessage) {
	if f.room == nil {
		f.room = mautrix.RoomStateMap{}
	}
	if f.room[t] == nil {
		f.room[t] = map[string]*event.Event{}
	}
	k := key
	evt := &event.Event{Type: t, StateKey: &k, Sender: f.UserID(), Timestamp: time.Now().UnixMilli()}
	evt.Content.VeryRaw = content
	f.room[t][key] = evt
}

func (f *fakeMatrix) State(context.Context, id.RoomID) (mautrix.RoomStateMap, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := mautrix.RoomStateMap{}
	for t, m := range f.room {
		out[t] = map[string]*event.Event{}
		for k, v := range m {
			out[t][k] = v
		}
	}
	return out, nil
}

func (f *fakeMatrix) sent() []sentState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sentState(nil), f.states...)
}

// fakeDelayed adds MSC4140 support.
type fakeDelayed struct{ *fakeMatrix }

func (f fakeDelayed) SupportsDelayedEvents(context.Context) bool { return true }
func (f fakeDelayed) SendDelayedState(_ context.Context, _ id.RoomID, _ event.Type, key string, content any, delay time.Duration) (string, error) {
	b, _ := json.Marshal(content)
	f.mu.Lock()
	f.states = append(f.states, sentState{key: key, content: b, delay: delay})
	f.mu.Unlock()
	return "delay1", nil
}
func (f fakeDelayed) UpdateDelayedEvent(_ context.Context, delayID, action string) error {
	f.mu.Lock()
	f.updates = append(f.updates, delayID+":"+action)
	f.mu.Unlock()
	return nil
}

func TestOwnSessionWithoutDelayedEvents(t *testing.T) {
	mx := &fakeMatrix{}
	o := NewOwn(mx, "!r:hs", OwnSpec{Format: FormatSession, RoomVersion: "10"}, zerolog.Nop())
	foci := []Transport{{Type: "livekit", ServiceURL: "https://jwt.example"}}
	if err := o.Publish(context.Background(), foci); err != nil {
		t.Fatal(err)
	}
	if len(mx.states) != 1 || mx.states[0].key != "_@bot:hs_BOTDEV_m.call" || mx.states[0].typ != TypeCallMember.Type {
		t.Fatalf("sent %+v", mx.states)
	}
	// What the bot publishes must parse as a valid session membership of the room's call,
	// as clients will read it.
	evt, c := stateEvent(TypeCallMember, "@bot:hs", mx.states[0].key, time.Now(), string(mx.states[0].content))
	u, err := Parse(evt, c, time.Now())
	if ms := u.Members; err != nil || len(ms) != 1 || ms[0].DeviceID != "BOTDEV" || ms[0].Identity != "@bot:hs:BOTDEV" || ms[0].Format != FormatSession ||
		ms[0].FocusSelection != SelectMultiSFU || ms[0].Transports[0] != foci[0] || time.Until(ms[0].ExpiresAt) < 3*time.Hour {
		t.Fatalf("published membership parses as %+v (%v): %s", ms, err, mx.states[0].content)
	}
	if err := o.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(mx.states) != 2 || string(mx.states[1].content) != "{}" {
		t.Fatalf("leave: %+v", mx.states)
	}
	if err := o.Publish(context.Background(), foci); err == nil || len(mx.states) != 2 {
		t.Fatal("published again after the membership was removed")
	}
}

func TestOwnSessionDelayedLeave(t *testing.T) {
	mx := &fakeMatrix{}
	o := NewOwn(fakeDelayed{mx}, "!r:hs", OwnSpec{Format: FormatSession, RoomVersion: "org.matrix.msc3757.10"}, zerolog.Nop())
	if err := o.Publish(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if len(mx.states) != 2 || mx.states[0].delay != leaveDelay || string(mx.states[0].content) != "{}" || mx.states[1].key != "@bot:hs_BOTDEV_m.call" {
		t.Fatalf("want a delayed leave, then the membership: %+v", mx.states)
	}
	if err := o.Publish(context.Background(), nil); err != nil { // a refresh
		t.Fatal(err)
	}
	var refreshed map[string]any
	_ = json.Unmarshal(mx.states[2].content, &refreshed)
	if _, ok := refreshed["created_ts"]; !ok || len(mx.states) != 3 {
		t.Fatalf("refresh without created_ts or with a second delayed leave: %+v", mx.states)
	}
	if err := o.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(mx.updates) != 1 || mx.updates[0] != "delay1:cancel" || string(mx.states[3].content) != "{}" {
		t.Fatalf("remove: updates %v states %+v", mx.updates, mx.states)
	}
}

// An MSC3401 entry shares the bot's user-keyed event with its other devices and calls:
// no delayed leave (it would blank them), and they are kept when the bot joins and leaves.
func TestOwnMSC3401KeepsTheAccountsOtherEntries(t *testing.T) {
	mx := &fakeMatrix{}
	future := time.Now().Add(time.Hour).UnixMilli()
	current := json.RawMessage(`{"m.calls":[{"m.call_id":"other","m.devices":[` + dev("PHONE", "p", future, `[]`) + `]}]}`)
	o := NewOwn(fakeDelayed{mx}, "!r:hs", OwnSpec{
		Format: FormatMSC3401, Type: TypeCallMemberStable, SlotID: "conf1", SessionID: "sess", Feeds: []string{"m.usermedia"},
		Expiry: 10 * time.Minute, Current: func() json.RawMessage { return current },
	}, zerolog.Nop())
	if err := o.Publish(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	st := mx.sent()
	if len(st) != 1 || st[0].key != "@bot:hs" || st[0].typ != TypeCallMemberStable.Type || st[0].delay != 0 {
		t.Fatalf("sent %+v", st)
	}
	evt, c := stateEvent(TypeCallMemberStable, "@bot:hs", "@bot:hs", time.Now(), string(st[0].content))
	u, _ := Parse(evt, c, time.Now())
	if len(u.Members) != 2 {
		t.Fatalf("published %s", st[0].content)
	}
	for _, m := range u.Members {
		if m.SlotID == "conf1" && (m.DeviceID != "BOTDEV" || m.SessionID != "sess" || len(m.Feeds) != 1 || time.Until(m.ExpiresAt) > 10*time.Minute) {
			t.Errorf("the bot's entry: %+v", m)
		}
	}
	current = st[0].content
	if err := o.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	st = mx.sent()
	if len(st) != 2 || string(st[1].content) != `{"m.calls":[{"m.call_id":"other","m.devices":[`+dev("PHONE", "p", future, `[]`)+`]}]}` {
		t.Fatalf("after leaving: %s", st[len(st)-1].content)
	}
}

func TestOwnKeepAliveEndsWithRemove(t *testing.T) {
	mx := &fakeMatrix{}
	o := NewOwn(mx, "!r:hs", OwnSpec{Format: FormatSession}, zerolog.Nop())
	if err := o.Publish(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		o.KeepAlive(context.Background())
		close(done)
	}()
	if err := o.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("KeepAlive still runs after Remove")
	}
}

func TestMSC3401ContentKeepsOthersAndRemovesSelf(t *testing.T) {
	now := time.Now()
	future := now.Add(time.Hour).UnixMilli()
	current := json.RawMessage(`{"m.calls":[
		{"m.call_id":"other","m.devices":[` + dev("BOT", "old", future, `[]`) + `]},
		{"m.call_id":"conf1","m.devices":[` + dev("PHONE", "p", future, `[]`) + `,` + dev("BOT", "stale", future, `[]`) + `,` + dev("GONE", "g", now.Add(-time.Minute).UnixMilli(), `[]`) + `]}
	]}`)
	self := &msc3401Device{SessionID: "new", ExpiresAt: now.Add(time.Hour), Feeds: []string{"m.usermedia"}}
	content, changed := msc3401Content(current, "conf1", "BOT", self, now)
	if !changed {
		t.Fatal("no change reported")
	}
	b, _ := json.Marshal(content)
	mine, err := meshDevices("@bot:hs", b, "conf1", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(mine) != 2 || mine[0].DeviceID != "PHONE" || mine[1].DeviceID != "BOT" || mine[1].SessionID != "new" {
		t.Errorf("conf1 devices: %+v (%s)", mine, b)
	}
	if other, _ := meshDevices("@bot:hs", b, "other", now); len(other) != 1 || other[0].SessionID != "old" {
		t.Errorf("other call changed: %+v", other)
	}

	removed, changed := msc3401Content(b, "conf1", "BOT", nil, now)
	if !changed {
		t.Error("removal reported no change")
	}
	rb, _ := json.Marshal(removed)
	if got, _ := meshDevices("@bot:hs", rb, "conf1", now); len(got) != 1 || got[0].DeviceID != "PHONE" {
		t.Errorf("after removal: %s", rb)
	}
	// Removing the last device drops the call entry.
	content, _ = msc3401Content(member(dev("BOT", "s", future, `[]`)), "conf1", "BOT", nil, now)
	if b, _ := json.Marshal(content); string(b) != `{"m.calls":[]}` {
		t.Errorf("empty after removal: %s", b)
	}
	// Garbage content is replaced, not an error.
	if c, changed := msc3401Content(json.RawMessage(`[garbage`), "conf1", "BOT", self, now); !changed || c == nil {
		t.Error("garbage content not replaced")
	}
	// Leaving every call at once (a stale entry): other devices stay.
	all, changed := msc3401Without(b, "BOT", now)
	if !changed {
		t.Fatal("nothing removed")
	}
	for _, conf := range []string{"conf1", "other"} {
		got, _ := meshDevices("@bot:hs", all, conf, now)
		for _, d := range got {
			if d.DeviceID == "BOT" {
				t.Errorf("the bot is still in %s: %s", conf, all)
			}
		}
	}
	if got, _ := meshDevices("@bot:hs", all, "conf1", now); len(got) != 1 {
		t.Errorf("the phone left conf1 with the bot: %s", all)
	}
	if _, changed := msc3401Without(all, "BOT", now); changed {
		t.Error("a second removal changed something")
	}
}

// The membership a restart publishes is not the one the last run left: it says when it
// began (created_ts) from its first publish, so the homeserver stores a new event rather
// than return the old one for identical content, and clients see a new membership (js-sdk
// shares its key again with a device whose membership began anew).
func TestOwnRepublishedAfterARestartDiffers(t *testing.T) {
	mx := &fakeMatrix{}
	publish := func() map[string]any {
		o := NewOwn(mx, "!room:hs", OwnSpec{Format: FormatSession, RoomVersion: "10"}, zerolog.Nop())
		if err := o.Publish(context.Background(), []Transport{{Type: "livekit", ServiceURL: "https://jwt.hs"}}); err != nil {
			t.Fatal(err)
		}
		sent := mx.sent()
		var c map[string]any
		if err := json.Unmarshal(sent[len(sent)-1].content, &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	first := publish()
	time.Sleep(5 * time.Millisecond)
	second := publish()
	if first["created_ts"] == nil || second["created_ts"] == nil || first["created_ts"] == second["created_ts"] {
		t.Errorf("created_ts of the first run %v, of the next %v: want both, different", first["created_ts"], second["created_ts"])
	}
}
