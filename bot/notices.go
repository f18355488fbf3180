package bot

import (
	"context"
	"sort"
	"strings"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/format"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/lifecycle"
)

// Every message the bot writes has a plain body and an HTML body rendered from Markdown
// by mautrix's format package: a notice's plain text is escaped into Markdown, with the
// users it mentions as pills (and in m.mentions); the summary comes as Markdown already
// (lifecycle.Message). An edit carries the same form in m.new_content, so pills and
// mentions survive it.

// notice posts an m.notice (encrypted in encrypted rooms), as a reply when replyTo is set.
func (b *Bot) notice(ctx context.Context, roomID id.RoomID, text string, replyTo id.EventID) id.EventID {
	return b.noticeMentions(ctx, roomID, text, replyTo, nil)
}

// noticeMentions posts a notice that pings the given users (intentional mentions): their
// ids in text become pills.
func (b *Bot) noticeMentions(ctx context.Context, roomID id.RoomID, text string, replyTo id.EventID, mentions []id.UserID) id.EventID {
	content := noticeContent(text, mentions)
	if replyTo != "" {
		content.RelatesTo = (&event.RelatesTo{}).SetReplyTo(replyTo)
	}
	return b.sendNotice(ctx, roomID, content)
}

// editNotice replaces a notice's text (m.replace), with the mentions of the notice it
// edits: they keep their pills and are not pinged again.
func (b *Bot) editNotice(ctx context.Context, roomID id.RoomID, evt id.EventID, text string, mentions []id.UserID) {
	content := editContent(evt, noticeContent(text, mentions))
	if _, err := b.client.SendMessageEvent(ctx, roomID, event.EventMessage, content); err != nil {
		b.log.Debug().Err(err).Stringer("room_id", roomID).Msg("Could not edit a notice")
	}
}

func (b *Bot) sendNotice(ctx context.Context, roomID id.RoomID, content *event.MessageEventContent) id.EventID {
	resp, err := b.client.SendMessageEvent(ctx, roomID, event.EventMessage, content)
	if err != nil {
		b.log.Warn().Err(err).Stringer("room_id", roomID).Msg("Failed to send notice")
		return ""
	}
	return resp.EventID
}

// noticeContent is a notice with text as its body and, as HTML, the same text with the
// mentioned users as pills.
func noticeContent(text string, mentions []id.UserID) *event.MessageEventContent {
	content := markdownContent(text, plainMarkdown(text, mentions))
	content.Mentions = &event.Mentions{UserIDs: mentions}
	return content
}

// markdownContent is a notice with text as its body and md rendered as its HTML; it pings
// nobody.
func markdownContent(text, md string) *event.MessageEventContent {
	rendered := format.RenderMarkdown(md, true, false)
	content := &event.MessageEventContent{MsgType: event.MsgNotice, Body: text, Mentions: &event.Mentions{}}
	if rendered.FormattedBody != "" {
		content.Format, content.FormattedBody = event.FormatHTML, rendered.FormattedBody
	}
	return content
}

// editContent makes content the replacement of evt: the new content in m.new_content (its
// HTML and mentions with it), and a fallback for clients without edits that has the HTML
// too but pings nobody again.
func editContent(evt id.EventID, content *event.MessageEventContent) *event.MessageEventContent {
	newContent := *content
	newContent.RelatesTo = nil
	edit := &event.MessageEventContent{
		MsgType:    content.MsgType,
		Body:       "* " + content.Body,
		Mentions:   &event.Mentions{},
		NewContent: &newContent,
		RelatesTo:  (&event.RelatesTo{}).SetReplace(evt),
	}
	if content.FormattedBody != "" {
		edit.Format, edit.FormattedBody = content.Format, "* "+content.FormattedBody
	}
	return edit
}

// plainMarkdown is plain text as Markdown that reads literally, with the mentioned users'
// ids as pills.
func plainMarkdown(text string, mentions []id.UserID) string {
	// Longer ids first, so that one id that contains another is found whole.
	var ids []id.UserID
	for _, u := range mentions {
		if u != "" {
			ids = append(ids, u)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return len(ids[i]) > len(ids[j]) })
	var b strings.Builder
	for i, line := range strings.Split(text, "\n") {
		if i > 0 {
			b.WriteString("\n")
		}
		// Leading blanks would make an indented code block.
		line = strings.TrimLeft(line, " \t")
		for line != "" {
			at, who := -1, id.UserID("")
			for _, u := range ids {
				if k := strings.Index(line, string(u)); k >= 0 && (at < 0 || k < at) {
					at, who = k, u
				}
			}
			if who == "" {
				b.WriteString(lifecycle.EscapeMarkdown(line))
				break
			}
			b.WriteString(lifecycle.EscapeMarkdown(line[:at]))
			b.WriteString(format.MarkdownMention(who))
			line = line[at+len(who):]
		}
	}
	return b.String()
}
