package bot

import (
	"context"
	"fmt"
	"html"
	"path/filepath"
	"strings"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// notice posts an m.notice (encrypted in encrypted rooms), as a reply when replyTo is set.
func (b *Bot) notice(ctx context.Context, roomID id.RoomID, text string, replyTo id.EventID) id.EventID {
	return b.noticeMentions(ctx, roomID, text, replyTo, nil)
}

// noticeMentions posts a notice that pings the given users (intentional mentions).
func (b *Bot) noticeMentions(ctx context.Context, roomID id.RoomID, text string, replyTo id.EventID, mentions []id.UserID) id.EventID {
	content := &event.MessageEventContent{
		MsgType:       event.MsgNotice,
		Body:          text,
		Format:        event.FormatHTML,
		FormattedBody: withMentions(strings.ReplaceAll(html.EscapeString(text), "\n", "<br>"), mentions),
		Mentions:      &event.Mentions{UserIDs: mentions},
	}
	if replyTo != "" {
		content.RelatesTo = &event.RelatesTo{InReplyTo: &event.InReplyTo{EventID: replyTo}}
	}
	resp, err := b.client.SendMessageEvent(ctx, roomID, event.EventMessage, content)
	if err != nil {
		b.log.Warn().Err(err).Stringer("room_id", roomID).Msg("Failed to send notice")
		return ""
	}
	return resp.EventID
}

func formatDuration(d time.Duration) string {
	d = d.Round(time.Second)
	h := int(d / time.Hour)
	m := int(d % time.Hour / time.Minute)
	s := int(d % time.Minute / time.Second)
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f kB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

func folderBase(folder string) string {
	if folder == "" {
		return "-"
	}
	return filepath.Base(folder)
}

var sourceNames = map[string]string{
	recorder.SourceMicrophone:       "microphone",
	recorder.SourceCamera:           "camera",
	recorder.SourceScreenShare:      "screen share",
	recorder.SourceScreenShareAudio: "screen share audio",
}

// summary describes a finished recording in a few lines: duration, one line per file.
func summary(m recorder.Manifest, folder string) string {
	var b strings.Builder
	dur := time.Duration(m.DurationMs) * time.Millisecond
	fmt.Fprintf(&b, "Recording saved: %s, %d file(s) in %s", formatDuration(dur), len(m.Tracks), folderBase(folder))
	if len(m.Tracks) == 0 && len(m.Warnings) == 0 {
		b.WriteString("\nNo media arrived, so there is nothing to listen to.")
	}
	for _, w := range m.Warnings {
		b.WriteString("\n⚠ " + w)
	}
	for _, t := range m.Tracks {
		b.WriteString("\n• " + fileLine(t))
	}
	return b.String()
}
