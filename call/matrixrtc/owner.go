package matrixrtc

import (
	"encoding/json"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/event"
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

// eventKey names where an event's memberships live: a state key, or a sender's sticky key.
// ok is false for events that carry no membership key; err is set (and ok false) when the
// key belongs to another user than the sender.
func eventKey(evt *event.Event, content json.RawMessage) (string, bool, error) {
	switch {
	case IsMemberState(evt.Type.Type):
		if evt.StateKey == nil {
			return "", false, nil
		}
		if !StateKeyOwnedBy(*evt.StateKey, evt.Sender) {
			return "", false, fmt.Errorf("%w: state key %.80q sent by %s", ErrNotOwner, *evt.StateKey, evt.Sender)
		}
		return "state\x00" + evt.Type.Type + "\x00" + *evt.StateKey, true, nil
	case evt.Type.Type == TypeRTCMember.Type || evt.Type.Type == TypeRTCMemberStable.Type:
		var k struct {
			Sticky    *string `json:"msc4354_sticky_key"`
			StickyKey *string `json:"sticky_key"`
		}
		_ = json.Unmarshal(content, &k)
		key := k.Sticky
		if key == nil {
			key = k.StickyKey
		}
		if key == nil {
			return "", false, nil
		}
		// Sticky keys are the sender's own already; a sticky key that names another user
		// is refused as a state key would be.
		if owner, names := StateKeyUser(*key); names && owner != evt.Sender {
			return "", false, fmt.Errorf("%w: sticky key %.80q sent by %s", ErrNotOwner, *key, evt.Sender)
		}
		return "sticky\x00" + string(evt.Sender) + "\x00" + *key, true, nil
	}
	return "", false, nil
}
