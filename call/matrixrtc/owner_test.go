package matrixrtc

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"

	"maunium.net/go/mautrix/id"
)

func TestStateKeyUser(t *testing.T) {
	for key, want := range map[string]id.UserID{
		"@alice:hs":                         "@alice:hs",                // MSC3401 and js-sdk 28-35: the user id
		"_@alice:hs_ADEV_m.call":            "@alice:hs",                // js-sdk ≥ 34 in ordinary room versions
		"@alice:hs_ADEV_m.call":             "@alice:hs",                // MSC3757/MSC3779 room versions
		"_@alice:hs_ADEV":                   "@alice:hs",                // js-sdk 34-37
		"@al_ice:example.org:8448_D_m.call": "@al_ice:example.org:8448", // "_" in the localpart, a port
		"_@a:[::1]:8448_D":                  "@a:[::1]:8448",
		"@a.b=c/d+e:1.2.3.4_X":              "@a.b=c/d+e:1.2.3.4",
	} {
		if got, ok := StateKeyUser(key); !ok || got != want {
			t.Errorf("StateKeyUser(%q) = %q, %v; want %q", key, got, ok, want)
		}
	}
	for _, key := range []string{"", "foo", "_", "__@alice:hs_D", "@alice", "@:hs", "@alice:", "@alice:_D", "@alice:h s_D", "!room:hs", "m.call#ROOM", "c0ffee"} {
		if got, ok := StateKeyUser(key); ok {
			t.Errorf("StateKeyUser(%q) = %q; want no user", key, got)
		}
	}
}

func TestStateKeyOwnedBy(t *testing.T) {
	if !StateKeyOwnedBy("_@alice:hs_ADEV_m.call", "@alice:hs") {
		t.Error("alice does not own her own session key")
	}
	for _, tc := range []struct {
		key    string
		sender id.UserID
	}{
		{"_@alice:hs_ADEV_m.call", "@bob:hs"},    // someone else's device
		{"@alice:hs", "@mallory:hs"},             // someone else's legacy key
		{"_@alice:hs_ADEV_m.call", "@alice:h"},   // a prefix of the owner
		{"_@alice:hs_ADEV_m.call", "@alice:hsx"}, // the owner is a prefix
		{"shared", "@alice:hs"},                  // names nobody
		{"@alice:hs", ""},
	} {
		if StateKeyOwnedBy(tc.key, tc.sender) {
			t.Errorf("%s may set %q", tc.sender, tc.key)
		}
	}
}

// MatrixRTC's rule: a key that names a user is that user's. Someone else's event with it
// (a blank "leave", or a membership of their own) fills no key, in every format.
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
		{"MSC3401 user key", "@bob:hs", "@alice:hs", `{"m.calls":[]}`},
		{"key naming nobody", "@bob:hs", "shared-slot", sessionJSON},
		{"owner is a prefix", "@alice:h", aliceKey, `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evt, c := stateEvent(TypeCallMember, tc.sender, tc.key, now, tc.content)
			u, err := Parse(evt, c, now)
			if u.Key != "" || len(u.Members) != 0 || !errors.Is(err, ErrNotOwner) {
				t.Fatalf("update %+v err %v; want no key and ErrNotOwner", u, err)
			}
		})
	}
	// The owner's own events still count, including the MSC3757 form.
	for _, key := range []string{aliceKey, "@alice:hs_ALICEDEV_m.call"} {
		evt, c := stateEvent(TypeCallMember, "@alice:hs", key, now, sessionJSON)
		if u, err := Parse(evt, c, now); u.Key == "" || len(u.Members) != 1 || err != nil {
			t.Fatalf("alice's own membership under %q: %+v %v", key, u, err)
		}
	}
	// Sticky memberships: the key is the sender's; a sticky key naming another user is refused.
	sticky := &event.Event{Type: TypeRTCMember, Sender: "@bob:hs", Timestamp: now.UnixMilli(), RoomID: "!r:hs"}
	if u, err := Parse(sticky, json.RawMessage(`{"msc4354_sticky_key":"@alice:hs_ALICEDEV"}`), now); u.Key != "" || !errors.Is(err, ErrNotOwner) {
		t.Fatalf("sticky key of alice from bob: key %q err %v", u.Key, err)
	}
	aliceSticky := &event.Event{Type: TypeRTCMember, Sender: "@alice:hs", Timestamp: now.UnixMilli(), RoomID: "!r:hs"}
	u1, _ := Parse(aliceSticky, json.RawMessage(`{"msc4354_sticky_key":"c0ffee"}`), now)
	u2, _ := Parse(sticky, json.RawMessage(`{"msc4354_sticky_key":"c0ffee"}`), now)
	if u1.Key == "" || u2.Key == "" || u1.Key == u2.Key {
		t.Fatalf("bob's sticky key %q is alice's %q", u2.Key, u1.Key)
	}
}
