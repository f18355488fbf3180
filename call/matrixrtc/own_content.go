package matrixrtc

import (
	"bytes"
	"encoding/json"
	"time"

	"maunium.net/go/mautrix/id"
)

// The content builders of the bot's own membership, one per format it publishes.

// sessionContent is a session membership as current js-sdk writes it (MembershipManager
// makeMyMembership): the bot says it uses the call's first focus, like a multi_sfu member.
// created is when it first joined; a refresh says so in created_ts.
func sessionContent(self DeviceKey, foci []Transport, created, now time.Time, expiry time.Duration, refresh bool) map[string]any {
	if foci == nil {
		foci = []Transport{}
	}
	c := map[string]any{
		"application":    "m.call",
		"call_id":        "",
		"scope":          "m.room",
		"device_id":      self.Device,
		"membershipID":   SessionIdentity(self.User, self.Device),
		"expires":        (now.Sub(created) + expiry).Milliseconds(),
		"focus_active":   map[string]string{"type": "livekit", "focus_selection": SelectMultiSFU},
		"foci_preferred": foci,
	}
	if refresh {
		c["created_ts"] = created.UnixMilli()
	}
	return c
}

// msc3401Device is the bot's entry in an MSC3401 call.
type msc3401Device struct {
	SessionID string
	ExpiresAt time.Time
	Feeds     []string
}

// msc3401Content builds the bot's MSC3401 member event from its current content (which may
// hold other calls and other devices of the bot's account): every other call is kept,
// every other valid device of conf is kept, and device self is replaced by dev, or removed
// when dev is nil. It reports whether the result differs from what was there.
func msc3401Content(current json.RawMessage, conf string, self id.DeviceID, dev *msc3401Device, now time.Time) (map[string]any, bool) {
	var content map[string]json.RawMessage
	if len(bytes.TrimSpace(current)) > 0 {
		if err := json.Unmarshal(current, &content); err != nil {
			content = nil
		}
	}
	var calls []json.RawMessage
	if content != nil {
		_ = json.Unmarshal(content["m.calls"], &calls)
	}
	var out []any
	var thisCall map[string]json.RawMessage
	changed := false
	for _, rc := range calls {
		var c map[string]json.RawMessage
		if json.Unmarshal(rc, &c) != nil {
			changed = true
			continue
		}
		if id, _ := jsonString(c["m.call_id"]); id == conf && thisCall == nil {
			thisCall = c
			continue
		}
		out = append(out, rc)
	}
	var devices []any
	hadSelf := false
	if thisCall != nil {
		var devs []json.RawMessage
		_ = json.Unmarshal(thisCall["m.devices"], &devs)
		for _, rd := range devs {
			d, ok := parseDevice("@x:x", rd)
			if ok && d.DeviceID == self {
				hadSelf = true
				continue
			}
			if !ok || !d.ExpiresAt.After(now) {
				changed = true
				continue
			}
			devices = append(devices, rd)
		}
	}
	if dev != nil {
		feeds := make([]map[string]string, 0, len(dev.Feeds))
		for _, p := range dev.Feeds {
			feeds = append(feeds, map[string]string{"purpose": p})
		}
		devices = append(devices, map[string]any{
			"device_id":  self,
			"session_id": dev.SessionID,
			"expires_ts": dev.ExpiresAt.UnixMilli(),
			"feeds":      feeds,
		})
		changed = true
	} else if hadSelf {
		changed = true
	}
	if len(devices) > 0 {
		entry := map[string]any{}
		for k, v := range thisCall {
			entry[k] = v
		}
		entry["m.call_id"] = conf
		entry["m.devices"] = devices
		out = append(out, entry)
	}
	if out == nil {
		out = []any{}
	}
	return map[string]any{"m.calls": out}, changed
}

// msc3401Without removes device self from every call of an MSC3401 member event; changed
// is false when there was nothing to remove.
func msc3401Without(current json.RawMessage, self id.DeviceID, now time.Time) (json.RawMessage, bool) {
	var content map[string]json.RawMessage
	if json.Unmarshal(current, &content) != nil {
		return current, false
	}
	cur := current
	for _, c := range msc3401Calls(content["m.calls"]) {
		if next, changed := msc3401Content(cur, c.conf, self, nil, now); changed {
			if enc, err := json.Marshal(next); err == nil {
				cur = enc
			}
		}
	}
	return cur, !bytes.Equal(cur, current)
}
