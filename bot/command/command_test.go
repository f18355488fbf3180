package command

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/usererr"
)

// notes is a Replier that keeps what it was asked to post, per room.
type notes struct {
	mu    sync.Mutex
	texts map[id.RoomID][]string
}

func (n *notes) Notice(_ context.Context, room id.RoomID, text string, _ id.EventID, _ ...id.UserID) id.EventID {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.texts == nil {
		n.texts = map[id.RoomID][]string{}
	}
	n.texts[room] = append(n.texts[room], text)
	return "$n"
}

func (n *notes) in(room id.RoomID) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.texts[room]...)
}

// newTest is a processor with !help (which answers "help text"), !fail (an error that is
// not the user's) and !oops (a user's mistake).
func newTest() (*Processor, *notes) {
	n := &notes{}
	var p *Processor
	p = New("!", []*Command{
		{Name: "help", Group: GroupAdmin, Description: "show this list", Handler: func(ctx context.Context, cc *Context) error {
			n.Notice(ctx, cc.Room, "help text", cc.Event)
			return nil
		}},
		{Name: "fail", Group: GroupRecording, Handler: func(context.Context, *Context) error { return errors.New("dial http://10.0.0.1/secret") }},
		{Name: "oops", Group: GroupRecording, Args: "X", Handler: func(context.Context, *Context) error { return usererr.Error{Msg: "Not like that."} }},
	}, n, zerolog.Nop())
	return p, n
}

func say(p *Processor, room id.RoomID, sender id.UserID, body string) {
	p.Dispatch(context.Background(), &event.Event{RoomID: room, Sender: sender, ID: "$in"}, body, false)
}

// A sender who floods commands gets one notice and then silence, while others are still
// answered; the room has a bucket of its own.
func TestCommandRateLimit(t *testing.T) {
	p, n := newTest()
	now := time.Unix(1_700_000_000, 0)
	p.SetClock(func() time.Time { return now })
	const room, alice, bob = id.RoomID("!room:hs"), id.UserID("@alice:hs"), id.UserID("@bob:hs")
	for i := 0; i < 20; i++ {
		say(p, room, bob, "!help")
	}
	helps, slowDowns := 0, 0
	answers := n.in(room)
	for _, a := range answers {
		switch {
		case a == "help text":
			helps++
		case strings.Contains(a, "lot of commands"):
			slowDowns++
		}
	}
	if helps != userBurst || slowDowns != 1 || len(answers) != userBurst+1 {
		t.Fatalf("%d answers, %d help, %d notices; want %d help and one notice", len(answers), helps, slowDowns, userBurst)
	}
	// Other senders still get answers; bob again once his bucket has a token.
	say(p, room, alice, "!help")
	if got := n.in(room); len(got) != len(answers)+1 {
		t.Errorf("alice after bob's flood: %q", got[len(answers):])
	}
	now = now.Add(userEvery)
	say(p, room, bob, "!help")
	if got := n.in(room); got[len(got)-1] != "help text" {
		t.Errorf("bob after a pause: %q", got[len(got)-1])
	}
	// Many senders in one room hit the room's bucket: one notice for the room.
	other := id.RoomID("!other:hs")
	for i := 0; i < 3*roomBurst; i++ {
		say(p, other, id.UserID("@u"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+":hs"), "!help")
	}
	notices := 0
	roomAnswers := n.in(other)
	for _, a := range roomAnswers {
		if strings.Contains(a, "commands in this room") {
			notices++
		}
	}
	if len(roomAnswers) != roomBurst+1 || notices != 1 {
		t.Errorf("room flood: %d answers with %d room notices, want %d and 1", len(roomAnswers), notices, roomBurst+1)
	}
}

// A user's mistake is shown as it is; any other error with an id, never its text.
func TestHandlerErrors(t *testing.T) {
	p, n := newTest()
	say(p, "!r:hs", "@a:hs", "!oops")
	say(p, "!r:hs", "@a:hs", "!fail")
	got := n.in("!r:hs")
	if len(got) != 2 || got[0] != "Not like that." || !strings.Contains(got[1], "(error ") || strings.Contains(got[1], "10.0.0.1") {
		t.Errorf("answers %q", got)
	}
}

// Help lists the commands by group, with their arguments.
func TestHelp(t *testing.T) {
	p, _ := newTest()
	help := p.Help("Intro.\n")
	if !strings.HasPrefix(help, "Intro.") || !strings.Contains(help, "Recording:\n!fail") || !strings.Contains(help, "!oops X") ||
		strings.Index(help, "Recording:") > strings.Index(help, "Admin:\n!help - show this list") {
		t.Errorf("help %q", help)
	}
}
