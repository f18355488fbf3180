package lifecycle

import (
	"context"
	"errors"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// Chat is what the lifecycle asks of the chat layer: to say things in rooms and direct
// chats, and who may do what there. The bot implements it over Matrix.
type Chat interface {
	// Notice posts a notice, as a reply when replyTo is set, pinging mentions. It returns
	// the event ("" when it could not be sent; the chat layer logs why).
	Notice(ctx context.Context, room id.RoomID, text string, replyTo id.EventID, mentions ...id.UserID) id.EventID
	// Edit replaces the text of a notice posted before (best effort), keeping its form:
	// mentions are those of the notice it replaces (they are not pinged again).
	Edit(ctx context.Context, room id.RoomID, event id.EventID, text string, mentions ...id.UserID)
	// Post posts a formatted message that pings nobody (or replaces the one posted
	// before, or answers in a thread, as msg says). One attempt: the lifecycle retries.
	Post(ctx context.Context, room id.RoomID, msg Message) (id.EventID, error)
	// DirectRoom returns a direct chat with user, creating it when there is none.
	DirectRoom(ctx context.Context, user id.UserID) (id.RoomID, error)
	// DisplayNames returns the display names of the room's members (best effort).
	DisplayNames(ctx context.Context, room id.RoomID) map[string]string
	// MayRecord checks that user may act on recordings in room (start, stop, delete,
	// get the links of others' recordings); action says what, for the refusal ("delete
	// recordings"). A refusal is a usererr.Error; another error means it could not be checked.
	MayRecord(ctx context.Context, room id.RoomID, user id.UserID, action string) error
	// SetRecordingMark gives the bot's display name in room the recording mark (on) or its
	// global name back. A room the bot is not in needs nothing (nil). One attempt: the
	// lifecycle paces and retries.
	SetRecordingMark(ctx context.Context, room id.RoomID, on bool) error
}

// Message is a formatted message: its plain text and the same in Markdown, where every
// word that is not the recorder's own (names, reasons, file names) is escaped with
// EscapeMarkdown. The chat layer renders the Markdown to HTML.
type Message struct {
	Text     string
	Markdown string
	// Thread, when set, posts the message in the thread of that event.
	Thread id.EventID
	// Replace, when set, replaces the message posted before (an edit).
	Replace id.EventID
}

// Calls is what the lifecycle asks of whoever runs the calls.
type Calls interface {
	// Stop ends the recordings of a room, of every kind (a 1:1 call is hung up); why ends
	// up in the summary. It is called at a limit.
	Stop(ctx context.Context, room id.RoomID, why string)
	// Resume starts again a room's group recording that a restart interrupted or paused,
	// in the same folder, when the room's call still goes on; else it says why not.
	Resume(ctx context.Context, req ResumeRequest) (ok bool, why string)
	// HangUp ends a 1:1 call the last run was in, so that the caller's client stops
	// waiting for a recorder that is gone.
	HangUp(ctx context.Context, room id.RoomID, callID string)
}

// ResumeRequest is a recording the last run left unfinished, to continue in its folder.
type ResumeRequest struct {
	Room id.RoomID
	// Folder is the call folder's name in the recordings dir.
	Folder string
	// Manifest is the folder's manifest as the last run left it (nil when unreadable).
	Manifest *recorder.Manifest
	// Caller is set for a direct call the bot answered: it continues as one (it ends when
	// the caller leaves), with the call's Intent.
	Caller id.UserID
	Intent string
	// Paused: a clean stop paused it; else the process died while it recorded.
	Paused bool
}

// LimitError is a recording refused by a limit on recordings at once, in words for the
// room.
type LimitError struct{ Msg string }

func (e LimitError) Error() string { return e.Msg }

// LimitMessage returns the words of a refusal by a limit on recordings at once (Admit, or
// a recorder start the hooks refused).
func (lc *Lifecycle) LimitMessage(err error) (string, bool) {
	var le LimitError
	if errors.As(err, &le) {
		return le.Msg, true
	}
	return "", false
}
