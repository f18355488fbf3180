package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/rtc"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// fakeMatrix is an in-process homeserver stand-in: room state to read, and a log of what
// the backend sends.
type fakeMatrix struct {
	mu       sync.Mutex
	state    mautrix.RoomStateMap
	states   []sentState
	toDevice []sentToDevice
	notices  []string
	failSend bool
}

type sentState struct {
	typ, key string
	content  json.RawMessage
}

type sentToDevice struct {
	typ       string
	user      id.UserID
	device    id.DeviceID
	encrypted bool
	content   map[string]any
}

const (
	botUser   = id.UserID("@bot:hs")
	botDevice = id.DeviceID("BOTDEV")
)

var _ call.Matrix = (*fakeMatrix)(nil)

func (f *fakeMatrix) UserID() id.UserID     { return botUser }
func (f *fakeMatrix) DeviceID() id.DeviceID { return botDevice }
func (f *fakeMatrix) SendMessage(context.Context, id.RoomID, event.Type, any) (id.EventID, error) {
	return "$x", nil
}

func (f *fakeMatrix) SendState(_ context.Context, _ id.RoomID, t event.Type, key string, content any) error {
	b, err := json.Marshal(content)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failSend {
		return fmt.Errorf("M_FORBIDDEN")
	}
	f.states = append(f.states, sentState{t.Type, key, b})
	f.setStateLocked(t.Type, key, b)
	return nil
}

func (f *fakeMatrix) setStateLocked(typ, key string, content json.RawMessage) {
	t := event.Type{Type: typ, Class: event.StateEventType}
	if f.state[t] == nil {
		f.state[t] = map[string]*event.Event{}
	}
	k := key
	// State keyed by a user is sent by that user (the homeserver enforces it for "@" keys).
	sender := botUser
	if strings.HasPrefix(key, "@") {
		sender = id.UserID(key)
	}
	evt := &event.Event{Type: t, StateKey: &k, Sender: sender, Timestamp: time.Now().UnixMilli()}
	_ = json.Unmarshal(content, &evt.Content)
	evt.Content.VeryRaw = content
	f.state[t][key] = evt
}

func (f *fakeMatrix) setState(typ, key string, content string) *event.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setStateLocked(typ, key, json.RawMessage(content))
	return f.state[event.Type{Type: typ, Class: event.StateEventType}][key]
}

func (f *fakeMatrix) SendToDevice(_ context.Context, t event.Type, msgs map[id.UserID]map[id.DeviceID]any, encrypt bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for u, devs := range msgs {
		for d, c := range devs {
			b, err := json.Marshal(c)
			if err != nil {
				return err
			}
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			f.toDevice = append(f.toDevice, sentToDevice{t.Type, u, d, encrypt, m})
		}
	}
	return nil
}

func (f *fakeMatrix) State(context.Context, id.RoomID) (mautrix.RoomStateMap, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := mautrix.RoomStateMap{}
	for t, m := range f.state {
		out[t] = map[string]*event.Event{}
		for k, v := range m {
			out[t][k] = v
		}
	}
	return out, nil
}

func (f *fakeMatrix) JoinedMembers(context.Context, id.RoomID) (map[id.UserID]string, error) {
	return nil, nil
}
func (f *fakeMatrix) IsEncrypted(context.Context, id.RoomID) bool                   { return false }
func (f *fakeMatrix) ICEServers(context.Context) []webrtc.ICEServer                 { return nil }
func (f *fakeMatrix) OpenIDToken(context.Context) (*mautrix.RespOpenIDToken, error) { return nil, nil }
func (f *fakeMatrix) Notice(_ context.Context, _ id.RoomID, text string, _ ...id.UserID) id.EventID {
	f.mu.Lock()
	f.notices = append(f.notices, text)
	f.mu.Unlock()
	return "$n"
}

func (f *fakeMatrix) sent() []sentToDevice {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sentToDevice(nil), f.toDevice...)
}

func (f *fakeMatrix) sentStates() []sentState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sentState(nil), f.states...)
}

const room = id.RoomID("!room:hs")

// newFakeRoom is a room with an active call and the given members in it (user -> session).
func newFakeRoom(members map[id.UserID]string) *fakeMatrix {
	f := &fakeMatrix{state: mautrix.RoomStateMap{}}
	f.setState(TypeCall, "conf1", `{"m.intent":"m.room","m.type":"m.video"}`)
	f.setState(event.StateMember.Type, string(botUser), `{"membership":"join"}`)
	exp := time.Now().Add(time.Hour).UnixMilli()
	for u, sess := range members {
		f.setState(event.StateMember.Type, string(u), `{"membership":"join","displayname":"`+string(u[1:3])+`"}`)
		f.setState(typeMember, string(u), fmt.Sprintf(`{"m.calls":[{"m.call_id":"conf1","m.devices":[{"device_id":"DEV","session_id":%q,"expires_ts":%d,"feeds":[{"purpose":"m.usermedia"}]}]}]}`, sess, exp))
	}
	return f
}

func newTestBackend(t *testing.T, f *fakeMatrix, cfg Config) *Backend {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	rec, err := recorder.New(recorder.Options{Dir: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	fac, err := rtc.NewFactory(rtc.Settings{IncludeLoopback: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	b := New(cfg, f, fac, rec, log)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		b.mu.Lock()
		var recs []*Recording
		for _, r := range b.byRoom {
			recs = append(recs, r)
		}
		b.mu.Unlock()
		for _, r := range recs {
			_, _ = r.Stop(ctx, "test over")
		}
		if err := b.Close(ctx); err != nil {
			t.Error(err)
		}
		_ = fac.Close()
	})
	return b
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func messagesTo(f *fakeMatrix, user id.UserID) []sentToDevice {
	var out []sentToDevice
	for _, m := range f.sent() {
		if m.user == user {
			out = append(out, m)
		}
	}
	return out
}

// The bot joins the call (member entry), calls the participant whose id sorts after its own
// with an offer js-sdk accepts, waits for the one whose id sorts before to call it, and
// numbers every message of a call from 0 without a gap.
func TestStartJoinsAndCallsByRule(t *testing.T) {
	f := newFakeRoom(map[id.UserID]string{"@alice:hs": "sessA", "@zoe:hs": "sessZ"})
	b := newTestBackend(t, f, Config{})
	if p := b.Probe(context.Background(), room, nil); !p.OK || p.Priority != Priority {
		t.Fatalf("probe: %+v", p)
	}
	rec, err := b.Start(context.Background(), call.StartRequest{RoomID: room, By: "@alice:hs"})
	if err != nil {
		t.Fatal(err)
	}
	r := rec.(*Recording)
	st := rec.Status()
	if len(st.Participants) != 2 || st.Backend != "mesh" || st.State != call.StateConnecting {
		t.Errorf("status: %+v", st)
	}

	states := f.sentStates()
	if len(states) != 1 || states[0].typ != typeMember || states[0].key != string(botUser) {
		t.Fatalf("member state sent: %+v", states)
	}
	devs := devicesOf(botUser, states[0].content, "conf1")
	if len(devs) != 1 || devs[0].DeviceID != botDevice || devs[0].SessionID != r.session ||
		time.Until(devs[0].ExpiresAt) < 55*time.Minute || len(devs[0].Feeds) != 1 {
		t.Errorf("own member entry: %+v", devs)
	}

	waitFor(t, "an invite to zoe", func() bool { return len(messagesTo(f, "@zoe:hs")) > 0 })
	if n := len(messagesTo(f, "@alice:hs")); n != 0 {
		t.Errorf("the bot called alice (%d messages); her id sorts first, she calls", n)
	}
	inv := messagesTo(f, "@zoe:hs")[0]
	if inv.typ != "m.call.invite" || !inv.encrypted || inv.device != "DEV" {
		t.Fatalf("first message to zoe: %+v", inv)
	}
	c := inv.content
	for k, want := range map[string]any{
		"conf_id": "conf1", "device_id": string(botDevice), "party_id": string(botDevice), "version": "1",
		"sender_session_id": r.session, "dest_session_id": "sessZ", "seq": 0.0, "invitee": "@zoe:hs", "lifetime": 60000.0,
	} {
		if c[k] != want {
			t.Errorf("invite %s = %v, want %v", k, c[k], want)
		}
	}
	if s, _ := c["org.matrix.msgid"].(string); len(s) != 36 {
		t.Errorf("org.matrix.msgid %q is not a UUID", s)
	}
	offer := c["offer"].(map[string]any)["sdp"].(string)
	md, _ := c["sdp_stream_metadata"].(map[string]any)
	if len(md) != 1 {
		t.Fatalf("metadata: %v", md)
	}
	for stream, v := range md {
		if !strings.Contains(offer, "a=msid:"+stream+" ") {
			t.Errorf("offer has no track in the stream %s the metadata describes", stream)
		}
		if v.(map[string]any)["purpose"] != "m.usermedia" {
			t.Errorf("stream metadata %v", v)
		}
	}
	if !strings.Contains(offer, "m=audio") || !strings.Contains(offer, "a=sendrecv") || !strings.Contains(offer, "m=video") || !strings.Contains(offer, "a=recvonly") {
		t.Errorf("offer should send audio and receive video:\n%s", offer)
	}

	m, err := rec.Stop(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != recorder.StatusFinished {
		t.Errorf("manifest status %s", m.Status)
	}
	if s := rec.Status().State; s != call.StateEnded {
		t.Errorf("state after the stop: %s", s)
	}
	states = f.sentStates()
	last := states[len(states)-1]
	if hasDevice(last.content, botUser, botDevice) {
		t.Errorf("member entry not removed at the end: %s", last.content)
	}
	msgs := messagesTo(f, "@zoe:hs")
	if msgs[len(msgs)-1].typ != "m.call.hangup" {
		t.Errorf("last message to zoe: %s", msgs[len(msgs)-1].typ)
	}
	for i, m := range msgs {
		if m.content["seq"] != float64(i) || m.content["call_id"] != c["call_id"] {
			t.Errorf("message %d (%s): seq %v call_id %v", i, m.typ, m.content["seq"], m.content["call_id"])
		}
	}
	select {
	case <-rec.Done():
	default:
		t.Error("Done not closed after Stop")
	}
}

func toDevice(sender id.UserID, typ string, content map[string]any, decryptedFrom id.DeviceID) *event.Event {
	b, _ := json.Marshal(content)
	evt := &event.Event{Sender: sender, Type: event.Type{Type: typ, Class: event.ToDeviceEventType}}
	evt.Content.VeryRaw = b
	evt.Mautrix.EventSource = event.SourceToDevice
	if decryptedFrom != "" {
		evt.Mautrix.EventSource |= event.SourceDecrypted
		evt.Mautrix.TrustSource = &id.Device{UserID: sender, DeviceID: decryptedFrom}
	}
	return evt
}

// Hostile and misdirected signalling is dropped without harm; the recording goes on.
func TestHostileSignallingIsDropped(t *testing.T) {
	f := newFakeRoom(map[id.UserID]string{"@alice:hs": "sessA"})
	f.setState(event.StateMember.Type, "@mallory:hs", `{"membership":"leave"}`)
	b := newTestBackend(t, f, Config{})
	rec, err := b.Start(context.Background(), call.StartRequest{RoomID: room})
	if err != nil {
		t.Fatal(err)
	}
	r := rec.(*Recording)
	seq := 0
	base := func(extra map[string]any) map[string]any {
		m := map[string]any{
			"call_id": "c1", "party_id": "DEV", "version": "1", "conf_id": "conf1", "device_id": "DEV",
			"sender_session_id": "sessA", "dest_session_id": r.session, "seq": seq,
			"offer": map[string]string{"type": "offer", "sdp": "v=0 garbage"}, "lifetime": 60000,
		}
		for k, v := range extra {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	bad := []*event.Event{
		toDevice("@alice:hs", "m.call.invite", base(map[string]any{"dest_session_id": "other"}), ""),
		toDevice("@alice:hs", "m.call.invite", base(map[string]any{"conf_id": "other"}), ""),
		toDevice("@alice:hs", "m.call.invite", base(map[string]any{"device_id": nil}), ""),
		toDevice("@alice:hs", "m.call.invite", base(map[string]any{"device_id": "bad device\n"}), ""),
		toDevice("@alice:hs", "m.call.invite", base(map[string]any{"seq": -5}), ""),
		toDevice("@alice:hs", "m.call.invite", base(map[string]any{"seq": 1e15}), ""),
		toDevice("@alice:hs", "m.call.invite", base(nil), "OTHERDEV"), // device_id claims a device Olm did not decrypt from
		toDevice("@mallory:hs", "m.call.invite", base(map[string]any{"call_id": "c2"}), ""),
		toDevice("@alice:hs", "m.call.invite", base(map[string]any{"call_id": strings.Repeat("c", 300)}), ""),
		toDevice("@alice:hs", "m.call.invite", base(map[string]any{"offer": map[string]string{"type": "offer", "sdp": strings.Repeat("a", 300<<10)}}), ""),
		toDevice("@alice:hs", "m.call.candidates", base(map[string]any{"call_id": "nocall", "candidates": "not a list"}), ""),
	}
	for _, evt := range bad {
		b.HandleEvent(context.Background(), evt)
	}
	broken := toDevice("@alice:hs", "m.call.invite", base(nil), "")
	broken.Content.VeryRaw = []byte(`{"conf_id":`)
	b.HandleEvent(context.Background(), broken)
	time.Sleep(200 * time.Millisecond)
	r.post(func() {
		if len(r.peers) != 0 {
			t.Errorf("hostile invites created %d peers", len(r.peers))
		}
	})
	// A well-formed invite with an offer pion rejects: the peer fails and hangs up; the
	// recording stays.
	b.HandleEvent(context.Background(), toDevice("@alice:hs", "m.call.invite", base(map[string]any{"call_id": "c9"}), ""))
	waitFor(t, "a hangup for the bad offer", func() bool {
		for _, m := range messagesTo(f, "@alice:hs") {
			if m.typ == "m.call.hangup" && m.content["reason"] == "set_remote_description" && m.content["dest_session_id"] == "sessA" {
				return true
			}
		}
		return false
	})
	select {
	case <-rec.Done():
		t.Fatal("the recording ended because of one bad peer")
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := rec.Stop(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
}

// The recording ends by itself when the call is terminated, when the last participant has
// been gone for the grace period, and when the bot is removed from the room.
func TestRecordingEndsByItself(t *testing.T) {
	for _, tc := range []struct {
		name   string
		act    func(f *fakeMatrix, b *Backend)
		reason string
	}{
		{"terminated", func(f *fakeMatrix, b *Backend) {
			evt := f.setState(TypeCall, "conf1", `{"m.intent":"m.room","m.terminated":"call_ended"}`)
			evt.RoomID = room
			b.HandleEvent(context.Background(), evt)
		}, "the call was ended"},
		{"redacted", func(f *fakeMatrix, b *Backend) {
			evt := f.setState(TypeCall, "conf1", `{}`)
			evt.RoomID = room
			b.HandleEvent(context.Background(), evt)
		}, "the call was ended"},
		{"everyone left", func(f *fakeMatrix, b *Backend) {
			evt := f.setState(typeMember, "@alice:hs", `{"m.calls":[]}`)
			evt.RoomID = room
			b.HandleEvent(context.Background(), evt)
		}, "everyone left the call"},
		{"left the room", func(f *fakeMatrix, b *Backend) {
			evt := f.setState(event.StateMember.Type, "@alice:hs", `{"membership":"leave"}`)
			evt.RoomID = room
			b.HandleEvent(context.Background(), evt)
		}, "everyone left the call"},
		{"bot kicked", func(f *fakeMatrix, b *Backend) {
			evt := f.setState(event.StateMember.Type, string(botUser), `{"membership":"leave"}`)
			evt.RoomID = room
			b.HandleEvent(context.Background(), evt)
		}, "I was removed from the room"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeRoom(map[id.UserID]string{"@alice:hs": "sessA"})
			b := newTestBackend(t, f, Config{EmptyGrace: 100 * time.Millisecond})
			rec, err := b.Start(context.Background(), call.StartRequest{RoomID: room})
			if err != nil {
				t.Fatal(err)
			}
			tc.act(f, b)
			select {
			case <-rec.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("recording did not end")
			}
			m, why, err := rec.Result()
			if err != nil || why != tc.reason || m.Status != recorder.StatusFinished {
				t.Errorf("result: %q %v %s", why, err, m.Status)
			}
			states := f.sentStates()
			removed := hasDevice(states[len(states)-1].content, botUser, botDevice) == false
			if tc.name != "bot kicked" && !removed {
				t.Error("member entry not removed")
			}
			// A later !start makes a new folder.
			if tc.name == "everyone left" {
				return
			}
		})
	}
}

// A join that fails (no permission for the member state) leaves no folder behind and says why.
func TestStartFailsCleanly(t *testing.T) {
	f := newFakeRoom(map[id.UserID]string{"@alice:hs": "sessA"})
	f.failSend = true
	b := newTestBackend(t, f, Config{})
	_, err := b.Start(context.Background(), call.StartRequest{RoomID: room})
	if err == nil || !strings.Contains(err.Error(), typeMember) {
		t.Fatalf("error: %v", err)
	}
	b.mu.Lock()
	n := len(b.byRoom)
	b.mu.Unlock()
	if n != 0 {
		t.Error("failed recording still registered")
	}
	empty := newTestBackend(t, &fakeMatrix{state: mautrix.RoomStateMap{}}, Config{})
	if p := empty.Probe(context.Background(), room, nil); p.OK || p.Reason == "" {
		t.Errorf("probe of a room without a call: %+v", p)
	}
	nobody := newFakeRoom(nil)
	if p := newTestBackend(t, nobody, Config{}).Probe(context.Background(), room, nil); p.OK || !strings.Contains(p.Reason, "Nobody") {
		t.Errorf("probe of a call nobody joined: %+v", p)
	}
	lk := newFakeRoom(map[id.UserID]string{"@alice:hs": "s"})
	lk.setState(TypeCall, "conf1", `{"m.intent":"m.room","m.type":"m.video","io.element.livekit_service_url":"https://lk"}`)
	if p := newTestBackend(t, lk, Config{}).Probe(context.Background(), room, nil); p.OK || !strings.Contains(p.Reason, "LiveKit") {
		t.Errorf("probe of a LiveKit call: %+v", p)
	}
}

// A member entry of this device left by a crashed run is removed when no recording uses it.
func TestStaleOwnEntryIsRemoved(t *testing.T) {
	f := newFakeRoom(map[id.UserID]string{"@alice:hs": "sessA"})
	exp := time.Now().Add(time.Hour).UnixMilli()
	evt := f.setState(typeMember, string(botUser), fmt.Sprintf(`{"m.calls":[{"m.call_id":"conf1","m.devices":[{"device_id":%q,"session_id":"old","expires_ts":%d,"feeds":[]}]}]}`, botDevice, exp))
	evt.RoomID = room
	b := newTestBackend(t, f, Config{})
	b.HandleEvent(context.Background(), evt)
	waitFor(t, "the stale entry's removal", func() bool {
		st := f.sentStates()
		return len(st) == 1 && !hasDevice(st[0].content, botUser, botDevice)
	})
}
