package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/lifecycle"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// fakeHS is the part of a homeserver the bot's commands talk to, in process: it records
// what the bot sends and answers power levels, members and room creation.
type fakeHS struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	sent     []sentEvent
	levels   map[id.RoomID]map[id.UserID]int // users' power levels (others: 0, state events: 50)
	members  map[id.RoomID][]id.UserID
	created  []id.RoomID
	invites  map[id.RoomID][]id.UserID
	direct   map[id.UserID][]id.RoomID
	failSend int // the next failSend sends fail with 500, as a homeserver that is down
	// failState makes state reads fail with 500.
	failState bool
	// own is the bot's m.room.member content per room (state it reads and writes back),
	// ownSets the contents it wrote; displayName its global display name.
	own         map[id.RoomID]map[string]any
	ownSets     []map[string]any
	displayName string
}

type sentEvent struct {
	Room id.RoomID
	Type string
	Body string
	Edit bool
	// Content is the event's content as sent.
	Content *event.MessageEventContent
}

func newFakeHS(t *testing.T) *fakeHS {
	f := &fakeHS{t: t, levels: map[id.RoomID]map[id.UserID]int{}, members: map[id.RoomID][]id.UserID{},
		invites: map[id.RoomID][]id.UserID{}, direct: map[id.UserID][]id.RoomID{}}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /_matrix/client/v3/rooms/{room}/send/{type}/{txn}", f.send)
	mux.HandleFunc("GET /_matrix/client/v3/rooms/{room}/state/{type}/{key...}", f.state)
	mux.HandleFunc("GET /_matrix/client/v3/rooms/{room}/joined_members", f.joined)
	mux.HandleFunc("PUT /_matrix/client/v3/rooms/{room}/state/m.room.member/{key...}", f.setOwn)
	mux.HandleFunc("GET /_matrix/client/v3/profile/{user}/displayname", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.displayName == "" {
			w.WriteHeader(http.StatusNotFound)
			writeJSON(w, map[string]string{"errcode": "M_NOT_FOUND", "error": "no display name"})
			return
		}
		writeJSON(w, map[string]string{"displayname": f.displayName})
	})
	mux.HandleFunc("POST /_matrix/client/v3/createRoom", f.createRoom)
	mux.HandleFunc("GET /_matrix/client/v3/user/{user}/account_data/m.direct", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		writeJSON(w, f.direct)
	})
	mux.HandleFunc("PUT /_matrix/client/v3/user/{user}/account_data/m.direct", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		_ = json.NewDecoder(r.Body).Decode(&f.direct)
		writeJSON(w, map[string]any{})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Logf("fake homeserver: unexpected %s %s", r.Method, r.URL.Path)
		w.WriteHeader(http.StatusNotFound)
		writeJSON(w, map[string]string{"errcode": "M_UNRECOGNIZED", "error": "not faked"})
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeHS) send(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failSend > 0 {
		f.failSend--
		w.WriteHeader(http.StatusInternalServerError)
		writeJSON(w, map[string]string{"errcode": "M_UNKNOWN", "error": "down"})
		return
	}
	var c event.MessageEventContent
	data, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(data, &c)
	body := c.Body
	if c.NewContent != nil {
		body = c.NewContent.Body
	}
	f.sent = append(f.sent, sentEvent{Room: id.RoomID(r.PathValue("room")), Type: r.PathValue("type"), Body: body, Edit: c.NewContent != nil, Content: &c})
	writeJSON(w, map[string]string{"event_id": fmt.Sprintf("$e%d", len(f.sent))})
}

func (f *fakeHS) state(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	room := id.RoomID(r.PathValue("room"))
	if f.failState {
		w.WriteHeader(http.StatusInternalServerError)
		writeJSON(w, map[string]string{"errcode": "M_UNKNOWN", "error": "database on 127.0.0.1:5432 is down"})
		return
	}
	if r.PathValue("type") == event.StateMember.Type && r.PathValue("key") == string(testBot) && f.own[room] != nil {
		writeJSON(w, f.own[room])
		return
	}
	if r.PathValue("type") != event.StatePowerLevels.Type {
		w.WriteHeader(http.StatusNotFound)
		writeJSON(w, map[string]string{"errcode": "M_NOT_FOUND", "error": "no such state"})
		return
	}
	users := map[id.UserID]int{}
	for u, l := range f.levels[room] {
		users[u] = l
	}
	writeJSON(w, map[string]any{"type": "m.room.power_levels", "state_key": "", "room_id": room,
		"content": map[string]any{"users": users, "state_default": 50, "events_default": 0, "users_default": 0}})
}

func (f *fakeHS) setOwn(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var c map[string]any
	_ = json.NewDecoder(r.Body).Decode(&c)
	if f.own == nil {
		f.own = map[id.RoomID]map[string]any{}
	}
	f.own[id.RoomID(r.PathValue("room"))] = c
	f.ownSets = append(f.ownSets, c)
	writeJSON(w, map[string]string{"event_id": fmt.Sprintf("$m%d", len(f.ownSets))})
}

func (f *fakeHS) joined(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[id.UserID]map[string]string{}
	for _, u := range f.members[id.RoomID(r.PathValue("room"))] {
		out[u] = map[string]string{}
	}
	writeJSON(w, map[string]any{"joined": out})
}

func (f *fakeHS) createRoom(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var req mautrix.ReqCreateRoom
	_ = json.NewDecoder(r.Body).Decode(&req)
	room := id.RoomID(fmt.Sprintf("!dm%d:example.org", len(f.created)+1))
	f.created = append(f.created, room)
	f.invites[room] = req.Invite
	writeJSON(w, map[string]string{"room_id": string(room)})
}

// notices returns the bodies the bot sent to a room, in order.
func (f *fakeHS) notices(room id.RoomID) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.sent {
		if e.Room == room && e.Type == "m.room.message" {
			out = append(out, e.Body)
		}
	}
	return out
}

// last returns the last event the bot sent.
func (f *fakeHS) last() sentEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sent) == 0 {
		f.t.Fatal("nothing was sent")
	}
	return f.sent[len(f.sent)-1]
}

// fakeCalls is a backend that answers 1:1 calls with recordings the test watches.
type fakeCalls struct {
	mu      sync.Mutex
	hangups []string
	marks   int
}

func (c *fakeCalls) Name() string                                          { return "1:1" }
func (c *fakeCalls) Answers() recorder.Kind                                { return recorder.KindOneToOne }
func (c *fakeCalls) Probe(context.Context, id.RoomID, []string) call.Probe { return call.Probe{} }
func (c *fakeCalls) HandleEvent(context.Context, *event.Event)             {}
func (c *fakeCalls) Close(context.Context) error                           { return nil }
func (c *fakeCalls) Decline(context.Context, id.RoomID, call.Answer) error {
	return nil
}
func (c *fakeCalls) Start(_ context.Context, req call.StartRequest) (call.Recording, error) {
	return &fakeCall{c: c, room: req.RoomID, peer: req.Answer.Caller, done: make(chan struct{})}, nil
}

// fakeCall is one answered 1:1 call.
type fakeCall struct {
	c    *fakeCalls
	room id.RoomID
	peer id.UserID
	done chan struct{}
}

func (f *fakeCall) Status() call.Status {
	return call.Status{Backend: "1:1", RoomID: f.room, Folder: "/nonexistent", StartedAt: time.Now(), State: call.StateConnected,
		Participants: []call.ParticipantStatus{{UserID: f.peer}}}
}
func (f *fakeCall) Stop(_ context.Context, reason string) (recorder.Manifest, error) {
	f.c.mu.Lock()
	f.c.hangups = append(f.c.hangups, reason)
	f.c.mu.Unlock()
	return recorder.Manifest{Status: recorder.StatusFinished}, nil
}
func (f *fakeCall) SetOptOut(context.Context, id.UserID, bool) {}
func (f *fakeCall) Mark(id.UserID, string, time.Time) {
	f.c.mu.Lock()
	f.c.marks++
	f.c.mu.Unlock()
}
func (f *fakeCall) Done() <-chan struct{} { return f.done }
func (f *fakeCall) Result() (recorder.Manifest, string, error) {
	return recorder.Manifest{Status: recorder.StatusFinished}, "", nil
}

// cmdEnv is a bot with the fake homeserver, a fake call manager, a real recording
// lifecycle (state database) and recorder, and commands.
type cmdEnv struct {
	b     *Bot
	hs    *fakeHS
	calls *fakeCalls
	n     int
}

const testBot = id.UserID("@rec:example.org")

func newCmdEnv(t *testing.T, mutate func(*config.Config)) *cmdEnv {
	t.Helper()
	hs := newFakeHS(t)
	cfg := config.Default()
	dir := t.TempDir()
	cfg.DataDir = dir
	cfg.Recordings.Dir = filepath.Join(dir, "recordings")
	cfg.Matrix.Homeserver = hs.srv.URL
	cfg.Matrix.UserID = string(testBot)
	if mutate != nil {
		mutate(&cfg)
	}
	client, err := mautrix.NewClient(hs.srv.URL, testBot, "token")
	if err != nil {
		t.Fatal(err)
	}
	client.Log = zerolog.Nop()
	b := &Bot{cfg: cfg, log: zerolog.Nop(), client: client, startedAt: time.Now(), ready: make(chan struct{})}
	calls := &fakeCalls{}
	lc, err := lifecycle.New(context.Background(), cfg, lifecycle.Options{Chat: botChat{b}, Calls: botCalls{b}, Ready: b.ready, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lc.Shutdown(context.Background()) })
	b.lc = lc
	if b.rec, err = recorder.New(recorder.Options{Dir: cfg.Recordings.Dir, Hooks: lc.Hooks()}, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	b.rooms = newRooms(b, []call.Backend{calls})
	b.cmds = newCommands(b)
	return &cmdEnv{b: b, hs: hs, calls: calls}
}

// say sends a text message from sender into room, as the sync would hand it over, and
// returns the notices the bot sent to the room in answer.
func (e *cmdEnv) say(room id.RoomID, sender id.UserID, body string, mentions ...id.UserID) []string {
	before := len(e.hs.notices(room))
	e.n++
	msg := &event.MessageEventContent{MsgType: event.MsgText, Body: body}
	if len(mentions) > 0 {
		msg.Mentions = &event.Mentions{UserIDs: mentions}
	}
	evt := &event.Event{RoomID: room, Sender: sender, ID: id.EventID(fmt.Sprintf("$in%d", e.n)), Type: event.EventMessage,
		Timestamp: time.Now().UnixMilli(), Content: event.Content{Parsed: msg}}
	evt.Mautrix.EventSource = event.SourceTimeline
	e.b.onMessage(context.Background(), evt)
	return e.hs.notices(room)[before:]
}

func joined(answers []string) string { return strings.Join(answers, " | ") }
