// Package voip defines the Matrix VoIP event contents (MSC2746, MSC3077, MSC3291, and the
// to-device fields of MSC3401) as matrix-js-sdk really sends them, with validation.
//
// mautrix's own structs read only the unstable metadata key, write version as the integer 1
// and lack invitee and capabilities, so the bot parses and writes these instead.
package voip

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"maunium.net/go/mautrix/event"
)

// Event types.
var (
	TypeInvite                    = event.Type{Type: "m.call.invite", Class: event.MessageEventType}
	TypeCandidates                = event.Type{Type: "m.call.candidates", Class: event.MessageEventType}
	TypeAnswer                    = event.Type{Type: "m.call.answer", Class: event.MessageEventType}
	TypeSelectAnswer              = event.Type{Type: "m.call.select_answer", Class: event.MessageEventType}
	TypeReject                    = event.Type{Type: "m.call.reject", Class: event.MessageEventType}
	TypeNegotiate                 = event.Type{Type: "m.call.negotiate", Class: event.MessageEventType}
	TypeHangup                    = event.Type{Type: "m.call.hangup", Class: event.MessageEventType}
	TypeSDPStreamMetadataChanged  = event.Type{Type: "m.call.sdp_stream_metadata_changed", Class: event.MessageEventType}
	TypeSDPStreamMetadataChangedU = event.Type{Type: "org.matrix.call.sdp_stream_metadata_changed", Class: event.MessageEventType}
)

// Limits on remote input.
const (
	MaxIDLength        = 255
	MaxSDPLength       = 256 << 10
	MaxCandidates      = 256
	MaxCandidateLength = 2048
	MaxStreams         = 32
)

// Purposes of a stream in sdp_stream_metadata.
const (
	PurposeUserMedia   = "m.usermedia"
	PurposeScreenshare = "m.screenshare"
)

// Hangup reasons the bot sends.
const (
	ReasonUserHangup     = "user_hangup"
	ReasonICEFailed      = "ice_failed"
	ReasonInviteTimeout  = "invite_timeout"
	ReasonUnknownError   = "unknown_error"
	ReasonUserBusy       = "user_busy"
	ReasonAnsweredElse   = "answered_elsewhere"
	ReasonCreateAnswer   = "create_answer"
	ReasonSetRemoteDesc  = "set_remote_description"
	ReasonUserMediaFaild = "user_media_failed"
)

// Version is the call version, sent as the string "1" by js-sdk and 0 (integer) by legacy
// clients. Anything that is not 0 is treated as version 1.
type Version struct {
	V1 bool
}

// UnmarshalJSON accepts strings and numbers.
func (v *Version) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || bytes.Equal(b, []byte("null")):
		v.V1 = false
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("parse version: %w", err)
		}
		v.V1 = s != "0"
	default:
		n, err := strconv.ParseFloat(string(b), 64)
		if err != nil {
			return fmt.Errorf("parse version %q: not a string or number", b)
		}
		v.V1 = n != 0
	}
	return nil
}

// MarshalJSON writes "1" or 0 as the spec wants.
func (v Version) MarshalJSON() ([]byte, error) {
	if v.V1 {
		return []byte(`"1"`), nil
	}
	return []byte(`0`), nil
}

// V1 is the version every event the bot sends carries.
var V1 = Version{V1: true}

// SessionDescription is an RTCSessionDescriptionInit.
type SessionDescription struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

// StreamMetadata describes one msid stream.
type StreamMetadata struct {
	Purpose    string `json:"purpose"`
	AudioMuted bool   `json:"audio_muted,omitempty"`
	VideoMuted bool   `json:"video_muted,omitempty"`
}

// StreamMetadataMap maps an SDP msid stream id to its metadata.
type StreamMetadataMap map[string]StreamMetadata

// Capabilities of a party.
type Capabilities struct {
	Transferee bool `json:"m.call.transferee"`
	DTMF       bool `json:"m.call.dtmf"`
}

// Candidate is one ICE candidate. An empty Candidate string means end of candidates.
type Candidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// Common holds the fields every VoIP event carries, plus the to-device fields of group calls.
type Common struct {
	CallID  string  `json:"call_id"`
	PartyID string  `json:"party_id,omitempty"`
	Version Version `json:"version"`

	// Group calls (to-device only).
	ConfID          string `json:"conf_id,omitempty"`
	DeviceID        string `json:"device_id,omitempty"`
	SenderSessionID string `json:"sender_session_id,omitempty"`
	DestSessionID   string `json:"dest_session_id,omitempty"`
	Seq             *int64 `json:"seq,omitempty"`
	MsgID           string `json:"org.matrix.msgid,omitempty"`
}

// metadataKeys are where js-sdk puts sdp_stream_metadata: it sends the stable key and
// reads both.
const (
	metadataKeyStable   = "sdp_stream_metadata"
	metadataKeyUnstable = "org.matrix.msc3077.sdp_stream_metadata"
)

// Invite is m.call.invite.
type Invite struct {
	Common
	Offer        SessionDescription `json:"offer"`
	Lifetime     int64              `json:"lifetime"`
	Invitee      string             `json:"invitee,omitempty"`
	Capabilities *Capabilities      `json:"capabilities,omitempty"`
	// Metadata is nil when the sender did not send any (single-stream mode).
	Metadata StreamMetadataMap `json:"-"`
}

// Answer is m.call.answer.
type Answer struct {
	Common
	Answer       SessionDescription `json:"answer"`
	Capabilities *Capabilities      `json:"capabilities,omitempty"`
	Metadata     StreamMetadataMap  `json:"-"`
}

// Candidates is m.call.candidates.
type Candidates struct {
	Common
	Candidates []Candidate `json:"candidates"`
}

// SelectAnswer is m.call.select_answer.
type SelectAnswer struct {
	Common
	SelectedPartyID string `json:"selected_party_id"`
}

// Reject is m.call.reject.
type Reject struct {
	Common
	Reason string `json:"reason,omitempty"`
}

// Negotiate is m.call.negotiate.
type Negotiate struct {
	Common
	Description SessionDescription `json:"description"`
	Lifetime    int64              `json:"lifetime,omitempty"`
	Metadata    StreamMetadataMap  `json:"-"`
}

// Hangup is m.call.hangup.
type Hangup struct {
	Common
	Reason string `json:"reason,omitempty"`
}

// MetadataChanged is m.call.sdp_stream_metadata_changed.
type MetadataChanged struct {
	Common
	Metadata StreamMetadataMap `json:"-"`
}

// Errors callers branch on.
var (
	ErrInvalid = errors.New("invalid call event")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// ValidID reports whether s is a valid call_id or party_id: 1-255 characters of
// [0-9a-zA-Z._~-] (MSC2746).
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '.', c == '_', c == '~', c == '-':
		default:
			return false
		}
	}
	return true
}

// lenientID accepts the looser ids some clients send (js-sdk's party_id is the device id,
// which is usually but not always in the MSC2746 alphabet) while bounding them.
func lenientID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

func (c *Common) validate() error {
	if !ValidID(c.CallID) {
		return invalid("call_id %.40q is not 1-255 characters of [0-9a-zA-Z._~-]", c.CallID)
	}
	if c.PartyID != "" && !lenientID(c.PartyID) {
		return invalid("party_id is not a valid id")
	}
	for name, v := range map[string]string{"conf_id": c.ConfID, "device_id": c.DeviceID, "sender_session_id": c.SenderSessionID, "dest_session_id": c.DestSessionID} {
		if len(v) > MaxIDLength {
			return invalid("%s too long", name)
		}
	}
	return nil
}

func validateDescription(d SessionDescription, wantType string) error {
	if d.SDP == "" {
		return invalid("empty sdp")
	}
	if len(d.SDP) > MaxSDPLength {
		return invalid("sdp of %d bytes is larger than %d", len(d.SDP), MaxSDPLength)
	}
	if wantType != "" && d.Type != "" && d.Type != wantType {
		return invalid("description type %q, want %q", d.Type, wantType)
	}
	return nil
}

func validateMetadata(m StreamMetadataMap) error {
	if len(m) > MaxStreams {
		return invalid("%d streams in sdp_stream_metadata", len(m))
	}
	for k := range m {
		if len(k) > MaxIDLength {
			return invalid("stream id too long")
		}
	}
	return nil
}

// readMetadata extracts sdp_stream_metadata from raw content: the stable key first, then
// the unstable one. It returns nil when neither is present.
func readMetadata(raw json.RawMessage) (StreamMetadataMap, error) {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return nil, invalid("content is not an object: %v", err)
	}
	for _, k := range []string{metadataKeyStable, metadataKeyUnstable} {
		v, ok := keys[k]
		if !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			continue
		}
		m := StreamMetadataMap{}
		if err := json.Unmarshal(v, &m); err != nil {
			return nil, invalid("%s: %v", k, err)
		}
		return m, validateMetadata(m)
	}
	return nil, nil
}

func writeWithMetadata(v any, m StreamMetadataMap) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil || m == nil {
		return b, err
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	// Splice the stable key into the object.
	out := make([]byte, 0, len(b)+len(mb)+32)
	out = append(out, b[:len(b)-1]...)
	if len(b) > 2 {
		out = append(out, ',')
	}
	out = append(out, `"`+metadataKeyStable+`":`...)
	out = append(out, mb...)
	out = append(out, '}')
	return out, nil
}

// parse decodes one event content and runs its checks: the common fields, then check.
func parse[T any, PT interface {
	*T
	common() *Common
}](raw json.RawMessage, name string, check func(PT) error) (PT, error) {
	c := PT(new(T))
	if err := json.Unmarshal(raw, c); err != nil {
		return nil, invalid("%s: %v", name, err)
	}
	if err := c.common().validate(); err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Common) common() *Common { return c }

// withMetadata reads sdp_stream_metadata into *dst.
func withMetadata(raw json.RawMessage, dst *StreamMetadataMap) error {
	m, err := readMetadata(raw)
	*dst = m
	return err
}

// ParseInvite parses and validates m.call.invite content.
func ParseInvite(raw json.RawMessage) (*Invite, error) {
	return parse(raw, "m.call.invite", func(c *Invite) error {
		if err := validateDescription(c.Offer, "offer"); err != nil {
			return err
		}
		if c.Lifetime < 0 || c.Lifetime > 24*3600*1000 {
			return invalid("lifetime %d out of range", c.Lifetime)
		}
		return withMetadata(raw, &c.Metadata)
	})
}

// ParseAnswer parses and validates m.call.answer content.
func ParseAnswer(raw json.RawMessage) (*Answer, error) {
	return parse(raw, "m.call.answer", func(c *Answer) error {
		if err := validateDescription(c.Answer, "answer"); err != nil {
			return err
		}
		return withMetadata(raw, &c.Metadata)
	})
}

// ParseCandidates parses and validates m.call.candidates content.
func ParseCandidates(raw json.RawMessage) (*Candidates, error) {
	return parse(raw, "m.call.candidates", func(c *Candidates) error {
		if len(c.Candidates) > MaxCandidates {
			return invalid("%d candidates", len(c.Candidates))
		}
		for _, cand := range c.Candidates {
			if len(cand.Candidate) > MaxCandidateLength {
				return invalid("candidate of %d bytes", len(cand.Candidate))
			}
		}
		return nil
	})
}

// ParseSelectAnswer parses m.call.select_answer content.
func ParseSelectAnswer(raw json.RawMessage) (*SelectAnswer, error) {
	return parse(raw, "m.call.select_answer", func(c *SelectAnswer) error {
		if !lenientID(c.SelectedPartyID) {
			return invalid("selected_party_id is not a valid id")
		}
		return nil
	})
}

// ParseReject parses m.call.reject content.
func ParseReject(raw json.RawMessage) (*Reject, error) {
	return parse[Reject](raw, "m.call.reject", nil)
}

// ParseHangup parses m.call.hangup content.
func ParseHangup(raw json.RawMessage) (*Hangup, error) {
	return parse(raw, "m.call.hangup", func(c *Hangup) error {
		if len(c.Reason) > MaxIDLength {
			c.Reason = c.Reason[:MaxIDLength]
		}
		return nil
	})
}

// ParseNegotiate parses and validates m.call.negotiate content.
func ParseNegotiate(raw json.RawMessage) (*Negotiate, error) {
	return parse(raw, "m.call.negotiate", func(c *Negotiate) error {
		if c.Description.Type != "offer" && c.Description.Type != "answer" {
			return invalid("negotiate description type %q", c.Description.Type)
		}
		if err := validateDescription(c.Description, ""); err != nil {
			return err
		}
		return withMetadata(raw, &c.Metadata)
	})
}

// ParseMetadataChanged parses m.call.sdp_stream_metadata_changed content.
func ParseMetadataChanged(raw json.RawMessage) (*MetadataChanged, error) {
	return parse(raw, "sdp_stream_metadata_changed", func(c *MetadataChanged) error {
		return withMetadata(raw, &c.Metadata)
	})
}

// MarshalJSON writes the invite with the stable metadata key.
func (c Invite) MarshalJSON() ([]byte, error) {
	type plain Invite
	return writeWithMetadata(plain(c), c.Metadata)
}

// MarshalJSON writes the answer with the stable metadata key.
func (c Answer) MarshalJSON() ([]byte, error) {
	type plain Answer
	return writeWithMetadata(plain(c), c.Metadata)
}

// MarshalJSON writes the negotiate event with the stable metadata key.
func (c Negotiate) MarshalJSON() ([]byte, error) {
	type plain Negotiate
	return writeWithMetadata(plain(c), c.Metadata)
}

// MarshalJSON writes the change event with the stable metadata key.
func (c MetadataChanged) MarshalJSON() ([]byte, error) {
	type plain MetadataChanged
	return writeWithMetadata(plain(c), c.Metadata)
}
