package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/bot/e2ee"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/roomerr"
)

// batchSyncer processes a sync response like mautrix's syncer, telling the call backends
// where a response begins and ends: the 1:1 calls handle its call events together once it
// is all decrypted, as matrix-js-sdk does.
type batchSyncer struct {
	*mautrix.DefaultSyncer
	bot *Bot
}

func (s *batchSyncer) ProcessResponse(ctx context.Context, res *mautrix.RespSync, since string) error {
	b := s.bot
	decrypted := e2ee.DecryptToDevice(ctx, b.crypto.Machine(), res, since, b.log)
	b.rooms.BeginSync()
	// Decrypted to-device events first, as the crypto machine would handle them.
	for _, evt := range decrypted {
		s.Dispatch(ctx, evt)
	}
	err := s.DefaultSyncer.ProcessResponse(ctx, res, since)
	b.rooms.EndSync(ctx)
	if err == nil {
		b.synced.Beat()
		b.responses.Add(1)
	}
	b.readyOnce.Do(func() {
		close(b.ready)
		b.log.Info().Msg("First sync done; ready")
	})
	return err
}

func (b *Bot) registerHandlers() {
	// Decrypted sticky memberships, rings and declines are parsed as known types.
	matrixrtc.RegisterEventTypes()
	syncer := b.client.Syncer.(*batchSyncer)
	syncer.OnEventType(event.StateMember, b.onMember)
	syncer.OnEventType(event.EventMessage, b.onMessage)
	syncer.OnEvent(b.rooms.HandleEvent)
}

// onMember joins rooms the bot is invited to and leaves rooms where nobody else is left.
func (b *Bot) onMember(ctx context.Context, evt *event.Event) {
	content := evt.Content.AsMember()
	if content == nil {
		return
	}
	target := id.UserID(evt.GetStateKey())
	log := b.log.With().Stringer("room_id", evt.RoomID).Stringer("user_id", target).Str("membership", string(content.Membership)).Logger()
	if target == b.client.UserID {
		if content.Membership == event.MembershipInvite && evt.Mautrix.EventSource&event.SourceInvite != 0 {
			b.onInvite(ctx, evt)
		}
		if (content.Membership == event.MembershipLeave || content.Membership == event.MembershipBan) && b.roomCrypto != nil {
			b.roomCrypto.Forget(evt.RoomID)
		}
		return
	}
	if evt.Mautrix.EventSource&event.SourceTimeline == 0 {
		return
	}
	switch content.Membership {
	case event.MembershipLeave, event.MembershipBan:
		log.Debug().Msg("Member left") // their 1:1 calls end (call/onetoone sees the event too)
		go b.leaveIfAlone(context.WithoutCancel(ctx), evt.RoomID)
	}
}

func (b *Bot) onInvite(ctx context.Context, evt *event.Event) {
	log := b.log.With().Stringer("room_id", evt.RoomID).Stringer("inviter", evt.Sender).Logger()
	if !b.inviterAllowed(evt.Sender) {
		log.Info().Msg("Declining invite from someone not in bot.allowed_inviters (empty: the bot's own homeserver only)")
		if _, err := b.client.LeaveRoom(ctx, evt.RoomID, &mautrix.ReqLeave{Reason: "This recorder only accepts invites from its operator's allowed users."}); err != nil {
			log.Warn().Err(err).Msg("Failed to decline invite")
		}
		return
	}
	// Who invited the bot counts for recordings.max_per_inviter.
	if err := b.lc.SetInviter(ctx, evt.RoomID, evt.Sender); err != nil {
		log.Warn().Err(err).Msg("Could not record who invited me")
	}
	// Join outside the sync goroutine, retrying a little: some homeservers answer an
	// invite's join with an error for a moment.
	go func() {
		ctx := context.WithoutCancel(ctx)
		for attempt := 0; attempt < 5; attempt++ {
			_, err := b.client.JoinRoomByID(ctx, evt.RoomID)
			if err == nil {
				log.Info().Msg("Joined room")
				if b.lc.ClaimEvent(ctx, evt.ID) { // one instance of a fleet greets
					b.greet(ctx, evt.RoomID, evt.Content.AsMember().IsDirect)
				}
				return
			}
			log.Warn().Err(err).Int("attempt", attempt+1).Msg("Failed to join room")
			time.Sleep(time.Duration(attempt+1) * time.Second)
		}
	}()
}

// inviterAllowed applies bot.allowed_inviters (empty: the bot's own homeserver only).
func (b *Bot) inviterAllowed(sender id.UserID) bool {
	return b.cfg.Bot.InviterAllowed(string(sender), b.client.UserID.Homeserver())
}

// greet says hello in a room the bot joined, and how to get a recording there: in a
// direct chat (the invite says so, or the bot is alone with one person) a call is
// answered by itself; in a group room !start records the call.
func (b *Bot) greet(ctx context.Context, roomID id.RoomID, direct bool) {
	if !b.cfg.Bot.Notices {
		return
	}
	b.notice(ctx, roomID, b.greeting(direct || b.isDirect(ctx, roomID)), "")
}

// greeting is the hello for a direct chat or a group room.
func (b *Bot) greeting(direct bool) string {
	p := b.cfg.Bot.CommandPrefix
	how := fmt.Sprintf("When a call is going on here, type %sstart to record it and %sstop to end the recording.", p, p)
	if direct && b.cfg.Calls.AutoAnswer {
		how = "Call me here and I answer and record the call; hang up to stop."
	}
	return "Hello! I record calls, one file per person and track, all on one timeline. " + how + " Type " + p + "help for all commands."
}

// isDirect reports whether the bot is alone in a room with one other person, counting
// those invited: a group room that its creator just made has one member joined, and
// the others invited.
func (b *Bot) isDirect(ctx context.Context, roomID id.RoomID) bool {
	resp, err := b.client.Members(ctx, roomID, mautrix.ReqMembers{NotMembership: event.MembershipLeave})
	if err != nil {
		return false
	}
	others := 0
	for _, evt := range resp.Chunk {
		m := evt.Content.AsMember()
		if id.UserID(evt.GetStateKey()) != b.client.UserID && (m.Membership == event.MembershipJoin || m.Membership == event.MembershipInvite) {
			others++
		}
	}
	return others == 1
}

func (b *Bot) leaveIfAlone(ctx context.Context, roomID id.RoomID) {
	resp, err := b.client.JoinedMembers(ctx, roomID)
	if err != nil {
		return
	}
	for uid := range resp.Joined {
		if uid != b.client.UserID {
			return
		}
	}
	b.log.Info().Stringer("room_id", roomID).Msg("Everybody else left; leaving the room")
	if _, err := b.client.LeaveRoom(ctx, roomID); err != nil {
		b.log.Warn().Err(err).Stringer("room_id", roomID).Msg("Failed to leave room")
	}
}

// admitCall applies the auto-record rule: the bot answers 1:1 calls only in rooms where it
// and exactly one other person are joined (Element places legacy calls only there), so it
// never steals a call between two people.
// The same rule (and the same limits) applies to every call that rings the bot: a legacy
// call, and a MatrixRTC call in a direct room (livekit_dm.go).
func (b *Bot) admitCall(ctx context.Context, roomID id.RoomID, sender id.UserID, kind recorder.Kind) error {
	// On a shared database the instance that wins the room takes the call, or refuses
	// it (fleet.go). A refusal keeps the room's lease for a while (the lifecycle gives it
	// back), so the instances that try later do not refuse the call a second time.
	if ok, err := b.lc.ClaimRoom(ctx, roomID, kind); err != nil {
		b.log.Error().Err(err).Stringer("room_id", roomID).Msg("Could not take the room's lease; leaving the call to the other instances")
		return errOtherInstance
	} else if !ok {
		return errOtherInstance
	}
	if !b.cfg.Calls.AutoAnswer {
		return errors.New("answering calls is turned off on this recorder (calls.auto_answer)")
	}
	peer, err := b.directPeer(ctx, roomID)
	if errors.Is(err, errNotDirect) {
		return err
	} else if err != nil {
		// The reason is said in the room: the error's text stays in the log.
		return errors.New(roomerr.Clause(b.log.With().Stringer("room_id", roomID).Logger(), err, "Could not check the room of a call"))
	}
	if peer != sender {
		return errors.New("the caller is not a member of this room")
	}
	return b.lc.Admit(ctx, roomID, kind)
}

// errOtherInstance: another recorder instance of the fleet takes the call (it won the
// room's lease): this one says nothing about it, neither an answer nor a refusal.
var errOtherInstance = errors.New("another recorder instance takes this call")

// errNotDirect: a room where the bot is not alone with one other person.
var errNotDirect = errors.New("not a direct room")

// directPeer returns the one other person joined in a room where the bot and exactly one
// other person are joined (the rooms where the bot records calls by itself); otherwise
// the error (wrapping errNotDirect) says why not.
func (b *Bot) directPeer(ctx context.Context, roomID id.RoomID) (id.UserID, error) {
	resp, err := b.client.JoinedMembers(ctx, roomID)
	if err != nil {
		return "", fmt.Errorf("could not read the room's members: %w", err)
	}
	var peer id.UserID
	others := 0
	for uid := range resp.Joined {
		if uid == b.client.UserID {
			continue
		}
		others++
		peer = uid
	}
	if others != 1 {
		return "", fmt.Errorf("%w: this room has %d other members; I record 1:1 calls only when I am alone with the caller", errNotDirect, others)
	}
	return peer, nil
}

func (b *Bot) onMessage(ctx context.Context, evt *event.Event) {
	if evt.Sender == b.client.UserID || evt.Mautrix.EventSource&(event.SourceTimeline|event.SourceDecrypted) == 0 {
		return
	}
	if time.UnixMilli(evt.Timestamp).Before(b.startedAt.Add(-5 * time.Second)) {
		return // history from before this run
	}
	msg := evt.Content.AsMessage()
	if msg == nil || (msg.MsgType != event.MsgText && msg.MsgType != event.MsgNotice) {
		return
	}
	if msg.MsgType == event.MsgNotice {
		return // bots talk to bots with notices; never answer them
	}
	if !b.lc.Fleet() {
		b.cmds.Dispatch(ctx, evt, msg.Body, b.mentioned(evt, msg))
		return
	}
	// Several instances see this message: one answers (lifecycle.Route). A command that
	// may start a recording waits according to the instance's load, off the sync loop.
	if !strings.HasPrefix(msg.Body, b.cfg.Bot.CommandPrefix) {
		return // Dispatch ignores it too
	}
	mentioned := b.mentioned(evt, msg)
	fields := strings.Fields(strings.TrimPrefix(msg.Body, b.cfg.Bot.CommandPrefix))
	admission := len(fields) > 0 && strings.EqualFold(fields[0], "start")
	run := func(ctx context.Context) {
		if b.lc.Route(ctx, evt.RoomID, evt.ID, admission, recorder.KindMesh) {
			b.cmds.Dispatch(ctx, evt, msg.Body, mentioned)
		}
	}
	if !admission {
		run(ctx)
		return
	}
	go run(context.WithoutCancel(ctx))
}
