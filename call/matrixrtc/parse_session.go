package matrixrtc

import (
	"encoding/json"
	"fmt"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Defaults of the session and legacy formats.
const (
	// sessionExpiry applies when a session membership has no "expires" (js-sdk: 4 h).
	sessionExpiry = 4 * time.Hour
	// maxExpiry bounds what a membership may claim.
	maxExpiry = 30 * 24 * time.Hour
)

// Focus selection modes of session memberships (focus_active.focus_selection).
const (
	SelectMultiSFU = "multi_sfu"
	SelectOldest   = "oldest_membership"
)

type focusActive struct {
	Type           string `json:"type"`
	FocusSelection string `json:"focus_selection"`
}

// sessionData is a session membership (js-sdk membershipData/session.ts), and one entry of
// a legacy list.
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
	m.Format = FormatSession
	m.FocusSelection = d.FocusActive.FocusSelection
	if m.Transports, err = ParseTransports(d.FociPreferred); err != nil {
		return Member{}, fmt.Errorf("session membership foci_preferred: %w", err)
	}
	if d.Expires == nil {
		m.ExpiresAt = time.UnixMilli(m.CreatedTs).Add(sessionExpiry)
	} else if m.ExpiresAt, err = expiresAfter(m.CreatedTs, *d.Expires); err != nil {
		return Member{}, fmt.Errorf("session membership %w", err)
	}
	return m, nil
}

// expiresAfter is the end of a membership that lasts "expires" ms after created (ms).
func expiresAfter(created int64, expires json.Number) (time.Time, error) {
	exp, err := expires.Int64()
	if err != nil || exp <= 0 {
		return time.Time{}, fmt.Errorf("expires %q", expires.String())
	}
	return time.UnixMilli(created).Add(time.Duration(min(exp, maxExpiry.Milliseconds())) * time.Millisecond), nil
}

// commonSession checks the fields session and legacy memberships share.
func commonSession(evt *event.Event, d sessionData, ts time.Time) (Member, error) {
	if d.Application == nil || d.CallID == nil || d.DeviceID == nil {
		return Member{}, fmt.Errorf("membership without application, call_id or device_id")
	}
	if *d.Application != "m.call" || (*d.CallID != "" && *d.CallID != "ROOM") || (d.Scope != "" && d.Scope != "m.room") {
		return Member{}, ErrOtherCall
	}
	if !ValidID(*d.DeviceID) {
		return Member{}, fmt.Errorf("membership device_id %q", *d.DeviceID)
	}
	m := Member{UserID: evt.Sender, DeviceID: id.DeviceID(*d.DeviceID), SlotID: MainSlot, EventID: evt.ID, CreatedTs: ts.UnixMilli()}
	if d.CreatedTs != nil {
		c, err := d.CreatedTs.Int64()
		if err != nil || c <= 0 {
			return Member{}, fmt.Errorf("membership created_ts %q", d.CreatedTs.String())
		}
		m.CreatedTs = c
	}
	m.Identity = SessionIdentity(m.UserID, m.DeviceID)
	m.MemberID = m.Identity
	if d.MembershipID != nil && ValidID(*d.MembershipID) {
		m.MemberID = *d.MembershipID
	}
	return m, nil
}
