package bot

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/lifecycle"
	"github.com/matrix-recorder/matrix-recorder/usererr"
)

// maxCommandLength bounds what the dispatcher looks at.
const maxCommandLength = 1024

// command is one declared chat command.
type command struct {
	name        string
	args        string
	description string
	group       cmdGroup
	handler     func(ctx context.Context, cc *cmdContext) error
}

// cmdGroup is what people want a command for; !help lists the commands by it.
type cmdGroup int

const (
	groupRecording cmdGroup = iota
	groupDuring
	groupAfter
	groupAdmin
)

var groupTitles = map[cmdGroup]string{
	groupRecording: "Recording",
	groupDuring:    "During the call",
	groupAfter:     "After the call",
	groupAdmin:     "Admin",
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
	// order is the commands in the order !help lists them.
	order []*command
	limit *cmdLimiter
}

// userError is a problem the user should read in the room (the one type every package
// returns for that).
type userError = usererr.Error

func newCommands(b *Bot) *commands {
	c := &commands{b: b, prefix: b.cfg.Bot.CommandPrefix, byName: map[string]*command{}, limit: newCmdLimiter(time.Now)}
	for _, cmd := range []*command{
		{name: "start", args: b.egressStartArgs(), description: "record the group call in this room", group: groupRecording, handler: func(ctx context.Context, cc *cmdContext) error { return b.rooms.Start(ctx, roomsRequest(cc)) }},
		{name: "stop", description: "stop recording in this room (the files are kept)", group: groupRecording, handler: b.stopCommand},
		{name: "status", description: "what is being recorded in this room", group: groupRecording, handler: c.status},
		{name: "skipme", description: "do not record me in this room", group: groupDuring, handler: func(ctx context.Context, cc *cmdContext) error { return b.rooms.SetOptOut(ctx, roomsRequest(cc), true) }},
		{name: "recordme", description: "record me again", group: groupDuring, handler: func(ctx context.Context, cc *cmdContext) error {
			return b.rooms.SetOptOut(ctx, roomsRequest(cc), false)
		}},
		{name: "mark", args: "[-30s] [text]", description: "put a marker on the recording's timeline (in the summary picture and exports)", group: groupDuring, handler: b.markCommand},
		{name: "hangup", description: "end the 1:1 call in this room (the recording is kept)", group: groupDuring, handler: c.hangup},
		{name: "recordings", args: "[ID]", description: "list this room's recordings, or one recording's files with fresh links (for the people recorded in it and members who may start recordings)", group: groupAfter, handler: b.lifecycleCommand(b.lc.Recordings)},
		{name: "export", args: "<ID|latest> [mix|zip|flac|wav]", description: "make a mixdown, aligned tracks or an aligned zip of a recording (needs ffmpeg)", group: groupAfter, handler: b.postcallCommand(b.post.ExportCommand)},
		{name: "transcript", args: "[ID|latest]", description: "run the transcription hook and merge the transcripts of a recording", group: groupAfter, handler: b.postcallCommand(b.post.TranscriptCommand)},
		{name: "autorecord", args: "[on|off]", description: "record every Element Call call that begins in this room", group: groupAdmin, handler: b.autorecordCommand},
		{name: "delete", args: "ID", description: "delete a recording everywhere", group: groupAdmin, handler: b.lifecycleCommand(b.lc.Delete)},
		{name: "help", description: "show this list", group: groupAdmin, handler: c.help},
	} {
		c.byName[cmd.name] = cmd
		c.order = append(c.order, cmd)
	}
	return c
}

// dispatch runs a command from a message body. Garbage is ignored; an unknown command is
// answered only when it is meant for this bot (see unknownReply); every command counts
// against its sender's and its room's rate limit; a failing or panicking handler is logged
// and reported, never fatal.
func (c *commands) dispatch(ctx context.Context, evt *event.Event, msg *event.MessageEventContent) {
	body := msg.Body
	if !strings.HasPrefix(body, c.prefix) || len(body) > maxCommandLength || !utf8.ValidString(body) {
		return
	}
	fields := strings.Fields(strings.TrimPrefix(body, c.prefix))
	if len(fields) == 0 {
		return
	}
	name := strings.ToLower(fields[0])
	cmd, ok := c.byName[name]
	reply := ""
	if !ok {
		// Other bots in the room have commands too ("!ban", "!!! great"): answer only
		// what is meant for this one.
		if reply = c.unknownReply(name, c.b.mentioned(evt, msg)); reply == "" {
			return
		}
	}
	log := c.b.log.With().Stringer("room_id", evt.RoomID).Stringer("sender", evt.Sender).Stringer("event_id", evt.ID).Str("command", name).Logger()
	switch v, byRoom := c.limit.allow(evt.Sender, evt.RoomID); v {
	case refusedSilently:
		return
	case refusedNotice:
		log.Warn().Bool("room_limit", byRoom).Msg("Command rate limit reached; ignoring commands for a while")
		if byRoom {
			c.b.notice(ctx, evt.RoomID, "That is a lot of commands in this room; I ignore commands here for a little while.", evt.ID)
		} else {
			c.b.noticeMentions(ctx, evt.RoomID, fmt.Sprintf("%s, that is a lot of commands; I ignore yours for a little while.", evt.Sender), evt.ID, []id.UserID{evt.Sender})
		}
		return
	}
	if !ok {
		c.b.notice(ctx, evt.RoomID, reply, evt.ID)
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
		var ue userError
		if errors.As(err, &ue) {
			c.b.notice(ctx, evt.RoomID, ue.Msg, evt.ID)
			return
		}
		// Not the user's doing: its text (URLs, paths) stays in the log.
		c.b.failed(ctx, log, evt.RoomID, evt.ID, err, "Command failed")
	}
}

// help lists the commands by what people want them for, as a reply.
func (c *commands) help(ctx context.Context, cc *cmdContext) error {
	p := c.prefix
	var b strings.Builder
	b.WriteString("I record calls: one file per person and track, all on one timeline.\n")
	if c.b.cfg.Calls.AutoAnswer {
		b.WriteString("In a room with just you and me, call me and I answer and record; hang up to stop.\n")
	}
	fmt.Fprintf(&b, "In a room with a group call, %sstart records everyone in it and %sstop ends the recording.\n", p, p)
	for g := groupRecording; g <= groupAdmin; g++ {
		fmt.Fprintf(&b, "\n%s:\n", groupTitles[g])
		for _, cmd := range c.order {
			if cmd.group != g {
				continue
			}
			fmt.Fprintf(&b, "%s%s", p, cmd.name)
			if cmd.args != "" {
				fmt.Fprintf(&b, " %s", cmd.args)
			}
			fmt.Fprintf(&b, " - %s\n", cmd.description)
		}
	}
	c.b.notice(ctx, cc.roomID, strings.TrimSpace(b.String()), cc.event)
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
			elapsed = lifecycle.FormatDuration(time.Since(st.StartedAt))
		}
		lines = append(lines, fmt.Sprintf("Call with %s: %s, %s recorded, %s, folder %s",
			st.Peer, st.State, elapsed, lifecycle.Plural(st.Tracks, "track"), lifecycle.FolderName(st.Folder)))
	}
	lines = append(lines, c.b.statusLines(cc.roomID)...)
	if len(lines) == 0 {
		c.b.notice(ctx, cc.roomID, "Nothing is being recorded in this room.", "")
		return nil
	}
	c.b.notice(ctx, cc.roomID, strings.Join(lines, "\n"), "")
	return nil
}

func (c *commands) hangup(ctx context.Context, cc *cmdContext) error {
	if err := c.b.mayEndCall(cc); err != nil {
		return err
	}
	if n := c.b.hangupByUser(cc.roomID, fmt.Sprintf("%s asked me to hang up", cc.sender)); n == 0 {
		if c.b.rooms.Answered(cc.roomID, cc.sender) {
			_, err := c.b.rooms.Stop(ctx, roomsRequest(cc)) // a DM call the bot answered (livekit_dm.go)
			return err
		}
		return userError{Msg: "There is no call in this room."}
	}
	return nil
}

// lifecycleCommand runs a command the recording lifecycle answers.
func (b *Bot) lifecycleCommand(run func(ctx context.Context, req lifecycle.Request) error) func(ctx context.Context, cc *cmdContext) error {
	return func(ctx context.Context, cc *cmdContext) error {
		return run(ctx, lifecycle.Request{Room: cc.roomID, Sender: cc.sender, Event: cc.event, Args: cc.args})
	}
}

// callPeers returns who the bot is in a 1:1 call with in a room.
func (b *Bot) callPeers(roomID id.RoomID) []id.UserID {
	if b.calls == nil {
		return nil
	}
	var out []id.UserID
	for _, st := range b.calls.Active() {
		if st.RoomID == roomID {
			out = append(out, st.Peer)
		}
	}
	return out
}

// mayEndCall checks that the sender is in the room's 1:1 call: a 1:1 call is ended (or
// marked) by the person in it, not by whoever else is in the room.
func (b *Bot) mayEndCall(cc *cmdContext) error {
	peers := b.callPeers(cc.roomID)
	if len(peers) == 0 || slices.Contains(peers, cc.sender) {
		return nil
	}
	names := make([]string, len(peers))
	for i, p := range peers {
		names[i] = string(p)
	}
	return userError{Msg: fmt.Sprintf("Sorry %s, only the person in the call (%s) may do that.", cc.sender, strings.Join(names, ", "))}
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

// unknownReply is the answer to an unknown command, or "" when it is not meant for this
// bot: other bots in the room have commands too ("!ban", "!stat"), so only a command word
// in a message that mentions the bot gets an answer, with a hint when it is one edit
// or two away from one of the bot's commands.
func (c *commands) unknownReply(name string, mentioned bool) string {
	if !mentioned || !commandWord(name) {
		return ""
	}
	best, dist := "", 99
	for n := range c.byName {
		if d := editDistance(name, n); d < dist || (d == dist && n < best) {
			best, dist = n, d
		}
	}
	limit := 1
	if len(name) > 4 {
		limit = 2
	}
	if dist <= limit {
		return fmt.Sprintf("I don't know %s%s. Did you mean %s%s? Type %shelp for what I can do.", c.prefix, name, c.prefix, best, c.prefix)
	}
	return fmt.Sprintf("I don't know %s%s. Type %shelp for what I can do.", c.prefix, name, c.prefix)
}

// commandWord reports whether a word looks like a command: a letter, then letters,
// digits, - or _, at most 32 in all.
func commandWord(w string) bool {
	if w == "" || len(w) > 32 {
		return false
	}
	for i, r := range w {
		letter := r >= 'a' && r <= 'z'
		if !letter && (i == 0 || !(r >= '0' && r <= '9' || r == '-' || r == '_')) {
			return false
		}
	}
	return true
}

// editDistance is the optimal string alignment distance (Levenshtein with adjacent
// transpositions) of two short ASCII words.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
