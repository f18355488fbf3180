package matrixrtc

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Call notification event types (MSC4075, MSC4310). A client that starts a call sends a
// notification referencing its membership; "ring" asks the callees' clients to ring. A
// callee declines with a decline event referencing the notification. Both are sticky
// events (MSC4354) where the homeserver has them, else plain room events (encrypted in
// encrypted rooms).
var (
	TypeRTCNotification = event.Type{Type: "org.matrix.msc4075.rtc.notification", Class: event.MessageEventType}
	TypeRTCDecline      = event.Type{Type: "org.matrix.msc4310.rtc.decline", Class: event.MessageEventType}
	// TypeCallNotify is the older notification (js-sdk before 40.2, older Element X).
	TypeCallNotify = event.Type{Type: "org.matrix.msc4075.call.notify", Class: event.MessageEventType}
)

// Notification lifetimes (js-sdk types.ts, MSC4075).
const (
	// maxRingLifetime caps a notification's lifetime (RTC_NOTIFICATION_MAX_LIFETIME_MS).
	maxRingLifetime = 2 * time.Minute
	// maxSenderAhead: a sender_ts further ahead of origin_server_ts than this is not
	// trusted; the lifetime counts from origin_server_ts then.
	maxSenderAhead = 20 * time.Second
	// notifyLifetime is the lifetime of the older call.notify, which has none: js-sdk's
	// default ring lifetime.
	notifyLifetime = 90 * time.Second
	// maxMentions bounds the user ids read from m.mentions.
	maxMentions = 64
)

// Ring is a call notification: someone started (or joined first) the room's call and
// tells the others. Only Ring notifications ask a client to ring.
type Ring struct {
	EventID id.EventID
	Sender  id.UserID
	// Ring: notification_type (notify_type in the older event) is "ring"; otherwise the
	// notification only informs.
	Ring bool
	// Intent is the caller's m.call.intent ("audio", "video"), if it gives one.
	Intent string
	// Membership is the sender's membership event the notification references (empty in
	// the older call.notify).
	Membership id.EventID
	// MentionsRoom and Mentions are whom it is for (m.mentions).
	MentionsRoom bool
	Mentions     []id.UserID
	// Expires is when it stops being valid (see ringExpiry).
	Expires time.Time
	// Legacy: the older org.matrix.msc4075.call.notify.
	Legacy bool
}

// For reports whether the notification is meant for user: it mentions the user or the
// whole room.
func (r Ring) For(user id.UserID) bool {
	if r.MentionsRoom {
		return true
	}
	for _, u := range r.Mentions {
		if u == user {
			return true
		}
	}
	return false
}

// Expired reports whether the notification's lifetime is over at now.
func (r Ring) Expired(now time.Time) bool { return !now.Before(r.Expires) }

// notificationContent is org.matrix.msc4075.rtc.notification as js-sdk 43 sends it
// (MatrixRTCSession.sendCallNotify) and the older org.matrix.msc4075.call.notify.
type notificationContent struct {
	SlotID           *string      `json:"slot_id"`
	NotificationType string       `json:"notification_type"`
	Intent           any          `json:"m.call.intent"`
	SenderTs         *json.Number `json:"sender_ts"`
	Lifetime         *json.Number `json:"lifetime"`
	Mentions         *mentions    `json:"m.mentions"`
	RelatesTo        *reference   `json:"m.relates_to"`
	StickyKey        *string      `json:"msc4354_sticky_key"`
	Application      string       `json:"application"`
	NotifyType       string       `json:"notify_type"`
	CallID           *string      `json:"call_id"`
}

type mentions struct {
	Room    bool              `json:"room"`
	UserIDs []json.RawMessage `json:"user_ids"`
}

type reference struct {
	RelType string `json:"rel_type"`
	EventID string `json:"event_id"`
}

// IsRingEvent reports whether t is a call notification or decline type.
func IsRingEvent(t event.Type) bool {
	return t.Type == TypeRTCNotification.Type || t.Type == TypeCallNotify.Type || t.Type == TypeRTCDecline.Type
}

// ParseRing reads a call notification of the room's main call (errors wrap ErrOtherCall
// for other slots and applications). now is when it was received: with the sender's
// sender_ts and lifetime it decides expiry as js-sdk does (getCallNotificationExpiry).
func ParseRing(evt *event.Event, content json.RawMessage, now time.Time) (Ring, error) {
	if len(content) > maxContent {
		return Ring{}, fmt.Errorf("%s content of %d bytes", evt.Type.Type, len(content))
	}
	var c notificationContent
	if err := json.Unmarshal(content, &c); err != nil {
		return Ring{}, fmt.Errorf("%s: %w", evt.Type.Type, err)
	}
	r := Ring{EventID: evt.ID, Sender: evt.Sender, Intent: intent(c.Intent)}
	if c.Mentions == nil {
		return Ring{}, errors.New("call notification without m.mentions")
	}
	r.MentionsRoom = c.Mentions.Room
	for i, raw := range c.Mentions.UserIDs {
		if i == maxMentions {
			break
		}
		var u string
		if json.Unmarshal(raw, &u) == nil && ValidID(u) {
			r.Mentions = append(r.Mentions, id.UserID(u))
		}
	}
	if !r.MentionsRoom && len(r.Mentions) == 0 {
		return Ring{}, errors.New("call notification that mentions nobody")
	}
	origin := time.UnixMilli(evt.Timestamp)
	switch evt.Type.Type {
	case TypeCallNotify.Type:
		if c.Application != "m.call" || (c.CallID != nil && *c.CallID != "" && *c.CallID != "ROOM") {
			return Ring{}, ErrOtherCall
		}
		r.Legacy, r.Ring = true, c.NotifyType == "ring"
		r.Expires = ringExpiry(origin, origin, notifyLifetime, now)
		return r, nil
	case TypeRTCNotification.Type:
	default:
		return Ring{}, fmt.Errorf("%s is not a call notification", evt.Type.Type)
	}
	if c.SlotID != nil && *c.SlotID != MainSlot {
		return Ring{}, ErrOtherCall
	}
	if c.StickyKey != nil && c.SlotID != nil && *c.StickyKey != *c.SlotID {
		return Ring{}, errors.New("call notification whose msc4354_sticky_key is not its slot_id")
	}
	if c.RelatesTo != nil && c.RelatesTo.RelType == "m.reference" && ValidID(c.RelatesTo.EventID) {
		r.Membership = id.EventID(c.RelatesTo.EventID)
	}
	if c.SlotID == nil && r.Membership == "" {
		return Ring{}, errors.New("call notification without slot_id or a reference to a membership")
	}
	senderTs, okTs := nonNegative(c.SenderTs)
	lifetime, okLife := nonNegative(c.Lifetime)
	if !okTs || !okLife {
		return Ring{}, errors.New("call notification without a valid sender_ts or lifetime")
	}
	r.Ring = c.NotificationType == "ring"
	r.Expires = ringExpiry(time.UnixMilli(senderTs), origin, time.Duration(min(lifetime, maxRingLifetime.Milliseconds()))*time.Millisecond, now)
	return r, nil
}

// ringExpiry is MSC4075's: the lifetime counts from the sender's time unless that is more
// than 20 s ahead of the server's, and never reaches beyond two minutes from now.
func ringExpiry(sent, origin time.Time, lifetime time.Duration, now time.Time) time.Time {
	basis := sent
	if sent.Sub(origin) > maxSenderAhead {
		basis = origin
	}
	exp := basis.Add(lifetime)
	if limit := now.Add(maxRingLifetime); exp.After(limit) {
		exp = limit
	}
	return exp
}

func nonNegative(n *json.Number) (int64, bool) {
	if n == nil {
		return 0, false
	}
	v, err := n.Int64()
	return v, err == nil && v >= 0
}

// ParseDecline returns the notification a decline (MSC4310) refers to.
func ParseDecline(evt *event.Event, content json.RawMessage) (id.EventID, error) {
	if evt.Type.Type != TypeRTCDecline.Type {
		return "", fmt.Errorf("%s is not a decline", evt.Type.Type)
	}
	if len(content) > maxContent {
		return "", fmt.Errorf("decline content of %d bytes", len(content))
	}
	var c struct {
		RelatesTo *reference `json:"m.relates_to"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return "", fmt.Errorf("decline: %w", err)
	}
	if c.RelatesTo == nil || c.RelatesTo.RelType != "m.reference" || !ValidID(c.RelatesTo.EventID) {
		return "", errors.New("decline without a reference to a notification")
	}
	return id.EventID(c.RelatesTo.EventID), nil
}
