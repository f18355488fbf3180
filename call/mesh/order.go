package mesh

import (
	"unicode/utf16"

	"maunium.net/go/mautrix/id"
)

// WeCall reports whether the local device places the call to (user, device), by
// matrix-js-sdk's rule (GroupCall.wantsOutgoingCall): the lower user id calls, and between
// two devices of one user the lower device id calls. Ids are compared as JavaScript
// compares strings, by UTF-16 code units, so both sides agree even on ids outside ASCII.
func WeCall(localUser id.UserID, localDevice id.DeviceID, user id.UserID, device id.DeviceID) bool {
	c := compareJS(string(user), string(localUser))
	return c > 0 || (c == 0 && compareJS(string(device), string(localDevice)) > 0)
}

// compareJS compares two strings the way JavaScript's < and > do: by UTF-16 code units.
func compareJS(a, b string) int {
	ascii := true
	for i := 0; i < len(a) && ascii; i++ {
		ascii = a[i] < 0x80
	}
	for i := 0; i < len(b) && ascii; i++ {
		ascii = b[i] < 0x80
	}
	if ascii {
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
		return 0
	}
	ua, ub := utf16.Encode([]rune(a)), utf16.Encode([]rune(b))
	for i := 0; i < len(ua) && i < len(ub); i++ {
		if ua[i] != ub[i] {
			if ua[i] < ub[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(ua) < len(ub):
		return -1
	case len(ua) > len(ub):
		return 1
	}
	return 0
}
