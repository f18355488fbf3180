package recorder

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// maxNameComponent bounds one sanitized component of a file or folder name.
const maxNameComponent = 48

// Sanitize turns an identifier from the network (a user id, device id, call id, room id)
// into a safe file name component: only [A-Za-z0-9._-], no leading dot, at most
// maxNameComponent bytes, never empty, never "." or "..". When the identifier had to be
// changed, a short hash of the original is appended so that two different identifiers
// never sanitize to the same name.
func Sanitize(s string) string {
	var b strings.Builder
	changed := false
	lastUnderscore := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_'
		if c == '.' && b.Len() == 0 {
			ok = false
		}
		if !ok {
			changed = true
			if !lastUnderscore && b.Len() > 0 {
				b.WriteByte('_')
				lastUnderscore = true
			}
			continue
		}
		b.WriteByte(c)
		lastUnderscore = c == '_'
	}
	out := strings.TrimRight(b.String(), "_.")
	if len(out) != b.Len() {
		changed = true
	}
	if len(out) > maxNameComponent {
		out = strings.TrimRight(out[:maxNameComponent], "_.")
		changed = true
	}
	if out == "" {
		out = "x"
		changed = true
	}
	if changed {
		sum := sha256.Sum256([]byte(s))
		out += "-" + hex.EncodeToString(sum[:3])
	}
	return out
}

// UserName is how a Matrix user id appears in file names: "@alice:example.org" becomes
// "alice_example.org" (the sigil and colon are expected, so they do not count as changes).
func UserName(userID string) string {
	s := strings.TrimPrefix(userID, "@")
	if i := strings.IndexByte(s, ':'); i >= 0 {
		// A server name may carry a port: "@alice:example.org:8448".
		local, server := s[:i], strings.Replace(s[i+1:], ":", "_", 1)
		if local != "" && server != "" && Sanitize(local) == local && Sanitize(server) == server && len(local)+len(server) < maxNameComponent {
			return local + "_" + server
		}
	}
	return Sanitize(userID)
}

// RoomName is how a room id appears in folder names: "!abc:example.org" becomes "abc".
func RoomName(roomID string) string {
	s := strings.TrimPrefix(roomID, "!")
	if i := strings.IndexByte(s, ':'); i >= 0 {
		if local := s[:i]; local != "" && Sanitize(local) == local {
			return local
		}
	}
	return Sanitize(roomID)
}

// FolderName is the call folder: UTC start time, room and call id.
func FolderName(start time.Time, roomID, callID string) string {
	return start.UTC().Format("20060102T150405Z") + "_" + RoomName(roomID) + "_" + Sanitize(callID)
}
