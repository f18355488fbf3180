package matrixrtc

import (
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
)

func upd(key string, owner id.UserID, ts int64, ms ...Member) Update {
	return Update{Key: key, Owner: owner, Timestamp: ts, Members: ms}
}

func TestTable(t *testing.T) {
	now := time.Now()
	tab := NewTable()
	m := Member{UserID: "@a:hs", DeviceID: "A", ExpiresAt: now.Add(time.Hour), CreatedTs: 1}
	if tab.Apply(upd("s1", "@a:hs", 10, m)) != ResultChanged {
		t.Fatal("first membership not applied")
	}
	if tab.Apply(upd("s1", "@a:hs", 5)) != ResultUnchanged {
		t.Fatal("older leave applied over a newer join")
	}
	if tab.Apply(Update{}) != ResultUnchanged {
		t.Fatal("an update without a key changed the table")
	}
	if got := tab.Members(now, DeviceKey{}); len(got) != 1 {
		t.Fatalf("members %v", got)
	}
	if got := tab.Members(now, m.Key()); len(got) != 0 {
		t.Fatalf("skipped device listed: %v", got)
	}
	if got := tab.Members(now.Add(2*time.Hour), DeviceKey{}); len(got) != 0 {
		t.Fatalf("expired membership listed: %v", got)
	}
	if next, ok := tab.NextExpiry(now); !ok || !next.Equal(m.ExpiresAt) {
		t.Fatalf("next expiry %v %v", next, ok)
	}
	if _, ok := tab.NextExpiry(now.Add(2 * time.Hour)); ok {
		t.Fatal("an expiry after everything expired")
	}
	if tab.Apply(upd("s1", "@a:hs", 11)) != ResultChanged || len(tab.Members(now, DeviceKey{})) != 0 || !tab.Empty() {
		t.Fatal("leave not applied")
	}
}

// One device per call: the newest membership of a device wins; a device in two calls
// (MSC3401 allows it) is listed in each.
func TestTableMembersPerDeviceAndCall(t *testing.T) {
	now := time.Now()
	tab := NewTable()
	exp := now.Add(time.Hour)
	tab.Apply(upd("state", "@a:hs", 1, Member{UserID: "@a:hs", DeviceID: "A", SlotID: MainSlot, CreatedTs: 1, ExpiresAt: exp, Format: FormatSession}))
	tab.Apply(upd("sticky", "@a:hs", 2, Member{UserID: "@a:hs", DeviceID: "A", SlotID: MainSlot, CreatedTs: 2, ExpiresAt: exp, Format: FormatSticky}))
	tab.Apply(upd("mesh", "@b:hs", 1,
		Member{UserID: "@b:hs", DeviceID: "B", SlotID: "conf2", ExpiresAt: exp},
		Member{UserID: "@b:hs", DeviceID: "B", SlotID: "conf1", ExpiresAt: exp}))
	got := tab.Members(now, DeviceKey{})
	if len(got) != 3 || got[0].Format != FormatSticky || got[1].SlotID != "conf1" || got[2].SlotID != "conf2" {
		t.Fatalf("members %+v", got)
	}
	if !tab.Lists(DeviceKey{"@b:hs", "B"}, now) || tab.Lists(DeviceKey{"@b:hs", "A"}, now) || tab.Len() != 4 {
		t.Fatal("Lists or Len wrong")
	}
}

// One sender cannot fill a room's table: at most MaxDevicesPerUser memberships per sender
// and MaxRoomMemberships per room; each cap is reported once.
func TestTableCaps(t *testing.T) {
	now := time.Now()
	tab := NewTable()
	mk := func(user id.UserID, dev string) []Member {
		return []Member{{UserID: user, DeviceID: id.DeviceID(dev), ExpiresAt: now.Add(time.Hour)}}
	}
	for i := 0; i < MaxDevicesPerUser; i++ {
		if res := tab.Apply(upd(fmt.Sprintf("m%d", i), "@mallory:hs", 1, mk("@mallory:hs", fmt.Sprint(i))...)); res != ResultChanged {
			t.Fatalf("membership %d: %s", i, res)
		}
	}
	res := tab.Apply(upd("m-extra", "@mallory:hs", 1, mk("@mallory:hs", "extra")...))
	if res != ResultUserCap || len(tab.Members(now, DeviceKey{})) != MaxDevicesPerUser {
		t.Fatalf("17th device of one user: %s, %d members", res, len(tab.Members(now, DeviceKey{})))
	}
	if !tab.FirstWarning(res, "@mallory:hs") || tab.FirstWarning(res, "@mallory:hs") {
		t.Error("the per-user cap should be reported exactly once")
	}
	// Replacing one of her keys still works.
	if res := tab.Apply(upd("m0", "@mallory:hs", 2, mk("@mallory:hs", "0")...)); res != ResultChanged {
		t.Fatalf("refresh at the cap: %s", res)
	}
	// A legacy list of many devices is cut to the cap.
	big := make([]Member, 0, 40)
	for i := 0; i < 40; i++ {
		big = append(big, mk("@bob:hs", fmt.Sprint(i))...)
	}
	if res := tab.Apply(upd("@bob:hs", "@bob:hs", 1, big...)); res != ResultUserCap || tab.perUser["@bob:hs"] != MaxDevicesPerUser {
		t.Fatalf("legacy list of 40: %s, %d kept", res, tab.perUser["@bob:hs"])
	}
	// The room cap.
	for u := 0; tab.total < MaxRoomMemberships; u++ {
		user := id.UserID(fmt.Sprintf("@u%d:hs", u))
		tab.Apply(upd(string(user), user, 1, mk(user, "D")...))
	}
	res = tab.Apply(upd("late", "@late:hs", 1, mk("@late:hs", "D")...))
	if res != ResultRoomCap || tab.total != MaxRoomMemberships || tab.Lists(DeviceKey{"@late:hs", "D"}, now) {
		t.Fatalf("beyond the room cap: %s, total %d", res, tab.total)
	}
	if !tab.FirstWarning(res, "@late:hs") || tab.FirstWarning(res, "@other:hs") {
		t.Error("the room cap should be reported exactly once")
	}
	// Expired memberships make room.
	tab2 := NewTable()
	for u := 0; u < MaxRoomMemberships; u++ {
		user := id.UserID(fmt.Sprintf("@u%d:hs", u))
		tab2.Apply(upd(string(user), user, 1, Member{UserID: user, DeviceID: "D", ExpiresAt: now.Add(-time.Second)}))
	}
	if res := tab2.Apply(upd("late", "@late:hs", 1, mk("@late:hs", "D")...)); res != ResultChanged {
		t.Fatalf("expired memberships did not make room: %s", res)
	}
}
