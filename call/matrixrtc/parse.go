package matrixrtc

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Bounds on remote input. Everything in a room's call state is written by its members, so
// every list and string is bounded before it is used.
const (
	maxContent    = 64 << 10
	maxIDLength   = 255
	maxURLLength  = 2048
	maxTransports = 8
	// maxPerEvent bounds the memberships one event yields in each format; the table also
	// caps a sender's.
	maxPerEvent = MaxDevicesPerUser
)

// Update is what one event says about memberships: the memberships now under Key. No
// memberships means the device (or user) left; a later event with the same Key replaces
// them.
type Update struct {
	// Key names where the memberships live: a state event's type and key, or a sender's
	// sticky key. Empty when the event fills no key (Table.Apply then does nothing).
	Key string
	// Owner is the sender: a key that names a user is that user's only.
	Owner id.UserID
	// Timestamp is the event's origin_server_ts (ms); an older event does not replace a
	// newer one.
	Timestamp int64
	// Members are the valid, unexpired memberships.
	Members []Member
}

// Only keeps the memberships of the given formats (a backend records some formats only;
// the others under the same key count as none).
func (u Update) Only(formats ...Format) Update {
	kept := make([]Member, 0, len(u.Members))
	for _, m := range u.Members {
		if slices.Contains(formats, m.Format) {
			kept = append(kept, m)
		}
	}
	u.Members = kept
	return u
}

// Parse reads the memberships one event carries, in every format. The error describes
// content that is not (wholly) a membership: the Update then holds what was valid, and
// still replaces its key's memberships. An event whose key belongs to another user than its
// sender fills no key (the error wraps ErrNotOwner); a membership of another call wraps
// ErrOtherCall. now decides expiry.
func Parse(evt *event.Event, content json.RawMessage, now time.Time) (Update, error) {
	key, ok, err := eventKey(evt, content)
	if err != nil {
		return Update{}, err
	}
	if !ok {
		return Update{}, fmt.Errorf("%s event without a state or sticky key", evt.Type.Type)
	}
	u := Update{Key: key, Owner: evt.Sender, Timestamp: evt.Timestamp}
	if len(content) > maxContent {
		return u, fmt.Errorf("%s content of %d bytes", evt.Type.Type, len(content))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(content, &raw); err != nil || raw == nil {
		return u, fmt.Errorf("%s content is not an object", evt.Type.Type)
	}
	ts := time.UnixMilli(evt.Timestamp)
	var ms []Member
	if !IsMemberState(evt.Type.Type) {
		if _, has := raw["member"]; !has {
			return u, nil // a leave: only the sticky key
		}
		var m Member
		if m, err = parseSticky(evt, content, ts); err == nil {
			ms = append(ms, m)
		}
	} else {
		list, legacy := raw["memberships"]
		calls, mesh := raw["m.calls"]
		switch {
		case legacy || mesh:
			// One user-keyed event can hold both eras' entries (GroupCall and
			// MatrixRTCSession shared it); each is read.
			if legacy {
				ms, err = parseLegacy(evt, list, ts)
			}
			if mesh {
				mm, merr := parseMSC3401(evt, calls, ts)
				ms, err = append(ms, mm...), firstErr(err, merr)
			}
		case len(raw) == 0:
			return u, nil // a leave
		default:
			var m Member
			if m, err = parseSession(evt, content, ts); err == nil {
				ms = append(ms, m)
			}
		}
	}
	for _, m := range ms {
		if m.ExpiresAt.After(now) {
			u.Members = append(u.Members, m)
		}
	}
	return u, err
}

func firstErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// ValidID accepts identifiers that are safe to carry around: non-empty, bounded, valid
// UTF-8 without control characters. (File names sanitize them again.)
func ValidID(s string) bool {
	if s == "" || len(s) > maxIDLength || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// ValidASCIIID accepts the ids full-mesh signalling carries and file names show: 1-255
// printable ASCII characters without spaces (device, session and call ids are usually
// [A-Za-z0-9], but the protocol does not promise it; file names sanitize further).
func ValidASCIIID(s string) bool {
	if len(s) == 0 || len(s) > maxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
