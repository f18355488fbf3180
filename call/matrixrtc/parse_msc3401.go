package matrixrtc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Bounds of the MSC3401 format.
const (
	maxCallsPerEvent = 16
	maxFeeds         = 16
)

// parseMSC3401 reads the m.calls list of a member state event keyed by its sender
// (matrix-js-sdk GroupCall): one membership per device of each call. Entries that are not
// well-formed are skipped, as matrix-js-sdk skips them; at most maxPerEvent devices are
// taken over all the calls.
func parseMSC3401(evt *event.Event, list json.RawMessage, ts time.Time) ([]Member, error) {
	user := evt.Sender
	if *evt.StateKey != string(user) {
		return nil, fmt.Errorf("m.calls under state key %.60q, which is not its user id", *evt.StateKey)
	}
	if !validUserID(string(user)) {
		return nil, fmt.Errorf("m.calls of %.60q, not a user id full-mesh signalling can carry", user)
	}
	var out []Member
	for _, c := range msc3401Calls(list) {
		var foci []json.RawMessage
		sfu := json.Unmarshal(c.fields["m.foci"], &foci) == nil && len(foci) > 0
		var devs []json.RawMessage
		if json.Unmarshal(c.fields["m.devices"], &devs) != nil {
			devs = nil
		}
		for j, rd := range devs {
			if j >= maxPerEvent || len(out) >= maxPerEvent {
				break
			}
			m, ok := parseDevice(user, rd)
			if !ok {
				continue
			}
			m.SlotID, m.UsesSFU, m.CreatedTs, m.EventID = c.conf, sfu, ts.UnixMilli(), evt.ID
			out = append(out, m)
		}
	}
	return out, nil
}

// msc3401Call is one entry of an m.calls list.
type msc3401Call struct {
	conf   string // m.call_id
	fields map[string]json.RawMessage
}

// msc3401Calls returns the entries of an m.calls list that are objects with a valid
// m.call_id, among its first maxCallsPerEvent; no list (left, or another format): none.
func msc3401Calls(list json.RawMessage) []msc3401Call {
	var calls []json.RawMessage
	if json.Unmarshal(list, &calls) != nil {
		return nil
	}
	var out []msc3401Call
	for i, rc := range calls {
		if i >= maxCallsPerEvent {
			break
		}
		var c map[string]json.RawMessage
		if json.Unmarshal(rc, &c) != nil {
			continue
		}
		if conf, _ := jsonString(c["m.call_id"]); ValidASCIIID(conf) {
			out = append(out, msc3401Call{conf: conf, fields: c})
		}
	}
	return out
}

// parseDevice applies matrix-js-sdk's checks to one m.devices entry: device_id and
// session_id are strings, expires_ts a number, feeds an array; it adds bounds on every
// field.
func parseDevice(user id.UserID, raw json.RawMessage) (Member, bool) {
	var f map[string]json.RawMessage
	if json.Unmarshal(raw, &f) != nil {
		return Member{}, false
	}
	dev, ok1 := jsonString(f["device_id"])
	sess, ok2 := jsonString(f["session_id"])
	if !ok1 || !ok2 || !ValidASCIIID(dev) || !ValidASCIIID(sess) {
		return Member{}, false
	}
	var expires float64
	if b := bytes.TrimSpace(f["expires_ts"]); len(b) == 0 || json.Unmarshal(b, &expires) != nil || math.IsNaN(expires) || math.IsInf(expires, 0) {
		return Member{}, false
	}
	var feeds []json.RawMessage
	if b := bytes.TrimSpace(f["feeds"]); len(b) == 0 || b[0] != '[' || json.Unmarshal(b, &feeds) != nil {
		return Member{}, false
	}
	m := Member{Format: FormatMSC3401, UserID: user, DeviceID: id.DeviceID(dev), SessionID: sess}
	// Clamp to what time.UnixMilli represents without overflow.
	m.ExpiresAt = time.UnixMilli(int64(math.Max(math.Min(expires, 1<<53), -(1 << 53))))
	for i, rf := range feeds {
		if i >= maxFeeds {
			break
		}
		var feed struct {
			Purpose string `json:"purpose"`
		}
		if json.Unmarshal(rf, &feed) == nil && feed.Purpose != "" && len(feed.Purpose) <= 64 {
			m.Feeds = append(m.Feeds, feed.Purpose)
		}
	}
	return m, true
}

// jsonString decodes b only if it is a JSON string.
func jsonString(b json.RawMessage) (string, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(b, &s) != nil {
		return "", false
	}
	return s, true
}

// validUserID checks the shape of a Matrix user id that full-mesh signalling carries.
func validUserID(s string) bool {
	return len(s) >= 4 && s[0] == '@' && strings.IndexByte(s, ':') > 1 && ValidASCIIID(s)
}
