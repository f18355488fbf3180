package livekit

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
)

// MatrixRTC event types (protocols.md §3.1). The stable names are accepted too, for when
// clients switch.
var (
	TypeCallMember       = event.Type{Type: "org.matrix.msc3401.call.member", Class: event.StateEventType}
	TypeCallMemberStable = event.Type{Type: "m.call.member", Class: event.StateEventType}
	TypeRTCMember        = event.Type{Type: "org.matrix.msc4143.rtc.member", Class: event.MessageEventType}
	TypeRTCMemberStable  = event.Type{Type: "m.rtc.member", Class: event.MessageEventType}
	TypeEncryptionKeys   = event.Type{Type: "io.element.call.encryption_keys", Class: event.MessageEventType}
)

// Membership kinds: the three formats clients send.
const (
	// KindSession is one membership per device in a state event keyed by device
	// (js-sdk ≥ 34, Element Call's "compatibility" mode, the default today).
	KindSession = "session"
	// KindLegacy is a list of memberships in a state event keyed by user id (js-sdk 28-35).
	KindLegacy = "legacy"
	// KindRTC is a sticky m.rtc.member event (js-sdk ≥ 39, Element Call's "matrix_2_0" mode).
	KindRTC = "rtc"
)

// Focus selection modes.
const (
	SelectMultiSFU = "multi_sfu"
	SelectOldest   = "oldest_membership"
)

// Defaults of the formats.
const (
	// sessionExpiry applies when a session membership has no "expires" (js-sdk: 4 h).
	sessionExpiry = 4 * time.Hour
	// stickyDuration applies when a sticky event's duration is unknown (MSC4354 caps it at 1 h).
	stickyDuration = time.Hour
	// callSlot is the room's main call: application m.call, call id "" (on the wire) or "ROOM".
	callSlot = "m.call#ROOM"
)

// Bounds on remote input.
const (
	// maxMembershipsPerEvent bounds a legacy list; the table also caps a user's devices.
	maxMembershipsPerEvent = maxDevicesPerUser
	maxTransports          = 8
	maxIDLength            = 255
	maxURLLength           = 2048
)

// Transport is a LiveKit focus: the JWT service that hands out tokens for its SFU.
type Transport struct {
	Type       string `json:"type"`
	ServiceURL string `json:"livekit_service_url,omitempty"`
	// Alias is the legacy livekit_alias (the Matrix room id); not sent to the service.
	Alias string `json:"livekit_alias,omitempty"`
	// owner is the member whose membership names this focus (its homeserver may vouch
	// for it); set by selectTransports.
	owner id.UserID
}

// isLiveKit reports whether the transport is a usable LiveKit focus.
func (t Transport) isLiveKit() bool { return t.Type == "livekit" && t.ServiceURL != "" }

// Member is one device's membership in the room's call, whatever format it came in.
type Member struct {
	Kind     string
	UserID   id.UserID
	DeviceID id.DeviceID
	// MemberID is the MatrixRTC member id (keys name it).
	MemberID string
	// Identity is the LiveKit participant identity the device connects with.
	Identity string
	// Transports are the device's foci in preference order.
	Transports     []Transport
	FocusSelection string
	// CreatedTs orders memberships (oldest_membership), in ms since the epoch.
	CreatedTs int64
	// ExpiresAt is when the membership stops counting.
	ExpiresAt time.Time
	// EventID of the event that carries it.
	EventID id.EventID
	// slot identifies the event that carries it, so a later event replaces it.
	slot string
}

// Key names the device.
func (m Member) Key() DeviceKey { return DeviceKey{User: m.UserID, Device: m.DeviceID} }

// DeviceKey names one device of one user.
type DeviceKey struct {
	User   id.UserID
	Device id.DeviceID
}

func (k DeviceKey) String() string { return string(k.User) + ":" + string(k.Device) }

// IsMemberEvent reports whether evt is a MatrixRTC membership event of any format.
func IsMemberEvent(t event.Type) bool {
	switch t.Type {
	case TypeCallMember.Type, TypeCallMemberStable.Type, TypeRTCMember.Type, TypeRTCMemberStable.Type:
		return true
	}
	return false
}

// ErrNotOwner marks a membership whose state key (or sticky key) names another user than
// its sender: MatrixRTC gives a key that names a user to that user only, so nobody can
// blank or overwrite someone else's membership.
var ErrNotOwner = errors.New("call membership keyed by another user")

// slotFor names where an event's memberships live: a state key, or a sender's sticky key.
// ok is false for events that carry no membership slot; err is set (and ok false) when the
// key belongs to another user than the sender.
func slotFor(evt *event.Event, content json.RawMessage) (string, bool, error) {
	switch evt.Type.Type {
	case TypeCallMember.Type, TypeCallMemberStable.Type:
		if evt.StateKey == nil {
			return "", false, nil
		}
		if !call.StateKeyOwnedBy(*evt.StateKey, evt.Sender) {
			return "", false, fmt.Errorf("%w: state key %.80q sent by %s", ErrNotOwner, *evt.StateKey, evt.Sender)
		}
		return "state\x00" + evt.Type.Type + "\x00" + *evt.StateKey, true, nil
	case TypeRTCMember.Type, TypeRTCMemberStable.Type:
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
		// Sticky slots are the sender's own already; a sticky key that names another user
		// is refused as a state key would be.
		if owner, names := call.StateKeyUser(*key); names && owner != evt.Sender {
			return "", false, fmt.Errorf("%w: sticky key %.80q sent by %s", ErrNotOwner, *key, evt.Sender)
		}
		return "sticky\x00" + string(evt.Sender) + "\x00" + *key, true, nil
	}
	return "", false, nil
}

// ParseMembers reads the memberships of the room's main call from one event. It returns
// the slot the event fills (a later event for the same slot replaces these memberships; an
// empty list means the device left) and the valid memberships, or an error describing
// content that is not a membership. An event whose key belongs to another user than its
// sender fills no slot (the error wraps ErrNotOwner). now decides expiry.
func ParseMembers(evt *event.Event, content json.RawMessage, now time.Time) (slot string, members []Member, err error) {
	slot, ok, err := slotFor(evt, content)
	if err != nil {
		return "", nil, err
	}
	if !ok {
		return "", nil, fmt.Errorf("%s event without a state or sticky key", evt.Type.Type)
	}
	if len(content) > 64<<10 {
		return slot, nil, fmt.Errorf("%s content of %d bytes", evt.Type.Type, len(content))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(content, &raw); err != nil || raw == nil {
		return slot, nil, fmt.Errorf("%s content is not an object", evt.Type.Type)
	}
	ts := time.UnixMilli(evt.Timestamp)
	var m Member
	switch evt.Type.Type {
	case TypeRTCMember.Type, TypeRTCMemberStable.Type:
		if _, has := raw["member"]; !has {
			return slot, nil, nil // a leave: only the sticky key
		}
		m, err = parseRTC(evt, content, ts)
	default:
		if list, has := raw["memberships"]; has {
			ms, lerr := parseLegacy(evt, list, ts, now)
			for i := range ms {
				ms[i].slot = slot
			}
			return slot, ms, lerr
		}
		if len(raw) == 0 {
			return slot, nil, nil // a leave
		}
		m, err = parseSession(evt, content, ts)
	}
	if err != nil {
		return slot, nil, err
	}
	m.slot = slot
	if m.ExpiresAt.After(now) {
		members = append(members, m)
	}
	return slot, members, nil
}

type focusActive struct {
	Type           string `json:"type"`
	FocusSelection string `json:"focus_selection"`
}

// sessionData is a session membership (js-sdk membershipData/session.ts).
type sessionData struct {
	Application   *string         `json:"application"`
	CallID        *string         `json:"call_id"`
	Scope         string          `json:"scope"`
	DeviceID      *string         `json:"device_id"`
	MembershipID  *string         `json:"membershipID"`
	CreatedTs     *json.Number    `json:"created_ts"`
	Expires       *json.Number    `json:"expires"`
	ExpiresTs     *json.Number    `json:"expires_ts"`
	FocusActive   *focusActive    `json:"focus_active"`
	FociPreferred json.RawMessage `json:"foci_preferred"`
	FociActive    json.RawMessage `json:"foci_active"`
}

func parseSession(evt *event.Event, content json.RawMessage, ts time.Time) (Member, error) {
	var d sessionData
	if err := json.Unmarshal(content, &d); err != nil {
		return Member{}, fmt.Errorf("session membership: %w", err)
	}
	if d.FocusActive == nil || d.FocusActive.Type == "" {
		return Member{}, fmt.Errorf("session membership without focus_active.type")
	}
	m, err := commonSession(evt, d, ts)
	if err != nil {
		return Member{}, err
	}
	m.Kind = KindSession
	m.FocusSelection = d.FocusActive.FocusSelection
	if m.Transports, err = parseTransports(d.FociPreferred); err != nil {
		return Member{}, fmt.Errorf("session membership foci_preferred: %w", err)
	}
	exp := int64(sessionExpiry / time.Millisecond)
	if d.Expires != nil {
		if exp, err = d.Expires.Int64(); err != nil || exp <= 0 {
			return Member{}, fmt.Errorf("session membership expires %q", d.Expires.String())
		}
	}
	m.ExpiresAt = time.UnixMilli(m.CreatedTs).Add(time.Duration(min(exp, int64(30*24*time.Hour/time.Millisecond))) * time.Millisecond)
	return m, nil
}

// commonSession checks the fields session and legacy memberships share.
func commonSession(evt *event.Event, d sessionData, ts time.Time) (Member, error) {
	if d.Application == nil || d.CallID == nil || d.DeviceID == nil {
		return Member{}, fmt.Errorf("membership without application, call_id or device_id")
	}
	if *d.Application != "m.call" || (*d.CallID != "" && *d.CallID != "ROOM") || (d.Scope != "" && d.Scope != "m.room") {
		return Member{}, errOtherCall
	}
	if !validID(*d.DeviceID) {
		return Member{}, fmt.Errorf("membership device_id %q", *d.DeviceID)
	}
	m := Member{UserID: evt.Sender, DeviceID: id.DeviceID(*d.DeviceID), EventID: evt.ID, CreatedTs: ts.UnixMilli()}
	if d.CreatedTs != nil {
		c, err := d.CreatedTs.Int64()
		if err != nil || c <= 0 {
			return Member{}, fmt.Errorf("membership created_ts %q", d.CreatedTs.String())
		}
		m.CreatedTs = c
	}
	// Session memberships connect as "@user:server:DEVICE" (js-sdk CallMembership).
	m.Identity = string(evt.Sender) + ":" + *d.DeviceID
	m.MemberID = m.Identity
	if d.MembershipID != nil && validID(*d.MembershipID) {
		m.MemberID = *d.MembershipID
	}
	return m, nil
}

// errOtherCall marks a valid membership of some other call (not the room's main call).
var errOtherCall = fmt.Errorf("membership of another call or application")

func parseLegacy(evt *event.Event, list json.RawMessage, ts, now time.Time) ([]Member, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(list, &items); err != nil {
		return nil, fmt.Errorf("legacy memberships: %w", err)
	}
	if len(items) > maxMembershipsPerEvent {
		items = items[:maxMembershipsPerEvent]
	}
	var out []Member
	var firstErr error
	for _, it := range items {
		var d sessionData
		if err := json.Unmarshal(it, &d); err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("legacy membership: %w", err))
			continue
		}
		m, err := commonSession(evt, d, ts)
		if err != nil {
			if err != errOtherCall {
				firstErr = cmpErr(firstErr, err)
			}
			continue
		}
		m.Kind = KindLegacy
		m.FocusSelection = SelectOldest
		if m.Transports, err = parseTransports(d.FociActive); err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("legacy membership foci_active: %w", err))
			continue
		}
		switch {
		case d.Expires != nil:
			exp, err := d.Expires.Int64()
			if err != nil || exp <= 0 {
				firstErr = cmpErr(firstErr, fmt.Errorf("legacy membership expires %q", d.Expires.String()))
				continue
			}
			m.ExpiresAt = time.UnixMilli(m.CreatedTs).Add(time.Duration(min(exp, int64(30*24*time.Hour/time.Millisecond))) * time.Millisecond)
		case d.ExpiresTs != nil:
			e, err := d.ExpiresTs.Int64()
			if err != nil {
				firstErr = cmpErr(firstErr, fmt.Errorf("legacy membership expires_ts %q", d.ExpiresTs.String()))
				continue
			}
			m.ExpiresAt = time.UnixMilli(e)
		default:
			firstErr = cmpErr(firstErr, fmt.Errorf("legacy membership without expires"))
			continue
		}
		if m.ExpiresAt.After(now) {
			out = append(out, m)
		}
	}
	return out, firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// rtcData is an m.rtc.member as js-sdk sends it (membershipData/rtc.ts).
type rtcData struct {
	SlotID      *string `json:"slot_id"`
	Application *struct {
		Type string `json:"type"`
	} `json:"application"`
	Member *struct {
		UserID   *string `json:"user_id"`
		DeviceID *string `json:"device_id"`
		ID       *string `json:"id"`
	} `json:"member"`
	RTCTransports json.RawMessage `json:"rtc_transports"`
}

func parseRTC(evt *event.Event, content json.RawMessage, ts time.Time) (Member, error) {
	var d rtcData
	if err := json.Unmarshal(content, &d); err != nil {
		return Member{}, fmt.Errorf("rtc membership: %w", err)
	}
	if d.SlotID == nil || d.Application == nil || d.Member == nil || d.Member.UserID == nil || d.Member.DeviceID == nil || d.Member.ID == nil {
		return Member{}, fmt.Errorf("rtc membership without slot_id, application or member")
	}
	if d.Application.Type != "m.call" || *d.SlotID != callSlot {
		return Member{}, errOtherCall
	}
	if *d.Member.UserID != string(evt.Sender) {
		return Member{}, fmt.Errorf("rtc membership for %q sent by %s", *d.Member.UserID, evt.Sender)
	}
	if !validID(*d.Member.DeviceID) || !validID(*d.Member.ID) {
		return Member{}, fmt.Errorf("rtc membership member ids")
	}
	ts2, err := parseTransports(d.RTCTransports)
	if err != nil {
		return Member{}, fmt.Errorf("rtc membership rtc_transports: %w", err)
	}
	dur := stickyDuration
	if d := evt.Sticky.GetDuration(); d > 0 {
		dur = d
	}
	m := Member{
		Kind: KindRTC, UserID: evt.Sender, DeviceID: id.DeviceID(*d.Member.DeviceID), MemberID: *d.Member.ID,
		Transports: ts2, FocusSelection: SelectMultiSFU, CreatedTs: ts.UnixMilli(), ExpiresAt: ts.Add(dur),
		EventID: evt.ID,
	}
	m.Identity = HashedIdentity(string(m.UserID), string(m.DeviceID), m.MemberID)
	return m, nil
}

func parseTransports(raw json.RawMessage) ([]Transport, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("not a list")
	}
	var out []Transport
	for _, it := range items {
		if len(out) == maxTransports {
			break
		}
		var t Transport
		if err := json.Unmarshal(it, &t); err != nil || t.Type == "" {
			continue // unknown transport shapes are skipped, as js-sdk does
		}
		if len(t.ServiceURL) > maxURLLength || len(t.Alias) > maxIDLength || !utf8.ValidString(t.ServiceURL) {
			continue
		}
		if t.ServiceURL != "" {
			// One spelling per service, so that variants of one URL are one focus.
			norm, err := normalizeServiceURL(t.ServiceURL)
			if err != nil {
				continue
			}
			t.ServiceURL = norm
		}
		out = append(out, t)
	}
	return out, nil
}

// validID accepts identifiers that are safe to carry around: non-empty, bounded, valid
// UTF-8 without control characters. (File names sanitize them again.)
func validID(s string) bool {
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

// HashedIdentity is the LiveKit identity of a sticky (m.rtc.member) membership and of
// /get_token: unpadded base64 of SHA-256 of the JSON array [user, device, member id], as
// js-sdk's computeRtcIdentityRaw and lk-jwt-service compute it.
func HashedIdentity(user, device, memberID string) string {
	sum := sha256.Sum256(jsonStrings(user, device, memberID))
	return base64.RawStdEncoding.EncodeToString(sum[:])
}

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
			switch {
			case r == '"':
				b = append(b, '\\', '"')
			case r == '\\':
				b = append(b, '\\', '\\')
			case r == '\b':
				b = append(b, '\\', 'b')
			case r == '\f':
				b = append(b, '\\', 'f')
			case r == '\n':
				b = append(b, '\\', 'n')
			case r == '\r':
				b = append(b, '\\', 'r')
			case r == '\t':
				b = append(b, '\\', 't')
			case r < 0x20:
				b = append(b, `\u00`...)
				b = append(b, "0123456789abcdef"[r>>4], "0123456789abcdef"[r&0xf])
			case r == utf8.RuneError:
				b = append(b, `\ufffd`...)
			default:
				b = utf8.AppendRune(b, r)
			}
		}
		b = append(b, '"')
	}
	return append(b, ']')
}

// RoomAlias is the LiveKit room name lk-jwt-service ≥ 0.4 uses for a Matrix room and slot:
// unpadded base64 of SHA-256 of the JSON array [room id, slot id]. The recorder takes the
// room from the JWT; this is for the test harness's JWT service.
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

// selectTransports returns the LiveKit foci the call's media is published on, one per
// distinct JWT service, as clients pick them: an oldest_membership (or legacy) membership
// publishes on the oldest membership's first focus, a multi_sfu or sticky one on its own
// first focus. members must not include the bot's own membership.
func selectTransports(members []Member) []Transport {
	if len(members) == 0 {
		return nil
	}
	sorted := append([]Member(nil), members...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].CreatedTs != sorted[j].CreatedTs {
			return sorted[i].CreatedTs < sorted[j].CreatedTs
		}
		return sorted[i].Key().String() < sorted[j].Key().String()
	})
	oldest := sorted[0]
	seen := map[string]bool{}
	var out []Transport
	for _, m := range sorted {
		t, owner, ok := m.transport(oldest)
		if !ok || !t.isLiveKit() || seen[t.ServiceURL] {
			continue
		}
		seen[t.ServiceURL] = true
		t.owner = owner
		out = append(out, t)
	}
	return out
}

// transport is the focus m publishes on, given the oldest membership of the call (js-sdk
// CallMembership.getTransport), and the user whose membership names it.
func (m Member) transport(oldest Member) (Transport, id.UserID, bool) {
	first := func(ts []Transport) (Transport, id.UserID, bool) {
		if len(ts) == 0 {
			return Transport{}, "", false
		}
		return ts[0], m.UserID, true
	}
	switch {
	case m.Kind == KindRTC, m.FocusSelection == SelectMultiSFU:
		return first(m.Transports)
	case m.FocusSelection == SelectOldest || m.Kind == KindLegacy:
		if oldest.Key() == m.Key() && oldest.slot == m.slot {
			return first(m.Transports)
		}
		return oldest.transport(oldest)
	default:
		return Transport{}, "", false
	}
}

// describeMember is a short label for logs.
func describeMember(m Member) string {
	return string(m.UserID) + " (" + string(m.DeviceID) + ", " + m.Kind + ", since " + strconv.FormatInt(m.CreatedTs, 10) + ")"
}
