package matrixrtc

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
)

// staleDelay is how long after seeing a membership of its own device the bot looks again:
// by then the rest of the sync is handled (an old join followed by its leave, as a
// timeline replay brings them, is not stale) and a !start on its way has registered.
const staleDelay = 3 * time.Second

// StateMatrix is what removing a stale membership needs: the room's state besides sending.
type StateMatrix interface {
	Matrix
	// State returns the room's current state from the homeserver.
	State(ctx context.Context, roomID id.RoomID) (mautrix.RoomStateMap, error)
}

// Stale removes memberships of the bot's device that a run of the bot which did not finish
// (a crash, a kill) left in a room: clients would go on listing the bot in the call,
// calling it or sending it keys. Each backend runs one for the formats it publishes.
type Stale struct {
	ctx     context.Context
	mx      StateMatrix
	formats []Format
	busy    func(id.RoomID) bool
	log     zerolog.Logger
	delay   time.Duration

	mu       sync.Mutex
	checking map[id.RoomID]bool
	wg       sync.WaitGroup
}

// NewStale returns a Stale that works until ctx ends. busy reports whether a recording (or
// its start) in the room owns the bot's membership there now; it is called without locks.
func NewStale(ctx context.Context, mx StateMatrix, busy func(id.RoomID) bool, log zerolog.Logger, formats ...Format) *Stale {
	return &Stale{ctx: ctx, mx: mx, formats: formats, busy: busy, log: log, delay: staleDelay, checking: map[id.RoomID]bool{}}
}

// Seen looks at a membership event in a room: when the bot sent it, it lists the bot's
// device and nothing records there, the room's state is read again a little later and
// every membership of the device still in it is removed.
func (s *Stale) Seen(evt *event.Event, content json.RawMessage) {
	room := evt.RoomID
	if room == "" || evt.Sender != s.mx.UserID() {
		return
	}
	if _, listed := s.format(evt, content); !listed || s.busy(room) {
		return
	}
	s.mu.Lock()
	if s.checking[room] {
		s.mu.Unlock()
		return
	}
	s.checking[room] = true
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.checking, room)
			s.mu.Unlock()
		}()
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(s.delay):
		}
		if !s.busy(room) {
			s.sweep(room)
		}
	}()
}

// Wait returns when no check runs any more.
func (s *Stale) Wait() { s.wg.Wait() }

// format tells whether evt holds an unexpired membership of the bot's device in one of
// the formats, and in which.
func (s *Stale) format(evt *event.Event, content json.RawMessage) (Format, bool) {
	u, _ := Parse(evt, content, time.Now())
	self := DeviceKey{User: s.mx.UserID(), Device: s.mx.DeviceID()}
	for _, m := range u.Only(s.formats...).Members {
		if m.Key() == self {
			return m.Format, true
		}
	}
	return FormatUnknown, false
}

// sweep removes every membership of the bot's device from the room's member state events.
func (s *Stale) sweep(room id.RoomID) {
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	log := s.log.With().Stringer("room_id", room).Logger()
	st, err := s.mx.State(ctx, room)
	if err != nil {
		log.Debug().Err(err).Msg("Could not read the room's state to remove a stale call membership")
		return
	}
	for _, typ := range []event.Type{TypeCallMember, TypeCallMemberStable} {
		for key, evt := range st[typ] {
			if evt == nil || !StateKeyOwnedBy(key, s.mx.UserID()) {
				continue
			}
			content := call.RawContent(evt)
			f, ok := s.format(evt, content)
			if !ok {
				continue
			}
			var leave any = map[string]any{}
			if f == FormatMSC3401 {
				leave, _ = msc3401Without(content, s.mx.DeviceID(), time.Now())
			}
			if err := s.mx.SendState(ctx, room, typ, key, leave); err != nil {
				log.Warn().Err(err).Msg("Could not remove the call membership of this device a previous run left")
				continue
			}
			log.Info().Str("format", f.String()).Msg("Removed the call membership of this device a previous run left")
		}
	}
}
