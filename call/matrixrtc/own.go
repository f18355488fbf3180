package matrixrtc

import (
	"context"
	"crypto/rand"
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

// StickyEvents is what the bot's Matrix side offers for sticky events (MSC4354). Own
// finds it on its Matrix by a type assertion; a sticky membership needs it, and falls back
// to a session state event without it.
type StickyEvents interface {
	// SupportsStickyEvents reports whether the homeserver advertises MSC4354.
	SupportsStickyEvents(ctx context.Context) bool
	// SendSticky sends a room event (encrypted where the room is) that stays sticky for
	// duration. With delay > 0 it is scheduled instead (MSC4140) and the delay id returned.
	SendSticky(ctx context.Context, roomID id.RoomID, evtType event.Type, content any, duration, delay time.Duration) (id.EventID, string, error)
}

// ErrNoStickyEvents is what a StickyEvents returns when the homeserver refuses a sticky
// event as such (it does not know the parameter); Own then falls back to a state event.
var ErrNoStickyEvents = errors.New("the homeserver does not support sticky events (MSC4354)")

// Own-membership timing.
const (
	// sessionOwnExpiry is the lifetime written into a session membership (js-sdk's default).
	sessionOwnExpiry = 4 * time.Hour
	// msc3401OwnExpiry is the lifetime of an MSC3401 entry (js-sdk's DEVICE_TIMEOUT).
	msc3401OwnExpiry = time.Hour
	// stickyOwnDuration is how long the bot's sticky membership stays sticky (js-sdk's
	// MEMBERSHIP_STICKY_DURATION_MS, MSC4354's maximum); it is sent again before.
	stickyOwnDuration = time.Hour
	// leaveDelay is how long after the bot stops restarting it the delayed leave fires.
	leaveDelay = 30 * time.Second
	// leaveRestart is how often the delayed leave is pushed back.
	leaveRestart = 10 * time.Second
	// refreshRetry is when a failed refresh is tried again.
	refreshRetry = time.Minute
)

// OwnSpec says which membership the bot publishes in a room's call.
type OwnSpec struct {
	// Format is the call's own: FormatSticky when its members publish sticky
	// memberships (it falls back to FormatSession where the homeserver lacks sticky
	// events), FormatSession for other MatrixRTC calls, FormatMSC3401 for full-mesh ones.
	Format Format
	// RoomVersion picks the form of a session membership's state key.
	RoomVersion string
	// Type is the member event type (the call's stable or unstable one; default
	// TypeCallMember, TypeRTCMember for FormatSticky).
	Type event.Type
	// MemberID is the bot's member id in a sticky membership (default: a new random one,
	// as Element Call makes one per call).
	MemberID string
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

	mu sync.Mutex
	// format and typ are where the membership goes: the spec's, or the session state
	// event a sticky membership falls back to.
	format    Format
	typ       event.Type
	sticky    StickyEvents
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
		if spec.Format == FormatSticky {
			spec.Type = TypeRTCMember
		}
	}
	if spec.Expiry <= 0 {
		switch spec.Format {
		case FormatMSC3401:
			spec.Expiry = msc3401OwnExpiry
		case FormatSticky:
			spec.Expiry = stickyOwnDuration
		default:
			spec.Expiry = sessionOwnExpiry
		}
	}
	if spec.Format == FormatSticky && spec.MemberID == "" {
		spec.MemberID = newMemberID()
	}
	o := &Own{mx: mx, room: room, spec: spec, log: log, removed: make(chan struct{}), format: spec.Format, typ: spec.Type}
	switch spec.Format {
	case FormatMSC3401:
		o.stateKey = string(mx.UserID())
	default:
		o.stateKey = SessionStateKey(mx.UserID(), mx.DeviceID(), spec.RoomVersion)
	}
	return o
}

// newMemberID makes a member id as Element Call does (a random UUID, version 4).
func newMemberID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Format is the format the membership is (or will be) published in: the spec's, or
// FormatSession where a sticky membership fell back to a state event.
func (o *Own) Format() Format {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.format
}

// MemberID is the bot's member id in the published membership ("@user:server:DEVICE" for a
// state-event one).
func (o *Own) MemberID() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.memberIDLocked()
}

func (o *Own) memberIDLocked() string {
	if o.format == FormatSticky {
		return o.spec.MemberID
	}
	return SessionIdentity(o.mx.UserID(), o.mx.DeviceID())
}

// Identity is the LiveKit identity that goes with the published membership: what the bot
// must join the SFU as, so that clients pair its membership with its participant.
func (o *Own) Identity() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return Identity(o.format, o.mx.UserID(), o.mx.DeviceID(), o.memberIDLocked())
}

// self is the bot's device.
func (o *Own) self() DeviceKey { return DeviceKey{User: o.mx.UserID(), Device: o.mx.DeviceID()} }

// holdsOnlySelf reports whether the format's event holds this device alone, so that an
// empty event (a delayed leave) removes exactly the bot.
func (o *Own) holdsOnlySelf() bool { return o.format == FormatSession || o.format == FormatSticky }

// content builds the membership at now.
func (o *Own) content(now time.Time) (any, error) {
	switch o.format {
	case FormatSticky:
		return stickyContent(o.self(), o.spec.MemberID, o.foci), nil
	case FormatSession:
		expiry := o.spec.Expiry
		if o.spec.Format != FormatSession {
			expiry = sessionOwnExpiry // a sticky membership that fell back
		}
		return sessionContent(o.self(), o.foci, o.created, now, expiry), nil
	case FormatMSC3401:
		dev := &msc3401Device{SessionID: o.spec.SessionID, ExpiresAt: now.Add(o.spec.Expiry), Feeds: o.spec.Feeds}
		c, _ := msc3401Content(o.current(), o.spec.SlotID, o.mx.DeviceID(), dev, now)
		return c, nil
	}
	return nil, fmt.Errorf("the bot cannot publish a %s membership", o.format)
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
		if o.format == FormatSticky {
			o.pickSticky(ctx)
		}
		o.scheduleLeave(ctx)
	}
	content, err := o.content(now)
	if err != nil {
		return err
	}
	err = o.send(ctx, content)
	if errors.Is(err, ErrNoStickyEvents) && !refresh {
		o.log.Info().Err(err).Msg("The homeserver refused the sticky membership; publishing it as a state event")
		o.cancelLeave(ctx)
		o.fallBack()
		o.scheduleLeave(ctx)
		if content, err = o.content(now); err == nil {
			err = o.send(ctx, content)
		}
	}
	if err != nil {
		return fmt.Errorf("publish the bot's call membership: %w", err)
	}
	o.published = true
	return nil
}

// pickSticky keeps a sticky membership sticky where the homeserver has sticky events and
// makes it a session state event elsewhere (Dendrite), as js-sdk's clients fall back.
func (o *Own) pickSticky(ctx context.Context) {
	if s, ok := o.mx.(StickyEvents); ok && s.SupportsStickyEvents(ctx) {
		o.sticky = s
		return
	}
	o.log.Info().Msg("The homeserver has no sticky events (MSC4354); publishing the call membership as a state event")
	o.fallBack()
}

// fallBack turns a sticky membership into a session state event.
func (o *Own) fallBack() {
	o.format, o.typ, o.sticky = FormatSession, TypeCallMember, nil
}

// scheduleLeave schedules the delayed leave (MSC4140) when the homeserver can do it and
// the event holds the bot's device alone.
func (o *Own) scheduleLeave(ctx context.Context) {
	d, ok := o.mx.(DelayedEvents)
	if !ok || !o.holdsOnlySelf() || o.delayed != nil || !d.SupportsDelayedEvents(ctx) {
		return
	}
	var delayID string
	var err error
	if o.format == FormatSticky {
		_, delayID, err = o.sticky.SendSticky(ctx, o.room, o.typ, o.leaveContent(), stickyOwnDuration, leaveDelay)
	} else {
		delayID, err = d.SendDelayedState(ctx, o.room, o.typ, o.stateKey, map[string]any{}, leaveDelay)
	}
	if err != nil {
		o.log.Warn().Err(err).Msg("Could not schedule a delayed leave; the membership is removed when recording stops")
		return
	}
	o.delayed, o.delayID = d, delayID
}

// cancelLeave cancels a scheduled delayed leave.
func (o *Own) cancelLeave(ctx context.Context) {
	if o.delayed == nil {
		return
	}
	if err := o.delayed.UpdateDelayedEvent(ctx, o.delayID, "cancel"); err != nil {
		o.log.Debug().Err(err).Msg("Could not cancel the delayed leave")
	}
	o.delayed, o.delayID = nil, ""
}

// leaveContent is what removes a session or sticky membership.
func (o *Own) leaveContent() any {
	if o.format == FormatSticky {
		return stickyLeave(o.spec.MemberID)
	}
	return map[string]any{}
}

// send writes content where the format keeps the bot's membership: its member state
// event, or a sticky event under its member id.
func (o *Own) send(ctx context.Context, content any) error {
	if o.format == FormatSticky {
		_, _, err := o.sticky.SendSticky(ctx, o.room, o.typ, content, stickyOwnDuration, 0)
		return err
	}
	return o.mx.SendState(ctx, o.room, o.typ, o.stateKey, content)
}

// KeepAlive pushes the delayed leave back and rewrites the membership before it expires
// (a failed rewrite is tried again a minute later), until ctx ends or the membership is
// removed.
func (o *Own) KeepAlive(ctx context.Context) {
	every := o.spec.Expiry * 3 / 4
	var restart <-chan time.Time // pushes the delayed leave back, if the format has one
	o.mu.Lock()
	onlySelf := o.holdsOnlySelf()
	o.mu.Unlock()
	if onlySelf {
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
	o.cancelLeave(ctx)
	leave := o.leaveContent()
	if o.format == FormatMSC3401 {
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
