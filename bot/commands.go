package bot

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"maunium.net/go/mautrix/event"

	"github.com/matrix-recorder/matrix-recorder/bot/command"
	"github.com/matrix-recorder/matrix-recorder/lifecycle"
	"github.com/matrix-recorder/matrix-recorder/usererr"
)

// userError is a problem the user should read in the room (the one type every package
// returns for that).
type userError = usererr.Error

// cmdContext is what a command handler gets.
type cmdContext = command.Context

func newCommands(b *Bot) *command.Processor {
	h := func(f func(ctx context.Context, cc *cmdContext) error) command.Handler { return f }
	return command.New(b.cfg.Bot.CommandPrefix, []*command.Command{
		{Name: "start", Args: b.egressStartArgs(), Description: "record the group call in this room", Group: command.GroupRecording, Handler: h(b.startCommand)},
		{Name: "stop", Description: "stop recording in this room (the files are kept)", Group: command.GroupRecording, Handler: h(b.stopCommand)},
		{Name: "status", Description: "what is being recorded in this room", Group: command.GroupRecording, Handler: h(b.statusCommand)},
		{Name: "skipme", Description: "do not record me in this room", Group: command.GroupDuring, Handler: func(ctx context.Context, cc *cmdContext) error { return b.rooms.SetOptOut(ctx, roomsRequest(cc), true) }},
		{Name: "recordme", Description: "record me again", Group: command.GroupDuring, Handler: func(ctx context.Context, cc *cmdContext) error {
			return b.rooms.SetOptOut(ctx, roomsRequest(cc), false)
		}},
		{Name: "mark", Args: "[-30s] [text]", Description: "put a marker on the recording's timeline (in the summary picture and exports)", Group: command.GroupDuring, Handler: h(b.markCommand)},
		{Name: "hangup", Description: "end the 1:1 call in this room (the recording is kept)", Group: command.GroupDuring, Handler: h(b.hangupCommand)},
		{Name: "recordings", Args: "[ID]", Description: "list this room's recordings, or one recording's files with fresh links (for the people recorded in it and members who may start recordings)", Group: command.GroupAfter, Handler: b.lifecycleCommand(b.lc.Recordings)},
		{Name: "export", Args: "<ID|latest> [mix|zip|flac|wav]", Description: "make a mixdown, aligned tracks or an aligned zip of a recording (needs ffmpeg)", Group: command.GroupAfter, Handler: b.postcallCommand(b.post.ExportCommand)},
		{Name: "transcript", Args: "[ID|latest]", Description: "run the transcription hook and merge the transcripts of a recording", Group: command.GroupAfter, Handler: b.postcallCommand(b.post.TranscriptCommand)},
		{Name: "autorecord", Args: "[on|off]", Description: "record every Element Call call that begins in this room", Group: command.GroupAdmin, Handler: h(b.autorecordCommand)},
		{Name: "delete", Args: "ID", Description: "delete a recording everywhere", Group: command.GroupAdmin, Handler: b.lifecycleCommand(b.lc.Delete)},
		{Name: "help", Description: "show this list", Group: command.GroupAdmin, Handler: h(b.helpCommand)},
	}, roomsChat{b}, b.log)
}

// helpCommand lists the commands by what people want them for, as a reply.
func (b *Bot) helpCommand(ctx context.Context, cc *cmdContext) error {
	p := b.cfg.Bot.CommandPrefix
	intro := "I record calls: one file per person and track, all on one timeline.\n"
	if b.cfg.Calls.AutoAnswer {
		intro += "In a room with just you and me, call me and I answer and record; hang up to stop.\n"
	}
	intro += fmt.Sprintf("In a room with a group call, %sstart records everyone in it and %sstop ends the recording.\n", p, p)
	b.notice(ctx, cc.Room, b.cmds.Help(intro), cc.Event)
	return nil
}

func (b *Bot) statusCommand(ctx context.Context, cc *cmdContext) error {
	lines := b.statusLines(cc.Room)
	if b.shared != nil {
		b.notice(ctx, cc.Room, b.fleetStatus(ctx, cc.Room, lines), "")
		return nil
	}
	if len(lines) == 0 {
		b.notice(ctx, cc.Room, "Nothing is being recorded in this room.", "")
		return nil
	}
	b.notice(ctx, cc.Room, strings.Join(lines, "\n"), "")
	return nil
}

// hangupCommand: !hangup ends the direct call the bot answered in the room (its caller
// only: call/rooms).
func (b *Bot) hangupCommand(ctx context.Context, cc *cmdContext) error {
	if b.rooms.Caller(cc.Room) == "" {
		return userError{Msg: "There is no call in this room."}
	}
	req := roomsRequest(cc)
	req.Command = "hangup"
	_, err := b.rooms.Stop(ctx, req)
	return err
}

// lifecycleCommand runs a command the recording lifecycle answers.
func (b *Bot) lifecycleCommand(run func(ctx context.Context, req lifecycle.Request) error) command.Handler {
	return func(ctx context.Context, cc *cmdContext) error {
		return run(ctx, lifecycle.Request{Room: cc.Room, Sender: cc.Sender, Event: cc.Event, Args: cc.Args})
	}
}

// mentioned reports whether a message mentions the bot: an intentional mention, a pill or
// its user id in the text.
func (b *Bot) mentioned(evt *event.Event, msg *event.MessageEventContent) bool {
	me := b.client.UserID
	if msg.Mentions != nil && slices.Contains(msg.Mentions.UserIDs, me) {
		return true
	}
	return strings.Contains(msg.Body, string(me)) || strings.Contains(msg.FormattedBody, "matrix.to/#/"+string(me))
}

// startCommand: !start records the room's call. On a shared database this instance
// answers it (lifecycle.Route) and takes the room's lease; if another instance took the
// room meanwhile (a call that began with autorecord on), that one's notice is the answer.
func (b *Bot) startCommand(ctx context.Context, cc *cmdContext) error {
	ok, err := b.lc.TakeRoom(ctx, cc.Room)
	if err != nil {
		return fmt.Errorf("take the room's lease: %w", err)
	}
	if !ok {
		b.log.Info().Stringer("room_id", cc.Room).Msg("Another instance took the room meanwhile; it answers")
		return nil
	}
	err = b.rooms.Start(ctx, roomsRequest(cc))
	if !b.rooms.Recording(cc.Room) {
		b.lc.ReleaseRoom(context.WithoutCancel(ctx), cc.Room)
	}
	return err
}
