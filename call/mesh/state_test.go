package mesh

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

func TestParseCall(t *testing.T) {
	for _, tc := range []struct {
		name                string
		raw                 string
		terminated, livekit bool
	}{
		{"active", `{"m.intent":"m.room","m.type":"m.video"}`, false, false},
		{"terminated", `{"m.intent":"m.room","m.type":"m.video","m.terminated":"call_ended"}`, true, false},
		{"redacted", `{}`, true, false},
		{"empty", ``, true, false},
		{"livekit", `{"m.intent":"m.room","m.type":"m.video","io.element.livekit_service_url":"https://lk"}`, false, true},
		{"null terminated is not terminated", `{"m.intent":"m.room","m.terminated":null}`, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCall(TypeCall, "conf1", json.RawMessage(tc.raw), 1)
			if err != nil {
				t.Fatal(err)
			}
			if c.Terminated != tc.terminated || c.LiveKit != tc.livekit || c.Active() == tc.terminated {
				t.Errorf("got %+v", c)
			}
		})
	}
	if _, err := ParseCall(TypeCall, "", json.RawMessage(`{}`), 0); err == nil {
		t.Error("empty conf id accepted")
	}
	if _, err := ParseCall(TypeCall, "x", json.RawMessage(`[1]`), 0); err == nil {
		t.Error("non-object content accepted")
	}
}

func member(devices ...string) json.RawMessage {
	return json.RawMessage(`{"m.calls":[{"m.call_id":"conf1","m.devices":[` + strings.Join(devices, ",") + `]}]}`)
}

func dev(id, session string, expires int64, feeds string) string {
	return fmt.Sprintf(`{"device_id":%q,"session_id":%q,"expires_ts":%d,"feeds":%s}`, id, session, expires, feeds)
}

func TestParseMemberAndExpiry(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	future := now.Add(time.Hour).UnixMilli()
	raw := member(
		dev("DEV1", "s1", future, `[{"purpose":"m.usermedia"}]`),
		dev("DEV2", "s2", now.Add(-time.Second).UnixMilli(), `[]`), // expired
		dev("DEV3", "s3", future, `[{"purpose":"m.usermedia"},{"purpose":"m.screenshare"}]`),
	)
	calls, err := ParseMember("@alice:hs", raw)
	if err != nil {
		t.Fatal(err)
	}
	devs := ValidDevices(calls, "conf1", now)
	if len(devs) != 2 || devs[0].DeviceID != "DEV1" || devs[1].DeviceID != "DEV3" {
		t.Fatalf("valid devices: %+v", devs)
	}
	if devs[0].Screensharing() || !devs[1].Screensharing() {
		t.Error("screensharing flags wrong")
	}
	if devs[0].UserID != "@alice:hs" || devs[0].SessionID != "s1" {
		t.Errorf("device: %+v", devs[0])
	}
	if got := ValidDevices(calls, "conf1", time.UnixMilli(future)); len(got) != 0 {
		t.Errorf("devices valid at their expiry: %+v", got)
	}
	if got := ValidDevices(calls, "other", now); len(got) != 0 {
		t.Errorf("devices of another conf: %+v", got)
	}
}

// Each check js-sdk makes (strings, number, array) and the bounds the recorder adds.
func TestParseMemberRejectsMalformedDevices(t *testing.T) {
	future := time.Now().Add(time.Hour).UnixMilli()
	bad := []string{
		`{"device_id":1,"session_id":"s","expires_ts":` + fmt.Sprint(future) + `,"feeds":[]}`,
		`{"device_id":"D","session_id":null,"expires_ts":` + fmt.Sprint(future) + `,"feeds":[]}`,
		`{"device_id":"D","session_id":"s","expires_ts":"` + fmt.Sprint(future) + `","feeds":[]}`,
		`{"device_id":"D","session_id":"s","expires_ts":` + fmt.Sprint(future) + `,"feeds":{}}`,
		`{"device_id":"D","session_id":"s","expires_ts":` + fmt.Sprint(future) + `}`,
		`{"device_id":"","session_id":"s","expires_ts":` + fmt.Sprint(future) + `,"feeds":[]}`,
		`{"device_id":"D E","session_id":"s","expires_ts":` + fmt.Sprint(future) + `,"feeds":[]}`,
		`{"device_id":"../../etc","session_id":"s\n","expires_ts":` + fmt.Sprint(future) + `,"feeds":[]}`,
		`{"device_id":"` + strings.Repeat("D", 256) + `","session_id":"s","expires_ts":` + fmt.Sprint(future) + `,"feeds":[]}`,
		`"not an object"`,
	}
	for _, b := range bad {
		calls, err := ParseMember("@a:hs", member(b))
		if err != nil {
			t.Fatal(err)
		}
		if got := ValidDevices(calls, "conf1", time.Now()); len(got) != 0 {
			t.Errorf("accepted %s: %+v", b, got)
		}
	}
	// A huge expiry does not overflow into the past.
	calls, _ := ParseMember("@a:hs", member(`{"device_id":"D","session_id":"s","expires_ts":1e308,"feeds":[]}`))
	if got := ValidDevices(calls, "conf1", time.Now()); len(got) != 1 {
		t.Errorf("device with far-future expiry: %+v", got)
	}
}

func TestParseMemberBoundsAndOtherFormats(t *testing.T) {
	future := time.Now().Add(time.Hour).UnixMilli()
	var devs []string
	for i := 0; i < 52; i++ {
		devs = append(devs, dev(fmt.Sprintf("D%d", i), "s", future, `[]`))
	}
	calls, err := ParseMember("@a:hs", member(devs...))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ValidDevices(calls, "conf1", time.Now())); n != maxDevicesPerUser {
		t.Errorf("%d devices kept, bound %d", n, maxDevicesPerUser)
	}
	// The bound is per user, over all the calls of the event.
	var many []string
	for c := 0; c < maxCallsPerMember; c++ {
		many = append(many, fmt.Sprintf(`{"m.call_id":"conf%d","m.devices":[%s,%s]}`, c, dev(fmt.Sprintf("A%d", c), "s", future, `[]`), dev(fmt.Sprintf("B%d", c), "s", future, `[]`)))
	}
	calls, _ = ParseMember("@a:hs", json.RawMessage(`{"m.calls":[`+strings.Join(many, ",")+`]}`))
	total := 0
	for _, c := range calls {
		total += len(c.Devices)
	}
	if total != maxDevicesPerUser {
		t.Errorf("%d devices over %d calls kept, bound %d per user", total, len(calls), maxDevicesPerUser)
	}
	if _, err := ParseMember("@a:hs", json.RawMessage(`{"x":"`+strings.Repeat("a", maxStateContent)+`"}`)); err == nil {
		t.Error("oversized content accepted")
	}
	if _, err := ParseMember("_@a:hs_DEV", member()); err == nil {
		t.Error("a MatrixRTC per-device state key was taken for a user id")
	}
	// MatrixRTC "memberships" format: not a full-mesh member.
	calls, err = ParseMember("@a:hs", json.RawMessage(`{"memberships":[{"call_id":"","device_id":"D"}]}`))
	if err != nil || len(calls) != 0 {
		t.Errorf("memberships format: %v %v", calls, err)
	}
	// Left: empty object.
	if calls, err := ParseMember("@a:hs", json.RawMessage(`{}`)); err != nil || len(calls) != 0 {
		t.Errorf("empty member: %v %v", calls, err)
	}
}

func TestRoomStateDevicesNeedJoinAndNoFoci(t *testing.T) {
	future := time.Now().Add(time.Hour).UnixMilli()
	rs := newRoomState("@bot:hs")
	rs.apply(TypeCall, "conf1", "@alice:hs", json.RawMessage(`{"m.intent":"m.room","m.type":"m.video"}`), 1, "", "")
	rs.apply(TypeMember, "@alice:hs", "@alice:hs", member(dev("A", "sa", future, `[]`)), 2, "", "")
	rs.apply(TypeMember, "@bob:hs", "@bob:hs", member(dev("B", "sb", future, `[]`)), 2, "", "")
	rs.apply(TypeMember, "@carol:hs", "@carol:hs", json.RawMessage(`{"m.calls":[{"m.call_id":"conf1","m.foci":["@sfu:hs"],"m.devices":[`+dev("C", "sc", future, `[]`)+`]}]}`), 2, "", "")
	rs.apply(TypeMember, "@bot:hs", "@bot:hs", member(dev("BOT", "x", future, `[]`)), 2, "", "")
	for _, u := range []string{"@alice:hs", "@carol:hs", "@bot:hs"} {
		rs.apply(event.StateMember.Type, u, id.UserID(u), nil, 0, event.MembershipJoin, "Name")
	}
	rs.apply(event.StateMember.Type, "@bob:hs", "@bob:hs", nil, 0, event.MembershipLeave, "")
	c, why := rs.activeCall()
	if why != "" || c.ConfID != "conf1" {
		t.Fatalf("active call %+v %q", c, why)
	}
	devs, sfu := rs.devices("conf1", time.Now(), "@bot:hs")
	if len(devs) != 1 || devs[0].UserID != "@alice:hs" || sfu != 1 {
		t.Errorf("devices %+v, sfu %d: want only alice (bob left, carol uses an SFU, the bot is excluded)", devs, sfu)
	}
	rs.apply(TypeCall, "conf1", "@alice:hs", json.RawMessage(`{"m.intent":"m.room","m.terminated":"call_ended"}`), 3, "", "")
	if _, why := rs.activeCall(); why == "" {
		t.Error("terminated call still active")
	}
}

func TestOwnMemberContentKeepsOthersAndRemovesSelf(t *testing.T) {
	now := time.Now()
	future := now.Add(time.Hour).UnixMilli()
	current := json.RawMessage(`{"m.calls":[
		{"m.call_id":"other","m.devices":[` + dev("BOT", "old", future, `[]`) + `]},
		{"m.call_id":"conf1","m.devices":[` + dev("PHONE", "p", future, `[]`) + `,` + dev("BOT", "stale", future, `[]`) + `,` + dev("GONE", "g", now.Add(-time.Minute).UnixMilli(), `[]`) + `]}
	]}`)
	self := &Device{SessionID: "new", ExpiresAt: now.Add(time.Hour), Purposes: []string{"m.usermedia"}}
	content, changed, err := OwnMemberContent(current, "conf1", "BOT", self, now)
	if err != nil || !changed {
		t.Fatalf("changed %v err %v", changed, err)
	}
	b, _ := json.Marshal(content)
	calls, err := ParseMember("@bot:hs", b)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 {
		t.Fatalf("calls: %s", b)
	}
	mine := ValidDevices(calls, "conf1", now)
	if len(mine) != 2 || mine[0].DeviceID != "PHONE" || mine[1].DeviceID != "BOT" || mine[1].SessionID != "new" {
		t.Errorf("conf1 devices: %+v (%s)", mine, b)
	}
	if other := ValidDevices(calls, "other", now); len(other) != 1 || other[0].SessionID != "old" {
		t.Errorf("other call changed: %+v", other)
	}

	removed, changed, _ := OwnMemberContent(b, "conf1", "BOT", nil, now)
	if !changed {
		t.Error("removal reported no change")
	}
	rb, _ := json.Marshal(removed)
	if HasDevice(rb, "@bot:hs", "conf1", "BOT") || !HasDevice(rb, "@bot:hs", "conf1", "PHONE") {
		t.Errorf("after removal: %s", rb)
	}
	// Removing the last device drops the call entry.
	content, _, _ = OwnMemberContent(member(dev("BOT", "s", future, `[]`)), "conf1", "BOT", nil, now)
	if b, _ := json.Marshal(content); string(b) != `{"m.calls":[]}` {
		t.Errorf("empty after removal: %s", b)
	}
	// Garbage content is replaced, not an error.
	if _, _, err := OwnMemberContent(json.RawMessage(`[garbage`), "conf1", "BOT", self, now); err != nil {
		t.Error(err)
	}
}

func TestDeviceIDsNeverEscapeFileNames(t *testing.T) {
	// Device ids reach file names through recorder.Sanitize; here they are only bounded
	// and printable. This guards the bound.
	if validID(strings.Repeat("a", maxIDLen+1)) || validID("a\x00b") || validID("") || !validID("ABCdef123") {
		t.Error("validID bounds wrong")
	}
	if validUserID("alice") || validUserID("@alice") || !validUserID("@alice:hs") {
		t.Error("validUserID wrong")
	}
	if got := bound("ab\ncd", 3); got != "abc" {
		t.Errorf("bound: %q", got)
	}
	var _ id.UserID
}

func FuzzParseMember(f *testing.F) {
	f.Add([]byte(member(dev("D", "s", 1<<50, `[{"purpose":"m.usermedia"}]`))))
	f.Add([]byte(`{"m.calls":[{"m.call_id":"c","m.devices":[{"device_id":"D","session_id":"s","expires_ts":1e400,"feeds":[]}]}]}`))
	f.Add([]byte(`{"m.calls":null}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		calls, _ := ParseMember("@a:hs", raw)
		total := 0
		for _, c := range calls {
			total += len(c.Devices)
			if total > maxDevicesPerUser || !validID(c.ConfID) {
				t.Fatalf("unbounded call %+v", c)
			}
			for _, d := range c.Devices {
				if !validID(string(d.DeviceID)) || !validID(d.SessionID) || len(d.Purposes) > maxFeeds {
					t.Fatalf("bad device %+v", d)
				}
			}
		}
		_, _, _ = OwnMemberContent(raw, "c", "BOT", &Device{SessionID: "s", ExpiresAt: time.Now()}, time.Now())
	})
}

// A member event counts only when its state key is its sender: one user cannot blank or
// overwrite another's entry. Too many member events in a room are not all kept.
func TestRoomStateOwnershipAndCaps(t *testing.T) {
	future := time.Now().Add(time.Hour).UnixMilli()
	rs := newRoomState("@bot:hs")
	rs.apply(TypeCall, "conf1", "@alice:hs", json.RawMessage(`{"m.intent":"m.room","m.type":"m.video"}`), 1, "", "")
	rs.apply(event.StateMember.Type, "@alice:hs", "@alice:hs", nil, 0, event.MembershipJoin, "Alice")
	if !rs.apply(TypeMember, "@alice:hs", "@alice:hs", member(dev("A", "sa", future, `[]`)), 2, "", "") {
		t.Fatal("alice's own entry refused")
	}
	for _, forged := range []struct {
		key    string
		sender id.UserID
		raw    string
	}{
		{"@alice:hs", "@mallory:hs", `{}`},
		{"@alice:hs", "@mallory:hs", string(member(dev("M", "sm", future, `[]`)))},
		{"@alice:hs", "", `{}`},
		{"_@alice:hs_A", "@mallory:hs", `{}`},
	} {
		if rs.apply(TypeMember, forged.key, forged.sender, json.RawMessage(forged.raw), 3, "", "") {
			t.Errorf("%q from %q applied", forged.key, forged.sender)
		}
	}
	if devs, _ := rs.devices("conf1", time.Now(), "@bot:hs"); len(devs) != 1 || devs[0].UserID != "@alice:hs" || devs[0].SessionID != "sa" {
		t.Fatalf("after forged events the call has %+v; want alice as she wrote it", devs)
	}
	if rs.foreign != 4 {
		t.Errorf("%d forged events counted, want 4", rs.foreign)
	}
	// A session membership of the sender's own ("_@user_DEVICE…") is another format, not
	// a forgery.
	if rs.apply(TypeMember, "_@alice:hs_A_m.call", "@alice:hs", json.RawMessage(`{"application":"m.call"}`), 3, "", "") || rs.foreign != 4 {
		t.Errorf("alice's session membership counted as a forgery (%d)", rs.foreign)
	}
	// Leaving forgets the entry; the room cap holds.
	rs.apply(TypeMember, "@alice:hs", "@alice:hs", json.RawMessage(`{}`), 4, "", "")
	if len(rs.members) != 0 {
		t.Fatalf("left entry kept: %v", rs.members)
	}
	for i := 0; i < maxMemberEvents+10; i++ {
		u := fmt.Sprintf("@u%d:hs", i)
		rs.apply(TypeMember, u, id.UserID(u), member(dev("D", "s", future, `[]`)), 5, "", "")
	}
	if len(rs.members) != maxMemberEvents || rs.capped != 10 {
		t.Errorf("%d member events kept, %d refused; want %d and 10", len(rs.members), rs.capped, maxMemberEvents)
	}
}
