package bot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/livekit"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
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
	lk := b.groups.liveKit()
	if lk == nil {
		return true
	}
	ans, err := lk.DirectCall(room, peer)
	if err != nil {
		b.log.Info().Err(err).Stringer("room_id", room).Stringer("caller", peer).Msg("Not answering the call in a direct room")
		return true
	}
	b.answerDirect(ctx, room, ans)
	return true
}

// answerDirect records a direct MatrixRTC call, or says in the room why not (and declines
// the ring, so the caller's client stops ringing).
func (b *Bot) answerDirect(ctx context.Context, room id.RoomID, ans call.Answer) {
	log := b.log.With().Stringer("room_id", room).Stringer("caller", ans.Caller).Stringer("ring", ans.Ring).Logger()
	if b.groups.recording(room) {
		return // answered already (the ring, then the session it rang for)
	}
	// Group rooms: rings change nothing there, not even a refusal.
	if peer, err := b.directPeer(ctx, room); err != nil || peer != ans.Caller {
		log.Debug().Err(err).Msg("A call rang in a room that is not a direct one with its caller; not answering")
		return
	}
	if err := b.admitCall(ctx, room, ans.Caller); err != nil {
		log.Info().Err(err).Msg("Not answering the call")
		b.declineRing(ctx, room, ans.Ring)
		voipObserver{b}.CallRefused(ctx, room, ans.Caller, err.Error())
		return
	}
	lk := b.groups.liveKit()
	if lk == nil {
		return
	}
	gr, err := b.groups.launch(ctx, lk, call.StartRequest{RoomID: room, By: ans.Caller, Answer: &ans})
	switch {
	case errors.Is(err, livekit.ErrNotAnswered):
		log.Info().Err(err).Msg("Not answering the call")
		return
	case err != nil:
		var ue userError
		if errors.As(err, &ue) && ue.Msg == "Already recording here." {
			return
		}
		log.Warn().Err(err).Msg("Could not answer the call")
		b.declineRing(ctx, room, ans.Ring)
		voipObserver{b}.CallRefused(ctx, room, ans.Caller, err.Error())
		return
	}
	if !b.cfg.Bot.Notices {
		return
	}
	st := gr.rec.Status()
	text := fmt.Sprintf("🔴 Recording this call with %s. Every track is saved as its own file. Hang up to stop.", ans.Caller)
	b.st.registerStartNotice(st.Folder, b.noticeMentions(ctx, room, text, "", []id.UserID{ans.Caller}), text)
}

// declineRing declines a ring the bot does not answer (MSC4310; js-sdk's sendRtcDecline:
// a sticky event keyed by the ring where the homeserver has them, a plain one elsewhere).
func (b *Bot) declineRing(ctx context.Context, room id.RoomID, ring id.EventID) {
	if ring == "" {
		return
	}
	content := map[string]any{
		"m.relates_to":       map[string]string{"rel_type": "m.reference", "event_id": string(ring)},
		"msc4354_sticky_key": string(ring),
	}
	m := botMatrix{b}
	sticky := m.SupportsStickyEvents(ctx)
	var err error
	if sticky {
		_, _, err = m.SendSticky(ctx, room, matrixrtc.TypeRTCDecline, content, declineSticky, 0)
	}
	if !sticky || errors.Is(err, matrixrtc.ErrNoStickyEvents) {
		_, err = m.SendMessage(ctx, room, matrixrtc.TypeRTCDecline, content)
	}
	if err != nil {
		b.log.Warn().Err(err).Stringer("room_id", room).Msg("Could not decline the ring")
	}
}

// declineSticky is how long a decline stays sticky: the longest lifetime a ring may have
// (js-sdk's RTC_NOTIFICATION_MAX_LIFETIME_MS).
const declineSticky = 2 * time.Minute

// liveKit is the backend that answers direct MatrixRTC calls.
func (g *groups) liveKit() *livekit.Backend {
	for _, be := range g.backends {
		if lk, ok := be.(*livekit.Backend); ok {
			return lk
		}
	}
	return nil
}

// recording reports whether a recording runs in the room.
func (g *groups) recording(room id.RoomID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.active[room] != nil
}

// answered reports whether the room's recording is a direct call the bot answered for
// caller (who may end it with !hangup or !stop).
func (g *groups) answered(room id.RoomID, caller id.UserID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	gr := g.active[room]
	return gr != nil && gr.caller != "" && gr.caller == caller
}
