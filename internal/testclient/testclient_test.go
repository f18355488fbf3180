package testclient

import (
	"context"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

func message(room id.RoomID, sender id.UserID, body string) *event.Event {
	return &event.Event{
		Type: event.EventMessage, RoomID: room, Sender: sender,
		Content: event.Content{Parsed: &event.MessageEventContent{MsgType: event.MsgNotice, Body: body}},
	}
}

func TestInbox(t *testing.T) {
	var in Inbox
	since := time.Now()
	in.Note(message("!a:x", "@me:x", "mine"), "@me:x")
	in.Note(message("!b:x", "@bot:x", "other room"), "@me:x")
	in.Note(&event.Event{Type: event.StateMember, RoomID: "!a:x", Sender: "@bot:x"}, "@me:x")
	if got := in.In("!a:x"); len(got) != 0 {
		t.Fatalf("own messages or state events were kept: %+v", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		time.Sleep(10 * time.Millisecond)
		in.Note(message("!a:x", "@bot:x", "Recording started"), "@me:x")
	}()
	m, err := in.Wait(ctx, "!a:x", since, func(b string) bool { return strings.HasPrefix(b, "Recording") })
	if err != nil || m.Sender != "@bot:x" || m.Body != "Recording started" {
		t.Fatalf("Wait = %+v, %v", m, err)
	}

	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := in.Wait(short, "!a:x", time.Now().Add(time.Hour), func(string) bool { return true }); err == nil {
		t.Fatal("Wait found a message older than since")
	}
}

// An edit is read from its m.new_content: body, HTML and mentions; a thread reply knows
// its root.
func TestInboxEditsAndThreads(t *testing.T) {
	var in Inbox
	nc := &event.MessageEventContent{MsgType: event.MsgNotice, Body: "new", Format: event.FormatHTML, FormattedBody: "<b>new</b>",
		Mentions: &event.Mentions{UserIDs: []id.UserID{"@a:x"}}}
	edit := &event.MessageEventContent{MsgType: event.MsgNotice, Body: "* new", Mentions: &event.Mentions{}, NewContent: nc,
		RelatesTo: (&event.RelatesTo{}).SetReplace("$orig")}
	in.Note(&event.Event{Type: event.EventMessage, RoomID: "!a:x", Sender: "@bot:x", ID: "$edit", Content: event.Content{Parsed: edit}}, "@me:x")
	reply := &event.MessageEventContent{MsgType: event.MsgNotice, Body: "files", RelatesTo: (&event.RelatesTo{}).SetThread("$root", "$root")}
	in.Note(&event.Event{Type: event.EventMessage, RoomID: "!a:x", Sender: "@bot:x", ID: "$reply", Content: event.Content{Parsed: reply}}, "@me:x")
	got := in.In("!a:x")
	if len(got) != 2 {
		t.Fatalf("%+v", got)
	}
	e := got[0]
	if !e.Edit || e.Replaces != "$orig" || e.Body != "new" || e.FormattedBody != "<b>new</b>" || e.Format != event.FormatHTML || len(e.Mentions) != 1 || e.EventID != "$edit" {
		t.Errorf("edit: %+v", e)
	}
	if r := got[1]; r.Thread != "$root" || r.Edit || r.EventID != "$reply" {
		t.Errorf("thread reply: %+v", r)
	}
}
