package integration

import (
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/internal/testclient"
)

// threadView is a message as a client shows it: its latest text (edits applied), then
// the latest texts of the replies in its thread. The bot's summary is one message with
// its files in the thread; a test reads both as one text.
type threadView struct {
	Top  testclient.Message
	Text string
	// Replies counts the replies in its thread.
	Replies int
	// Last is when the newest part of it (an edit, a reply) arrived.
	Last time.Time
}

// threadViews folds a room's messages into what a client shows: edits into the message
// they replace, thread replies under their root.
func threadViews(msgs []testclient.Message) []threadView {
	latest := map[id.EventID]testclient.Message{} // the newest edit of each message
	for _, m := range msgs {
		if m.Edit {
			latest[m.Replaces] = m
		}
	}
	current := func(m testclient.Message) (string, time.Time) {
		if e, ok := latest[m.EventID]; ok {
			return e.Body, e.At
		}
		return m.Body, m.At
	}
	var out []threadView
	at := map[id.EventID]int{}
	for _, m := range msgs {
		if m.Edit || m.Thread != "" {
			continue
		}
		text, last := current(m)
		at[m.EventID] = len(out)
		out = append(out, threadView{Top: m, Text: text, Last: last})
	}
	for _, m := range msgs {
		i, ok := at[m.Thread]
		if m.Edit || m.Thread == "" || !ok {
			continue
		}
		text, last := current(m)
		out[i].Text += "\n" + text
		out[i].Replies++
		if last.After(out[i].Last) {
			out[i].Last = last
		}
	}
	return out
}

// waitView waits until list has a message (with its thread) from someone other than the
// test's participant, posted or changed at or after since, whose text has every one of
// want, and returns that text.
func waitView(t *testing.T, what string, list func() []testclient.Message, since time.Time, d time.Duration, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		views := threadViews(list())
		for _, v := range views {
			if v.Last.Before(since) {
				continue
			}
			if strings.Contains(v.Text, "in the thread") && v.Replies == 0 {
				continue // a summary whose files are on their way
			}
			ok := true
			for _, w := range want {
				if !strings.Contains(v.Text, w) {
					ok = false
					break
				}
			}
			if ok {
				return v.Text
			}
		}
		if time.Now().After(deadline) {
			var seen []string
			for _, v := range views {
				seen = append(seen, v.Text)
			}
			t.Fatalf("no %s with %q within %v; messages:\n%s", what, want, d, strings.Join(seen, "\n---\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// summaryFiles returns the thread reply of a summary (the files), waiting for it.
func threadOf(t *testing.T, list func() []testclient.Message, root id.EventID, d time.Duration) testclient.Message {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		for _, m := range list() {
			if m.Thread == root && !m.Edit {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reply in the thread of %s within %v", root, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
