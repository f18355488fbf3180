package matrixrtc

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"
)

// Identity is the LiveKit participant identity a device whose membership is in format f
// connects with (js-sdk CallMembership): the hashed identity for sticky memberships (which
// /get_token hands out), "@user:server:DEVICE" for state-event ones (which /sfu/get hands
// out). A client matches media keys to participants by it, so the bot's own connection
// must use the identity of the membership it published.
func Identity(f Format, user id.UserID, device id.DeviceID, memberID string) string {
	if f == FormatSticky {
		return HashedIdentity(string(user), string(device), memberID)
	}
	return SessionIdentity(user, device)
}

// SessionIdentity is "@user:server:DEVICE": the LiveKit identity of a state-event
// membership, and the default member id of a session membership.
func SessionIdentity(user id.UserID, device id.DeviceID) string {
	return string(user) + ":" + string(device)
}

// DeviceOfIdentity reads a LiveKit identity of the "@user:server:DEVICE" form (what
// lk-jwt-service issues unless it hashes identities).
func DeviceOfIdentity(identity string) (DeviceKey, bool) {
	if strings.HasPrefix(identity, "@") {
		if i := strings.LastIndexByte(identity, ':'); i > 0 && strings.IndexByte(identity[:i], ':') > 0 && i+1 < len(identity) {
			return DeviceKey{User: id.UserID(identity[:i]), Device: id.DeviceID(identity[i+1:])}, true
		}
	}
	return DeviceKey{}, false
}

// HashedIdentity is the LiveKit identity of a sticky (m.rtc.member) membership and of
// /get_token: unpadded base64 of SHA-256 of the JSON array [user, device, member id], as
// js-sdk's computeRtcIdentityRaw and lk-jwt-service compute it.
func HashedIdentity(user, device, memberID string) string {
	sum := sha256.Sum256(jsonStrings(user, device, memberID))
	return base64.RawStdEncoding.EncodeToString(sum[:])
}

// RoomAlias is the LiveKit room name lk-jwt-service ≥ 0.4 uses for a Matrix room and slot:
// unpadded base64 of SHA-256 of the JSON array [room id, slot id]. The recorder takes the
// room from the JWT; this is for checking a JWT service's answer and for the test
// harness's JWT service.
func RoomAlias(roomID, slotID string) string {
	sum := sha256.Sum256(jsonStrings(roomID, slotID))
	return base64.RawStdEncoding.EncodeToString(sum[:])
}

// SessionStateKey is the state key of a device's session membership:
// "_@user:server_DEVICE_m.call", without the leading underscore in room versions of
// MSC3757/MSC3779 (js-sdk MembershipManager.makeMembershipStateKey).
func SessionStateKey(user id.UserID, device id.DeviceID, roomVersion string) string {
	key := string(user) + "_" + string(device) + "_m.call"
	if strings.HasPrefix(roomVersion, "org.matrix.msc3757") || strings.HasPrefix(roomVersion, "org.matrix.msc3779") {
		return key
	}
	return "_" + key
}

// jsEscapes are the escapes JSON.stringify writes besides \u00XX.
var jsEscapes = map[rune]string{'"': `\"`, '\\': `\\`, '\b': `\b`, '\f': `\f`, '\n': `\n`, '\r': `\r`, '\t': `\t`}

// jsonStrings encodes strings as a JSON array the way JavaScript's JSON.stringify does
// (no HTML escaping, U+2028/U+2029 kept, only required escapes), so hashes agree with
// clients for every identifier.
func jsonStrings(ss ...string) []byte {
	b := []byte{'['}
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		for _, r := range s {
			if esc, ok := jsEscapes[r]; ok {
				b = append(b, esc...)
				continue
			}
			if r < 0x20 {
				b = append(b, `\u00`...)
				b = append(b, "0123456789abcdef"[r>>4], "0123456789abcdef"[r&0xf])
				continue
			}
			// U+FFFD (and an invalid byte, which Go reads as it) is written as it is,
			// as JavaScript writes U+FFFD.
			b = utf8.AppendRune(b, r)
		}
		b = append(b, '"')
	}
	return append(b, ']')
}
