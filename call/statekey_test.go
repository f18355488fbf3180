package call

import (
	"testing"

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
