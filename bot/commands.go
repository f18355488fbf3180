package bot

import (
	"context"
	"fmt"
	"runtime/debug"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// maxCommandLength bounds what the dispatcher looks at.
const maxCommandLength = 1024

// command is one declared chat command.
type command struct {
	name        string
	args        string
	description string
	handler     func(ctx context.Context, cc *cmdContext) error
}

// cmdContext is what a handler gets.
type cmdContext struct {
	roomID id.RoomID
	sender id.UserID
	event  id.EventID
	args   []string
}

type commands struct {
	b      *Bot
	prefix string
	byName map[string]*command
}

// userError is a problem the user should read in the room.
type userError struct{ msg string }

func (e userError) Error() string { return e.msg }

func newCommands(b *Bot) *commands {
	c := &commands{b: b, prefix: b.cfg.Bot.CommandPrefix, byName: map[string]*command{}}
	for _, cmd := range []*command{
		{name: "help", description: "show this list", handler: c.help},
		{name: "status", description: "what is being recorded in this room", handler: c.status},
		{name: "start", args: b.egressStartArgs(), description: "record the group call in this room", handler: b.groups.start},
		{name: "stop", description: "stop recording in this room (files are kept)", handler: b.groups.stop},
		{name: "skipme", description: "do not record me in this room", handler: func(ctx context.Context, cc *cmdContext) error { return b.groups.setOptOut(ctx, cc, true) }},
		{name: "recordme", description: "record me again", handler: func(ctx context.Context, cc *cmdContext) error { return b.groups.setOptOut(ctx, cc, false) }},
		{name: "autorecord", args: "[on|off]", description: "record every Element Call call that begins in this room", handler: b.autorecordCommand},
		{name: "hangup", description: "end the 1:1 call in this room (the recording is kept)", handler: c.hangup},
		{name: "mark", args: "[-30s] [text]", description: "put a marker on the recording's timeline (in the summary picture and exports)", handler: b.markCommand},
		{name: "export", args: "<id|latest> [mix|zip|flac|wav]", description: "make a mixdown, aligned tracks or an aligned zip of a recording (needs ffmpeg)", handler: b.exportCommand},
		{name: "transcript", args: "[id|latest]", description: "run the transcription hook and merge the transcripts of a recording", handler: b.transcriptCommand},
		{name: "recordings", args: "[ID]", description: "list this room's recordings, or one recording's files with fresh links", handler: b.st.listRecordings},
		{name: "delete", args: "ID", description: "delete a recording everywhere (who may start recordings may delete them)", handler: b.st.deleteCommand},
	} {
		c.byName[cmd.name] = cmd
	}
	return c
}

// dispatch runs a command from a message body. Garbage is ignored; an unknown command gets
// a short hint; a failing or panicking handler is logged and reported, never fatal.
func (c *commands) dispatch(ctx context.Context, evt *event.Event, body string) {
	if !strings.HasPrefix(body, c.prefix) || len(body) > maxCommandLength || !utf8.ValidString(body) {
		return
	}
	fields := strings.Fields(strings.TrimPrefix(body, c.prefix))
	if len(fields) == 0 {
		return
	}
	name := strings.ToLower(fields[0])
	log := c.b.log.With().Stringer("room_id", evt.RoomID).Stringer("sender", evt.Sender).Stringer("event_id", evt.ID).Str("command", name).Logger()
	cmd, ok := c.byName[name]
	if !ok {
		if len(name) <= 32 {
			c.b.notice(ctx, evt.RoomID, fmt.Sprintf("I don't know %s%s. Type %shelp for what I can do.", c.prefix, name, c.prefix), evt.ID)
		}
		return
	}
	cc := &cmdContext{roomID: evt.RoomID, sender: evt.Sender, event: evt.ID, args: fields[1:]}
	log.Info().Msg("Running command")
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error().Any("panic", r).Str("stack", string(debug.Stack())).Msg("Command panicked")
				err = fmt.Errorf("internal error")
			}
		}()
		return cmd.handler(ctx, cc)
	}()
	if err != nil {
		if ue, ok := err.(userError); ok {
			c.b.notice(ctx, evt.RoomID, ue.msg, evt.ID)
			return
		}
		log.Error().Err(err).Msg("Command failed")
		c.b.notice(ctx, evt.RoomID, "Sorry, that failed: "+err.Error(), evt.ID)
	}
}

func (c *commands) help(ctx context.Context, cc *cmdContext) error {
	names := make([]string, 0, len(c.byName))
	for n := range c.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("I record calls: one file per person and track, all on one timeline.\n")
	b.WriteString("In a room with just you and me, call me and I answer and record; hang up to stop.\n")
	fmt.Fprintf(&b, "In a room with a group call, %sstart records everyone in it and %sstop ends the recording.\n\nCommands:\n", c.prefix, c.prefix)
	for _, n := range names {
		cmd := c.byName[n]
		fmt.Fprintf(&b, "%s%s", c.prefix, cmd.name)
		if cmd.args != "" {
			fmt.Fprintf(&b, " %s", cmd.args)
		}
		fmt.Fprintf(&b, " - %s\n", cmd.description)
	}
	c.b.notice(ctx, cc.roomID, strings.TrimSpace(b.String()), "")
	return nil
}

func (c *commands) status(ctx context.Context, cc *cmdContext) error {
	var lines []string
	for _, st := range c.b.calls.Active() {
		if st.RoomID != cc.roomID {
			continue
		}
		elapsed := "not started"
		if !st.StartedAt.IsZero() {
			elapsed = formatDuration(time.Since(st.StartedAt))
		}
		lines = append(lines, fmt.Sprintf("Call with %s: %s, %s recorded, %d track(s), folder %s",
			st.Peer, st.State, elapsed, st.Tracks, folderBase(st.Folder)))
	}
	lines = append(lines, c.b.groups.statusLines(cc.roomID)...)
	if len(lines) == 0 {
		c.b.notice(ctx, cc.roomID, "Nothing is being recorded in this room.", "")
		return nil
	}
	c.b.notice(ctx, cc.roomID, strings.Join(lines, "\n"), "")
	return nil
}

func (c *commands) hangup(ctx context.Context, cc *cmdContext) error {
	if n := c.b.calls.HangupRoom(cc.roomID, fmt.Sprintf("%s asked me to hang up", cc.sender)); n == 0 {
		return userError{"There is no call in this room."}
	}
	return nil
}
