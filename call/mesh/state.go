package mesh

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
)

// State event types of MSC3401 group calls: the unstable names matrix-js-sdk sends, and the
// stable ones of the MSC.
const (
	TypeCall             = "org.matrix.msc3401.call"
	TypeCallStable       = "m.call"
	TypeMember           = "org.matrix.msc3401.call.member"
	TypeMemberStable     = "m.call.member"
	keyLiveKitServiceURL = "io.element.livekit_service_url"
)

// Bounds on remote state content. Everything in a room's state is written by its members,
// so every list and string is bounded before it is used.
const (
	maxStateContent   = 64 << 10
	maxCallsPerMember = 16
	// maxDevicesPerUser bounds the devices taken from one member event (one user), over
	// all its calls.
	maxDevicesPerUser = 16
	maxFeeds          = 16
	maxIDLen          = 255
	maxDisplayName    = 64
)

// Call is an MSC3401 call state event.
type Call struct {
	// ConfID is the state key: the group call id every signalling message carries.
	ConfID string
	// EventType is the type it was sent with (unstable or stable).
	EventType string
	Intent    string
	Kind      string // m.video or m.voice
	Name      string
	// Terminated is true when m.terminated is set or the content was redacted.
	Terminated bool
	// LiveKit is true for Element Call 0.4's "signalling only" mode: media goes through a
	// LiveKit SFU, not peer to peer.
	LiveKit bool
	// Timestamp is origin_server_ts (ms).
	Timestamp int64
}

// Active reports whether peers may still be in this call.
func (c Call) Active() bool { return !c.Terminated }

// IsCallType reports whether t is a call state event type.
func IsCallType(t string) bool { return t == TypeCall || t == TypeCallStable }

// IsMemberType reports whether t is a call member state event type.
func IsMemberType(t string) bool { return t == TypeMember || t == TypeMemberStable }

// ParseCall reads a call state event. Redacted or empty content is a terminated call.
func ParseCall(evtType, stateKey string, raw json.RawMessage, ts int64) (Call, error) {
	c := Call{ConfID: stateKey, EventType: evtType, Timestamp: ts}
	if !validID(stateKey) {
		return c, fmt.Errorf("call id %.40q is not a valid id", stateKey)
	}
	if len(raw) > maxStateContent {
		return c, fmt.Errorf("call state of %d bytes is too large", len(raw))
	}
	var fields map[string]json.RawMessage
	if len(bytes.TrimSpace(raw)) == 0 {
		c.Terminated = true
		return c, nil
	}
	if err := json.Unmarshal(raw, &fields); err != nil {
		return c, fmt.Errorf("call state is not an object: %w", err)
	}
	if len(fields) == 0 {
		c.Terminated = true // redacted or cleared
		return c, nil
	}
	c.Intent = jsonString(fields["m.intent"])
	c.Kind = jsonString(fields["m.type"])
	c.Name = bound(jsonString(fields["m.name"]), maxDisplayName)
	if t, ok := fields["m.terminated"]; ok && !isNull(t) {
		c.Terminated = true
	}
	if u, ok := fields[keyLiveKitServiceURL]; ok && !isNull(u) {
		c.LiveKit = true
	}
	return c, nil
}

// Device is one participant device from a member state event.
type Device struct {
	UserID    id.UserID
	DeviceID  id.DeviceID
	SessionID string
	ExpiresAt time.Time
	// Purposes are the feeds it publishes (m.usermedia, m.screenshare).
	Purposes []string
	// Foci are the SFUs the device uses (LiveKit mode); empty in full mesh.
	Foci int
}

// Screensharing reports whether the device says it shares its screen.
func (d Device) Screensharing() bool {
	for _, p := range d.Purposes {
		if p == "m.screenshare" {
			return true
		}
	}
	return false
}

// Key identifies a device of a user.
func (d Device) Key() DeviceKey { return DeviceKey{d.UserID, d.DeviceID} }

// DeviceKey identifies a device of a user.
type DeviceKey struct {
	User   id.UserID
	Device id.DeviceID
}

func (k DeviceKey) String() string { return string(k.User) + "/" + string(k.Device) }

// MemberCall is one entry of a member event's m.calls list.
type MemberCall struct {
	ConfID  string
	Foci    int
	Devices []Device
}

// ParseMember reads a member state event of user (its state key). Entries that are not
// well-formed are skipped, as matrix-js-sdk skips them; an error means the whole content is
// unusable. Newer MatrixRTC memberships (a "memberships" list) are not full-mesh calls and
// yield nothing.
func ParseMember(user id.UserID, raw json.RawMessage) ([]MemberCall, error) {
	if !validUserID(string(user)) {
		return nil, fmt.Errorf("state key %.60q is not a user id", user)
	}
	if len(raw) > maxStateContent {
		return nil, fmt.Errorf("member state of %d bytes is too large", len(raw))
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	var content map[string]json.RawMessage
	if err := json.Unmarshal(raw, &content); err != nil {
		return nil, fmt.Errorf("member state is not an object: %w", err)
	}
	var calls []json.RawMessage
	if err := json.Unmarshal(content["m.calls"], &calls); err != nil || calls == nil {
		return nil, nil // no m.calls array: left, or another format
	}
	var out []MemberCall
	devices := 0
	for i, rc := range calls {
		if i >= maxCallsPerMember {
			break
		}
		var c map[string]json.RawMessage
		if json.Unmarshal(rc, &c) != nil {
			continue
		}
		conf := jsonString(c["m.call_id"])
		if !validID(conf) {
			continue
		}
		mc := MemberCall{ConfID: conf}
		var foci []json.RawMessage
		if json.Unmarshal(c["m.foci"], &foci) == nil {
			mc.Foci = len(foci)
		}
		var devs []json.RawMessage
		if json.Unmarshal(c["m.devices"], &devs) != nil {
			devs = nil
		}
		for j, rd := range devs {
			if j >= maxDevicesPerUser || devices >= maxDevicesPerUser {
				break
			}
			d, ok := parseDevice(user, rd)
			if !ok {
				continue
			}
			d.Foci = mc.Foci
			mc.Devices = append(mc.Devices, d)
			devices++
		}
		out = append(out, mc)
	}
	return out, nil
}

// parseDevice applies matrix-js-sdk's checks: device_id and session_id are strings,
// expires_ts a number, feeds an array; it adds bounds on every field.
func parseDevice(user id.UserID, raw json.RawMessage) (Device, bool) {
	var f map[string]json.RawMessage
	if json.Unmarshal(raw, &f) != nil {
		return Device{}, false
	}
	dev, ok1 := strictString(f["device_id"])
	sess, ok2 := strictString(f["session_id"])
	if !ok1 || !ok2 || !validID(dev) || !validID(sess) {
		return Device{}, false
	}
	var expires float64
	if b := bytes.TrimSpace(f["expires_ts"]); len(b) == 0 || json.Unmarshal(b, &expires) != nil || math.IsNaN(expires) || math.IsInf(expires, 0) {
		return Device{}, false
	}
	var feeds []json.RawMessage
	if b := bytes.TrimSpace(f["feeds"]); len(b) == 0 || b[0] != '[' || json.Unmarshal(b, &feeds) != nil {
		return Device{}, false
	}
	d := Device{UserID: user, DeviceID: id.DeviceID(dev), SessionID: sess}
	// Clamp to what time.UnixMilli represents without overflow.
	d.ExpiresAt = time.UnixMilli(int64(math.Max(math.Min(expires, 1<<53), -(1 << 53))))
	for i, rf := range feeds {
		if i >= maxFeeds {
			break
		}
		var feed struct {
			Purpose string `json:"purpose"`
		}
		if json.Unmarshal(rf, &feed) == nil && feed.Purpose != "" && len(feed.Purpose) <= 64 {
			d.Purposes = append(d.Purposes, feed.Purpose)
		}
	}
	return d, true
}

// ValidDevices returns the devices of conf that count at now: not expired and not using an
// SFU. The caller also checks that the user is joined.
func ValidDevices(calls []MemberCall, conf string, now time.Time) []Device {
	var out []Device
	seen := map[id.DeviceID]bool{}
	for _, c := range calls {
		if c.ConfID != conf {
			continue
		}
		for _, d := range c.Devices {
			if !d.ExpiresAt.After(now) || seen[d.DeviceID] {
				continue
			}
			seen[d.DeviceID] = true
			out = append(out, d)
		}
	}
	return out
}

// OwnMemberContent builds the content of the bot's member event from its current content
// (which may hold other calls and other devices of the bot's account): every other call is
// kept, every other valid device of this call is kept, and this device is replaced by dev, or
// removed when dev is nil. It reports whether the result differs from what was there.
func OwnMemberContent(current json.RawMessage, conf string, self id.DeviceID, dev *Device, now time.Time) (map[string]any, bool, error) {
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
		if jsonString(c["m.call_id"]) == conf && thisCall == nil {
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
		feeds := make([]map[string]string, 0, len(dev.Purposes))
		for _, p := range dev.Purposes {
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
	return map[string]any{"m.calls": out}, changed, nil
}

// HasDevice reports whether a member event's content lists device in conf (or in any call,
// when conf is empty), whatever its expiry.
func HasDevice(raw json.RawMessage, user id.UserID, conf string, device id.DeviceID) bool {
	calls, err := ParseMember(user, raw)
	if err != nil {
		return false
	}
	for _, c := range calls {
		if conf != "" && c.ConfID != conf {
			continue
		}
		for _, d := range c.Devices {
			if d.DeviceID == device {
				return true
			}
		}
	}
	return false
}

// ErrNoCall means the room has no call the mesh backend can record.
var ErrNoCall = errors.New("no full-mesh group call")

// roomState is what the backend knows of a room's call state: call events, member events,
// and memberships with display names.
type roomState struct {
	calls   map[string]Call            // conf id -> newest call event (either type)
	members map[string][]MemberCall    // type + "|" + user -> parsed m.calls
	joined  map[id.UserID]string       // joined users -> display name
	raw     map[string]json.RawMessage // type + "|" + user -> raw content (own entry)
	times   map[string]int64           // type + "|" + user -> origin_server_ts
	left    map[id.UserID]bool         // users seen leaving
	// self is the bot: its member event is kept even without calls (it is rewritten).
	self id.UserID
	// foreign counts member events whose state key names another user than the sender;
	// capped, those beyond maxMemberEvents. The recording logs each once.
	foreign, capped int
}

func newRoomState(self id.UserID) *roomState {
	return &roomState{
		calls: map[string]Call{}, members: map[string][]MemberCall{}, joined: map[id.UserID]string{},
		raw: map[string]json.RawMessage{}, times: map[string]int64{}, left: map[id.UserID]bool{}, self: self,
	}
}

// apply folds one state event from sender into the room state. It returns false for events
// it ignores. A member event counts only when its state key is its sender (MSC3401 keys
// member events by user; MatrixRTC gives a key that names a user to that user only).
func (s *roomState) apply(evtType, stateKey string, sender id.UserID, raw json.RawMessage, ts int64, membership event.Membership, displayName string) bool {
	switch {
	case IsCallType(evtType):
		c, err := ParseCall(evtType, stateKey, raw, ts)
		if err != nil {
			return false
		}
		if len(s.calls) >= maxCallEvents && s.calls[c.ConfID].ConfID == "" {
			return false
		}
		s.calls[c.ConfID] = c
		return true
	case IsMemberType(evtType):
		if !call.StateKeyOwnedBy(stateKey, sender) {
			if _, names := call.StateKeyUser(stateKey); names {
				s.foreign++ // keys that name no user are other formats, not forgeries
			}
			return false
		}
		if stateKey != string(sender) {
			return false // the sender's MatrixRTC session membership ("_@user_DEVICE…"), not MSC3401
		}
		user := sender
		calls, err := ParseMember(user, raw)
		if err != nil {
			return false
		}
		key := evtType + "|" + stateKey
		if len(calls) == 0 && user != s.self {
			// Left (or another format): nothing to remember.
			_, had := s.members[key]
			delete(s.members, key)
			delete(s.raw, key)
			delete(s.times, key)
			return had
		}
		if len(s.members) >= maxMemberEvents && s.members[key] == nil {
			s.capped++
			return false
		}
		s.members[key] = calls
		s.raw[key] = raw
		s.times[key] = ts
		return true
	case evtType == event.StateMember.Type:
		user := id.UserID(stateKey)
		if membership == event.MembershipJoin {
			s.joined[user] = bound(displayName, maxDisplayName)
			delete(s.left, user)
		} else {
			delete(s.joined, user)
			s.left[user] = true
		}
		return true
	}
	return false
}

// maxMemberEvents and maxCallEvents bound how many state events of one room are tracked
// (member events: one per user with devices in a call).
const (
	maxMemberEvents = 256
	maxCallEvents   = 256
)

// activeCall returns the newest active full-mesh call, if any, and why there is none.
func (s *roomState) activeCall() (Call, string) {
	var best *Call
	livekit := false
	for _, c := range s.calls {
		if !c.Active() {
			continue
		}
		if c.LiveKit {
			livekit = true
			continue
		}
		if best == nil || c.Timestamp > best.Timestamp || (c.Timestamp == best.Timestamp && c.ConfID > best.ConfID) {
			c := c
			best = &c
		}
	}
	if best != nil {
		return *best, ""
	}
	if livekit {
		return Call{}, "The group call in this room uses a LiveKit server (Element Call 0.4 or later), not peer-to-peer."
	}
	return Call{}, "There is no active Element Call (full mesh) call in this room."
}

// devices returns the valid devices of conf at now, sorted, excluding self's account user
// and devices that use an SFU.
func (s *roomState) devices(conf string, now time.Time, exclude id.UserID) (valid []Device, sfu int) {
	keys := make([]string, 0, len(s.members))
	for k := range s.members {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	seen := map[DeviceKey]bool{}
	for _, k := range keys {
		user := id.UserID(k[strings.IndexByte(k, '|')+1:])
		if user == exclude {
			continue
		}
		if _, ok := s.joined[user]; !ok {
			continue
		}
		for _, d := range ValidDevices(s.members[k], conf, now) {
			if d.Foci > 0 {
				sfu++
				continue
			}
			if seen[d.Key()] {
				continue
			}
			seen[d.Key()] = true
			valid = append(valid, d)
		}
	}
	return valid, sfu
}

// nextExpiry is the earliest expiry after now among conf's devices (zero if none).
func (s *roomState) nextExpiry(conf string, now time.Time) time.Time {
	var next time.Time
	for _, calls := range s.members {
		for _, d := range ValidDevices(calls, conf, now) {
			if next.IsZero() || d.ExpiresAt.Before(next) {
				next = d.ExpiresAt
			}
		}
	}
	return next
}

func jsonString(b json.RawMessage) string {
	s, _ := strictString(b)
	return s
}

// strictString decodes b only if it is a JSON string.
func strictString(b json.RawMessage) (string, bool) {
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

func isNull(b json.RawMessage) bool {
	b = bytes.TrimSpace(b)
	return len(b) == 0 || bytes.Equal(b, []byte("null"))
}

// validID accepts the ids that end up in signalling and file names: 1-255 printable ASCII
// characters without spaces (device ids, session ids and call ids are usually
// [A-Za-z0-9], but the protocol does not promise it; file names sanitize further).
func validID(s string) bool {
	if len(s) == 0 || len(s) > maxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// validUserID checks the shape of a Matrix user id.
func validUserID(s string) bool {
	return len(s) >= 4 && len(s) <= maxIDLen && s[0] == '@' && strings.IndexByte(s, ':') > 1 && validID(s)
}

// bound cuts s to at most n bytes on a rune boundary and drops control characters.
func bound(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			continue
		}
		if b.Len()+len(string(r)) > n {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
