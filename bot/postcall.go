package bot

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/postcall"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// newPostcall sets up the after-call work (postcall package) from the config.
func (b *Bot) newPostcall() (*postcall.Manager, error) {
	cfg, err := postcall.ConfigFrom(b.cfg.PostCall, b.cfg.Bot.CommandPrefix)
	if err != nil {
		return nil, err
	}
	cfg.LockManifest = b.lc.LockManifests // the lifecycle records uploads in them
	cfg.RecordingsDir = b.rec.Dir()
	cfg.FolderOf = func(ctx context.Context, roomID, ref string) string {
		return b.lc.FolderOf(ctx, id.RoomID(roomID), ref)
	}
	m, err := postcall.New(cfg, postcallRoom{b}, b.log)
	if err != nil {
		return nil, fmt.Errorf("set up the after-call work: %w", err)
	}
	return m, nil
}

// postCallEnded hands a finished recording to the after-call work. It never blocks.
func (b *Bot) postCallEnded(roomID id.RoomID, folder string, m recorder.Manifest) {
	if b.post == nil {
		return
	}
	b.post.CallEnded(string(roomID), folder, m)
}

// postcallRoom is what the after-call work may do in rooms.
type postcallRoom struct{ b *Bot }

var _ postcall.Room = postcallRoom{}

func (r postcallRoom) Notice(ctx context.Context, roomID, text string) string {
	return string(r.b.notice(ctx, id.RoomID(roomID), text, ""))
}

// Edit replaces a notice (m.replace), so progress shows in one message.
func (r postcallRoom) Edit(ctx context.Context, roomID, eventID, text string) {
	botChat(r).Edit(ctx, id.RoomID(roomID), id.EventID(eventID), text)
}

// SendFile uploads a file to the media repository and posts it; in an encrypted room the
// file is encrypted first (the key travels in the encrypted event).
func (r postcallRoom) SendFile(ctx context.Context, roomID string, f postcall.File) error {
	rid := id.RoomID(roomID)
	content := &event.MessageEventContent{
		MsgType: event.MsgFile, Body: f.Name, FileName: f.Name,
		Info: &event.FileInfo{MimeType: f.MIME, Size: len(f.Data), Width: f.Width, Height: f.Height, Duration: int(f.Duration.Milliseconds())},
	}
	switch f.Kind {
	case "image":
		content.MsgType = event.MsgImage
	case "audio":
		content.MsgType = event.MsgAudio
	}
	enc, err := r.b.client.StateStore.IsEncrypted(ctx, rid)
	if err != nil {
		return fmt.Errorf("check whether the room is encrypted: %w", err)
	}
	upload := mautrix.ReqUploadMedia{ContentBytes: f.Data, ContentType: f.MIME, FileName: f.Name}
	var ef *attachment.EncryptedFile
	if enc {
		ef = attachment.NewEncryptedFile()
		data := append([]byte(nil), f.Data...)
		ef.EncryptInPlace(data)
		upload = mautrix.ReqUploadMedia{ContentBytes: data, ContentType: "application/octet-stream"}
	}
	resp, err := r.b.client.UploadMedia(ctx, upload)
	if err != nil {
		return fmt.Errorf("upload %s: %w", f.Name, err)
	}
	if ef != nil {
		content.File = &event.EncryptedFileInfo{EncryptedFile: *ef, URL: resp.ContentURI.CUString()}
	} else {
		content.URL = resp.ContentURI.CUString()
	}
	if _, err := r.b.client.SendMessageEvent(ctx, rid, event.EventMessage, content); err != nil {
		return fmt.Errorf("post %s: %w", f.Name, err)
	}
	return nil
}

func (r postcallRoom) DisplayNames(ctx context.Context, roomID string) map[string]string {
	return botChat(r).DisplayNames(ctx, id.RoomID(roomID))
}

func (r postcallRoom) RoomName(ctx context.Context, roomID string) string {
	evt, err := r.b.client.FullStateEvent(ctx, id.RoomID(roomID), event.StateRoomName, "")
	if err != nil {
		return ""
	}
	_ = evt.Content.ParseRaw(event.StateRoomName)
	if n, ok := evt.Content.Parsed.(*event.RoomNameEventContent); ok {
		return n.Name
	}
	return ""
}

// ---- Commands ----

// markCommand: !mark [-30s] [text] puts a marker on the timeline of what is being
// recorded in the room, and confirms with a ✅ reaction.
func (b *Bot) markCommand(ctx context.Context, cc *cmdContext) error {
	if err := b.rooms.Mark(roomsRequest(cc)); err != nil {
		return err
	}
	react := &event.ReactionEventContent{RelatesTo: event.RelatesTo{Type: event.RelAnnotation, EventID: cc.Event, Key: "✅"}}
	if _, err := b.client.SendMessageEvent(ctx, cc.Room, event.EventReaction, react); err != nil {
		b.log.Warn().Err(err).Stringer("room_id", cc.Room).Msg("Failed to confirm a marker")
		b.notice(ctx, cc.Room, "Marker set.", cc.Event)
	}
	return nil
}

// postcallCommand runs a command of the after-call work (!export, !transcript) for those
// who may start and stop recordings in the room.
func (b *Bot) postcallCommand(run func(ctx context.Context, roomID string, args []string) error) func(ctx context.Context, cc *cmdContext) error {
	return func(ctx context.Context, cc *cmdContext) error {
		if err := b.mayRecord(ctx, cc.Room, cc.Sender, "start or stop recordings"); err != nil {
			return err
		}
		return run(ctx, string(cc.Room), cc.Args)
	}
}
