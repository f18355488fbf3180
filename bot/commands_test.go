package bot

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/onetoone"
	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/lifecycle/download"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

const (
	room  = id.RoomID("!room:example.org")
	alice = id.UserID("@alice:example.org")
	bob   = id.UserID("@bob:example.org")
	admin = id.UserID("@admin:example.org")
)

// Unknown commands are answered only when meant for this bot: a typo of one of its
// commands, or a mention. Other bots' commands and exclamations get nothing.
func TestUnknownCommandsOfOthersAreIgnored(t *testing.T) {
	e := newCmdEnv(t, nil)
	for _, body := range []string{"!ban @spammer:example.org", "!!! great", "!kick x", "!1234", "!ping", "!", "!é", "!op"} {
		if got := e.say(room, bob, body); len(got) != 0 {
			t.Errorf("%q was answered: %q", body, got)
		}
	}
	if got := joined(e.say(room, bob, "!statsu")); !strings.Contains(got, "Did you mean !status") {
		t.Errorf("typo: %q", got)
	}
	if got := joined(e.say(room, bob, "!stpo")); !strings.Contains(got, "Did you mean !stop") {
		t.Errorf("transposition: %q", got)
	}
	if got := joined(e.say(room, bob, "!ban @x:example.org", testBot)); !strings.Contains(got, "I don't know !ban") {
		t.Errorf("a mention gets an answer: %q", got)
	}
	if got := joined(e.say(room, bob, "!frobnicate "+string(testBot))); !strings.Contains(got, "I don't know !frobnicate") {
		t.Errorf("the bot's id in the text gets an answer: %q", got)
	}
}

// A sender who floods commands gets one notice and then silence, while others in other
// rooms are still answered; the room has a bucket of its own.
func TestCommandRateLimit(t *testing.T) {
	e := newCmdEnv(t, nil)
	now := time.Unix(1_700_000_000, 0)
	e.b.cmds.limit.now = func() time.Time { return now }
	var answers []string
	for i := 0; i < 20; i++ {
		answers = append(answers, e.say(room, bob, "!help")...)
	}
	helps, slowDowns := 0, 0
	for _, a := range answers {
		switch {
		case strings.Contains(a, "Commands:"):
			helps++
		case strings.Contains(a, "lot of commands"):
			slowDowns++
		}
	}
	if helps != userBurst || slowDowns != 1 || len(answers) != userBurst+1 {
		t.Fatalf("%d answers, %d help, %d notices; want %d help and one notice", len(answers), helps, slowDowns, userBurst)
	}
	// Other senders still get answers; bob again once his bucket has a token.
	if got := e.say(room, alice, "!help"); len(got) != 1 {
		t.Errorf("alice after bob's flood: %q", got)
	}
	now = now.Add(userEvery)
	if got := joined(e.say(room, bob, "!help")); !strings.Contains(got, "Commands:") {
		t.Errorf("bob after a pause: %q", got)
	}
	// Many senders in one room hit the room's bucket: one notice for the room.
	other := id.RoomID("!other:example.org")
	var roomAnswers []string
	for i := 0; i < 3*roomBurst; i++ {
		u := id.UserID("@u" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + ":example.org")
		roomAnswers = append(roomAnswers, e.say(other, u, "!help")...)
	}
	notices := 0
	for _, a := range roomAnswers {
		if strings.Contains(a, "commands in this room") {
			notices++
		}
	}
	if len(roomAnswers) != roomBurst+1 || notices != 1 {
		t.Errorf("room flood: %d answers with %d room notices, want %d and 1", len(roomAnswers), notices, roomBurst+1)
	}
}

// !hangup, !stop and !mark on a 1:1 call belong to the person in the call.
func TestOneToOneCommandsNeedTheParticipant(t *testing.T) {
	e := newCmdEnv(t, nil)
	e.hs.levels[room] = map[id.UserID]int{admin: 100}
	e.calls.active = []onetoone.Status{{CallID: "c1", RoomID: room, Peer: alice, Folder: "/nonexistent"}}
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

// !recordings ID gives links to the people recorded and to whoever may start recordings,
// not to anyone else in the room; the list is for everyone.
func TestRecordingLinksNeedParticipantOrPower(t *testing.T) {
	e := newCmdEnv(t, func(c *config.Config) {
		c.HTTP.Listen, c.HTTP.PublicURL = "127.0.0.1:0", "https://rec.example.org"
	})
	e.hs.levels[room] = map[id.UserID]int{admin: 100}
	signer, err := download.LoadSigner(e.b.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	e.b.st.signer = signer
	recID := finishedRecording(t, e, alice)

	if got := joined(e.say(room, bob, "!recordings")); !strings.Contains(got, recID) {
		t.Errorf("the list for bob: %q", got)
	}
	got := joined(e.say(room, bob, "!recordings "+recID))
	if !strings.Contains(got, "for the people recorded in it") || strings.Contains(got, "https://") {
		t.Errorf("bob (not recorded, no power) got %q", got)
	}
	for _, who := range []id.UserID{alice, admin} {
		got := joined(e.say(room, who, "!recordings "+recID))
		if !strings.Contains(got, "https://rec.example.org/download/") || !strings.Contains(got, "exp=") {
			t.Errorf("%s did not get signed links: %q", who, got)
		}
	}
}

// With storage.links_by_dm the links go to the asker in a direct chat, never to the room,
// and the room's summary says how to get them.
func TestLinksByDirectMessage(t *testing.T) {
	e := newCmdEnv(t, func(c *config.Config) {
		c.HTTP.Listen, c.HTTP.PublicURL = "127.0.0.1:0", "https://rec.example.org"
		c.Storage.LinksByDM = true
	})
	signer, err := download.LoadSigner(e.b.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	e.b.st.signer = signer
	recID := finishedRecording(t, e, alice)
	r, err := e.b.st.db.Recording(context.Background(), recID)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := e.b.st.summaryText(context.Background(), r, "", true, !e.b.cfg.Storage.LinksByDM)
	if strings.Contains(text, "https://") || !strings.Contains(text, "!recordings "+recID) {
		t.Errorf("room summary with links_by_dm: %q", text)
	}
	got := joined(e.say(room, alice, "!recordings "+recID))
	if strings.Contains(got, "https://") || !strings.Contains(got, "direct message") {
		t.Errorf("in the room: %q", got)
	}
	if len(e.hs.created) != 1 || len(e.hs.invites[e.hs.created[0]]) != 1 || e.hs.invites[e.hs.created[0]][0] != alice {
		t.Fatalf("direct chat: created %v, invites %v", e.hs.created, e.hs.invites)
	}
	if dm := joined(e.hs.notices(e.hs.created[0])); !strings.Contains(dm, "https://rec.example.org/download/") {
		t.Errorf("the direct message has no links: %q", dm)
	}
	// The same chat is used again.
	e.say(room, alice, "!recordings "+recID)
	if len(e.hs.created) != 1 {
		t.Errorf("a second direct chat was created: %v", e.hs.created)
	}
}

// finishedRecording makes a finished recording of user in room, with one file, as the
// recorder and the storage hooks leave it, and returns its id.
func finishedRecording(t *testing.T, e *cmdEnv, user id.UserID) string {
	t.Helper()
	ctx := context.Background()
	folder := "20250102T030405Z_room_c"
	dir := filepath.Join(e.b.cfg.Recordings.Dir, folder)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	file := "alice-D-usermedia-audio.ogg"
	if err := os.WriteFile(filepath.Join(dir, file), []byte("OggS..."), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Minute).UTC()
	end := start.Add(30 * time.Second)
	m := recorder.Manifest{
		Version: recorder.ManifestVersion, CallID: "c", RoomID: string(room), Kind: "1:1", Status: recorder.StatusFinished,
		StartedAt: start, EndedAt: &end, DurationMs: 30000,
		Participants: []recorder.Participant{{UserID: string(user), DeviceID: "D", JoinedAt: start}},
		Tracks: []recorder.FileEntry{{File: file, Track: "t", Part: 1, UserID: string(user), DeviceID: "D", Kind: "audio", Codec: "opus",
			Source: recorder.SourceMicrophone, Status: recorder.StatusComplete, DurationMs: 30000, Bytes: 7}},
	}
	if err := recorder.WriteJSONAtomic(filepath.Join(dir, recorder.ManifestFile), m); err != nil {
		t.Fatal(err)
	}
	r := &storage.Recording{RoomID: string(room), CallID: "c", Kind: "1:1", Folder: folder, StartedAt: start}
	if err := e.b.st.db.CreateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	e.b.st.fillFromManifest(r, m, storage.RecordingNotified)
	if err := e.b.st.db.UpdateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	p := e.b.st.partRow(r.ID, m.Tracks[0])
	if err := e.b.st.db.SavePart(ctx, p); err != nil {
		t.Fatal(err)
	}
	return r.ID
}
