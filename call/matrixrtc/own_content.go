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
// created is when it joined, in created_ts from the first publish on (js-sdk writes it on
// refreshes only): a membership published again after a restart then differs from the one
// the last run left, so the homeserver does not take it for a repeat of that state event
// (Synapse and Dendrite return the existing event for identical content), and clients see
// a new membership and share their media keys with it again.
func sessionContent(self DeviceKey, foci []Transport, created, now time.Time, expiry time.Duration) map[string]any {
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
	c["created_ts"] = created.UnixMilli()
	return c
}

// stickyContent is a sticky (m.rtc.member) membership as js-sdk 43 writes it
// (StickyEventMembershipManager.makeMyMembership, checked by checkRtcMembershipData): the
// bot publishes on the call's first focus, without the legacy livekit_alias, and can
// subscribe over LiveKit. msc4354_sticky_key is the member id.
func stickyContent(self DeviceKey, memberID string, foci []Transport) map[string]any {
	published := []map[string]string{}
	if len(foci) > 0 && foci[0].Type != "" {
		t := map[string]string{"type": foci[0].Type}
		if foci[0].ServiceURL != "" {
			t["livekit_service_url"] = foci[0].ServiceURL
		}
		published = append(published, t)
	}
	return map[string]any{
		"slot_id":     MainSlot,
		"application": map[string]any{"type": "m.call"},
		"member":      map[string]string{"user_id": string(self.User), "device_id": string(self.Device), "id": memberID},
		"transports": map[string]any{
			"published":     published,
			"can_subscribe": []string{"livekit"},
		},
		"versions":           []string{},
		"msc4354_sticky_key": memberID,
	}
}

// stickyLeave ends a sticky membership: the slot and the sticky key only (js-sdk
// isLeftMembershipContent).
func stickyLeave(memberID string) map[string]any {
	return map[string]any{"slot_id": MainSlot, "msc4354_sticky_key": memberID}
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
