package matrixrtc

import (
	"encoding/json"
	"fmt"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// stickyDuration applies when a sticky event's duration is unknown (MSC4354 caps it at 1 h).
const stickyDuration = time.Hour

// stickyData is an m.rtc.member as js-sdk sends it (membershipData/rtc.ts): js-sdk 43
// names the foci transports.published; earlier versions (39-42) rtc_transports.
type stickyData struct {
	SlotID      *string `json:"slot_id"`
	Application *struct {
		Type   string `json:"type"`
		Intent any    `json:"m.call.intent"`
	} `json:"application"`
	Member *struct {
		UserID   *string `json:"user_id"`
		DeviceID *string `json:"device_id"`
		ID       *string `json:"id"`
	} `json:"member"`
	Transports *struct {
		Published json.RawMessage `json:"published"`
	} `json:"transports"`
	RTCTransports json.RawMessage `json:"rtc_transports"`
}

func parseSticky(evt *event.Event, content json.RawMessage, ts time.Time) (Member, error) {
	var d stickyData
	if err := json.Unmarshal(content, &d); err != nil {
		return Member{}, fmt.Errorf("rtc membership: %w", err)
	}
	if d.SlotID == nil || d.Application == nil || d.Member == nil || d.Member.UserID == nil || d.Member.DeviceID == nil || d.Member.ID == nil {
		return Member{}, fmt.Errorf("rtc membership without slot_id, application or member")
	}
	if d.Application.Type != "m.call" || *d.SlotID != MainSlot {
		return Member{}, ErrOtherCall
	}
	if *d.Member.UserID != string(evt.Sender) {
		return Member{}, fmt.Errorf("rtc membership for %q sent by %s", *d.Member.UserID, evt.Sender)
	}
	if !ValidID(*d.Member.DeviceID) || !ValidID(*d.Member.ID) {
		return Member{}, fmt.Errorf("rtc membership member ids")
	}
	foci, field := d.RTCTransports, "rtc_transports"
	if d.Transports != nil && len(d.Transports.Published) > 0 {
		foci, field = d.Transports.Published, "transports.published"
	}
	transports, err := ParseTransports(foci)
	if err != nil {
		return Member{}, fmt.Errorf("rtc membership %s: %w", field, err)
	}
	dur := stickyDuration
	if d := evt.Sticky.GetDuration(); d > 0 {
		dur = d
	}
	m := Member{
		Format: FormatSticky, UserID: evt.Sender, DeviceID: id.DeviceID(*d.Member.DeviceID), SlotID: MainSlot,
		MemberID: *d.Member.ID, Transports: transports, FocusSelection: SelectMultiSFU,
		CreatedTs: ts.UnixMilli(), ExpiresAt: ts.Add(dur), EventID: evt.ID, Intent: intent(d.Application.Intent),
	}
	m.Identity = Identity(m.Format, m.UserID, m.DeviceID, m.MemberID)
	return m, nil
}
