package matrixrtc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// declineSticky is how long a decline stays sticky: the longest lifetime a ring may have
// (js-sdk's RTC_NOTIFICATION_MAX_LIFETIME_MS).
const declineSticky = 2 * time.Minute

// Decliner sends the events of a decline.
type Decliner interface {
	StickyEvents
	SendMessage(ctx context.Context, roomID id.RoomID, evtType event.Type, content any) (id.EventID, error)
}

// Decline declines a ring the bot does not answer (MSC4310; js-sdk's sendRtcDecline): a
// sticky event keyed by the ring where the homeserver has them, a plain one elsewhere, so
// the caller's client stops ringing.
func Decline(ctx context.Context, mx Decliner, room id.RoomID, ring id.EventID) error {
	if ring == "" {
		return nil
	}
	content := map[string]any{
		"m.relates_to":       map[string]string{"rel_type": "m.reference", "event_id": string(ring)},
		"msc4354_sticky_key": string(ring),
	}
	sticky := mx.SupportsStickyEvents(ctx)
	var err error
	if sticky {
		_, _, err = mx.SendSticky(ctx, room, TypeRTCDecline, content, declineSticky, 0)
	}
	if !sticky || errors.Is(err, ErrNoStickyEvents) {
		_, err = mx.SendMessage(ctx, room, TypeRTCDecline, content)
	}
	if err != nil {
		return fmt.Errorf("decline the ring: %w", err)
	}
	return nil
}
