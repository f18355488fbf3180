package bot

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/voip"
	"github.com/matrix-recorder/matrix-recorder/lifecycle"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/roomerr"
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

// Stop ends the recording of a room: a 1:1 call is hung up, a group recording is stopped.
func (c botCalls) Stop(ctx context.Context, room id.RoomID, kind, why string) {
	if kind == "1:1" {
		c.b.calls.HangupRoom(room, why)
		return
	}
	c.b.groups.stopFor(ctx, room, why)
}

func (c botCalls) Resume(ctx context.Context, room id.RoomID, folder string, m *recorder.Manifest) (bool, string) {
	return c.b.groups.resume(ctx, room, folder, m)
}

// HangUp sends a hangup for a 1:1 call the last run was in.
func (c botCalls) HangUp(ctx context.Context, room id.RoomID, callID string) {
	h := voip.Hangup{Common: voip.Common{CallID: callID, PartyID: string(c.b.client.DeviceID), Version: voip.V1}, Reason: voip.ReasonUserHangup}
	if err := (voipSignaller{c.b}).SendCallEvent(ctx, room, voip.TypeHangup, h); err != nil {
		c.b.log.Debug().Err(err).Msg("Could not hang up the call the last run was in")
	}
}

// stopFor stops a room's group recording without a command (a limit, the disk).
func (g *groups) stopFor(ctx context.Context, roomID id.RoomID, why string) bool {
	g.mu.Lock()
	gr := g.active[roomID]
	if gr == nil {
		g.mu.Unlock()
		return false
	}
	delete(g.active, roomID)
	close(gr.stopped)
	g.mu.Unlock()
	m, err := gr.rec.Stop(ctx, why)
	g.report(ctx, roomID, gr.folder, m, why, err)
	return true
}

// resume restarts a room's group recording that a restart interrupted, in the same
// folder (recorder.WithResume): the backend that can record the room's call now starts as
// if !start was typed, with the opt-outs the manifest still lists.
func (g *groups) resume(ctx context.Context, roomID id.RoomID, folder string, m *recorder.Manifest) (bool, string) {
	g.mu.Lock()
	busy := g.active[roomID] != nil
	g.mu.Unlock()
	if busy {
		return false, "the room is being recorded again already"
	}
	best, reasons := g.probe(ctx, roomID, nil)
	if best == nil {
		why := "the call has ended"
		if len(reasons) > 0 {
			why += " (" + strings.Join(reasons, " ") + ")"
		}
		return false, why
	}
	opt := map[id.UserID]time.Time{}
	if m != nil {
		for _, o := range m.OptOuts {
			if o.Until == nil {
				opt[id.UserID(o.UserID)] = o.From
			}
		}
	}
	g.mu.Lock()
	if len(opt) > 0 {
		if g.optOuts[roomID] == nil {
			g.optOuts[roomID] = map[id.UserID]time.Time{}
		}
		for u, t := range opt {
			g.optOuts[roomID][u] = t
		}
	}
	g.mu.Unlock()
	rec, err := best.Start(recorder.WithResume(ctx, folder), call.StartRequest{RoomID: roomID, By: g.b.client.UserID, OptedOut: opt, Resume: folder})
	if err != nil {
		var ue userError
		if errors.As(err, &ue) {
			return false, ue.Msg
		}
		return false, roomerr.Clause(g.b.log.With().Stringer("room_id", roomID).Logger(), err, "Could not resume the recording")
	}
	gr := &groupRec{backend: best.Name(), rec: rec, by: g.b.client.UserID, stopped: make(chan struct{}), folder: rec.Status().Folder}
	if !g.take(roomID, gr) {
		_, _ = rec.Stop(ctx, "started twice")
		return false, "the room is being recorded again already"
	}
	go g.watch(context.WithoutCancel(ctx), roomID, gr)
	if filepath.Base(gr.folder) != folder {
		g.b.log.Warn().Str("folder", folder).Str("new_folder", gr.folder).Msg("The backend started a new folder instead of resuming")
	}
	return true, ""
}
