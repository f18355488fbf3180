package bot

import (
	"context"
	"fmt"
	"sort"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/rooms"
	"github.com/matrix-recorder/matrix-recorder/lifecycle"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// newRooms runs the backends' recordings (call/rooms); those among them that answer
// direct calls (1:1 and LiveKit) do it there too (livekit_dm.go).
func newRooms(b *Bot, backends []call.Backend) *rooms.Rooms {
	cfg := rooms.Config{
		CommandPrefix: b.cfg.Bot.CommandPrefix, MaxRecordings: b.cfg.Calls.MaxGroupRecordings, MaxCalls: b.cfg.Calls.MaxCalls,
		// On a shared database a clean stop hands the recordings over to the other
		// instances (lifecycle/adopt.go): they pause, whatever recordings.pause_on_shutdown.
		PauseOnShutdown: b.cfg.Recordings.PauseOnShutdown || b.lc.Fleet(), Notices: b.cfg.Bot.Notices, Self: b.client.UserID,
	}
	return rooms.New(cfg, backends, roomsChat{b}, roomsLifecycle{b.lc, b}, b.log)
}

// roomsChat is what the rooms say in rooms.
type roomsChat struct{ b *Bot }

func (c roomsChat) Notice(ctx context.Context, room id.RoomID, text string, replyTo id.EventID, mentions ...id.UserID) id.EventID {
	return c.b.noticeMentions(ctx, room, text, replyTo, mentions)
}

func (c roomsChat) MayRecord(ctx context.Context, room id.RoomID, user id.UserID) error {
	return c.b.mayRecord(ctx, room, user, "start or stop recordings")
}

// roomsLifecycle is the recording lifecycle as the rooms see it: a recording that ends
// goes to the after-call work too.
type roomsLifecycle struct {
	*lifecycle.Lifecycle
	b *Bot
}

func (l roomsLifecycle) Ended(room id.RoomID, folder string, m recorder.Manifest, headline string, err error, announce bool) {
	l.b.postCallEnded(room, folder, m) // picture, exports, transcripts (postcall.go)
	l.Lifecycle.Ended(room, folder, m, headline, err, announce)
}

// roomsRequest is a command as the rooms take it.
func roomsRequest(cc *cmdContext) rooms.Request {
	return rooms.Request{Room: cc.Room, Sender: cc.Sender, Event: cc.Event, Args: cc.Args}
}

// stopCommand: !stop ends the room's recording, or the room's 1:1 call (asked by the
// person in it).
func (b *Bot) stopCommand(ctx context.Context, cc *cmdContext) error {
	if stopped, err := b.rooms.Stop(ctx, roomsRequest(cc)); stopped || err != nil {
		return err
	}
	return userError{Msg: "Nothing is being recorded in this room."}
}

// statusLines describes the room's recording by a call backend, if any.
func (b *Bot) statusLines(roomID id.RoomID) []string {
	st, ok := b.rooms.Status(roomID)
	if !ok {
		return nil
	}
	return recordingLines(st, time.Now())
}

// recordingLines is !status's text for one recording, of any kind.
func recordingLines(st call.Status, now time.Time) []string {
	// Every backend says where its call stands (call.Status.State); it follows the
	// backend's name, which scripts match on ("Recording (livekit)").
	what := "(" + st.Backend + ")"
	if st.State != call.StateUnknown {
		what += ", " + st.State.String() + ","
	}
	lines := []string{fmt.Sprintf("Recording %s since %s, %s so far, %s, %s, folder %s",
		what, st.StartedAt.UTC().Format("15:04:05 UTC"), lifecycle.FormatDuration(now.Sub(st.StartedAt)), lifecycle.Plural(st.Tracks, "track"), lifecycle.FormatBytes(st.Bytes), lifecycle.FolderName(st.Folder))}
	ps := append([]call.ParticipantStatus(nil), st.Participants...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].UserID < ps[j].UserID })
	for _, p := range ps {
		state := lifecycle.Plural(p.Tracks, "track")
		if p.OptedOut {
			state = "not recorded (opted out)"
		}
		who := string(p.UserID)
		if p.DisplayName != "" {
			who = p.DisplayName + " — " + who
		}
		lines = append(lines, fmt.Sprintf("• %s (%s): %s", who, p.DeviceID, state))
	}
	return append(lines, st.Details...)
}
