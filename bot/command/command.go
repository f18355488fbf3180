// Package command is the bot's chat commands: declared handlers with a name, arguments,
// a description and a group for !help, and a processor that parses a message, bounds
// commands per sender and per room, answers only unknown commands meant for this bot, and
// turns a failing or panicking handler into a notice (a user's mistake as it is, anything
// else with an error id). What the commands do is the bot's.
package command

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/roomerr"
	"github.com/matrix-recorder/matrix-recorder/usererr"
)

// maxLength bounds what the processor looks at.
const maxLength = 1024

// Group is what people want a command for; !help lists the commands by it.
type Group int

// The groups, in the order !help lists them.
const (
	GroupRecording Group = iota
	GroupDuring
	GroupAfter
	GroupAdmin
)

var groupTitles = map[Group]string{
	GroupRecording: "Recording",
	GroupDuring:    "During the call",
	GroupAfter:     "After the call",
	GroupAdmin:     "Admin",
}

// Context is what a handler gets.
type Context struct {
	Room   id.RoomID
	Sender id.UserID
	Event  id.EventID
	Args   []string
}

// Handler runs a command. A usererr.Error is shown in the room as it is; any other error
// is reported with an id the log has it under.
type Handler func(ctx context.Context, cc *Context) error

// Command is one declared chat command.
type Command struct {
	Name        string
	Args        string
	Description string
	Group       Group
	Handler     Handler
}

// Replier posts the processor's answers.
type Replier interface {
	// Notice posts a notice in reply to replyTo, pinging mentions.
	Notice(ctx context.Context, room id.RoomID, text string, replyTo id.EventID, mentions ...id.UserID) id.EventID
}

// Processor dispatches messages to commands.
type Processor struct {
	prefix string
	byName map[string]*Command
	// order is the commands in the order !help lists them.
	order []*Command
	limit *limiter
	reply Replier
	log   zerolog.Logger
}

// New declares the commands; prefix starts every command ("!").
func New(prefix string, cmds []*Command, reply Replier, log zerolog.Logger) *Processor {
	p := &Processor{prefix: prefix, byName: map[string]*Command{}, limit: newLimiter(time.Now), reply: reply, log: log}
	for _, c := range cmds {
		p.byName[c.Name] = c
		p.order = append(p.order, c)
	}
	return p
}

// SetClock replaces the rate limit's clock (tests).
func (p *Processor) SetClock(now func() time.Time) { p.limit.now = now }

// Dispatch runs the command in a message's body, if it has one. Garbage is ignored; an
// unknown command is answered only when it is meant for this bot (mentioned: the message
// mentions it); every command counts against its sender's and its room's rate limit; a
// failing or panicking handler is logged and reported, never fatal.
func (p *Processor) Dispatch(ctx context.Context, evt *event.Event, body string, mentioned bool) {
	if !strings.HasPrefix(body, p.prefix) || len(body) > maxLength || !utf8.ValidString(body) {
		return
	}
	fields := strings.Fields(strings.TrimPrefix(body, p.prefix))
	if len(fields) == 0 {
		return
	}
	name := strings.ToLower(fields[0])
	cmd, ok := p.byName[name]
	reply := ""
	if !ok {
		// Other bots in the room have commands too ("!ban", "!!! great"): answer only
		// what is meant for this one.
		if reply = p.unknownReply(name, mentioned); reply == "" {
			return
		}
	}
	log := p.log.With().Stringer("room_id", evt.RoomID).Stringer("sender", evt.Sender).Stringer("event_id", evt.ID).Str("command", name).Logger()
	switch v, byRoom := p.limit.allow(evt.Sender, evt.RoomID); v {
	case refusedSilently:
		return
	case refusedNotice:
		log.Warn().Bool("room_limit", byRoom).Msg("Command rate limit reached; ignoring commands for a while")
		if byRoom {
			p.reply.Notice(ctx, evt.RoomID, "That is a lot of commands in this room; I ignore commands here for a little while.", evt.ID)
		} else {
			p.reply.Notice(ctx, evt.RoomID, fmt.Sprintf("%s, that is a lot of commands; I ignore yours for a little while.", evt.Sender), evt.ID, evt.Sender)
		}
		return
	}
	if !ok {
		p.reply.Notice(ctx, evt.RoomID, reply, evt.ID)
		return
	}
	cc := &Context{Room: evt.RoomID, Sender: evt.Sender, Event: evt.ID, Args: fields[1:]}
	log.Info().Msg("Running command")
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error().Any("panic", r).Str("stack", string(debug.Stack())).Msg("Command panicked")
				err = fmt.Errorf("internal error")
			}
		}()
		return cmd.Handler(ctx, cc)
	}()
	if err != nil {
		var ue usererr.Error
		if errors.As(err, &ue) {
			p.reply.Notice(ctx, evt.RoomID, ue.Msg, evt.ID)
			return
		}
		// Not the user's doing: its text (URLs, paths) stays in the log.
		p.reply.Notice(ctx, evt.RoomID, roomerr.Report(log, err, "Command failed"), evt.ID)
	}
}

// Help lists the commands by what people want them for, after intro.
func (p *Processor) Help(intro string) string {
	var b strings.Builder
	b.WriteString(intro)
	for g := GroupRecording; g <= GroupAdmin; g++ {
		fmt.Fprintf(&b, "\n%s:\n", groupTitles[g])
		for _, cmd := range p.order {
			if cmd.Group != g {
				continue
			}
			fmt.Fprintf(&b, "%s%s", p.prefix, cmd.Name)
			if cmd.Args != "" {
				fmt.Fprintf(&b, " %s", cmd.Args)
			}
			fmt.Fprintf(&b, " - %s\n", cmd.Description)
		}
	}
	return strings.TrimSpace(b.String())
}
