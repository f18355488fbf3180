package rooms

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/usererr"
)

const (
	room  = id.RoomID("!r:hs")
	alice = id.UserID("@alice:hs")
	bob   = id.UserID("@bob:hs")
)

// fakeBackend records every room it is asked to with a fakeRec.
type fakeBackend struct {
	name     string
	priority int
	ok       bool
	reason   string
	answers  recorder.Kind // the kind of direct call it answers

	mu   sync.Mutex
	reqs []call.StartRequest
	recs []*fakeRec
}

func (f *fakeBackend) Name() string           { return f.name }
func (f *fakeBackend) Answers() recorder.Kind { return f.answers }
func (f *fakeBackend) Decline(context.Context, id.RoomID, call.Answer) error {
	return nil
}
func (f *fakeBackend) Probe(context.Context, id.RoomID, []string) call.Probe {
	return call.Probe{OK: f.ok, Priority: f.priority, Reason: f.reason}
}
func (f *fakeBackend) HandleEvent(context.Context, *event.Event) {}
func (f *fakeBackend) Close(context.Context) error               { return nil }
func (f *fakeBackend) Start(_ context.Context, req call.StartRequest) (call.Recording, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &fakeRec{backend: f.name, folder: fmt.Sprintf("/rec/%s-%d", f.name, len(f.recs)), done: make(chan struct{}), started: time.Now()}
	f.reqs = append(f.reqs, req)
	f.recs = append(f.recs, r)
	return r, nil
}

func (f *fakeBackend) last() (call.StartRequest, *fakeRec) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[len(f.reqs)-1], f.recs[len(f.recs)-1]
}

type fakeRec struct {
	backend, folder string
	started         time.Time
	done            chan struct{}

	mu      sync.Mutex
	stopped string
	marks   []string
}

func (r *fakeRec) Status() call.Status {
	return call.Status{Backend: r.backend, RoomID: room, StartedAt: r.started, Folder: r.folder}
}
func (r *fakeRec) Stop(_ context.Context, reason string) (recorder.Manifest, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = reason
	return recorder.Manifest{Status: recorder.StatusFinished}, nil
}
func (r *fakeRec) SetOptOut(context.Context, id.UserID, bool) {}
func (r *fakeRec) Mark(_ id.UserID, text string, _ time.Time) {
	r.mu.Lock()
	r.marks = append(r.marks, text)
	r.mu.Unlock()
}
func (r *fakeRec) Done() <-chan struct{} { return r.done }
func (r *fakeRec) Result() (recorder.Manifest, string, error) {
	return recorder.Manifest{Status: recorder.StatusFinished}, "the call ended", nil
}

// fakeWorld is the chat and the lifecycle: it notes what it was told.
type fakeWorld struct {
	mu       sync.Mutex
	notices  []string
	ended    []ended
	answered []id.UserID
	byUser   int
	mayNot   map[id.UserID]bool
	ends     chan struct{}
}

type ended struct {
	folder, headline string
	announce         bool
}

func (w *fakeWorld) Notice(_ context.Context, _ id.RoomID, text string, _ id.EventID, _ ...id.UserID) id.EventID {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.notices = append(w.notices, text)
	return id.EventID(fmt.Sprintf("$n%d", len(w.notices)))
}
func (w *fakeWorld) MayRecord(_ context.Context, _ id.RoomID, user id.UserID) error {
	if w.mayNot[user] {
		return usererr.Error{Msg: "not you"}
	}
	return nil
}
func (w *fakeWorld) Admit(context.Context, id.RoomID, recorder.Kind) error { return nil }
func (w *fakeWorld) LimitMessage(error) (string, bool)                     { return "", false }
func (w *fakeWorld) Started(string, id.EventID, string, ...id.UserID)      {}
func (w *fakeWorld) Answered(_ string, caller id.UserID, _ string) {
	w.mu.Lock()
	w.answered = append(w.answered, caller)
	w.mu.Unlock()
}
func (w *fakeWorld) StoppedByUser(id.RoomID) {
	w.mu.Lock()
	w.byUser++
	w.mu.Unlock()
}
func (w *fakeWorld) SetOptOut(context.Context, id.RoomID, id.UserID, bool, time.Time) error {
	return nil
}
func (w *fakeWorld) Ended(_ id.RoomID, folder string, _ recorder.Manifest, headline string, _ error, announce bool) {
	w.mu.Lock()
	w.ended = append(w.ended, ended{folder, headline, announce})
	w.mu.Unlock()
	w.ends <- struct{}{}
}

func (w *fakeWorld) lastEnded(t *testing.T) ended {
	t.Helper()
	select {
	case <-w.ends:
	case <-time.After(5 * time.Second):
		t.Fatal("the recording was not reported")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ended[len(w.ended)-1]
}

func newRooms(t *testing.T, notices bool, backends ...call.Backend) (*Rooms, *fakeWorld) {
	t.Helper()
	w := &fakeWorld{mayNot: map[id.UserID]bool{}, ends: make(chan struct{}, 10)}
	if len(backends) > 0 {
		if fb, ok := backends[0].(*fakeBackend); ok && fb.answers == recorder.KindUnknown {
			fb.answers = recorder.KindDirect // the first one answers MatrixRTC calls
		}
	}
	r := New(Config{CommandPrefix: "!", MaxRecordings: 5, Notices: notices, Self: "@bot:hs"}, backends, w, w, zerolog.Nop())
	t.Cleanup(func() { _ = r.Shutdown(context.Background()) })
	return r, w
}

// Without bot.notices the room of a direct call the bot answered hears nothing, not even
// the summary, however the call ends (as with a legacy 1:1 call); a group recording's
// summary is always posted.
func TestAnsweredCallSummaryFollowsNotices(t *testing.T) {
	for _, notices := range []bool{false, true} {
		t.Run(fmt.Sprintf("notices=%v", notices), func(t *testing.T) {
			be := &fakeBackend{name: "livekit", ok: true}
			r, w := newRooms(t, notices, be)

			if err := r.Answer(context.Background(), room, call.Answer{Caller: alice}); err != nil {
				t.Fatal(err)
			}
			_, rec := be.last()
			close(rec.done) // the caller hung up
			if e := w.lastEnded(t); e.announce != notices {
				t.Errorf("answered call that ended: summary posted %v, want %v", e.announce, notices)
			}
			w.mu.Lock()
			gotNotices := len(w.notices)
			w.mu.Unlock()
			if (gotNotices > 0) != notices {
				t.Errorf("%d notices with bot.notices %v", gotNotices, notices)
			}

			if err := r.Answer(context.Background(), room, call.Answer{Caller: alice}); err != nil {
				t.Fatal(err)
			}
			if stopped, err := r.Stop(context.Background(), Request{Room: room, Sender: alice}); !stopped || err != nil {
				t.Fatalf("stop: %v %v", stopped, err)
			}
			if e := w.lastEnded(t); e.announce != notices {
				t.Errorf("answered call stopped: summary posted %v, want %v", e.announce, notices)
			}

			if err := r.Start(context.Background(), Request{Room: room, Sender: bob}); err != nil {
				t.Fatal(err)
			}
			if !r.StopFor(context.Background(), room, "a limit") {
				t.Fatal("nothing to stop")
			}
			if e := w.lastEnded(t); !e.announce || !strings.Contains(e.headline, "a limit") {
				t.Errorf("group recording: %+v", e)
			}
		})
	}
}

// !start picks the backend with the highest priority of those that can record, and says
// why none can; only one recording runs per room.
func TestStartPicksTheBestBackend(t *testing.T) {
	low := &fakeBackend{name: "low", ok: true, priority: 1}
	high := &fakeBackend{name: "high", ok: true, priority: 2}
	no := &fakeBackend{name: "no", reason: "No mesh call here."}
	r, w := newRooms(t, true, no, low, high)
	ctx := context.Background()
	if err := r.Start(ctx, Request{Room: room, Sender: alice}); err != nil {
		t.Fatal(err)
	}
	if st, ok := r.Status(room); !ok || st.Backend != "high" {
		t.Fatalf("status %+v %v", st, ok)
	}
	var ue usererr.Error
	if err := r.Start(ctx, Request{Room: room, Sender: alice}); !errors.As(err, &ue) || !strings.Contains(ue.Msg, "Already recording") {
		t.Errorf("second start: %v", err)
	}
	if got := w.notices[0]; !strings.Contains(got, "Recording started") {
		t.Errorf("notice %q", got)
	}
	r2, _ := newRooms(t, true, no)
	if err := r2.Start(ctx, Request{Room: room, Sender: alice}); !errors.As(err, &ue) || !strings.Contains(ue.Msg, "No mesh call here.") {
		t.Errorf("no backend: %v", err)
	}
}

// The caller of a direct call the bot answered may stop it, and nobody else, whatever
// their right to record in the room. A room without a recording reports nothing stopped.
func TestStopNeedsTheCallerOrTheRight(t *testing.T) {
	be := &fakeBackend{name: "livekit", ok: true}
	r, w := newRooms(t, true, be)
	w.mayNot[alice], w.mayNot[bob] = true, true
	ctx := context.Background()
	if stopped, err := r.Stop(ctx, Request{Room: room, Sender: bob}); stopped || err != nil {
		t.Fatalf("empty room: %v %v", stopped, err)
	}
	if err := r.Answer(ctx, room, call.Answer{Caller: alice, Intent: "audio"}); err != nil {
		t.Fatal(err)
	}
	if !r.Answered(room, alice) || r.Answered(room, bob) {
		t.Error("Answered")
	}
	if stopped, err := r.Stop(ctx, Request{Room: room, Sender: bob}); stopped || err == nil {
		t.Errorf("bob stopped alice's call: %v %v", stopped, err)
	}
	if stopped, err := r.Stop(ctx, Request{Room: room, Sender: alice}); !stopped || err != nil {
		t.Errorf("alice could not stop her call: %v %v", stopped, err)
	}
	w.lastEnded(t)
	if w.byUser != 1 || len(w.answered) != 1 || w.answered[0] != alice {
		t.Errorf("stops by user %d, answered %v", w.byUser, w.answered)
	}
}

// A resumed recording continues in its folder with the room's opt-outs, those the manifest
// still lists among them; an answered call resumes with the answerer, as the caller's.
func TestResume(t *testing.T) {
	be := &fakeBackend{name: "livekit", ok: true}
	r, w := newRooms(t, true, be)
	r.LoadOptOuts(map[id.RoomID]map[id.UserID]time.Time{room: {bob: time.Unix(1, 0)}})
	m := &recorder.Manifest{OptOuts: []recorder.OptOut{{UserID: "@carol:hs", From: time.Unix(2, 0)}}}
	ctx := context.Background()
	if ok, why := r.Resume(ctx, room, "call1", m, "", ""); !ok {
		t.Fatal(why)
	}
	req, _ := be.last()
	if req.Resume != "call1" || req.By != "@bot:hs" || req.Answer != nil || len(req.OptedOut) != 2 {
		t.Errorf("group resume %+v", req)
	}
	if ok, why := r.Resume(ctx, room, "call2", nil, "", ""); ok || !strings.Contains(why, "again already") {
		t.Errorf("second resume: %v %q", ok, why)
	}
	r.StopFor(ctx, room, "test")
	w.lastEnded(t)
	if ok, why := r.Resume(ctx, room, "call3", nil, alice, "audio"); !ok {
		t.Fatal(why)
	}
	if req, _ := be.last(); req.Answer == nil || req.Answer.Caller != alice || req.By != alice || len(w.answered) != 0 {
		t.Errorf("answered resume %+v (answered rows %v)", req, w.answered)
	}
}

// Each kind of direct call goes to the backend that answers it; a new call of the same
// caller replaces theirs (Answer.Replace), a second ring does not; calls.max_calls bounds
// the answered calls of every kind, and they do not count against the group recordings.
func TestAnswerByKind(t *testing.T) {
	lk := &fakeBackend{name: "livekit", ok: true}
	legacy := &fakeBackend{name: "1:1", answers: recorder.KindOneToOne}
	w := &fakeWorld{mayNot: map[id.UserID]bool{}, ends: make(chan struct{}, 10)}
	lk.answers = recorder.KindDirect
	r := New(Config{CommandPrefix: "!", MaxRecordings: 1, MaxCalls: 2, Notices: true}, []call.Backend{legacy, lk}, w, w, zerolog.Nop())
	t.Cleanup(func() { _ = r.Shutdown(context.Background()) })
	ctx := context.Background()

	if err := r.Answer(ctx, room, call.Answer{Kind: recorder.KindOneToOne, Caller: alice, CallID: "c1", Replace: true}); err != nil {
		t.Fatal(err)
	}
	if len(legacy.reqs) != 1 || len(lk.reqs) != 0 || r.Caller(room) != alice {
		t.Fatalf("legacy call: %d legacy, %d livekit starts, caller %q", len(legacy.reqs), len(lk.reqs), r.Caller(room))
	}
	if err := r.Answer(ctx, room, call.Answer{Kind: recorder.KindOneToOne, Caller: alice, CallID: "c2", Replace: true}); err != nil {
		t.Fatal(err)
	}
	if e := w.lastEnded(t); e.folder != legacy.recs[0].folder || legacy.recs[0].stopped == "" {
		t.Errorf("the replaced call: %+v, stopped %q", e, legacy.recs[0].stopped)
	}
	if err := r.Answer(ctx, room, call.Answer{Kind: recorder.KindOneToOne, Caller: bob, CallID: "c3", Replace: true}); !errors.Is(err, ErrAlreadyRecording) {
		t.Errorf("someone else's call in a room being recorded: %v", err)
	}
	if err := r.Answer(ctx, "!other:hs", call.Answer{Caller: bob}); err != nil || len(lk.reqs) != 1 {
		t.Fatalf("MatrixRTC call: %v, %d livekit starts", err, len(lk.reqs))
	}
	if err := r.Answer(ctx, "!third:hs", call.Answer{Caller: bob}); !errors.Is(err, ErrBusy) {
		t.Errorf("a third call with calls.max_calls 2: %v", err)
	}
	if err := r.Start(ctx, Request{Room: "!group:hs", Sender: bob}); err != nil {
		t.Errorf("a group recording beside two answered calls (max_group_recordings 1): %v", err)
	}
}

// Only the caller stops or marks an answered call, whatever the others' right to record.
func TestAnsweredCallIsTheCallers(t *testing.T) {
	be := &fakeBackend{name: "livekit", ok: true}
	r, _ := newRooms(t, true, be)
	ctx := context.Background()
	if err := r.Answer(ctx, room, call.Answer{Caller: alice}); err != nil {
		t.Fatal(err)
	}
	var ue usererr.Error
	if stopped, err := r.Stop(ctx, Request{Room: room, Sender: bob}); stopped || !errors.As(err, &ue) || !strings.Contains(ue.Msg, "only the person in the call") {
		t.Errorf("bob (who may record) stopping alice's call: %v %v", stopped, err)
	}
	if err := r.Mark(Request{Room: room, Sender: bob, Args: []string{"mine"}}); err == nil {
		t.Error("bob marked alice's call")
	}
	if err := r.Mark(Request{Room: room, Sender: alice, Args: []string{"-30s", "good", "bit"}}); err != nil {
		t.Errorf("alice may not mark her call: %v", err)
	}
	_, rec := be.last()
	if len(rec.marks) != 1 || rec.marks[0] != "good bit" {
		t.Errorf("marks %q", rec.marks)
	}
}
