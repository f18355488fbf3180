package mesh

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
)

// Call state event types of MSC3401 group calls: the unstable name matrix-js-sdk sends,
// and the stable one of the MSC. (Their member events are package matrixrtc's.)
const (
	TypeCall             = "org.matrix.msc3401.call"
	TypeCallStable       = "m.call"
	keyLiveKitServiceURL = "io.element.livekit_service_url"
)

// Bounds on remote state content. Everything in a room's state is written by its members,
// so every list and string is bounded before it is used.
const (
	maxStateContent = 64 << 10
	maxDisplayName  = 64
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

// ParseCall reads a call state event. Redacted or empty content is a terminated call.
func ParseCall(evtType, stateKey string, raw json.RawMessage, ts int64) (Call, error) {
	c := Call{ConfID: stateKey, EventType: evtType, Timestamp: ts}
	if !matrixrtc.ValidASCIIID(stateKey) {
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
	str := func(key string) string {
		var v string
		_ = json.Unmarshal(fields[key], &v) // not a string: none
		return v
	}
	c.Intent = str("m.intent")
	c.Kind = str("m.type")
	c.Name = bound(str("m.name"), maxDisplayName)
	if t, ok := fields["m.terminated"]; ok && !isNull(t) {
		c.Terminated = true
	}
	if u, ok := fields[keyLiveKitServiceURL]; ok && !isNull(u) {
		c.LiveKit = true
	}
	return c, nil
}

// ErrNoCall means the room has no call the mesh backend can record.
var ErrNoCall = errors.New("no full-mesh group call")

// roomState is what the backend knows of a room's call state: call events, the MSC3401
// memberships, the joined members with their display names, and the bot's own member
// events (which it rewrites).
type roomState struct {
	calls   map[string]Call      // conf id -> newest call event (either type)
	members *matrixrtc.Table     // MSC3401 entries
	joined  map[id.UserID]string // joined users -> display name
	left    map[id.UserID]bool   // users seen leaving
	// own holds the content of the bot's member events, by type.
	own  map[string]json.RawMessage
	self id.UserID
	// foreign counts member events whose state key names another user than the sender;
	// capped, those that hit the table's caps. The recording logs each once.
	foreign, capped int
}

func newRoomState(self id.UserID) *roomState {
	return &roomState{
		calls: map[string]Call{}, members: matrixrtc.NewTable(), joined: map[id.UserID]string{},
		left: map[id.UserID]bool{}, own: map[string]json.RawMessage{}, self: self,
	}
}

// apply folds one state event from sender into the room state. It returns false for events
// it ignores. A member event counts only when its state key names its sender (MatrixRTC
// gives a key that names a user to that user only), and only its MSC3401 entries count.
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
	case matrixrtc.IsMemberState(evtType):
		if sender == s.self && stateKey == string(s.self) {
			s.own[evtType] = raw
		}
		evt := &event.Event{Type: event.Type{Type: evtType, Class: event.StateEventType}, StateKey: &stateKey, Sender: sender, Timestamp: ts}
		u, err := matrixrtc.Parse(evt, raw, time.Now())
		if errors.Is(err, matrixrtc.ErrNotOwner) {
			if _, names := matrixrtc.StateKeyUser(stateKey); names {
				s.foreign++ // keys that name no user are other formats, not forgeries
			}
			return false
		}
		switch res := s.members.Apply(u.Only(matrixrtc.FormatMSC3401)); res {
		case matrixrtc.ResultUserCap, matrixrtc.ResultRoomCap:
			s.capped++
			return true
		default:
			return res == matrixrtc.ResultChanged
		}
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

// maxCallEvents bounds how many call state events of one room are tracked.
const maxCallEvents = 256

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

// devices returns the devices in conf at now, sorted, except those of the account user
// exclude (the bot), of users who are not joined, and of devices that use an SFU (counted).
func (s *roomState) devices(conf string, now time.Time, exclude id.UserID) (valid []matrixrtc.Member, sfu int) {
	for _, m := range s.members.Members(now, matrixrtc.DeviceKey{}) {
		if m.SlotID != conf || m.UserID == exclude {
			continue
		}
		if _, ok := s.joined[m.UserID]; !ok {
			continue
		}
		if m.UsesSFU {
			sfu++
			continue
		}
		valid = append(valid, m)
	}
	return valid, sfu
}

func isNull(b json.RawMessage) bool {
	b = bytes.TrimSpace(b)
	return len(b) == 0 || bytes.Equal(b, []byte("null"))
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
