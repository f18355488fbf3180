package livekit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// Direct calls: Element X (and Element Web where Element Call places DM calls) calls a
// person by joining the room's MatrixRTC session and ringing the room
// (org.matrix.msc4075.rtc.notification, "ring", referencing the caller's membership). The
// backend follows the rings and declines of every room and tells the bot of a ring meant
// for it (Options.OnRing); the bot decides whether the room is a direct one and answers
// with Start and a call.Answer.

// Bounds on the rings kept.
const (
	ringsPerRoom = 8
	ringRoomsMax = 64
	// ringKeep is how long a ring (or a decline) is remembered: beyond the longest
	// lifetime a ring may have.
	ringKeep = 5 * time.Minute
	// answerWait is how long an answer waits for the caller's membership to arrive (the
	// ring can come before it when the membership is a sticky event of a later sync).
	answerWait = 10 * time.Second
	// ringSlack: a notification without a reference to a membership belongs to the
	// caller's current call if it was sent after the membership (allowing for clocks).
	ringSlack = 5 * time.Second
)

// ErrNotAnswered: the call rang but is not to be answered any more (declined, expired).
var ErrNotAnswered = call.ErrNotAnswered

var _ call.Answerer = (*Backend)(nil)

// Answers says the backend answers MatrixRTC calls in direct rooms.
func (b *Backend) Answers() recorder.Kind { return recorder.KindDirect }

// Decline declines the ring of a call the bot does not answer (MSC4310), so the caller's
// client stops ringing.
func (b *Backend) Decline(ctx context.Context, room id.RoomID, ans call.Answer) error {
	d, ok := b.mx.(matrixrtc.Decliner)
	if !ok {
		return errors.New("cannot send a decline on this Matrix connection")
	}
	return matrixrtc.Decline(ctx, d, room, ans.Ring)
}

// ringRec is one ring of a room, or a decline whose ring has not been seen (yet).
type ringRec struct {
	ring     matrixrtc.Ring
	known    bool // the ring itself was seen (a decline can come first)
	declined bool
	// decliners are who declined it before the ring was seen (a caller's own decline of
	// their ring does not count).
	decliners []id.UserID
	at        time.Time // when the bot saw it
	origin    time.Time // its origin_server_ts
}

// handleRing follows call notifications and declines.
func (b *Backend) handleRing(evt *event.Event) {
	self := b.self()
	if evt.Sender == self.User && evt.Type.Type != matrixrtc.TypeRTCDecline.Type {
		return
	}
	now := time.Now()
	room := evt.RoomID
	content := call.RawContent(evt)
	if evt.Type.Type == matrixrtc.TypeRTCDecline.Type {
		ringID, err := matrixrtc.ParseDecline(evt, content)
		if err != nil {
			b.log.Debug().Err(err).Stringer("room_id", room).Stringer("sender", evt.Sender).Msg("Ignoring a call decline")
			return
		}
		b.mu.Lock()
		rec := b.ringLocked(room, ringID, now, true)
		declined := false
		switch {
		case rec == nil:
		case !rec.known:
			if len(rec.decliners) < ringsPerRoom {
				rec.decliners = append(rec.decliners, evt.Sender)
			}
		case rec.ring.Sender != evt.Sender:
			// A caller does not decline their own ring; anyone else in the room (the
			// bot's own account on another device) does.
			rec.declined, declined = true, true
		}
		r := b.active[room]
		b.mu.Unlock()
		if declined {
			b.log.Info().Stringer("room_id", room).Stringer("ring", ringID).Stringer("by", evt.Sender).Msg("A call ring was declined")
			if r != nil {
				r.poke()
			}
		}
		return
	}
	ring, err := matrixrtc.ParseRing(evt, content, now)
	switch {
	case errors.Is(err, matrixrtc.ErrOtherCall):
		return
	case err != nil:
		b.log.Debug().Err(err).Stringer("room_id", room).Stringer("sender", evt.Sender).Msg("Ignoring a call notification")
		return
	}
	b.mu.Lock()
	rec := b.ringLocked(room, ring.EventID, now, true)
	seen := rec == nil || rec.known
	if rec != nil && !rec.known {
		rec.ring, rec.known, rec.origin = ring, true, time.UnixMilli(evt.Timestamp)
		for _, u := range rec.decliners {
			if u != ring.Sender {
				rec.declined = true
			}
		}
		rec.decliners = nil
	}
	declined := rec != nil && rec.declined
	b.mu.Unlock()
	if seen {
		return // a second copy (sticky and timeline) or no room to keep it
	}
	log := b.log.With().Stringer("room_id", room).Stringer("caller", ring.Sender).Stringer("ring", ring.EventID).Bool("ring_type", ring.Ring).
		Str("intent", ring.Intent).Logger()
	switch {
	case !ring.Ring:
		log.Debug().Msg("Call notification (not a ring)")
	case !ring.For(self.User):
		log.Debug().Msg("A call rings other people")
	case ring.Expired(now):
		log.Info().Time("expired", ring.Expires).Msg("A call rang, but its ring expired before the bot saw it; not answering it")
	case declined:
		log.Info().Msg("A call rang but was declined already")
	case b.opts.OnRing != nil:
		log.Info().Msg("A call rings")
		go b.opts.OnRing(b.ctx, room, ring)
	}
}

// ringLocked returns the record of a ring in room, adding an empty one when add is set and
// there is room for it (the oldest of a full room goes; rooms whose rings all aged go).
func (b *Backend) ringLocked(room id.RoomID, ringID id.EventID, now time.Time, add bool) *ringRec {
	recs := b.rings[room]
	for k, rec := range recs {
		if now.Sub(rec.at) > ringKeep {
			delete(recs, k)
		}
	}
	if rec := recs[ringID]; rec != nil || !add {
		return rec
	}
	if recs == nil {
		if len(b.rings) >= ringRoomsMax {
			for r, other := range b.rings {
				for k, rec := range other {
					if now.Sub(rec.at) > ringKeep {
						delete(other, k)
					}
				}
				if len(other) == 0 {
					delete(b.rings, r)
				}
			}
			if len(b.rings) >= ringRoomsMax {
				return nil
			}
		}
		recs = map[id.EventID]*ringRec{}
		b.rings[room] = recs
	}
	if len(recs) >= ringsPerRoom {
		var oldest id.EventID
		for k, rec := range recs {
			if oldest == "" || rec.at.Before(recs[oldest].at) {
				oldest = k
			}
		}
		delete(recs, oldest)
	}
	rec := &ringRec{at: now}
	recs[ringID] = rec
	return rec
}

// callRingLocked finds the latest ring of caller that belongs to the call the caller is in
// now (members are the room's current ones): one that references one of the caller's
// memberships, or an older-style one sent after the caller joined.
func (b *Backend) callRingLocked(room id.RoomID, caller id.UserID, members []matrixrtc.Member) *ringRec {
	var joined time.Time
	events := map[id.EventID]bool{}
	for _, m := range members {
		if m.UserID != caller {
			continue
		}
		events[m.EventID] = true
		if t := time.UnixMilli(m.CreatedTs); joined.IsZero() || t.Before(joined) {
			joined = t
		}
	}
	if joined.IsZero() {
		return nil
	}
	var best *ringRec
	for _, rec := range b.rings[room] {
		if !rec.known || rec.ring.Sender != caller || !rec.ring.Ring {
			continue
		}
		ofCall := events[rec.ring.Membership] || (rec.ring.Membership == "" && !rec.origin.Before(joined.Add(-ringSlack)))
		if ofCall && (best == nil || rec.origin.After(best.origin)) {
			best = rec
		}
	}
	return best
}

// DirectCall says how to answer the call caller is in, in a room the bot found to be a
// direct one, when nothing rang it (yet): a call whose ring was declined or expired is not
// answered (ErrNotAnswered), one without a ring is answered as the session it is, with the
// caller's intent.
func (b *Backend) DirectCall(room id.RoomID, caller id.UserID) (call.Answer, error) {
	now := time.Now()
	members := b.members(room, now)
	intent, in := "", false
	for _, m := range members {
		if m.UserID == caller {
			in = true
			if m.Intent != "" {
				intent = m.Intent
			}
		}
	}
	if !in {
		return call.Answer{}, fmt.Errorf("%s is not in a call here", caller)
	}
	b.mu.Lock()
	rec := b.callRingLocked(room, caller, members)
	var ring matrixrtc.Ring
	declined := false
	if rec != nil {
		ring, declined = rec.ring, rec.declined
	}
	b.mu.Unlock()
	ans := call.Answer{Caller: caller, Intent: intent}
	switch {
	case rec == nil:
		return ans, nil
	case declined:
		return call.Answer{}, fmt.Errorf("%w: its ring was declined", ErrNotAnswered)
	case ring.Expired(now):
		return call.Answer{}, fmt.Errorf("%w: it rang until %s and nobody answered", ErrNotAnswered, ring.Expires.UTC().Format("15:04:05 UTC"))
	}
	ans.Ring = ring.EventID
	if ring.Intent != "" {
		ans.Intent = ring.Intent
	}
	return ans, nil
}

// answerable checks that an answer may still go ahead: its ring was not declined and did
// not expire.
func (b *Backend) answerable(room id.RoomID, ans *call.Answer, now time.Time) error {
	if ans == nil || ans.Ring == "" {
		return nil
	}
	b.mu.Lock()
	rec := b.ringLocked(room, ans.Ring, now, false)
	var ring matrixrtc.Ring
	known, declined := false, false
	if rec != nil {
		ring, known, declined = rec.ring, rec.known, rec.declined
	}
	b.mu.Unlock()
	switch {
	case declined:
		return fmt.Errorf("%w: the ring was declined", ErrNotAnswered)
	case known && ring.Expired(now):
		return fmt.Errorf("%w: the ring expired", ErrNotAnswered)
	}
	return nil
}

// waitCaller waits (up to answerWait) until the caller has a membership in the room's call.
func (b *Backend) waitCaller(ctx context.Context, room id.RoomID, caller id.UserID) error {
	ctx, cancel := context.WithTimeout(ctx, answerWait)
	defer cancel()
	for {
		for _, m := range b.members(room, time.Now()) {
			if m.UserID == caller {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s is not in the room's call", caller)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
