package livekit

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// fakeMatrix records what the backend sends.
type fakeMatrix struct {
	mu      sync.Mutex
	states  []sentState
	delayed bool
	updates []string
	openIDs int
	notices []string
}

type sentState struct {
	key     string
	content json.RawMessage
	delay   time.Duration
}

func (f *fakeMatrix) UserID() id.UserID     { return "@bot:hs" }
func (f *fakeMatrix) DeviceID() id.DeviceID { return "BOTDEV" }
func (f *fakeMatrix) SendMessage(context.Context, id.RoomID, event.Type, any) (id.EventID, error) {
	return "$m", nil
}
func (f *fakeMatrix) SendState(_ context.Context, _ id.RoomID, _ event.Type, key string, content any) error {
	b, _ := json.Marshal(content)
	f.mu.Lock()
	f.states = append(f.states, sentState{key: key, content: b})
	f.mu.Unlock()
	return nil
}
func (f *fakeMatrix) SendToDevice(context.Context, event.Type, map[id.UserID]map[id.DeviceID]any, bool) error {
	return nil
}
func (f *fakeMatrix) State(context.Context, id.RoomID) (mautrix.RoomStateMap, error) {
	return mautrix.RoomStateMap{}, nil
}
func (f *fakeMatrix) JoinedMembers(context.Context, id.RoomID) (map[id.UserID]string, error) {
	return nil, nil
}
func (f *fakeMatrix) IsEncrypted(context.Context, id.RoomID) bool   { return true }
func (f *fakeMatrix) ICEServers(context.Context) []webrtc.ICEServer { return nil }
func (f *fakeMatrix) OpenIDToken(context.Context) (*mautrix.RespOpenIDToken, error) {
	f.mu.Lock()
	f.openIDs++
	f.mu.Unlock()
	return openIDForTest(), nil
}
func (f *fakeMatrix) Notice(_ context.Context, _ id.RoomID, text string, _ ...id.UserID) id.EventID {
	f.mu.Lock()
	f.notices = append(f.notices, text)
	f.mu.Unlock()
	return ""
}

func (f *fakeMatrix) openIDRequests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.openIDs
}

func openIDForTest() *mautrix.RespOpenIDToken {
	return &mautrix.RespOpenIDToken{AccessToken: "t", TokenType: "Bearer", MatrixServerName: "hs", ExpiresIn: 3600}
}

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
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

func TestOwnMembershipWithoutDelayedEvents(t *testing.T) {
	mx := &fakeMatrix{}
	o := newOwnMembership(mx, "!r:hs", "10", zerolog.Nop())
	foci := []Transport{{Type: "livekit", ServiceURL: "https://jwt.example"}}
	if err := o.publish(context.Background(), foci); err != nil {
		t.Fatal(err)
	}
	if len(mx.states) != 1 || mx.states[0].key != "_@bot:hs_BOTDEV_m.call" {
		t.Fatalf("sent %+v", mx.states)
	}
	// What the bot publishes must parse as a valid session membership of the room's call,
	// as clients will read it.
	sk := mx.states[0].key
	evt := &event.Event{Type: TypeCallMember, Sender: "@bot:hs", StateKey: &sk, Timestamp: time.Now().UnixMilli(), RoomID: "!r:hs"}
	_, ms, err := ParseMembers(evt, mx.states[0].content, time.Now())
	if err != nil || len(ms) != 1 || ms[0].DeviceID != "BOTDEV" || ms[0].Identity != "@bot:hs:BOTDEV" ||
		ms[0].FocusSelection != SelectMultiSFU || ms[0].Transports[0] != foci[0] || time.Until(ms[0].ExpiresAt) < 3*time.Hour {
		t.Fatalf("published membership parses as %+v (%v): %s", ms, err, mx.states[0].content)
	}
	if err := o.remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(mx.states) != 2 || string(mx.states[1].content) != "{}" {
		t.Fatalf("leave: %+v", mx.states)
	}
}

func TestOwnMembershipDelayedLeave(t *testing.T) {
	mx := &fakeMatrix{}
	o := newOwnMembership(fakeDelayed{mx}, "!r:hs", "org.matrix.msc3757.10", zerolog.Nop())
	if err := o.publish(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if len(mx.states) != 2 || mx.states[0].delay != leaveDelay || string(mx.states[0].content) != "{}" || mx.states[1].key != "@bot:hs_BOTDEV_m.call" {
		t.Fatalf("want a delayed leave, then the membership: %+v", mx.states)
	}
	if err := o.publish(context.Background(), nil); err != nil { // a refresh
		t.Fatal(err)
	}
	var refreshed map[string]any
	_ = json.Unmarshal(mx.states[2].content, &refreshed)
	if _, ok := refreshed["created_ts"]; !ok || len(mx.states) != 3 {
		t.Fatalf("refresh without created_ts or with a second delayed leave: %+v", mx.states)
	}
	if err := o.remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(mx.updates) != 1 || mx.updates[0] != "delay1:cancel" || string(mx.states[3].content) != "{}" {
		t.Fatalf("remove: updates %v states %+v", mx.updates, mx.states)
	}
}
