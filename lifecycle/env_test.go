package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
	"github.com/matrix-recorder/matrix-recorder/usererr"
)

const (
	room  = id.RoomID("!room:example.org")
	alice = id.UserID("@alice:example.org")
	bob   = id.UserID("@bob:example.org")
	admin = id.UserID("@admin:example.org")
)

// sent is one message the fake chat took.
type sent struct {
	room     id.RoomID
	text     string
	markdown string
	mentions []id.UserID
	replace  id.EventID // an edit of this event
	thread   id.EventID // in the thread of this event
}

// fakeChat is the chat layer in process: it records what the lifecycle says and answers
// power levels from a table.
type fakeChat struct {
	mu       sync.Mutex
	sent     []sent
	failPost int // the next failPost posts fail, as a homeserver that is down
	posts    int // Post calls, failed ones included
	levels   map[id.RoomID]map[id.UserID]int
	dms      map[id.UserID]id.RoomID
	onPost   func() // called by every Post (tests break things there)
	// marks lists the recording mark changes ("!room on"); failMark fails the next ones.
	marks    []string
	failMark int
}

func (c *fakeChat) SetRecordingMark(_ context.Context, r id.RoomID, on bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failMark > 0 {
		c.failMark--
		return errors.New("M_LIMIT_EXCEEDED: slow down")
	}
	c.marks = append(c.marks, fmt.Sprintf("%s %v", r, map[bool]string{true: "on", false: "off"}[on]))
	return nil
}

func (c *fakeChat) markLog() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.marks, "|")
}

func (c *fakeChat) add(m sent) id.EventID {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = append(c.sent, m)
	return id.EventID(fmt.Sprintf("$e%d", len(c.sent)))
}

func (c *fakeChat) Notice(_ context.Context, r id.RoomID, text string, _ id.EventID, mentions ...id.UserID) id.EventID {
	return c.add(sent{room: r, text: text, mentions: mentions})
}

func (c *fakeChat) Edit(_ context.Context, r id.RoomID, evt id.EventID, text string, mentions ...id.UserID) {
	c.add(sent{room: r, text: text, replace: evt, mentions: mentions})
}

func (c *fakeChat) Post(_ context.Context, r id.RoomID, msg Message) (id.EventID, error) {
	c.mu.Lock()
	c.posts++
	if c.onPost != nil {
		defer c.onPost()
	}
	fail := c.failPost > 0
	if fail {
		c.failPost--
	}
	c.mu.Unlock()
	if fail {
		return "", errors.New("M_UNKNOWN: down")
	}
	return c.add(sent{room: r, text: msg.Text, markdown: msg.Markdown, replace: msg.Replace, thread: msg.Thread}), nil
}

func (c *fakeChat) DirectRoom(_ context.Context, user id.UserID) (id.RoomID, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dms == nil {
		c.dms = map[id.UserID]id.RoomID{}
	}
	if r, ok := c.dms[user]; ok {
		return r, nil
	}
	r := id.RoomID(fmt.Sprintf("!dm%d:example.org", len(c.dms)+1))
	c.dms[user] = r
	return r, nil
}

func (c *fakeChat) DisplayNames(context.Context, id.RoomID) map[string]string {
	return map[string]string{}
}

func (c *fakeChat) MayRecord(_ context.Context, r id.RoomID, user id.UserID, action string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if have := c.levels[r][user]; have < 50 {
		return usererr.Error{Msg: fmt.Sprintf("Sorry %s, only members with power level 50 or more may %s here (you have %d).", user, action, have)}
	}
	return nil
}

// texts returns what was said in a room (notices and posts, not edits), in order; a
// message in a thread is joined to the message it answers.
func (c *fakeChat) texts(r id.RoomID) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	at := map[id.EventID]int{}
	for i, m := range c.sent {
		if m.room != r || m.replace != "" {
			continue
		}
		if k, ok := at[m.thread]; ok && m.thread != "" {
			out[k] += "\n" + m.text
			continue
		}
		at[id.EventID(fmt.Sprintf("$e%d", i+1))] = len(out)
		out = append(out, m.text)
	}
	return out
}

// messages returns the messages of a room that are not edits, in order.
func (c *fakeChat) messages(r id.RoomID) []sent {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []sent
	for _, m := range c.sent {
		if m.room == r && m.replace == "" {
			out = append(out, m)
		}
	}
	return out
}

// edits returns the edits of a room, in order.
func (c *fakeChat) edits(r id.RoomID) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.sent {
		if m.room == r && m.replace != "" {
			out = append(out, m.text)
		}
	}
	return out
}

func (c *fakeChat) postCalls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.posts
}

// fakeCalls records the stops and resumes the lifecycle asks for; resume, when set,
// answers the resumes.
type fakeCalls struct {
	mu      sync.Mutex
	stops   []string
	resumes []ResumeRequest
	resume  func(ResumeRequest) (bool, string)
}

func (c *fakeCalls) Stop(_ context.Context, room id.RoomID, why string) {
	c.mu.Lock()
	c.stops = append(c.stops, string(room)+": "+why)
	c.mu.Unlock()
}

func (c *fakeCalls) Resume(_ context.Context, req ResumeRequest) (bool, string) {
	c.mu.Lock()
	c.resumes = append(c.resumes, req)
	fn := c.resume
	c.mu.Unlock()
	if fn != nil {
		return fn(req)
	}
	return false, "no call"
}

func (c *fakeCalls) HangUp(context.Context, id.RoomID, string) {}

// env is a Lifecycle with a real state database and recorder, a fake clock and disk, and
// fakes for the chat and the calls.
type env struct {
	lc    *Lifecycle
	rec   *recorder.Recorder
	chat  *fakeChat
	calls *fakeCalls
	mu    sync.Mutex
	now   time.Time
	free  int64
}

func newEnv(t *testing.T, mutate func(*config.Config)) *env {
	t.Helper()
	cfg := config.Default()
	dir := t.TempDir()
	cfg.Recordings.Dir = filepath.Join(dir, "recordings")
	cfg.DataDir = dir
	if mutate != nil {
		mutate(&cfg)
	}
	testDatabase(t, &cfg)
	e := &env{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), free: 100 << 30, chat: &fakeChat{levels: map[id.RoomID]map[id.UserID]int{}}, calls: &fakeCalls{}}
	lc, err := New(context.Background(), cfg, Options{Chat: e.chat, Calls: e.calls, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lc.Shutdown(context.Background()) })
	lc.now = e.clock
	lc.statfs = func(string) (int64, error) { e.mu.Lock(); defer e.mu.Unlock(); return e.free, nil }
	lc.sendBackoff, lc.uploadPoll = time.Millisecond, time.Hour
	e.lc = lc
	e.rec, err = recorder.New(recorder.Options{Dir: cfg.Recordings.Dir, Hooks: lc.Hooks(), Now: e.clock}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

func (e *env) setFree(n int64) {
	e.mu.Lock()
	e.free = n
	e.mu.Unlock()
}

func (e *env) start(t *testing.T, kind recorder.Kind) *recorder.Session {
	t.Helper()
	s, err := e.startIn("!r:x", "c", kind)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *env) startIn(r id.RoomID, callID string, kind recorder.Kind) (*recorder.Session, error) {
	return e.rec.Start(context.Background(), recorder.CallInfo{CallID: callID, RoomID: string(r), Kind: kind})
}

// log returns the notices said in every room and the stops asked for, each joined by |.
func (e *env) log() (said, stops string) {
	e.chat.mu.Lock()
	var texts []string
	for _, m := range e.chat.sent {
		texts = append(texts, m.text)
	}
	e.chat.mu.Unlock()
	e.calls.mu.Lock()
	defer e.calls.mu.Unlock()
	return strings.Join(texts, "|"), strings.Join(e.calls.stops, "|")
}

// finishedRecording makes a finished recording of user in room, with one file, as the
// recorder and the hooks leave it, and returns its id.
func (e *env) finishedRecording(t *testing.T, user id.UserID) string {
	t.Helper()
	ctx := context.Background()
	folder := "20250102T030405Z_room_c"
	dir := filepath.Join(e.lc.cfg.Recordings.Dir, folder)
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
	if err := e.lc.db.CreateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	e.lc.fillFromManifest(r, m, storage.RecordingNotified)
	if err := e.lc.db.UpdateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := e.lc.db.SavePart(ctx, partRow(r.ID, m.Tracks[0])); err != nil {
		t.Fatal(err)
	}
	return r.ID
}

// savedRecording is a finishedRecording whose summary is not posted yet (saved), as the
// deliveries under test find it.
func (e *env) savedRecording(t *testing.T, user id.UserID) *storage.Recording {
	t.Helper()
	recID := e.finishedRecording(t, user)
	r, err := e.lc.db.ModifyRecording(context.Background(), recID, func(r *storage.Recording) { r.Status = storage.RecordingSaved })
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func joined(answers []string) string { return strings.Join(answers, " | ") }
