package bot

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/lifecycle"
)

// A notice that mentions someone has their pill in the HTML and them in m.mentions; the
// rest of the text reads literally, whatever Markdown or HTML it looks like.
func TestNoticeHasPillsAndLiteralText(t *testing.T) {
	e := newCmdEnv(t, nil)
	text := "OK " + string(alice) + ", *not bold* <b>x</b> [a](https://x) # 1. _x_ ~~y~~ `c`\n2nd line"
	e.b.noticeMentions(context.Background(), room, text, "", []id.UserID{alice})
	c := e.hs.last().Content
	if c.Body != text || c.Format != event.FormatHTML {
		t.Fatalf("body %q, format %q", c.Body, c.Format)
	}
	if !strings.Contains(c.FormattedBody, `<a href="https://matrix.to/#/@alice:example.org">@alice:example.org</a>`) {
		t.Errorf("no pill: %s", c.FormattedBody)
	}
	for _, bad := range []string{"<em>", "<strong>", "<b>", "<del>", "<code>", `href="https://x"`, "<h1>", "<ol>"} {
		if strings.Contains(c.FormattedBody, bad) {
			t.Errorf("the text was read as markup (%s): %s", bad, c.FormattedBody)
		}
	}
	if !strings.Contains(c.FormattedBody, "&lt;b&gt;x&lt;/b&gt;") || !strings.Contains(c.FormattedBody, "<br") {
		t.Errorf("HTML: %s", c.FormattedBody)
	}
	if c.Mentions == nil || !slices.Equal(c.Mentions.UserIDs, []id.UserID{alice}) {
		t.Errorf("mentions: %+v", c.Mentions)
	}
}

// The live progress edit keeps the HTML body and the mentions of the start notice it
// edits: m.new_content has the pills and m.mentions, the fallback has the HTML too and
// pings nobody again.
func TestProgressEditKeepsHTMLAndMentions(t *testing.T) {
	e := newCmdEnv(t, nil)
	ctx := context.Background()
	text := "🔴 Recording started by " + string(bob) + ". Recording " + string(alice) + " and everyone who joins later."
	evt := e.b.noticeMentions(ctx, room, text, "", []id.UserID{alice})
	botChat{e.b}.Edit(ctx, room, evt, text+"\n⏺ 1:00 recorded so far, 3 MB, 2 tracks live.", alice)
	c := e.hs.last().Content
	nc := c.NewContent
	if nc == nil || c.RelatesTo == nil || c.RelatesTo.GetReplaceID() != evt {
		t.Fatalf("not an edit of %s: %+v", evt, c)
	}
	pill := `<a href="https://matrix.to/#/@alice:example.org">@alice:example.org</a>`
	if nc.Format != event.FormatHTML || !strings.Contains(nc.FormattedBody, pill) || !strings.Contains(nc.FormattedBody, "recorded so far") {
		t.Errorf("m.new_content lost its HTML: %q %q", nc.Format, nc.FormattedBody)
	}
	if nc.Mentions == nil || !slices.Equal(nc.Mentions.UserIDs, []id.UserID{alice}) {
		t.Errorf("m.new_content's mentions: %+v", nc.Mentions)
	}
	if c.Format != event.FormatHTML || !strings.HasPrefix(c.FormattedBody, "* ") || !strings.Contains(c.FormattedBody, pill) || !strings.HasPrefix(c.Body, "* ") {
		t.Errorf("fallback: %q / %q", c.Body, c.FormattedBody)
	}
	if c.Mentions == nil || len(c.Mentions.UserIDs) != 0 {
		t.Errorf("the edit pings again: %+v", c.Mentions)
	}
}

// The summary's files go in the thread of its message; the Markdown becomes HTML with
// links, and nobody is pinged.
func TestPostInThread(t *testing.T) {
	e := newCmdEnv(t, nil)
	ctx := context.Background()
	top, err := botChat{e.b}.Post(ctx, room, lifecycle.Message{Text: "Recording saved", Markdown: "**Recording saved**"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (botChat{e.b}).Post(ctx, room, lifecycle.Message{Text: "• a.ogg: https://x/a.ogg", Markdown: "• " + lifecycle.MarkdownLink("a.ogg", "https://x/a.ogg?x=1&y=2"), Thread: top}); err != nil {
		t.Fatal(err)
	}
	c := e.hs.last().Content
	if c.RelatesTo == nil || c.RelatesTo.Type != event.RelThread || c.RelatesTo.EventID != top {
		t.Fatalf("not in the thread of %s: %+v", top, c.RelatesTo)
	}
	if !strings.Contains(c.FormattedBody, `<a href="https://x/a.ogg?x=1&amp;y=2">a.ogg</a>`) || c.Body != "• a.ogg: https://x/a.ogg" {
		t.Errorf("thread message: %q / %q", c.Body, c.FormattedBody)
	}
	if c.Mentions == nil || len(c.Mentions.UserIDs) != 0 {
		t.Errorf("mentions: %+v", c.Mentions)
	}
}

// !status reads the same for every kind of recording: the backend, where its call stands,
// then the numbers.
func TestRecordingLines(t *testing.T) {
	start := time.Date(2026, 12, 6, 14, 3, 4, 0, time.UTC)
	for _, c := range []struct {
		st   call.Status
		want string
	}{
		{call.Status{Backend: "mesh", State: call.StateConnected}, "Recording (mesh), connected, since 14:03:04 UTC, 1:30 so far"},
		{call.Status{Backend: "egress", State: call.StateConnecting}, "Recording (egress), connecting, since 14:03:04 UTC"},
		{call.Status{Backend: "1:1", State: call.StateRinging}, "Recording (1:1), ringing, since"},
		{call.Status{Backend: "livekit"}, "Recording (livekit) since"},
	} {
		c.st.StartedAt, c.st.Folder = start, "/rec/f"
		if got := recordingLines(c.st, start.Add(90*time.Second)); !strings.HasPrefix(got[0], c.want) {
			t.Errorf("%s: %q, want it to begin %q", c.st.Backend, got[0], c.want)
		}
	}
}
