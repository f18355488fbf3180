package livekit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
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
	slot, ms, err := ParseMembers(evt, c, now)
	if err != nil || slot == "" || len(ms) != 1 {
		t.Fatalf("slot %q members %v err %v", slot, ms, err)
	}
	m := ms[0]
	if m.Kind != KindSession || m.UserID != "@alice:hs" || m.DeviceID != "ALICEDEV" || m.Identity != "@alice:hs:ALICEDEV" ||
		m.FocusSelection != SelectMultiSFU || len(m.Transports) != 2 || m.Transports[0].ServiceURL != "https://jwt.example" {
		t.Fatalf("parsed %+v", m)
	}
	if got := m.ExpiresAt.Sub(now.Add(-time.Minute)); got < 4*time.Hour-time.Second || got > 4*time.Hour+time.Second {
		t.Fatalf("expires after %v, want 4h from the event", got)
	}
	// Expired: created 5 h ago with the 4 h default.
	old, c2 := stateEvent(TypeCallMember, "@alice:hs", "_@alice:hs_ALICEDEV_m.call", now.Add(-5*time.Hour), strings.Replace(sessionJSON, `"expires":14400000,`, "", 1))
	if _, ms, _ := ParseMembers(old, c2, now); len(ms) != 0 {
		t.Fatalf("expired membership counted: %+v", ms)
	}
	// created_ts wins over the event time (a refreshed membership).
	refreshed, c3 := stateEvent(TypeCallMember, "@alice:hs", "_@alice:hs_ALICEDEV_m.call", now, strings.Replace(sessionJSON, `"expires":14400000`, `"expires":28800000,"created_ts":`+itoa(now.Add(-5*time.Hour).UnixMilli()), 1))
	if _, ms, _ := ParseMembers(refreshed, c3, now); len(ms) != 1 || ms[0].CreatedTs != now.Add(-5*time.Hour).UnixMilli() {
		t.Fatalf("refreshed membership: %+v", ms)
	}
	// Leave: empty content.
	left, c4 := stateEvent(TypeCallMember, "@alice:hs", "_@alice:hs_ALICEDEV_m.call", now, `{}`)
	if s, ms, err := ParseMembers(left, c4, now); s != slot || len(ms) != 0 || err != nil {
		t.Fatalf("leave: slot %q members %v err %v", s, ms, err)
	}
	// Another call in the room, or another application, is not ours.
	other, c5 := stateEvent(TypeCallMember, "@alice:hs", "_@alice:hs_ALICEDEV_m.call", now, strings.Replace(sessionJSON, `"call_id":""`, `"call_id":"breakout"`, 1))
	if _, ms, err := ParseMembers(other, c5, now); len(ms) != 0 || !errors.Is(err, errOtherCall) {
		t.Fatalf("other call: %v %v", ms, err)
	}
	// Hostile: no focus_active.
	bad, c6 := stateEvent(TypeCallMember, "@alice:hs", "_@alice:hs_ALICEDEV_m.call", now, `{"application":"m.call","call_id":"","device_id":"D"}`)
	if _, ms, err := ParseMembers(bad, c6, now); len(ms) != 0 || err == nil {
		t.Fatalf("membership without focus_active accepted: %v", ms)
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
	_, ms, err := ParseMembers(evt, c, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Kind != KindLegacy || ms[0].DeviceID != "D1" || ms[0].MemberID != "m1" || ms[0].Identity != "@bob:hs:D1" ||
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
	slot, ms, err := ParseMembers(evt, json.RawMessage(content), now)
	if err != nil || len(ms) != 1 {
		t.Fatalf("sticky: %v %v", ms, err)
	}
	m := ms[0]
	if m.Kind != KindRTC || m.MemberID != "c0ffee" || m.Identity != HashedIdentity("@carol:hs", "CDEV", "c0ffee") || m.Transports[0].ServiceURL != "https://sfu2.example" {
		t.Fatalf("sticky member %+v", m)
	}
	if got := m.ExpiresAt.Sub(now); got < 9*time.Minute || got > 11*time.Minute {
		t.Fatalf("sticky expiry in %v, want ~10 min (20 min duration, sent 10 min ago)", got)
	}
	// Someone else's member block is rejected.
	forged := &event.Event{Type: TypeRTCMember, Sender: "@mallory:hs", Timestamp: now.UnixMilli(), RoomID: "!r:hs"}
	if _, ms, err := ParseMembers(forged, json.RawMessage(content), now); len(ms) != 0 || err == nil {
		t.Fatalf("forged sticky membership accepted: %v", ms)
	}
	// Leave: only the sticky key, same slot.
	leave := &event.Event{Type: TypeRTCMember, Sender: "@carol:hs", Timestamp: now.UnixMilli(), RoomID: "!r:hs"}
	if s, ms, err := ParseMembers(leave, json.RawMessage(`{"msc4354_sticky_key":"c0ffee"}`), now); s != slot || len(ms) != 0 || err != nil {
		t.Fatalf("sticky leave: %q %v %v", s, ms, err)
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
	if got := SessionStateKey("@a:hs", "D", "10"); got != "_@a:hs_D_m.call" {
		t.Fatalf("state key %s", got)
	}
	if got := SessionStateKey("@a:hs", "D", "org.matrix.msc3757.10"); got != "@a:hs_D_m.call" {
		t.Fatalf("state key in an MSC3757 room %s", got)
	}
}

func TestSelectTransports(t *testing.T) {
	a := Transport{Type: "livekit", ServiceURL: "https://a"}
	b := Transport{Type: "livekit", ServiceURL: "https://b"}
	c := Transport{Type: "livekit", ServiceURL: "https://c"}
	oldestMode := []Member{
		{Kind: KindSession, UserID: "@x:hs", DeviceID: "X", FocusSelection: SelectOldest, CreatedTs: 200, Transports: []Transport{b}, slot: "x"},
		{Kind: KindSession, UserID: "@y:hs", DeviceID: "Y", FocusSelection: SelectOldest, CreatedTs: 100, Transports: []Transport{a}, slot: "y"},
	}
	if got := selectTransports(oldestMode); len(got) != 1 || got[0].ServiceURL != a.ServiceURL || got[0].owner != "@y:hs" {
		t.Fatalf("oldest_membership: %v, want only the oldest's focus, named by the oldest member", got)
	}
	multi := append(oldestMode[:0:0], oldestMode...)
	multi = append(multi,
		Member{Kind: KindSession, UserID: "@z:hs", DeviceID: "Z", FocusSelection: SelectMultiSFU, CreatedTs: 300, Transports: []Transport{c, a}, slot: "z"},
		Member{Kind: KindRTC, UserID: "@w:hs", DeviceID: "W", FocusSelection: SelectMultiSFU, CreatedTs: 50, Transports: []Transport{b}, slot: "w"},
		Member{Kind: KindSession, UserID: "@v:hs", DeviceID: "V", FocusSelection: SelectMultiSFU, CreatedTs: 60, Transports: []Transport{{Type: "other", ServiceURL: "https://d"}}, slot: "v"},
	)
	got := selectTransports(multi)
	// The oldest is now the sticky member on b: oldest_membership members publish on b, the
	// multi_sfu one on c, the sticky one on b; "other" transports are skipped.
	urls := map[string]id.UserID{}
	for _, t := range got {
		urls[t.ServiceURL] = t.owner
	}
	if len(got) != 2 || urls["https://b"] != "@w:hs" || urls["https://c"] != "@z:hs" {
		t.Fatalf("mixed call: %v, want b (named by w) and c (named by z)", got)
	}
}

func TestMemberTable(t *testing.T) {
	now := time.Now()
	tab := newMemberTable()
	m := Member{UserID: "@a:hs", DeviceID: "A", ExpiresAt: now.Add(time.Hour), CreatedTs: 1}
	if tab.apply("s1", "@a:hs", []Member{m}, 10) != applyChanged {
		t.Fatal("first membership not applied")
	}
	if tab.apply("s1", "@a:hs", nil, 5) != applyUnchanged {
		t.Fatal("older leave applied over a newer join")
	}
	if got := tab.members(now, DeviceKey{}); len(got) != 1 {
		t.Fatalf("members %v", got)
	}
	if got := tab.members(now, m.Key()); len(got) != 0 {
		t.Fatalf("skipped device listed: %v", got)
	}
	if got := tab.members(now.Add(2*time.Hour), DeviceKey{}); len(got) != 0 {
		t.Fatalf("expired membership listed: %v", got)
	}
	if tab.apply("s1", "@a:hs", nil, 11) != applyChanged || len(tab.members(now, DeviceKey{})) != 0 || !tab.empty() {
		t.Fatal("leave not applied")
	}
}

// MatrixRTC's rule: a key that names a user is that user's. Someone else's event with it
// (a blank "leave", or a membership of their own) fills no slot, in every format.
func TestMembershipOwnership(t *testing.T) {
	now := time.Now()
	aliceKey := "_@alice:hs_ALICEDEV_m.call"
	for _, tc := range []struct {
		name, sender, key, content string
	}{
		{"blanked by another user", "@bob:hs", aliceKey, `{}`},
		{"overwritten by another user", "@bob:hs", aliceKey, sessionJSON},
		{"MSC3757 form", "@bob:hs", "@alice:hs_ALICEDEV_m.call", `{}`},
		{"legacy user key", "@bob:hs", "@alice:hs", `{"memberships":[]}`},
		{"key naming nobody", "@bob:hs", "shared-slot", sessionJSON},
		{"owner is a prefix", "@alice:h", aliceKey, `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evt, c := stateEvent(TypeCallMember, tc.sender, tc.key, now, tc.content)
			slot, ms, err := ParseMembers(evt, c, now)
			if slot != "" || len(ms) != 0 || !errors.Is(err, ErrNotOwner) {
				t.Fatalf("slot %q members %v err %v; want no slot and ErrNotOwner", slot, ms, err)
			}
		})
	}
	// The owner's own events still count, including the MSC3757 form.
	for _, key := range []string{aliceKey, "@alice:hs_ALICEDEV_m.call"} {
		evt, c := stateEvent(TypeCallMember, "@alice:hs", key, now, sessionJSON)
		if slot, ms, err := ParseMembers(evt, c, now); slot == "" || len(ms) != 1 || err != nil {
			t.Fatalf("alice's own membership under %q: %q %v %v", key, slot, ms, err)
		}
	}
	// Sticky memberships: the slot is the sender's; a sticky key naming another user is refused.
	sticky := &event.Event{Type: TypeRTCMember, Sender: "@bob:hs", Timestamp: now.UnixMilli(), RoomID: "!r:hs"}
	if slot, _, err := ParseMembers(sticky, json.RawMessage(`{"msc4354_sticky_key":"@alice:hs_ALICEDEV"}`), now); slot != "" || !errors.Is(err, ErrNotOwner) {
		t.Fatalf("sticky key of alice from bob: slot %q err %v", slot, err)
	}
	aliceSticky := &event.Event{Type: TypeRTCMember, Sender: "@alice:hs", Timestamp: now.UnixMilli(), RoomID: "!r:hs"}
	s1, _, _ := ParseMembers(aliceSticky, json.RawMessage(`{"msc4354_sticky_key":"c0ffee"}`), now)
	s2, _, _ := ParseMembers(sticky, json.RawMessage(`{"msc4354_sticky_key":"c0ffee"}`), now)
	if s1 == "" || s2 == "" || s1 == s2 {
		t.Fatalf("bob's sticky slot %q is alice's %q", s2, s1)
	}
}

// Through the backend: bob's blank event under alice's key leaves alice in the call.
func TestBackendIgnoresForeignMembership(t *testing.T) {
	now := time.Now()
	b := New(&fakeMatrix{}, nil, Options{}, zerolog.Nop())
	defer b.Close(context.Background())
	evt, c := stateEvent(TypeCallMember, "@alice:hs", "_@alice:hs_ALICEDEV_m.call", now.Add(-time.Second), sessionJSON)
	evt.Content.VeryRaw = c
	b.HandleEvent(context.Background(), evt)
	if got := b.members("!r:hs", now); len(got) != 1 {
		t.Fatalf("alice not a member: %v", got)
	}
	forged, fc := stateEvent(TypeCallMember, "@bob:hs", "_@alice:hs_ALICEDEV_m.call", now, `{}`)
	forged.Content.VeryRaw = fc
	b.HandleEvent(context.Background(), forged)
	if got := b.members("!r:hs", now); len(got) != 1 || got[0].UserID != "@alice:hs" {
		t.Fatalf("after bob's forged leave the members are %v", got)
	}
}

// One sender cannot fill a room's table: at most maxDevicesPerUser memberships per sender
// and maxRoomMemberships per room; each cap is reported once.
func TestMemberTableCaps(t *testing.T) {
	now := time.Now()
	tab := newMemberTable()
	mk := func(user id.UserID, dev string) []Member {
		return []Member{{UserID: user, DeviceID: id.DeviceID(dev), ExpiresAt: now.Add(time.Hour)}}
	}
	for i := 0; i < maxDevicesPerUser; i++ {
		if res := tab.apply(fmt.Sprintf("m%d", i), "@mallory:hs", mk("@mallory:hs", fmt.Sprint(i)), 1); res != applyChanged {
			t.Fatalf("membership %d: %s", i, res)
		}
	}
	res := tab.apply("m-extra", "@mallory:hs", mk("@mallory:hs", "extra"), 1)
	if res != applyUserCap || len(tab.members(now, DeviceKey{})) != maxDevicesPerUser {
		t.Fatalf("17th device of one user: %s, %d members", res, len(tab.members(now, DeviceKey{})))
	}
	if !tab.firstWarning(res, "@mallory:hs") || tab.firstWarning(res, "@mallory:hs") {
		t.Error("the per-user cap should be reported exactly once")
	}
	// Replacing one of her slots still works.
	if res := tab.apply("m0", "@mallory:hs", mk("@mallory:hs", "0"), 2); res != applyChanged {
		t.Fatalf("refresh at the cap: %s", res)
	}
	// A legacy list of many devices is cut to the cap.
	big := make([]Member, 0, 40)
	for i := 0; i < 40; i++ {
		big = append(big, mk("@bob:hs", fmt.Sprint(i))...)
	}
	if res := tab.apply("@bob:hs", "@bob:hs", big, 1); res != applyUserCap || tab.perUser["@bob:hs"] != maxDevicesPerUser {
		t.Fatalf("legacy list of 40: %s, %d kept", res, tab.perUser["@bob:hs"])
	}
	// The room cap.
	for u := 0; tab.total < maxRoomMemberships; u++ {
		user := id.UserID(fmt.Sprintf("@u%d:hs", u))
		tab.apply(string(user), user, mk(user, "D"), 1)
	}
	res = tab.apply("late", "@late:hs", mk("@late:hs", "D"), 1)
	if res != applyRoomCap || tab.total != maxRoomMemberships || tab.lists(DeviceKey{"@late:hs", "D"}, now) {
		t.Fatalf("beyond the room cap: %s, total %d", res, tab.total)
	}
	// Expired memberships make room.
	tab2 := newMemberTable()
	for u := 0; u < maxRoomMemberships; u++ {
		user := id.UserID(fmt.Sprintf("@u%d:hs", u))
		tab2.apply(string(user), user, []Member{{UserID: user, DeviceID: "D", ExpiresAt: now.Add(-time.Second)}}, 1)
	}
	if res := tab2.apply("late", "@late:hs", mk("@late:hs", "D"), 1); res != applyChanged {
		t.Fatalf("expired memberships did not make room: %s", res)
	}
}

// The backend forgets a room's call state when nothing is left of it, and when the bot
// leaves the room.
func TestTablesPruned(t *testing.T) {
	now := time.Now()
	b := New(&fakeMatrix{}, nil, Options{}, zerolog.Nop())
	defer b.Close(context.Background())
	send := func(sender, key, content string, room id.RoomID) {
		evt, c := stateEvent(TypeCallMember, sender, key, now, content)
		evt.Content.VeryRaw, evt.RoomID = c, room
		b.HandleEvent(context.Background(), evt)
	}
	tables := func() int {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.tables)
	}
	send("@alice:hs", "_@alice:hs_ALICEDEV_m.call", sessionJSON, "!r:hs")
	send("@alice:hs", "_@alice:hs_ALICEDEV_m.call", `{}`, "!r:hs")
	if n := tables(); n != 0 {
		t.Fatalf("%d tables after the only member left", n)
	}
	// Leaves and foreign events of rooms without a call create nothing.
	send("@bob:hs", "_@bob:hs_B_m.call", `{}`, "!other:hs")
	send("@bob:hs", "_@alice:hs_A_m.call", sessionJSON, "!other:hs")
	if n := tables(); n != 0 {
		t.Fatalf("%d tables after leaves and refused events", n)
	}
	send("@alice:hs", "_@alice:hs_ALICEDEV_m.call", sessionJSON, "!r:hs")
	sk := "@bot:hs"
	leave := &event.Event{Type: event.StateMember, StateKey: &sk, Sender: "@alice:hs", RoomID: "!r:hs"}
	leave.Content.VeryRaw = json.RawMessage(`{"membership":"leave"}`)
	b.HandleEvent(context.Background(), leave)
	if n := tables(); n != 0 {
		t.Fatalf("%d tables after the bot left the room", n)
	}
}
