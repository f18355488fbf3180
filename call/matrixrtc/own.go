package matrixrtc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Matrix is what the bot's own membership needs of its Matrix side (call.Matrix has it).
type Matrix interface {
	UserID() id.UserID
	DeviceID() id.DeviceID
	// SendState sets a state event.
	SendState(ctx context.Context, roomID id.RoomID, evtType event.Type, stateKey string, content any) error
}

// DelayedEvents is what the bot's Matrix side offers when its homeserver supports delayed
// events (MSC4140). Own finds it on its Matrix by a type assertion; without it (Dendrite has
// none) the membership is removed explicitly when the recording ends, and a stale one left
// by a crash is removed when the bot next sees it (Stale).
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
	// sessionOwnExpiry is the lifetime written into a session membership (js-sdk's default).
	sessionOwnExpiry = 4 * time.Hour
	// msc3401OwnExpiry is the lifetime of an MSC3401 entry (js-sdk's DEVICE_TIMEOUT).
	msc3401OwnExpiry = time.Hour
	// leaveDelay is how long after the bot stops restarting it the delayed leave fires.
	leaveDelay = 30 * time.Second
	// leaveRestart is how often the delayed leave is pushed back.
	leaveRestart = 10 * time.Second
	// refreshRetry is when a failed refresh is tried again.
	refreshRetry = time.Minute
)

// OwnSpec says which membership the bot publishes in a room's call.
type OwnSpec struct {
	// Format is the call's own: FormatSession for MatrixRTC calls, FormatMSC3401 for
	// full-mesh ones. (Publish refuses the others: a sticky membership needs content()
	// and send() to learn it, and a sender for sticky events.)
	Format Format
	// RoomVersion picks the form of a session membership's state key.
	RoomVersion string
	// Type is the member event type (the call's stable or unstable one; default
	// TypeCallMember).
	Type event.Type
	// SlotID, SessionID and Feeds make the MSC3401 entry: the group call id, the bot's
	// session in it and the feeds it sends.
	SlotID    string
	SessionID string
	Feeds     []string
	// Expiry is the lifetime written into the membership (default: the format's, 4 h for
	// a session membership, 1 h for an MSC3401 entry); it is rewritten after three
	// quarters of it.
	Expiry time.Duration
	// Current returns the content of the bot's member event as the room has it now
	// (FormatMSC3401: the event is shared with the other devices and calls of the bot's
	// account, which are kept).
	Current func() json.RawMessage
}

// Own is the bot's own membership in one room's call: published while it records, so that
// clients list it (and send it their media keys, or call it), kept alive, and removed
// after. Safe for concurrent use.
type Own struct {
	mx       Matrix
	room     id.RoomID
	spec     OwnSpec
	stateKey string
	log      zerolog.Logger
	removed  chan struct{}

	mu        sync.Mutex
	created   time.Time
	foci      []Transport
	delayed   DelayedEvents
	delayID   string
	published bool
	gone      bool
}

// NewOwn prepares the bot's membership in room's call; nothing is sent before Publish.
func NewOwn(mx Matrix, room id.RoomID, spec OwnSpec, log zerolog.Logger) *Own {
	if spec.Type.Type == "" {
		spec.Type = TypeCallMember
	}
	if spec.Expiry <= 0 {
		spec.Expiry = sessionOwnExpiry
		if spec.Format == FormatMSC3401 {
			spec.Expiry = msc3401OwnExpiry
		}
	}
	o := &Own{mx: mx, room: room, spec: spec, log: log, removed: make(chan struct{})}
	switch spec.Format {
	case FormatMSC3401:
		o.stateKey = string(mx.UserID())
	default:
		o.stateKey = SessionStateKey(mx.UserID(), mx.DeviceID(), spec.RoomVersion)
	}
	return o
}

// self is the bot's device.
func (o *Own) self() DeviceKey { return DeviceKey{User: o.mx.UserID(), Device: o.mx.DeviceID()} }

// holdsOnlySelf reports whether the format's event holds this device alone, so that an
// empty event (a delayed leave) removes exactly the bot.
func (o *Own) holdsOnlySelf() bool { return o.spec.Format == FormatSession }

// content builds the membership at now (refresh: not the first time).
func (o *Own) content(now time.Time, refresh bool) (any, error) {
	switch o.spec.Format {
	case FormatSession:
		return sessionContent(o.self(), o.foci, o.created, now, o.spec.Expiry, refresh), nil
	case FormatMSC3401:
		dev := &msc3401Device{SessionID: o.spec.SessionID, ExpiresAt: now.Add(o.spec.Expiry), Feeds: o.spec.Feeds}
		c, _ := msc3401Content(o.current(), o.spec.SlotID, o.mx.DeviceID(), dev, now)
		return c, nil
	}
	return nil, fmt.Errorf("the bot cannot publish a %s membership", o.spec.Format)
}

func (o *Own) current() json.RawMessage {
	if o.spec.Current == nil {
		return nil
	}
	return o.spec.Current()
}

// Publish writes the membership with the given foci (the first time with a delayed leave,
// when the homeserver can do it and the event holds the bot's device alone).
func (o *Own) Publish(ctx context.Context, foci []Transport) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.foci = foci
	return o.publishLocked(ctx)
}

func (o *Own) publishLocked(ctx context.Context) error {
	if o.gone {
		return errors.New("the bot's call membership was removed")
	}
	now := time.Now()
	refresh := o.published
	if !o.published {
		o.created = now
		if d, ok := o.mx.(DelayedEvents); ok && o.holdsOnlySelf() && o.delayed == nil && d.SupportsDelayedEvents(ctx) {
			delayID, err := d.SendDelayedState(ctx, o.room, o.spec.Type, o.stateKey, map[string]any{}, leaveDelay)
			if err != nil {
				o.log.Warn().Err(err).Msg("Could not schedule a delayed leave; the membership is removed when recording stops")
			} else {
				o.delayed, o.delayID = d, delayID
			}
		}
	}
	content, err := o.content(now, refresh)
	if err != nil {
		return err
	}
	if err := o.send(ctx, content); err != nil {
		return fmt.Errorf("publish the bot's call membership: %w", err)
	}
	o.published = true
	return nil
}

// send writes content where the format keeps the bot's membership: its member state event.
func (o *Own) send(ctx context.Context, content any) error {
	return o.mx.SendState(ctx, o.room, o.spec.Type, o.stateKey, content)
}

// KeepAlive pushes the delayed leave back and rewrites the membership before it expires
// (a failed rewrite is tried again a minute later), until ctx ends or the membership is
// removed.
func (o *Own) KeepAlive(ctx context.Context) {
	every := o.spec.Expiry * 3 / 4
	var restart <-chan time.Time // pushes the delayed leave back, if the format has one
	if o.holdsOnlySelf() {
		t := time.NewTicker(leaveRestart)
		defer t.Stop()
		restart = t.C
	}
	refresh := time.NewTimer(every)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.removed:
			return
		case <-restart:
			o.mu.Lock()
			d, delayID := o.delayed, o.delayID
			o.mu.Unlock()
			if d != nil {
				if err := d.UpdateDelayedEvent(ctx, delayID, "restart"); err != nil && ctx.Err() == nil {
					o.log.Warn().Err(err).Msg("Could not push back the delayed leave")
				}
			}
		case <-refresh.C:
			next := every
			o.mu.Lock()
			err := o.publishLocked(ctx)
			o.mu.Unlock()
			if err != nil && ctx.Err() == nil {
				o.log.Warn().Err(err).Msg("Could not refresh the bot's call membership; retrying in a minute")
				next = min(refreshRetry, every)
			}
			refresh.Reset(next)
		}
	}
}

// Remove takes the membership back, as clients leave, if it was published; it is not
// published again after.
func (o *Own) Remove(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.gone {
		o.gone = true
		close(o.removed)
	}
	if !o.published {
		return nil
	}
	if o.delayed != nil {
		if err := o.delayed.UpdateDelayedEvent(ctx, o.delayID, "cancel"); err != nil {
			o.log.Debug().Err(err).Msg("Could not cancel the delayed leave")
		}
		o.delayed = nil
	}
	var leave any = map[string]any{}
	if o.spec.Format == FormatMSC3401 {
		raw := o.current()
		content, changed := msc3401Content(raw, o.spec.SlotID, o.mx.DeviceID(), nil, time.Now())
		if !changed && raw != nil {
			o.published = false
			return nil
		}
		leave = content
	}
	if err := o.send(ctx, leave); err != nil {
		return fmt.Errorf("remove the bot's call membership: %w", err)
	}
	o.published = false
	return nil
}
