package bot

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/lifecycle"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// fakeBackend records every room with a real recorder session and remembers what it was
// asked; its recordings pause when pausable is set.
type fakeBackend struct {
	rec      *recorder.Recorder
	pausable bool

	mu   sync.Mutex
	reqs []call.StartRequest
	recs []*fakeRec
}

func (f *fakeBackend) Name() string { return "fake" }
func (f *fakeBackend) Probe(context.Context, id.RoomID, []string) call.Probe {
	return call.Probe{OK: true, Priority: 1}
}
func (f *fakeBackend) HandleEvent(context.Context, *event.Event) {}
func (f *fakeBackend) Close(context.Context) error               { return nil }

func (f *fakeBackend) Start(ctx context.Context, req call.StartRequest) (call.Recording, error) {
	s, err := f.rec.Start(ctx, recorder.CallInfo{CallID: "fake", RoomID: string(req.RoomID), Kind: "group"})
	if err != nil {
		return nil, err
	}
	r := &fakeRec{sess: s, room: req.RoomID, done: make(chan struct{})}
	var rec call.Recording = r
	if f.pausable {
		rec = pausableRec{r}
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.recs = append(f.recs, r)
	f.mu.Unlock()
	return rec, nil
}

func (f *fakeBackend) requests() []call.StartRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call.StartRequest(nil), f.reqs...)
}

type fakeRec struct {
	sess *recorder.Session
	room id.RoomID
	done chan struct{}

	mu    sync.Mutex
	calls []string
}

func (r *fakeRec) note(s string) {
	r.mu.Lock()
	r.calls = append(r.calls, s)
	r.mu.Unlock()
}

func (r *fakeRec) Status() call.Status {
	return call.Status{Backend: "fake", RoomID: r.room, StartedAt: r.sess.StartedAt(), Folder: r.sess.Folder()}
}
func (r *fakeRec) Stop(ctx context.Context, reason string) (recorder.Manifest, error) {
	r.note("stop")
	return r.sess.Close(ctx)
}
func (r *fakeRec) SetOptOut(context.Context, id.UserID, bool) {}
func (r *fakeRec) Mark(id.UserID, string, time.Time)          {}
func (r *fakeRec) Done() <-chan struct{}                      { return r.done }
func (r *fakeRec) Result() (recorder.Manifest, string, error) {
	return r.sess.Manifest(), "", nil
}

type pausableRec struct{ *fakeRec }

func (r pausableRec) Pause(ctx context.Context, reason string) (recorder.Manifest, error) {
	r.note("pause")
	return r.sess.Pause(ctx, reason)
}

// restartCmdEnv is a command environment on the state of another one (a restart of it).
func restartCmdEnv(t *testing.T, from *cmdEnv, mutate func(*config.Config)) *cmdEnv {
	t.Helper()
	return newCmdEnv(t, func(c *config.Config) {
		if from != nil {
			c.DataDir, c.Recordings.Dir = from.b.cfg.DataDir, from.b.cfg.Recordings.Dir
		}
		if mutate != nil {
			mutate(c)
		}
	})
}

// A clean stop pauses the recordings that can pause (no summary in the room, the folder
// left resumable) and stops those that cannot, with their summary; with
// recordings.pause_on_shutdown off it stops them all.
func TestShutdownPausesRecordings(t *testing.T) {
	for _, tc := range []struct {
		name              string
		pauseOnShutdown   bool
		pausable          bool
		wantCall, wantMan string
		wantSummary       bool
	}{
		{"pause", true, true, "pause", recorder.StatusInterrupted, false},
		{"cannot pause", true, false, "stop", recorder.StatusFinished, true},
		{"configured off", false, true, "stop", recorder.StatusFinished, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newCmdEnv(t, func(c *config.Config) { c.Recordings.PauseOnShutdown = tc.pauseOnShutdown })
			be := &fakeBackend{rec: e.b.rec, pausable: tc.pausable}
			e.b.rooms = newRooms(e.b, []call.Backend{be})
			e.b.cmds = newCommands(e.b)
			e.hs.levels[room] = map[id.UserID]int{alice: 100}
			if got := joined(e.say(room, alice, "!start")); !strings.Contains(got, "Recording started") {
				t.Fatalf("start: %q", got)
			}
			ctx := context.Background()
			if err := e.b.rooms.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			if err := e.b.lc.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			be.mu.Lock()
			r := be.recs[0]
			be.mu.Unlock()
			if got := strings.Join(r.calls, ","); got != tc.wantCall {
				t.Errorf("calls %q, want %q", got, tc.wantCall)
			}
			m, err := recorder.ReadManifest(r.sess.Folder())
			if err != nil || m.Status != tc.wantMan {
				t.Errorf("manifest %v %v, want %s", m.Status, err, tc.wantMan)
			}
			notices := joined(e.hs.notices(room))
			if got := strings.Contains(notices, "Recording saved"); got != tc.wantSummary {
				t.Errorf("summary posted: %v, want %v (%q)", got, tc.wantSummary, notices)
			}
		})
	}
}

// !skipme is kept across a restart: the next run knows it, and a resumed recording starts
// with it.
func TestOptOutSurvivesRestart(t *testing.T) {
	e := newCmdEnv(t, nil)
	if got := joined(e.say(room, bob, "!skipme")); !strings.Contains(got, "you are not recorded") {
		t.Fatalf("skipme: %q", got)
	}
	e.say(room, alice, "!skipme")
	e.say(room, alice, "!recordme")
	if err := e.b.lc.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	e2 := restartCmdEnv(t, e, nil)
	be := &fakeBackend{rec: e2.b.rec}
	e2.b.rooms = newRooms(e2.b, []call.Backend{be})
	outs, err := e2.b.lc.OptOuts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e2.b.rooms.LoadOptOuts(outs)
	// A recording of the room that the last run paused.
	s, err := e2.b.rec.Start(context.Background(), recorder.CallInfo{CallID: "fake", RoomID: string(room), Kind: "group"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pause(context.Background(), "restart"); err != nil {
		t.Fatal(err)
	}
	ok, why := botCalls{e2.b}.Resume(context.Background(), lifecycle.ResumeRequest{Room: room, Folder: filepath.Base(s.Folder()), Paused: true})
	if !ok {
		t.Fatalf("resume: %s", why)
	}
	reqs := be.requests()
	if len(reqs) != 1 || reqs[0].Resume != filepath.Base(s.Folder()) || len(reqs[0].OptedOut) != 1 || reqs[0].OptedOut[bob].IsZero() {
		t.Fatalf("resumed with %+v", reqs)
	}
	if reqs[0].Answer != nil {
		t.Errorf("a group recording resumed as an answered call: %+v", reqs[0].Answer)
	}
	if err := e2.b.rooms.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// The recording mark changes the bot's display name in the room's member event and
// nothing else of it, and the global name comes back after; a room the bot is not in
// is left alone.
func TestRecordingMarkInMemberEvent(t *testing.T) {
	e := newCmdEnv(t, nil)
	ctx := context.Background()
	chat := botChat{e.b}
	e.hs.mu.Lock()
	e.hs.displayName = "Recorder"
	e.hs.own = map[id.RoomID]map[string]any{room: {"membership": "join", "displayname": "Recorder", "avatar_url": "mxc://x/y",
		"join_authorised_via_users_server": "@admin:example.org"}}
	e.hs.mu.Unlock()
	if err := chat.SetRecordingMark(ctx, room, true); err != nil {
		t.Fatal(err)
	}
	own := func() map[string]any {
		e.hs.mu.Lock()
		defer e.hs.mu.Unlock()
		return e.hs.own[room]
	}
	if got := own(); got["displayname"] != "🔴 Recording · Recorder" || got["avatar_url"] != "mxc://x/y" || got["membership"] != "join" || got["join_authorised_via_users_server"] != nil {
		t.Errorf("marked member event: %v", got)
	}
	if err := chat.SetRecordingMark(ctx, room, true); err != nil {
		t.Fatal(err)
	}
	if err := chat.SetRecordingMark(ctx, room, false); err != nil {
		t.Fatal(err)
	}
	if got := own(); got["displayname"] != "Recorder" {
		t.Errorf("after the recording: %v", got)
	}
	e.hs.mu.Lock()
	sets := len(e.hs.ownSets)
	e.hs.mu.Unlock()
	if sets != 2 {
		t.Errorf("%d member events sent, want 2 (a mark already there is not sent again)", sets)
	}
	// Not in the room: nothing to do, no error.
	if err := chat.SetRecordingMark(ctx, "!gone:example.org", false); err != nil {
		t.Errorf("a room the bot left: %v", err)
	}
	// Without a global display name the mark is made from the localpart, and taken off.
	e.hs.mu.Lock()
	e.hs.displayName = ""
	e.hs.mu.Unlock()
	if err := chat.SetRecordingMark(ctx, room, true); err != nil || own()["displayname"] != "🔴 Recording · rec" {
		t.Errorf("mark without a global name: %v %v", own(), err)
	}
	if err := chat.SetRecordingMark(ctx, room, false); err != nil || own()["displayname"] != nil {
		t.Errorf("unmark without a global name: %v %v", own(), err)
	}
}
