package matrixrtc

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// A sticky membership as matrix-js-sdk 43 sends it: the foci are transports.published,
// the intent is in the application.
func TestParseStickyJSSDK43(t *testing.T) {
	now := time.Now()
	content := `{"slot_id":"m.call#ROOM","application":{"type":"m.call","m.call.intent":"audio"},
"transports":{"published":[{"type":"livekit","livekit_service_url":"https://sfu3.example"}],"can_subscribe":["livekit"]},
"member":{"device_id":"DDEV","user_id":"@dave:hs","id":"9b1c"},"versions":[],"msc4354_sticky_key":"9b1c"}`
	evt := &event.Event{Type: TypeRTCMember, Sender: "@dave:hs", Timestamp: now.UnixMilli(), ID: "$d", RoomID: "!r:hs"}
	u, err := Parse(evt, json.RawMessage(content), now)
	if err != nil || len(u.Members) != 1 {
		t.Fatalf("%v %v", u.Members, err)
	}
	m := u.Members[0]
	if m.Format != FormatSticky || m.Transports[0].ServiceURL != "https://sfu3.example" || m.Intent != IntentAudio || m.Identity != HashedIdentity("@dave:hs", "DDEV", "9b1c") {
		t.Fatalf("member %+v", m)
	}
	if PublishTransports(u.Members)[0].ServiceURL != "https://sfu3.example" {
		t.Fatal("no focus")
	}
}

func TestConsensusIntent(t *testing.T) {
	for _, tc := range []struct {
		intents []string
		want    string
	}{
		{nil, ""}, {[]string{"", ""}, ""}, {[]string{"audio"}, "audio"}, {[]string{"", "audio", "audio"}, "audio"},
		{[]string{"audio", "video"}, ""},
	} {
		var ms []Member
		for _, i := range tc.intents {
			ms = append(ms, Member{Intent: i})
		}
		if got := ConsensusIntent(ms); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.intents, got, tc.want)
		}
	}
}

func ringEvent(typ event.Type, sender string, origin time.Time, content string) (*event.Event, json.RawMessage) {
	return &event.Event{Type: typ, Sender: id.UserID("@" + sender), Timestamp: origin.UnixMilli(), ID: "$ring", RoomID: "!r:hs"}, json.RawMessage(content)
}

// The ring notification exactly as matrix-js-sdk 43 sends it (sendCallNotify).
func TestParseRingJSSDK43(t *testing.T) {
	now := time.Now()
	content := `{"slot_id":"m.call#ROOM","m.mentions":{"user_ids":[],"room":true},"notification_type":"ring",
"m.relates_to":{"event_id":"$member","rel_type":"m.reference"},"sender_ts":` + jsonInt(now.Add(-time.Second).UnixMilli()) + `,
"lifetime":90000,"msc4354_sticky_key":"m.call#ROOM","m.call.intent":"video"}`
	evt, c := ringEvent(TypeRTCNotification, "alice:hs", now, content)
	r, err := ParseRing(evt, c, now)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Ring || r.Legacy || r.Intent != IntentVideo || r.Membership != "$member" || !r.For("@bot:hs") || r.EventID != "$ring" {
		t.Fatalf("ring %+v", r)
	}
	if got := r.Expires.Sub(now); got < 88*time.Second || got > 90*time.Second || r.Expired(now.Add(88*time.Second)) || !r.Expired(now.Add(90*time.Second)) {
		t.Fatalf("expires in %v", got)
	}
}

func jsonInt(v int64) string { b, _ := json.Marshal(v); return string(b) }

func TestParseRingRules(t *testing.T) {
	now := time.Now()
	ts := jsonInt(now.UnixMilli())
	for _, tc := range []struct {
		name    string
		typ     event.Type
		origin  time.Time
		content string
		check   func(Ring, error) bool
	}{
		{"another slot", TypeRTCNotification, now, `{"slot_id":"m.call#other","m.mentions":{"room":true},"sender_ts":` + ts + `,"lifetime":1000}`,
			func(_ Ring, err error) bool { return errors.Is(err, ErrOtherCall) }},
		{"mentions nobody", TypeRTCNotification, now, `{"slot_id":"m.call#ROOM","m.mentions":{"user_ids":[]},"sender_ts":` + ts + `,"lifetime":1000}`,
			func(_ Ring, err error) bool { return err != nil }},
		{"no lifetime", TypeRTCNotification, now, `{"slot_id":"m.call#ROOM","m.mentions":{"room":true},"sender_ts":` + ts + `}`,
			func(_ Ring, err error) bool { return err != nil }},
		{"sticky key not the slot", TypeRTCNotification, now, `{"slot_id":"m.call#ROOM","msc4354_sticky_key":"x","m.mentions":{"room":true},"sender_ts":` + ts + `,"lifetime":1000}`,
			func(_ Ring, err error) bool { return err != nil }},
		{"only a mention of someone else", TypeRTCNotification, now, `{"slot_id":"m.call#ROOM","m.mentions":{"user_ids":["@carol:hs"]},"notification_type":"ring","sender_ts":` + ts + `,"lifetime":1000}`,
			func(r Ring, err error) bool { return err == nil && r.Ring && !r.For("@bot:hs") && r.For("@carol:hs") }},
		{"a notification, not a ring", TypeRTCNotification, now, `{"slot_id":"m.call#ROOM","m.mentions":{"room":true},"notification_type":"notification","sender_ts":` + ts + `,"lifetime":1000}`,
			func(r Ring, err error) bool { return err == nil && !r.Ring }},
		{"lifetime capped at two minutes", TypeRTCNotification, now, `{"slot_id":"m.call#ROOM","m.mentions":{"room":true},"sender_ts":` + ts + `,"lifetime":99999999}`,
			func(r Ring, err error) bool {
				d := r.Expires.Sub(now)
				return err == nil && d > 2*time.Minute-time.Millisecond && d <= 2*time.Minute
			}},
		{"sender clock far ahead: the server's time counts", TypeRTCNotification, now.Add(-time.Minute),
			`{"slot_id":"m.call#ROOM","m.mentions":{"room":true},"sender_ts":` + ts + `,"lifetime":30000}`,
			func(r Ring, err error) bool { return err == nil && r.Expired(now) }},
		{"rang long ago", TypeRTCNotification, now.Add(-10 * time.Minute),
			`{"slot_id":"m.call#ROOM","m.mentions":{"room":true},"notification_type":"ring","sender_ts":` + jsonInt(now.Add(-10*time.Minute).UnixMilli()) + `,"lifetime":90000}`,
			func(r Ring, err error) bool { return err == nil && r.Ring && r.Expired(now) }},
		{"older call.notify", TypeCallNotify, now, `{"application":"m.call","notify_type":"ring","call_id":"","m.mentions":{"room":true}}`,
			func(r Ring, err error) bool {
				return err == nil && r.Ring && r.Legacy && !r.Expired(now.Add(80*time.Second)) && r.Expired(now.Add(91*time.Second))
			}},
		{"older call.notify of another call", TypeCallNotify, now, `{"application":"m.call","notify_type":"ring","call_id":"x","m.mentions":{"room":true}}`,
			func(_ Ring, err error) bool { return errors.Is(err, ErrOtherCall) }},
	} {
		evt, c := ringEvent(tc.typ, "alice:hs", tc.origin, tc.content)
		r, err := ParseRing(evt, c, now)
		if !tc.check(r, err) {
			t.Errorf("%s: %+v, %v", tc.name, r, err)
		}
	}
}

// A decline as js-sdk's sendRtcDecline sends it.
func TestParseDecline(t *testing.T) {
	evt, c := ringEvent(TypeRTCDecline, "bot:hs", time.Now(), `{"m.relates_to":{"event_id":"$ring","rel_type":"m.reference"},"msc4354_sticky_key":"$ring"}`)
	if ring, err := ParseDecline(evt, c); err != nil || ring != "$ring" {
		t.Fatalf("%q %v", ring, err)
	}
	evt, c = ringEvent(TypeRTCDecline, "bot:hs", time.Now(), `{"m.relates_to":{"event_id":"$ring","rel_type":"m.annotation"}}`)
	if _, err := ParseDecline(evt, c); err == nil {
		t.Fatal("an annotation taken for a decline")
	}
}

// Decrypted MatrixRTC events parse as known types once registered (no "Unsupported event
// type in encrypted event" from mautrix).
func TestRegisterEventTypes(t *testing.T) {
	RegisterEventTypes()
	RegisterEventTypes()
	for _, typ := range []event.Type{TypeRTCNotification, TypeCallNotify, TypeRTCDecline, TypeRTCMember} {
		var c event.Content
		c.VeryRaw = json.RawMessage(`{"m.mentions":{"room":true},"x":1}`)
		if err := c.ParseRaw(typ); err != nil {
			t.Errorf("%s: %v", typ.Type, err)
		}
	}
}

// Hostile notifications: no panic, and no ring lasts beyond two minutes from now.
func FuzzParseRing(f *testing.F) {
	f.Add(`{"slot_id":"m.call#ROOM","m.mentions":{"room":true},"notification_type":"ring","sender_ts":1,"lifetime":90000}`, int64(1))
	f.Add(`{"application":"m.call","notify_type":"ring","m.mentions":{"user_ids":["@a:b"]}}`, int64(0))
	f.Add(`{"m.relates_to":{"event_id":"$x","rel_type":"m.reference"}}`, int64(-5))
	f.Fuzz(func(t *testing.T, content string, ts int64) {
		now := time.Now()
		for _, typ := range []event.Type{TypeRTCNotification, TypeCallNotify, TypeRTCDecline} {
			evt := &event.Event{Type: typ, Sender: "@a:hs", Timestamp: ts, ID: "$e", RoomID: "!r:hs"}
			if r, err := ParseRing(evt, json.RawMessage(content), now); err == nil && r.Expires.After(now.Add(2*time.Minute)) {
				t.Fatalf("ring valid until %v", r.Expires)
			}
			_, _ = ParseDecline(evt, json.RawMessage(content))
		}
	})
}
