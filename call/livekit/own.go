package livekit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
)

// DelayedEvents is what the bot's Matrix side offers when its homeserver supports delayed
// events (MSC4140). The backend finds it on its call.Matrix by a type assertion; without it
// (Dendrite has none) the membership is removed explicitly when the recording ends, and a
// stale one left by a crash is removed when the bot next sees it.
type DelayedEvents interface {
	// SupportsDelayedEvents reports whether the homeserver advertises MSC4140.
	SupportsDelayedEvents(ctx context.Context) bool
	// SendDelayedState schedules a state event to be sent after delay; it returns the delay id.
	SendDelayedState(ctx context.Context, roomID id.RoomID, evtType event.Type, stateKey string, content any, delay time.Duration) (string, error)
	// UpdateDelayedEvent restarts, sends or cancels a scheduled event ("restart", "send", "cancel").
	UpdateDelayedEvent(ctx context.Context, delayID string, action string) error
}

// Own-membership timing.
const (
	// ownExpiry is the lifetime written into the bot's membership (js-sdk's default).
	ownExpiry = 4 * time.Hour
	// ownRefresh rewrites the membership with a later expiry well before it runs out.
	ownRefresh = 3 * time.Hour
	// leaveDelay is how long after the bot stops restarting it the delayed leave fires.
	leaveDelay = 30 * time.Second
	// leaveRestart is how often the delayed leave is pushed back.
	leaveRestart = 10 * time.Second
)

// ownMembership is the bot's own session membership in a room's call: published while it
// records, so that clients list it and send it their media keys, and removed after.
type ownMembership struct {
	mx       call.Matrix
	room     id.RoomID
	stateKey string
	log      zerolog.Logger

	mu        sync.Mutex
	created   time.Time
	foci      []Transport
	delayed   DelayedEvents
	delayID   string
	published bool
}

func newOwnMembership(mx call.Matrix, room id.RoomID, roomVersion string, log zerolog.Logger) *ownMembership {
	return &ownMembership{
		mx: mx, room: room, log: log,
		stateKey: SessionStateKey(mx.UserID(), mx.DeviceID(), roomVersion),
	}
}

// content is the session membership as current js-sdk writes it (MembershipManager
// makeMyMembership): the bot says it uses the call's first focus, like a multi_sfu member.
func (o *ownMembership) content(now time.Time, refresh bool) map[string]any {
	foci := o.foci
	if foci == nil {
		foci = []Transport{}
	}
	c := map[string]any{
		"application":    "m.call",
		"call_id":        "",
		"scope":          "m.room",
		"device_id":      o.mx.DeviceID(),
		"membershipID":   string(o.mx.UserID()) + ":" + string(o.mx.DeviceID()),
		"expires":        (now.Sub(o.created) + ownExpiry).Milliseconds(),
		"focus_active":   map[string]string{"type": "livekit", "focus_selection": SelectMultiSFU},
		"foci_preferred": foci,
	}
	if refresh {
		c["created_ts"] = o.created.UnixMilli()
	}
	return c
}

// publish writes the membership (the first time with a delayed leave when the homeserver
// can do it).
func (o *ownMembership) publish(ctx context.Context, foci []Transport) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	refresh := o.published
	if !o.published {
		o.created = now
		if d, ok := o.mx.(DelayedEvents); ok && d.SupportsDelayedEvents(ctx) {
			delayID, err := d.SendDelayedState(ctx, o.room, TypeCallMember, o.stateKey, map[string]any{}, leaveDelay)
			if err != nil {
				o.log.Warn().Err(err).Msg("Could not schedule a delayed leave; the membership is removed when recording stops")
			} else {
				o.delayed, o.delayID = d, delayID
			}
		}
	}
	o.foci = foci
	if err := o.mx.SendState(ctx, o.room, TypeCallMember, o.stateKey, o.content(now, refresh)); err != nil {
		return fmt.Errorf("publish the bot's call membership: %w", err)
	}
	o.published = true
	return nil
}

// keepAlive pushes the delayed leave back and rewrites the membership before it expires,
// until ctx ends.
func (o *ownMembership) keepAlive(ctx context.Context) {
	restart := time.NewTicker(leaveRestart)
	defer restart.Stop()
	refresh := time.NewTicker(ownRefresh)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-restart.C:
			o.mu.Lock()
			d, delayID := o.delayed, o.delayID
			o.mu.Unlock()
			if d != nil {
				if err := d.UpdateDelayedEvent(ctx, delayID, "restart"); err != nil && ctx.Err() == nil {
					o.log.Warn().Err(err).Msg("Could not push back the delayed leave")
				}
			}
		case <-refresh.C:
			o.mu.Lock()
			foci := o.foci
			o.mu.Unlock()
			if err := o.publish(ctx, foci); err != nil && ctx.Err() == nil {
				o.log.Warn().Err(err).Msg("Could not refresh the bot's call membership")
			}
		}
	}
}

// remove takes the membership back (an empty state event, as clients leave).
func (o *ownMembership) remove(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.published {
		return nil
	}
	if o.delayed != nil {
		if err := o.delayed.UpdateDelayedEvent(ctx, o.delayID, "cancel"); err != nil {
			o.log.Debug().Err(err).Msg("Could not cancel the delayed leave")
		}
		o.delayed = nil
	}
	if err := o.mx.SendState(ctx, o.room, TypeCallMember, o.stateKey, map[string]any{}); err != nil {
		return fmt.Errorf("remove the bot's call membership: %w", err)
	}
	o.published = false
	return nil
}
