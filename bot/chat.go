package bot

import (
	"context"
	"errors"
	"fmt"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/lifecycle"
)

// botChat is what the recording lifecycle may do in rooms (lifecycle.Chat).
type botChat struct{ b *Bot }

var _ lifecycle.Chat = botChat{}

func (c botChat) Notice(ctx context.Context, room id.RoomID, text string, replyTo id.EventID, mentions ...id.UserID) id.EventID {
	return c.b.noticeMentions(ctx, room, text, replyTo, mentions)
}

// Edit replaces a notice (m.replace), so progress shows in one message.
func (c botChat) Edit(ctx context.Context, room id.RoomID, evt id.EventID, text string, mentions ...id.UserID) {
	c.b.editNotice(ctx, room, evt, text, mentions)
}

func (c botChat) Post(ctx context.Context, room id.RoomID, msg lifecycle.Message) (id.EventID, error) {
	content := markdownContent(msg.Text, msg.Markdown)
	if msg.Thread != "" {
		content.RelatesTo = (&event.RelatesTo{}).SetThread(msg.Thread, msg.Thread)
	}
	if msg.Replace != "" {
		content = editContent(msg.Replace, content)
	}
	resp, err := c.b.client.SendMessageEvent(ctx, room, event.EventMessage, content)
	if err != nil {
		return "", err
	}
	return resp.EventID, nil
}

func (c botChat) DirectRoom(ctx context.Context, user id.UserID) (id.RoomID, error) {
	return c.b.directRoom(ctx, user)
}

// DisplayNames returns the display names of the room's joined members (best effort).
func (c botChat) DisplayNames(ctx context.Context, room id.RoomID) map[string]string {
	out := map[string]string{}
	resp, err := c.b.client.JoinedMembers(ctx, room)
	if err != nil {
		return out
	}
	for u, m := range resp.Joined {
		if m.DisplayName != "" {
			out[string(u)] = m.DisplayName
		}
	}
	return out
}

func (c botChat) MayRecord(ctx context.Context, room id.RoomID, user id.UserID, action string) error {
	return c.b.mayRecord(ctx, room, user, action)
}

// maxDisplayName bounds the display name the bot sets (homeservers refuse longer ones).
const maxDisplayName = 255

// SetRecordingMark sets the bot's display name in a room (its m.room.member event there,
// which it may always update): bot.recording_displayname_format while it records, its
// global display name afterwards. The rest of the member event stays as it is.
func (c botChat) SetRecordingMark(ctx context.Context, room id.RoomID, on bool) error {
	b := c.b
	self := b.client.UserID
	var member map[string]any
	if err := b.client.StateEvent(ctx, room, event.StateMember, string(self), &member); err != nil {
		if errors.Is(err, mautrix.MNotFound) || errors.Is(err, mautrix.MForbidden) {
			return nil // not in the room (any more): there is no name to change
		}
		return fmt.Errorf("read the bot's member event: %w", err)
	}
	if member["membership"] != string(event.MembershipJoin) {
		return nil
	}
	global := ""
	if resp, err := b.client.GetOwnDisplayName(ctx); err == nil {
		global = resp.DisplayName
	} else if !errors.Is(err, mautrix.MNotFound) {
		return fmt.Errorf("read the bot's display name: %w", err)
	}
	var want any
	if on {
		base := global
		if base == "" {
			base = self.Localpart()
		}
		extra := len([]rune(b.cfg.Bot.RecordingName(""))) // what the format adds
		if r := []rune(base); len(r) > maxDisplayName-extra {
			base = string(r[:max(maxDisplayName-extra, 1)])
		}
		want = b.cfg.Bot.RecordingName(base)
	} else if global != "" {
		want = global
	}
	if member["displayname"] == want {
		return nil
	}
	if want == nil {
		delete(member, "displayname")
	} else {
		member["displayname"] = want
	}
	// A restricted room's join proof is for the join, not for a later change of name.
	delete(member, "join_authorised_via_users_server")
	if _, err := b.client.SendStateEvent(ctx, room, event.StateMember, string(self), member); err != nil {
		return fmt.Errorf("set the bot's display name in the room: %w", err)
	}
	return nil
}

// mayRecord checks whether user may act on recordings in a room (action: "start or stop
// recordings", "delete recordings"...): listed in bot.record_users, or with a power level
// of at least bot.record_power_level (default: the level needed to send state events, as
// for starting a call).
func (b *Bot) mayRecord(ctx context.Context, roomID id.RoomID, user id.UserID, action string) error {
	cfg := b.cfg.Bot
	for _, u := range cfg.RecordUsers {
		if id.UserID(u) == user {
			return nil
		}
	}
	pl, err := b.powerLevels(ctx, roomID)
	if err != nil {
		return err
	}
	need := cfg.RecordPowerLevel
	if need < 0 {
		need = pl.StateDefault()
	}
	if have := pl.GetUserLevel(user); have < need {
		return userError{Msg: fmt.Sprintf("Sorry %s, only members with power level %d or more may %s here (you have %d).", user, need, action, have)}
	}
	return nil
}

// powerLevels reads the room's power levels (with its create event, which makes the
// creators all-powerful in newer room versions).
func (b *Bot) powerLevels(ctx context.Context, roomID id.RoomID) (*event.PowerLevelsEventContent, error) {
	evt, err := b.client.FullStateEvent(ctx, roomID, event.StatePowerLevels, "")
	if err != nil {
		return nil, fmt.Errorf("could not read the room's power levels: %w", err)
	}
	_ = evt.Content.ParseRaw(event.StatePowerLevels)
	pl := evt.Content.AsPowerLevels()
	if create, err := b.client.FullStateEvent(ctx, roomID, event.StateCreate, ""); err == nil {
		_ = create.Content.ParseRaw(event.StateCreate)
		pl.CreateEvent = create
	}
	return pl, nil
}

// botCalls is what the recording lifecycle may do to calls (lifecycle.Calls).
type botCalls struct{ b *Bot }

var _ lifecycle.Calls = botCalls{}

// Stop ends the recording of a room, whatever its kind (a 1:1 call is hung up).
func (c botCalls) Stop(ctx context.Context, room id.RoomID, why string) {
	c.b.rooms.StopFor(ctx, room, why)
}

func (c botCalls) Resume(ctx context.Context, req lifecycle.ResumeRequest) (bool, string) {
	return c.b.rooms.Resume(ctx, req.Room, req.Folder, req.Manifest, req.Caller, req.Intent)
}

// HangUp sends a hangup for a 1:1 call the last run was in.
func (c botCalls) HangUp(ctx context.Context, room id.RoomID, callID string) {
	if err := c.b.o2o.HangUp(ctx, room, callID); err != nil {
		c.b.log.Debug().Err(err).Msg("Could not hang up the call the last run was in")
	}
}
