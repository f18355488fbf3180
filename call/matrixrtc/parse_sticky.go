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

// stickyData is an m.rtc.member as js-sdk sends it (membershipData/rtc.ts).
type stickyData struct {
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
	transports, err := ParseTransports(d.RTCTransports)
	if err != nil {
		return Member{}, fmt.Errorf("rtc membership rtc_transports: %w", err)
	}
	dur := stickyDuration
	if d := evt.Sticky.GetDuration(); d > 0 {
		dur = d
	}
	m := Member{
		Format: FormatSticky, UserID: evt.Sender, DeviceID: id.DeviceID(*d.Member.DeviceID), SlotID: MainSlot,
		MemberID: *d.Member.ID, Transports: transports, FocusSelection: SelectMultiSFU,
		CreatedTs: ts.UnixMilli(), ExpiresAt: ts.Add(dur), EventID: evt.ID,
	}
	m.Identity = Identity(m.Format, m.UserID, m.DeviceID, m.MemberID)
	return m, nil
}
