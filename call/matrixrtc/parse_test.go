package matrixrtc

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

func stateEvent(typ event.Type, sender, stateKey string, ts time.Time, content string) (*event.Event, json.RawMessage) {
	sk := stateKey
	return &event.Event{Type: typ, Sender: id.UserID(sender), StateKey: &sk, Timestamp: ts.UnixMilli(), ID: id.EventID("$" + stateKey), RoomID: "!r:hs"}, json.RawMessage(content)
}

// The session membership exactly as js-sdk's MembershipManager writes it today.
const sessionJSON = `{"application":"m.call","call_id":"","scope":"m.room","device_id":"ALICEDEV",
"membershipID":"@alice:hs:ALICEDEV","expires":14400000,"m.call.intent":"video",
"focus_active":{"type":"livekit","focus_selection":"multi_sfu"},
"foci_preferred":[{"type":"livekit","livekit_service_url":"https://jwt.example/","livekit_alias":"!r:hs"},{"type":"other"}]}`

func TestParseSession(t *testing.T) {
	now := time.Now()
	evt, c := stateEvent(TypeCallMember, "@alice:hs", "_@alice:hs_ALICEDEV_m.call", now.Add(-time.Minute), sessionJSON)
	u, err := Parse(evt, c, now)
	if err != nil || u.Key == "" || len(u.Members) != 1 {
		t.Fatalf("update %+v err %v", u, err)
	}
	m := u.Members[0]
	if m.Format != FormatSession || m.UserID != "@alice:hs" || m.DeviceID != "ALICEDEV" || m.Identity != "@alice:hs:ALICEDEV" ||
		m.SlotID != MainSlot || m.FocusSelection != SelectMultiSFU || len(m.Transports) != 2 || m.Transports[0].ServiceURL != "https://jwt.example" {
		t.Fatalf("parsed %+v", m)
	}
	if got := m.ExpiresAt.Sub(now.Add(-time.Minute)); got < 4*time.Hour-time.Second || got > 4*time.Hour+time.Second {
		t.Fatalf("expires after %v, want 4h from the event", got)
	}
	// Expired: created 5 h ago with the 4 h default.
	old, c2 := stateEvent(TypeCallMember, "@alice:hs", "_@alice:hs_ALICEDEV_m.call", now.Add(-5*time.Hour), strings.Replace(sessionJSON, `"expires":14400000,`, "", 1))
	if u, _ := Parse(old, c2, now); len(u.Members) != 0 {
		t.Fatalf("expired membership counted: %+v", u.Members)
	}
	// created_ts wins over the event time (a refreshed membership).
	refreshed, c3 := stateEvent(TypeCallMember, "@alice:hs", "_@alice:hs_ALICEDEV_m.call", now, strings.Replace(sessionJSON, `"expires":14400000`, `"expires":28800000,"created_ts":`+itoa(now.Add(-5*time.Hour).UnixMilli()), 1))
	if u, _ := Parse(refreshed, c3, now); len(u.Members) != 1 || u.Members[0].CreatedTs != now.Add(-5*time.Hour).UnixMilli() {
		t.Fatalf("refreshed membership: %+v", u.Members)
	}
	// Leave: empty content.
	left, c4 := stateEvent(TypeCallMember, "@alice:hs", "_@alice:hs_ALICEDEV_m.call", now, `{}`)
	if l, err := Parse(left, c4, now); l.Key != u.Key || len(l.Members) != 0 || err != nil {
		t.Fatalf("leave: %+v err %v", l, err)
	}
	// Another call in the room, or another application, is not ours.
	other, c5 := stateEvent(TypeCallMember, "@alice:hs", "_@alice:hs_ALICEDEV_m.call", now, strings.Replace(sessionJSON, `"call_id":""`, `"call_id":"breakout"`, 1))
	if u, err := Parse(other, c5, now); len(u.Members) != 0 || !errors.Is(err, ErrOtherCall) {
		t.Fatalf("other call: %v %v", u.Members, err)
	}
	// Hostile: no focus_active.
	bad, c6 := stateEvent(TypeCallMember, "@alice:hs", "_@alice:hs_ALICEDEV_m.call", now, `{"application":"m.call","call_id":"","device_id":"D"}`)
	if u, err := Parse(bad, c6, now); len(u.Members) != 0 || err == nil || u.Key == "" {
		t.Fatalf("membership without focus_active accepted (%v), or its key not replaced: %+v", err, u)
	}
}

func itoa(v int64) string { b, _ := json.Marshal(v); return string(b) }

func TestParseLegacyList(t *testing.T) {
	now := time.Now()
	content := `{"memberships":[
 {"application":"m.call","call_id":"","scope":"m.room","device_id":"D1","membershipID":"m1","expires":3600000,
  "foci_active":[{"type":"livekit","livekit_service_url":"https://old.example","livekit_alias":"!r:hs"}]},
 {"application":"m.call","call_id":"","scope":"m.room","device_id":"D2","membershipID":"m2","expires_ts":` + itoa(now.Add(-time.Second).UnixMilli()) + `,"foci_active":[]},
 {"application":"m.other","call_id":"","scope":"m.room","device_id":"D3","membershipID":"m3","expires":1000}
]}`
	evt, c := stateEvent(TypeCallMember, "@bob:hs", "@bob:hs", now, content)
	u, err := Parse(evt, c, now)
	if err != nil {
		t.Fatal(err)
	}
	ms := u.Members
	if len(ms) != 1 || ms[0].Format != FormatLegacy || ms[0].DeviceID != "D1" || ms[0].MemberID != "m1" || ms[0].Identity != "@bob:hs:D1" ||
		ms[0].FocusSelection != SelectOldest || ms[0].Transports[0].ServiceURL != "https://old.example" {
		t.Fatalf("legacy members %+v", ms)
	}
}

func TestParseSticky(t *testing.T) {
	now := time.Now()
	content := `{"slot_id":"m.call#ROOM","application":{"type":"m.call","m.call.intent":"audio"},
"member":{"user_id":"@carol:hs","device_id":"CDEV","id":"c0ffee"},
"rtc_transports":[{"type":"livekit","livekit_service_url":"https://sfu2.example"}],"versions":[],
"msc4354_sticky_key":"c0ffee"}`
	evt := &event.Event{Type: TypeRTCMember, Sender: "@carol:hs", Timestamp: now.Add(-10 * time.Minute).UnixMilli(), ID: "$s", RoomID: "!r:hs",
		Sticky: &event.Sticky{}, Mautrix: event.MautrixInfo{EventSource: event.SourceJoin | event.SourceSticky}}
	evt.Sticky.Duration.Duration = 20 * time.Minute
	u, err := Parse(evt, json.RawMessage(content), now)
	if err != nil || len(u.Members) != 1 {
		t.Fatalf("sticky: %v %v", u.Members, err)
	}
	m := u.Members[0]
	if m.Format != FormatSticky || m.MemberID != "c0ffee" || m.Identity != HashedIdentity("@carol:hs", "CDEV", "c0ffee") ||
		m.Identity != Identity(FormatSticky, "@carol:hs", "CDEV", "c0ffee") || m.Transports[0].ServiceURL != "https://sfu2.example" {
		t.Fatalf("sticky member %+v", m)
	}
	if got := m.ExpiresAt.Sub(now); got < 9*time.Minute || got > 11*time.Minute {
		t.Fatalf("sticky expiry in %v, want ~10 min (20 min duration, sent 10 min ago)", got)
	}
	// Someone else's member block is rejected.
	forged := &event.Event{Type: TypeRTCMember, Sender: "@mallory:hs", Timestamp: now.UnixMilli(), RoomID: "!r:hs"}
	if u, err := Parse(forged, json.RawMessage(content), now); len(u.Members) != 0 || err == nil {
		t.Fatalf("forged sticky membership accepted: %v", u.Members)
	}
	// Leave: only the sticky key, same key.
	leave := &event.Event{Type: TypeRTCMember, Sender: "@carol:hs", Timestamp: now.UnixMilli(), RoomID: "!r:hs"}
	if l, err := Parse(leave, json.RawMessage(`{"msc4354_sticky_key":"c0ffee"}`), now); l.Key != u.Key || len(l.Members) != 0 || err != nil {
		t.Fatalf("sticky leave: %+v %v", l, err)
	}
}

// A user-keyed event of the GroupCall era may hold both a legacy list and m.calls; both
// are read, and Only picks what a backend records.
func TestParseBothUserKeyedFormats(t *testing.T) {
	now := time.Now()
	content := `{"memberships":[{"application":"m.call","call_id":"","scope":"m.room","device_id":"D1","expires":3600000,"foci_active":[]}],
"m.calls":[{"m.call_id":"conf1","m.devices":[` + dev("D2", "s2", now.Add(time.Hour).UnixMilli(), `[]`) + `]}]}`
	evt, c := stateEvent(TypeCallMember, "@bob:hs", "@bob:hs", now, content)
	u, err := Parse(evt, c, now)
	if err != nil || len(u.Members) != 2 {
		t.Fatalf("%+v %v", u.Members, err)
	}
	if m := u.Only(FormatMSC3401).Members; len(m) != 1 || m[0].DeviceID != "D2" || m[0].SlotID != "conf1" {
		t.Errorf("MSC3401 part: %+v", m)
	}
	if m := u.Only(MatrixRTC...).Members; len(m) != 1 || m[0].DeviceID != "D1" || m[0].SlotID != MainSlot {
		t.Errorf("MatrixRTC part: %+v", m)
	}
	if len(u.Members) != 2 {
		t.Error("Only changed the update it was called on")
	}
}

// Hash derivations against the MSC4195 test vector and a hand-checked JS-style encoding.
func TestHashes(t *testing.T) {
	if got := RoomAlias("!roomid:example.com", "slot1234"); got != "O8437W3+jmzMVjoIP3tNwbm+XxHQk2iKpOA7aqw3qSc" {
		t.Fatalf("RoomAlias = %s, want the MSC4195 vector", got)
	}
	if got := string(jsonStrings("a\"b", "<&>", "\u2028", "\x01")); got != `["a\"b","<&>","`+"\u2028"+`","\u0001"]` {
		t.Fatalf("jsonStrings = %s", got)
	}
	// As node prints JSON.stringify(["\\\n\t\b\f\r\x1f\ufffd"]).
	if got := string(jsonStrings("\\\n\t\b\f\r\x1f\ufffd", "\xff")); got != `["\\\n\t\b\f\r\u001f`+"\ufffd"+`","`+"\ufffd"+`"]` {
		t.Fatalf("jsonStrings escapes = %s", got)
	}
	if got := SessionStateKey("@a:hs", "D", "10"); got != "_@a:hs_D_m.call" {
		t.Fatalf("state key %s", got)
	}
	if got := SessionStateKey("@a:hs", "D", "org.matrix.msc3757.10"); got != "@a:hs_D_m.call" {
		t.Fatalf("state key in an MSC3757 room %s", got)
	}
}

// The identities a device connects to LiveKit with, and back.
func TestIdentities(t *testing.T) {
	k := DeviceKey{User: "@a:hs:8448", Device: "DEV"}
	if got := Identity(FormatSession, k.User, k.Device, "ignored"); got != "@a:hs:8448:DEV" || got != k.String() {
		t.Fatalf("session identity %q, key %q", got, k)
	}
	if back, ok := DeviceOfIdentity(k.String()); !ok || back != k {
		t.Fatalf("DeviceOfIdentity(%q) = %v %v", k, back, ok)
	}
	for _, bad := range []string{"", "hashhash", "@a:hs", "@a:hs:", "a:hs:D"} {
		if d, ok := DeviceOfIdentity(bad); ok {
			t.Errorf("DeviceOfIdentity(%q) = %v", bad, d)
		}
	}
}

func TestDeviceKeyOrder(t *testing.T) {
	keys := []DeviceKey{{"@b:hs", "A"}, {"@a:hs.x", "A"}, {"@a:hs", "B"}, {"@a:hs", "A"}}
	for i := 1; i < len(keys); i++ {
		if keys[i].Compare(keys[i-1]) >= 0 || keys[i-1].Compare(keys[i]) <= 0 {
			t.Errorf("%v should sort before %v", keys[i], keys[i-1])
		}
	}
	if keys[0].Compare(keys[0]) != 0 {
		t.Error("a key does not equal itself")
	}
}

// Ids that reach signalling and file names are bounded and printable.
func TestValidIDs(t *testing.T) {
	if ValidASCIIID(strings.Repeat("a", maxIDLength+1)) || ValidASCIIID("a\x00b") || ValidASCIIID("") || ValidASCIIID("a b") || !ValidASCIIID("ABCdef123") {
		t.Error("ValidASCIIID bounds wrong")
	}
	if ValidID(strings.Repeat("a", maxIDLength+1)) || ValidID("a\nb") || ValidID("") || ValidID("\xff") || !ValidID("Gerät 1") {
		t.Error("ValidID bounds wrong")
	}
	if validUserID("alice") || validUserID("@alice") || !validUserID("@alice:hs") {
		t.Error("validUserID wrong")
	}
}
