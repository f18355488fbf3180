package call

import (
	"strings"

	"maunium.net/go/mautrix/id"
)

// StateKeyUser returns the user a call membership's state key belongs to, following the
// MatrixRTC rule (MSC3757, MSC3779, and matrix-js-sdk's leading underscore for room
// versions without them): "@user:server", "@user:server_<anything>" and
// "_@user:server_<anything>" belong to @user:server and nobody else. A server name
// cannot contain "_", so the user ends at the first "_" after the ":". ok is false for a
// key that names no user; the membership then has no owner to check its sender against.
func StateKeyUser(stateKey string) (user id.UserID, ok bool) {
	k := strings.TrimPrefix(stateKey, "_")
	if !strings.HasPrefix(k, "@") {
		return "", false
	}
	colon := strings.IndexByte(k, ':')
	if colon < 2 {
		return "", false
	}
	end := len(k)
	if i := strings.IndexByte(k[colon:], '_'); i >= 0 {
		end = colon + i
	}
	u := id.UserID(k[:end])
	if _, server, err := u.ParseAndValidateRelaxed(); err != nil || server == "" {
		return "", false
	}
	return u, true
}

// StateKeyOwnedBy reports whether a membership keyed by stateKey may be set by sender: the
// key names sender (see StateKeyUser). A key that names nobody belongs to nobody, so it is
// refused too: MatrixRTC clients always key memberships by their user.
func StateKeyOwnedBy(stateKey string, sender id.UserID) bool {
	u, ok := StateKeyUser(stateKey)
	return ok && sender != "" && u == sender
}
