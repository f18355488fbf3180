package bot

import (
	"context"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

const (
	room  = id.RoomID("!room:example.org")
	alice = id.UserID("@alice:example.org")
	bob   = id.UserID("@bob:example.org")
	admin = id.UserID("@admin:example.org")
)

// Unknown commands are answered only when meant for this bot: a command word in a
// message that mentions it. Other bots' commands, even one edit away from one of ours
// ("!stat"), and exclamations get nothing.
func TestUnknownCommandsOfOthersAreIgnored(t *testing.T) {
	e := newCmdEnv(t, nil)
	for _, body := range []string{"!ban @spammer:example.org", "!!! great", "!kick x", "!1234", "!ping", "!", "!é", "!op", "!stat", "!statsu", "!stpo", "!starts"} {
		if got := e.say(room, bob, body); len(got) != 0 {
			t.Errorf("%q was answered: %q", body, got)
		}
	}
	if got := joined(e.say(room, bob, "!statsu", testBot)); !strings.Contains(got, "Did you mean !status") {
		t.Errorf("typo with a mention: %q", got)
	}
	if got := joined(e.say(room, bob, "!stpo "+string(testBot))); !strings.Contains(got, "Did you mean !stop") {
		t.Errorf("transposition with the bot's id in the text: %q", got)
	}
	if got := joined(e.say(room, bob, "!ban @x:example.org", testBot)); !strings.Contains(got, "I don't know !ban") || strings.Contains(got, "Did you mean") {
		t.Errorf("a mention gets an answer: %q", got)
	}
	if got := joined(e.say(room, bob, "!frobnicate "+string(testBot))); !strings.Contains(got, "I don't know !frobnicate") {
		t.Errorf("the bot's id in the text gets an answer: %q", got)
	}
	if got := e.say(room, bob, "!!! great", testBot); len(got) != 0 {
		t.Errorf("an exclamation that mentions the bot was answered: %q", got)
	}
}

// The command prefix is configurable, and every answer says the configured one.
func TestCommandPrefix(t *testing.T) {
	e := newCmdEnv(t, func(c *config.Config) { c.Bot.CommandPrefix = "?rec " })
	if got := e.say(room, bob, "!help"); len(got) != 0 {
		t.Errorf("!help with another prefix: %q", got)
	}
	help := joined(e.say(room, bob, "?rec help"))
	if !strings.Contains(help, "?rec start") || !strings.Contains(help, "?rec recordings [ID]") || strings.Contains(help, "!") {
		t.Errorf("help: %q", help)
	}
	if got := joined(e.say(room, bob, "?rec statsu", testBot)); !strings.Contains(got, "I don't know ?rec statsu. Did you mean ?rec status? Type ?rec help") {
		t.Errorf("unknown: %q", got)
	}
	if got := e.b.greeting(false); !strings.Contains(got, "?rec start") || strings.Contains(got, "!start") || strings.Contains(got, "!help") {
		t.Errorf("greeting: %q", got)
	}
}

// !help lists the commands by what people want them for, as a reply to the question.
func TestHelpIsGroupedAndAReply(t *testing.T) {
	e := newCmdEnv(t, nil)
	help := joined(e.say(room, bob, "!help"))
	at := func(s string) int {
		i := strings.Index(help, s)
		if i < 0 {
			t.Fatalf("help lacks %q: %s", s, help)
		}
		return i
	}
	if !(at("Recording:") < at("\n!start") && at("\n!start") < at("During the call:") && at("During the call:") < at("\n!skipme") &&
		at("\n!skipme") < at("After the call:") && at("After the call:") < at("\n!recordings") && at("\n!recordings") < at("Admin:") && at("Admin:") < at("\n!delete")) {
		t.Errorf("help is not grouped: %s", help)
	}
	last := e.hs.last()
	if c := last.Content; c.RelatesTo == nil || c.RelatesTo.GetReplyTo() == "" {
		t.Errorf("help is not a reply: %+v", c.RelatesTo)
	}
}

// The greeting says how to get a recording where it is: "call me" in a direct chat
// (when calls are answered), !start in a group room.
func TestGreeting(t *testing.T) {
	e := newCmdEnv(t, nil)
	if got := e.b.greeting(false); strings.Contains(strings.ToLower(got), "call me") || !strings.Contains(got, "!start") {
		t.Errorf("group room: %q", got)
	}
	if got := e.b.greeting(true); !strings.Contains(got, "Call me here") {
		t.Errorf("direct chat: %q", got)
	}
	e.b.cfg.Calls.AutoAnswer = false
	if got := e.b.greeting(true); strings.Contains(strings.ToLower(got), "call me") {
		t.Errorf("direct chat without calls.auto_answer: %q", got)
	}
}

// A command that fails for a reason that is not the user's says so with an error id, and
// never the error's text (which can name internal URLs and paths).
func TestFailedCommandShowsAnIDNotTheError(t *testing.T) {
	e := newCmdEnv(t, nil)
	e.hs.mu.Lock()
	e.hs.failState = true
	e.hs.mu.Unlock()
	got := joined(e.say(room, bob, "!start"))
	if !strings.Contains(got, "Something went wrong (error ") || !strings.Contains(got, "the operator can find it in the log") {
		t.Errorf("answer: %q", got)
	}
	if strings.Contains(got, "127.0.0.1") || strings.Contains(got, "M_UNKNOWN") || strings.Contains(got, "power levels") {
		t.Errorf("the error's text reached the room: %q", got)
	}
}

// !hangup, !stop and !mark on a 1:1 call belong to the person in the call.
func TestOneToOneCommandsNeedTheParticipant(t *testing.T) {
	e := newCmdEnv(t, nil)
	e.hs.levels[room] = map[id.UserID]int{admin: 100}
	if err := e.b.rooms.Answer(context.Background(), room, call.Answer{Kind: recorder.KindOneToOne, Caller: alice, CallID: "c1"}); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"!hangup", "!stop", "!mark great answer"} {
		for _, who := range []id.UserID{bob, admin} {
			got := joined(e.say(room, who, cmd))
			if !strings.Contains(got, "only the person in the call") {
				t.Errorf("%s by %s: %q", cmd, who, got)
			}
		}
	}
	if len(e.calls.hangups) != 0 || e.calls.marks != 0 {
		t.Fatalf("a stranger ended or marked the call: %v, %d marks", e.calls.hangups, e.calls.marks)
	}
	e.say(room, alice, "!mark great answer")
	if e.calls.marks != 1 {
		t.Errorf("the caller's mark: %d", e.calls.marks)
	}
	e.say(room, alice, "!hangup")
	if len(e.calls.hangups) != 1 {
		t.Errorf("the caller's hangup: %v", e.calls.hangups)
	}
}

// !recordings and !delete reach the recording lifecycle, which answers in the room.
func TestRecordingsCommands(t *testing.T) {
	e := newCmdEnv(t, nil)
	if got := joined(e.say(room, bob, "!recordings")); !strings.Contains(got, "No recordings in this room yet") {
		t.Errorf("!recordings: %q", got)
	}
	if got := joined(e.say(room, bob, "!delete nosuchid")); !strings.Contains(got, `There is no recording "nosuchid" in this room`) {
		t.Errorf("!delete: %q", got)
	}
}

// The links' direct chat is found again in the account's m.direct, not created twice.
func TestDirectRoomIsReused(t *testing.T) {
	e := newCmdEnv(t, nil)
	ctx := context.Background()
	e.b.client.StateStore = mautrix.NewMemoryStateStore() // the crypto helper's, in the bot
	first, err := e.b.directRoom(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	e.hs.mu.Lock()
	e.hs.members[first] = []id.UserID{testBot, alice}
	e.hs.mu.Unlock()
	e.b.client.StateStore.SetMembership(ctx, first, testBot, "join")
	e.b.client.StateStore.SetMembership(ctx, first, alice, "invite")
	second, err := e.b.directRoom(ctx, alice)
	if err != nil || second != first {
		t.Errorf("second direct chat %s (%v), want %s", second, err, first)
	}
	if len(e.hs.created) != 1 || len(e.hs.invites[first]) != 1 || e.hs.invites[first][0] != alice {
		t.Fatalf("direct chat: created %v, invites %v", e.hs.created, e.hs.invites)
	}
}
