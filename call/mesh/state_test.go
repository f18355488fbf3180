package mesh

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
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

// typeMember is the member event type the tests write.
var typeMember = matrixrtc.TypeCallMember.Type

// devicesOf reads a member event of user, keyed by user, as the room has it, and returns
// its devices in conf that count now.
func devicesOf(user id.UserID, raw json.RawMessage, conf string) []matrixrtc.Member {
	key := string(user)
	evt := &event.Event{Type: matrixrtc.TypeCallMember, StateKey: &key, Sender: user, Timestamp: time.Now().UnixMilli()}
	u, _ := matrixrtc.Parse(evt, raw, time.Now())
	var out []matrixrtc.Member
	for _, m := range u.Only(matrixrtc.FormatMSC3401).Members {
		if m.SlotID == conf {
			out = append(out, m)
		}
	}
	return out
}

// hasDevice reports whether user's member event lists device in conf1.
func hasDevice(raw json.RawMessage, user id.UserID, device id.DeviceID) bool {
	for _, d := range devicesOf(user, raw, "conf1") {
		if d.DeviceID == device {
			return true
		}
	}
	return false
}

func member(devices ...string) json.RawMessage {
	return json.RawMessage(`{"m.calls":[{"m.call_id":"conf1","m.devices":[` + strings.Join(devices, ",") + `]}]}`)
}

func dev(id, session string, expires int64, feeds string) string {
	return fmt.Sprintf(`{"device_id":%q,"session_id":%q,"expires_ts":%d,"feeds":%s}`, id, session, expires, feeds)
}

func TestRoomStateDevicesNeedJoinAndNoFoci(t *testing.T) {
	future := time.Now().Add(time.Hour).UnixMilli()
	rs := newRoomState("@bot:hs")
	rs.apply(TypeCall, "conf1", "@alice:hs", json.RawMessage(`{"m.intent":"m.room","m.type":"m.video"}`), 1, "", "")
	rs.apply(typeMember, "@alice:hs", "@alice:hs", member(dev("A", "sa", future, `[]`)), 2, "", "")
	rs.apply(typeMember, "@bob:hs", "@bob:hs", member(dev("B", "sb", future, `[]`)), 2, "", "")
	rs.apply(typeMember, "@carol:hs", "@carol:hs", json.RawMessage(`{"m.calls":[{"m.call_id":"conf1","m.foci":["@sfu:hs"],"m.devices":[`+dev("C", "sc", future, `[]`)+`]}]}`), 2, "", "")
	rs.apply(typeMember, "@bot:hs", "@bot:hs", member(dev("BOT", "x", future, `[]`)), 2, "", "")
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

// A member event counts only when its state key is its sender: one user cannot blank or
// overwrite another's entry. Too many member events in a room are not all kept.
func TestRoomStateOwnershipAndCaps(t *testing.T) {
	future := time.Now().Add(time.Hour).UnixMilli()
	rs := newRoomState("@bot:hs")
	rs.apply(TypeCall, "conf1", "@alice:hs", json.RawMessage(`{"m.intent":"m.room","m.type":"m.video"}`), 1, "", "")
	rs.apply(event.StateMember.Type, "@alice:hs", "@alice:hs", nil, 0, event.MembershipJoin, "Alice")
	if !rs.apply(typeMember, "@alice:hs", "@alice:hs", member(dev("A", "sa", future, `[]`)), 2, "", "") {
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
		if rs.apply(typeMember, forged.key, forged.sender, json.RawMessage(forged.raw), 3, "", "") {
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
	if rs.apply(typeMember, "_@alice:hs_A_m.call", "@alice:hs", json.RawMessage(`{"application":"m.call"}`), 3, "", "") || rs.foreign != 4 {
		t.Errorf("alice's session membership counted as a forgery (%d)", rs.foreign)
	}
	// Leaving forgets the entry; the room cap holds.
	rs.apply(typeMember, "@alice:hs", "@alice:hs", json.RawMessage(`{}`), 4, "", "")
	if rs.members.Len() != 0 {
		t.Fatalf("left entry kept: %v", rs.members.Members(time.Now(), matrixrtc.DeviceKey{}))
	}
	for i := 0; i < matrixrtc.MaxRoomMemberships+10; i++ {
		u := fmt.Sprintf("@u%d:hs", i)
		rs.apply(typeMember, u, id.UserID(u), member(dev("D", "s", future, `[]`)), 5, "", "")
	}
	if rs.members.Len() != matrixrtc.MaxRoomMemberships || rs.capped != 10 {
		t.Errorf("%d member events kept, %d refused; want %d and 10", rs.members.Len(), rs.capped, matrixrtc.MaxRoomMemberships)
	}
}

// Display names and call names are bounded and printable.
func TestBound(t *testing.T) {
	if got := bound("ab\ncd", 3); got != "abc" {
		t.Errorf("bound: %q", got)
	}
	if got := bound("aé", 2); got != "a" {
		t.Errorf("bound cut a rune: %q", got)
	}
}
