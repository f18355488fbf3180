package bot

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/postcall"
	"github.com/matrix-recorder/matrix-recorder/postcall/export"
	"github.com/matrix-recorder/matrix-recorder/postcall/transcript"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// newPostcall sets up the after-call work (postcall package) from the config.
func (b *Bot) newPostcall() (*postcall.Manager, error) {
	pc := b.cfg.PostCall
	var auto []export.Kind
	for _, k := range pc.Export.Auto {
		kind, ok := export.ParseKind(k)
		if !ok {
			return nil, fmt.Errorf("postcall.export.auto: unknown kind %q", k)
		}
		auto = append(auto, kind)
	}
	m, err := postcall.New(postcall.Config{
		FFmpeg:         pc.FFmpeg,
		Workers:        pc.Workers,
		MaxQueue:       pc.MaxQueue,
		Picture:        pc.Picture.Enabled,
		PictureWidth:   pc.Picture.Width,
		VoiceActivity:  pc.Picture.VoiceActivity,
		AutoExport:     auto,
		MixFormat:      pc.Export.MixFormat,
		ExportTimeout:  pc.Export.Timeout.D(),
		UploadMaxBytes: int64(pc.Export.UploadMaxMB) << 20,
		Transcript: transcript.Hook{
			Command: pc.Transcript.Command, URL: pc.Transcript.URL, Headers: pc.Transcript.Headers,
			Timeout: pc.Transcript.Timeout.D(), Concurrency: pc.Transcript.Concurrency,
		},
		CommandPrefix: b.cfg.Bot.CommandPrefix,
		LockManifest:  b.lc.LockManifests, // the lifecycle records uploads in them
	}, postcallRoom{b}, b.log)
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

// maxMarkerRunes bounds a marker's text; maxMarkers bounds the markers of one recording.
const (
	maxMarkerRunes = 200
	maxMarkers     = 500
)

// markCounts counts the markers set per recording (call folder), to bound them.
type markCounts struct {
	mu sync.Mutex
	n  map[string]int
}

// take counts one marker for each folder, unless one of them is full.
func (m *markCounts) take(folders []string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == nil || len(m.n) > 10000 {
		m.n = map[string]int{} // forget old recordings now and then
	}
	for _, f := range folders {
		if m.n[f] >= maxMarkers {
			return false
		}
	}
	for _, f := range folders {
		m.n[f]++
	}
	return true
}

// markerText makes a marker's text safe to store and show: one line, printable, bounded.
func markerText(s string) string {
	var b strings.Builder
	n := 0
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || (unicode.Is(unicode.Cf, r) && r != '\u200d') {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
		if n++; n >= maxMarkerRunes {
			break
		}
	}
	return b.String()
}

// markBack parses an optional "-30s" / "-2m" first word: the marker goes that far back.
func markBack(args []string) (time.Duration, []string) {
	if len(args) == 0 || !strings.HasPrefix(args[0], "-") {
		return 0, args
	}
	d, err := time.ParseDuration(args[0][1:])
	if err != nil || d <= 0 || d > time.Hour {
		return 0, args
	}
	return d, args[1:]
}

// markCommand: !mark [-30s] [text] puts a marker on the timeline of what is being
// recorded in the room, and confirms with a ✅ reaction.
func (b *Bot) markCommand(ctx context.Context, cc *cmdContext) error {
	back, args := markBack(cc.args)
	text := markerText(strings.Join(args, " "))
	at := time.Now().Add(-back)
	b.groups.mu.Lock()
	gr := b.groups.active[cc.roomID]
	b.groups.mu.Unlock()
	var folders []string
	if gr != nil {
		folders = append(folders, gr.folder)
	}
	// A 1:1 call is marked by the person in it only.
	markCall := b.calls != nil && b.mayEndCall(cc) == nil
	if markCall {
		for _, st := range b.calls.Active() {
			if st.RoomID == cc.roomID && st.Folder != "" {
				folders = append(folders, st.Folder)
			}
		}
	}
	if len(folders) == 0 {
		if !markCall {
			return b.mayEndCall(cc)
		}
		return userError{Msg: "Nothing is being recorded in this room, so there is nothing to mark."}
	}
	if !b.marks.take(folders) {
		return userError{Msg: fmt.Sprintf("This recording already has %d markers; that is the limit.", maxMarkers)}
	}
	n := 0
	if gr != nil {
		if st := gr.rec.Status(); at.Before(st.StartedAt) {
			at = st.StartedAt
		}
		gr.rec.Mark(cc.sender, text, at)
		n++
	}
	if markCall {
		n += b.calls.Mark(cc.roomID, cc.sender, text, at)
	}
	if n == 0 {
		return userError{Msg: "Nothing is being recorded in this room, so there is nothing to mark."}
	}
	react := &event.ReactionEventContent{RelatesTo: event.RelatesTo{Type: event.RelAnnotation, EventID: cc.event, Key: "✅"}}
	if _, err := b.client.SendMessageEvent(ctx, cc.roomID, event.EventReaction, react); err != nil {
		b.log.Warn().Err(err).Stringer("room_id", cc.roomID).Msg("Failed to confirm a marker")
		b.notice(ctx, cc.roomID, "Marker set.", cc.event)
	}
	return nil
}

// exportCommand: !export <id|latest> [mix|zip|flac|wav ...].
func (b *Bot) exportCommand(ctx context.Context, cc *cmdContext) error {
	p := b.cfg.Bot.CommandPrefix
	if err := b.groups.mayRecord(ctx, cc.roomID, cc.sender); err != nil {
		return err
	}
	if len(cc.args) == 0 {
		calls, _ := postcall.RecentCalls(b.rec.Dir(), string(cc.roomID), 5)
		msg := fmt.Sprintf("Usage: %sexport <id|latest> [mix|zip|flac|wav]. mix: all audio in one file; zip: every track aligned to the call's start, in one archive; flac/wav: one aligned file per person and track. Default: mix.", p)
		if len(calls) > 0 {
			msg += "\nRecent recordings here: " + strings.Join(postcall.Recent(calls, 5), ", ")
		}
		return userError{Msg: msg}
	}
	ref := cc.args[0]
	var kinds []export.Kind
	seen := map[export.Kind]bool{}
	for _, a := range cc.args[1:] {
		k, ok := export.ParseKind(a)
		if !ok {
			return userError{Msg: fmt.Sprintf("I can export mix, zip, flac or wav, not %q.", a)}
		}
		if !seen[k] {
			seen[k] = true
			kinds = append(kinds, k)
		}
	}
	if len(kinds) == 0 {
		kinds = []export.Kind{export.KindMix}
	}
	call, err := b.findCall(ctx, cc.roomID, ref)
	if err != nil {
		return err
	}
	if err := b.post.Export(string(cc.roomID), call, kinds); err != nil {
		return userError{Msg: fmt.Sprintf("I cannot start that export now: %v.", err)}
	}
	return nil
}

// transcriptCommand: !transcript [id|latest] runs the hook for tracks without a
// transcript and merges what there is.
func (b *Bot) transcriptCommand(ctx context.Context, cc *cmdContext) error {
	if err := b.groups.mayRecord(ctx, cc.roomID, cc.sender); err != nil {
		return err
	}
	ref := postcall.Latest
	if len(cc.args) > 0 {
		ref = cc.args[0]
	}
	call, err := b.findCall(ctx, cc.roomID, ref)
	if err != nil {
		return err
	}
	if err := b.post.Transcribe(string(cc.roomID), call); err != nil {
		return userError{Msg: fmt.Sprintf("I cannot start that now: %v.", err)}
	}
	return nil
}

// findCall resolves a recording reference of this room: latest, a call folder's name, a
// call id, or a recording id of !recordings.
func (b *Bot) findCall(ctx context.Context, roomID id.RoomID, ref string) (postcall.Call, error) {
	if !strings.EqualFold(ref, postcall.Latest) {
		if folder := b.lc.FolderOf(ctx, roomID, ref); folder != "" {
			ref = folder
		}
	}
	return postcall.FindCall(b.rec.Dir(), string(roomID), ref)
}
