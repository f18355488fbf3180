package mesh

import (
	"testing"

	"maunium.net/go/mautrix/id"
)

func TestWeCall(t *testing.T) {
	const bot, dev = id.UserID("@recorder:hs"), id.DeviceID("BOTDEV")
	for _, tc := range []struct {
		user   id.UserID
		device id.DeviceID
		want   bool
	}{
		{"@alice:hs", "A", false},       // lower user id calls us
		{"@zoe:hs", "Z", true},          // we call higher user ids
		{"@recorder:hs", "AAAA", false}, // our other device, lower device id: it calls
		{"@recorder:hs", "ZZZZ", true},  // our other device, higher: we call
		{"@recorder:hs", "BOTDEV", false},
		{"@recorder:hs2", "A", true}, // "@recorder:hs" is a prefix: shorter sorts first
		{"@Recorder:hs", "A", false}, // upper case sorts before lower case
	} {
		if got := WeCall(bot, dev, tc.user, tc.device); got != tc.want {
			t.Errorf("WeCall(%s, %s) = %v, want %v", tc.user, tc.device, got, tc.want)
		}
	}
}

// Exactly one side of every pair places the call.
func TestWeCallIsAntisymmetric(t *testing.T) {
	users := []id.UserID{"@a:x", "@b:x", "@b:y", "@é:x", "@😀:x", "@\uffff:x"}
	devs := []id.DeviceID{"A", "B", "a", "\U0001F600", "\uffff"}
	for _, u1 := range users {
		for _, d1 := range devs {
			for _, u2 := range users {
				for _, d2 := range devs {
					if u1 == u2 && d1 == d2 {
						continue
					}
					if WeCall(u1, d1, u2, d2) == WeCall(u2, d2, u1, d1) {
						t.Errorf("%s/%s and %s/%s: both or neither call", u1, d1, u2, d2)
					}
				}
			}
		}
	}
}

// JavaScript compares UTF-16 code units: U+FFFF sorts after U+1F600 (a surrogate pair
// starting 0xD83D), the opposite of Go's byte order.
func TestCompareJSUsesUTF16(t *testing.T) {
	if c := compareJS("\uffff", "\U0001F600"); c != 1 {
		t.Errorf("compareJS(U+FFFF, U+1F600) = %d, want 1", c)
	}
	if "\uffff" > "\U0001F600" {
		t.Fatal("test premise: Go orders these the other way")
	}
	for _, tc := range []struct {
		a, b string
		want int
	}{{"a", "b", -1}, {"b", "a", 1}, {"a", "a", 0}, {"ab", "a", 1}, {"é", "é", 0}, {"", "a", -1}} {
		if got := compareJS(tc.a, tc.b); got != tc.want {
			t.Errorf("compareJS(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
