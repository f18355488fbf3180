package bot

import (
	"context"
	"html"
	"strings"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
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
