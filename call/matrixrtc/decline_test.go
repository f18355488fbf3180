package matrixrtc

import (
	"context"
	"errors"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// declineSink is a homeserver as Decline sees it.
type declineSink struct {
	sticky     bool
	refuse     bool // the sticky parameter is refused
	stickySent []time.Duration
	plainSent  int
}

func (d *declineSink) SupportsStickyEvents(context.Context) bool { return d.sticky }
func (d *declineSink) SendSticky(_ context.Context, _ id.RoomID, t event.Type, content any, duration, _ time.Duration) (id.EventID, string, error) {
	if t != TypeRTCDecline || content.(map[string]any)["msc4354_sticky_key"] != "$ring" {
		return "", "", errors.New("not a decline of $ring")
	}
	if d.refuse {
		return "", "", ErrNoStickyEvents
	}
	d.stickySent = append(d.stickySent, duration)
	return "$d", "", nil
}
func (d *declineSink) SendMessage(_ context.Context, _ id.RoomID, t event.Type, _ any) (id.EventID, error) {
	if t != TypeRTCDecline {
		return "", errors.New("not a decline")
	}
	d.plainSent++
	return "$d", nil
}

// A decline is sticky for a ring's longest lifetime where the homeserver has sticky
// events, plain where it does not or refuses them, and nothing without a ring.
func TestDecline(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name          string
		sink          declineSink
		sticky, plain int
	}{
		{"sticky", declineSink{sticky: true}, 1, 0},
		{"no sticky events", declineSink{}, 0, 1},
		{"sticky refused", declineSink{sticky: true, refuse: true}, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.sink
			if err := Decline(ctx, &d, "!r:hs", "$ring"); err != nil {
				t.Fatal(err)
			}
			if len(d.stickySent) != tc.sticky || d.plainSent != tc.plain || (tc.sticky > 0 && d.stickySent[0] != declineSticky) {
				t.Errorf("sticky %v, plain %d", d.stickySent, d.plainSent)
			}
			if err := Decline(ctx, &d, "!r:hs", ""); err != nil || len(d.stickySent)+d.plainSent != 1 {
				t.Errorf("a decline without a ring: %v", err)
			}
		})
	}
}
