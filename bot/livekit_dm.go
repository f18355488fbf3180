package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/call/rooms"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/roomerr"
)

// Direct calls of today's clients: Element X (and Element Web where Element Call places DM
// calls) calls a person by joining the room's MatrixRTC session and ringing the room. In a
// room where the bot is alone with one other person (admitCall's rule, the one of legacy
// calls), a ring, or a session that person starts, makes the bot answer: it records the
// call with the LiveKit backend, subject to calls.auto_answer and the limits of a 1:1 call,
// and the recording ends when the caller leaves the call. In group rooms rings change
// nothing (!start, !autorecord).

// onRing answers a call that rings the bot (livekit.Options.OnRing).
func (b *Bot) onRing(ctx context.Context, room id.RoomID, ring matrixrtc.Ring) {
	b.answerDirect(ctx, room, call.Answer{Caller: ring.Sender, Ring: ring.EventID, Intent: ring.Intent})
}

// directCallBegan answers a call that began in a direct room without ringing the bot (or
// whose ring the bot saw before it started); it reports whether it took the call on (a
// direct room, with calls.auto_answer on: otherwise !autorecord decides, silently).
func (b *Bot) directCallBegan(ctx context.Context, room id.RoomID) bool {
	if !b.cfg.Calls.AutoAnswer {
		return false
	}
	peer, err := b.directPeer(ctx, room)
	if err != nil {
		return false
	}
	if b.lk == nil {
		return true
	}
	ans, err := b.lk.DirectCall(room, peer)
	if err != nil {
		b.log.Info().Err(err).Stringer("room_id", room).Stringer("caller", peer).Msg("Not answering the call in a direct room")
		return true
	}
	b.answerDirect(ctx, room, ans)
	return true
}

// answerDirect records a direct call that rang the bot, a MatrixRTC call (onRing,
// directCallBegan) or a legacy 1:1 call (call/onetoone's OnRing), or says in the room why
// not (and declines it, so the caller's client stops ringing).
func (b *Bot) answerDirect(ctx context.Context, room id.RoomID, ans call.Answer) {
	kind := ans.KindOf()
	log := b.log.With().Stringer("room_id", room).Stringer("caller", ans.Caller).Stringer("ring", ans.Ring).Str("kind", string(kind)).Logger()
	if kind == recorder.KindDirect {
		if b.rooms.Recording(room) {
			return // answered already (the ring, then the session it rang for)
		}
		// Group rooms: a MatrixRTC ring rings everyone there; it changes nothing, not even
		// a refusal. (A legacy invite is for the bot: it is refused there, with why.)
		if peer, err := b.directPeer(ctx, room); err != nil || peer != ans.Caller {
			log.Debug().Err(err).Msg("A call rang in a room that is not a direct one with its caller; not answering")
			return
		}
	}
	err := b.admitCall(ctx, room, ans.Caller, kind)
	if errors.Is(err, errOtherInstance) {
		log.Debug().Msg("Another recorder instance answers the call")
		return
	}
	// A refusal keeps the room's lease until the lifecycle gives it back after a while,
	// so the instances that try later do not answer the ring again (fleet.go).
	reason := ""
	if err != nil {
		log.Info().Err(err).Msg("Not answering the call")
		reason = err.Error()
	} else {
		err = b.rooms.Answer(ctx, room, ans)
		var ue userError
		switch {
		case err == nil || (kind == recorder.KindDirect && errors.Is(err, rooms.ErrAlreadyRecording)):
			return
		case errors.Is(err, call.ErrNotAnswered):
			log.Info().Err(err).Msg("Not answering the call")
			return
		case errors.As(err, &ue):
			reason = strings.TrimSuffix(ue.Msg, ".")
		default:
			reason = roomerr.Clause(log, err, "Could not answer the call")
		}
	}
	if err := b.rooms.Decline(ctx, room, ans); err != nil {
		log.Warn().Err(err).Msg("Could not decline the call")
	}
	if b.cfg.Bot.Notices {
		b.notice(ctx, room, fmt.Sprintf("I did not answer the call from %s: %s.", ans.Caller, reason), "")
	}
}
