package lifecycle

import (
	"context"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/usererr"
)

// ask runs a lifecycle command as sender and returns what was said in room in answer.
func (e *env) ask(t *testing.T, sender id.UserID, run func(context.Context, Request) error, args ...string) string {
	t.Helper()
	return askWith(t, e.chat, sender, run, args...)
}

// askWith runs a lifecycle command as sender and returns what chat says in room in
// answer: its notices and the message of the user error it returned.
func askWith(t *testing.T, chat *fakeChat, sender id.UserID, run func(context.Context, Request) error, args ...string) string {
	t.Helper()
	before := len(chat.texts(room))
	err := run(context.Background(), Request{Room: room, Sender: sender, Event: "$cmd", Args: args})
	got := chat.texts(room)[before:]
	var ue usererr.Error
	switch {
	case err == nil:
	case asUserError(err, &ue):
		got = append(got, ue.Msg)
	default:
		t.Fatalf("%v: %v", args, err)
	}
	return joined(got)
}

func asUserError(err error, ue *usererr.Error) bool {
	u, ok := err.(usererr.Error)
	if ok {
		*ue = u
	}
	return ok
}

// !recordings ID gives links to the people recorded and to whoever may start recordings,
// not to anyone else in the room; the list is for everyone.
func TestRecordingLinksNeedParticipantOrPower(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.HTTP.Listen, c.HTTP.PublicURL = "127.0.0.1:0", "https://rec.example.org"
	})
	e.chat.levels[room] = map[id.UserID]int{admin: 100}
	recID := e.finishedRecording(t, alice)

	if got := e.ask(t, bob, e.lc.Recordings); !strings.Contains(got, recID) {
		t.Errorf("the list for bob: %q", got)
	}
	got := e.ask(t, bob, e.lc.Recordings, recID)
	if !strings.Contains(got, "for the people recorded in it") || strings.Contains(got, "https://") {
		t.Errorf("bob (not recorded, no power) got %q", got)
	}
	for _, who := range []id.UserID{alice, admin} {
		got := e.ask(t, who, e.lc.Recordings, recID)
		if !strings.Contains(got, "https://rec.example.org/download/") || !strings.Contains(got, "exp=") {
			t.Errorf("%s did not get signed links: %q", who, got)
		}
	}
	// Deleting needs the power to record.
	if got := e.ask(t, alice, e.lc.Delete, recID); !strings.Contains(got, "may delete recordings") {
		t.Errorf("alice deleting: %q", got)
	}
	if got := e.ask(t, admin, e.lc.Delete, recID); !strings.Contains(got, "Deleted the recording "+recID) {
		t.Errorf("admin deleting: %q", got)
	}
	if got := e.ask(t, alice, e.lc.Recordings, recID); !strings.Contains(got, "was deleted on") {
		t.Errorf("links of a deleted recording: %q", got)
	}
}

// With storage.links_by_dm the links go to the asker in a direct chat, never to the room,
// and the room's summary says how to get them.
func TestLinksByDirectMessage(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.HTTP.Listen, c.HTTP.PublicURL = "127.0.0.1:0", "https://rec.example.org"
		c.Storage.LinksByDM = true
	})
	recID := e.finishedRecording(t, alice)
	r, err := e.lc.db.Recording(context.Background(), recID)
	if err != nil {
		t.Fatal(err)
	}
	sum := e.lc.summarize(context.Background(), r, "", true, !e.lc.cfg.Storage.LinksByDM)
	if text := sum.top.Text + sum.files.Text; strings.Contains(text, "https://") || !strings.Contains(text, "!recordings "+recID) {
		t.Errorf("room summary with links_by_dm: %q", text)
	}
	got := e.ask(t, alice, e.lc.Recordings, recID)
	if strings.Contains(got, "https://") || !strings.Contains(got, "direct message") {
		t.Errorf("in the room: %q", got)
	}
	dm := e.chat.dms[alice]
	if dm == "" || len(e.chat.dms) != 1 {
		t.Fatalf("direct chats: %v", e.chat.dms)
	}
	if got := joined(e.chat.texts(dm)); !strings.Contains(got, "https://rec.example.org/download/") {
		t.Errorf("the direct message has no links: %q", got)
	}
}
