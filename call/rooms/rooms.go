// Package rooms runs the recordings that the call backends make: at most one per room, by
// the backend that can record the room's call (of those whose Probe says yes, the one with
// the highest priority), with the room's opt-outs, until the call ends or someone, a limit
// or the recorder's shutdown stops it. !start, !stop, !skipme, the direct calls the bot
// answers (legacy 1:1 calls and MatrixRTC calls alike, each kind by its Answerer) and the
// resumes after a restart all come through here.
//
// It speaks no Matrix: the bot gives it a Chat to say things in rooms and a Lifecycle
// (the recording lifecycle: limits, rows, summaries) to tell what happened.
package rooms

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/roomerr"
	"github.com/matrix-recorder/matrix-recorder/usererr"
)

// PauseReason is what the manifest says of a pause for a restart (its resumes list it).
const PauseReason = "the recorder was stopped for a restart"

// Config is what the rooms need of the configuration.
type Config struct {
	// CommandPrefix is the commands' prefix ("!"), for the texts that name commands.
	CommandPrefix string
	// MaxRecordings is calls.max_group_recordings.
	MaxRecordings int
	// MaxCalls is calls.max_calls: the direct calls answered at once (every kind).
	MaxCalls int
	// PauseOnShutdown is recordings.pause_on_shutdown: Shutdown pauses what can pause.
	PauseOnShutdown bool
	// Notices is bot.notices: without it, the room of a direct call the bot answered
	// hears nothing of it (as with a legacy 1:1 call), not even the summary.
	Notices bool
	// Self is the bot's user: who a resumed group recording was started by.
	Self id.UserID
}

// Chat is what the rooms say in rooms, and ask of them.
type Chat interface {
	// Notice posts a notice, as a reply when replyTo is set, pinging mentions.
	Notice(ctx context.Context, room id.RoomID, text string, replyTo id.EventID, mentions ...id.UserID) id.EventID
	// MayRecord checks that user may start and stop recordings in room; a refusal is a
	// usererr.Error.
	MayRecord(ctx context.Context, room id.RoomID, user id.UserID) error
}

// Lifecycle is what the rooms tell the recording lifecycle.
type Lifecycle interface {
	// Admit checks the limits on recordings at once before one starts; a refusal is an
	// error LimitMessage knows.
	Admit(ctx context.Context, room id.RoomID, kind recorder.Kind) error
	// LimitMessage returns the words of a refusal by a limit on recordings at once.
	LimitMessage(err error) (string, bool)
	// Started remembers a recording's start notice (edited with progress).
	Started(folder string, notice id.EventID, text string, mentions ...id.UserID)
	// Answered records that the recording in folder is of a direct call the bot answered.
	Answered(folder string, caller id.UserID, intent string)
	// StoppedByUser says that the room's recording is about to end because someone in the
	// room asked (the metrics count it so).
	StoppedByUser(room id.RoomID)
	// SetOptOut keeps (out) or forgets an opt-out across restarts.
	SetOptOut(ctx context.Context, room id.RoomID, user id.UserID, out bool, at time.Time) error
	// Ended hands over a recording that ended: the after-call work, the rows, and the
	// summary (posted in the room when announce).
	Ended(room id.RoomID, folder string, m recorder.Manifest, headline string, err error, announce bool)
}

// Request is a command from someone in a room.
type Request struct {
	Room   id.RoomID
	Sender id.UserID
	Event  id.EventID
	Args   []string
	// Command names the command in the room's words ("stop" when empty).
	Command string
}

// Rooms runs the recordings of call backends, at most one per room.
type Rooms struct {
	cfg       Config
	backends  []call.Backend
	answerers map[recorder.Kind]call.Answerer
	chat      Chat
	lc        Lifecycle
	log       zerolog.Logger

	marks call.MarkCounts

	mu      sync.Mutex
	active  map[id.RoomID]*recording
	optOuts map[id.RoomID]map[id.UserID]time.Time
	wg      sync.WaitGroup
}

type recording struct {
	backend string
	folder  string
	rec     call.Recording
	by      id.UserID
	// caller is set for a direct call the bot answered: they alone may stop it.
	caller  id.UserID
	kind    recorder.Kind // of the answered call
	stopped chan struct{} // closed when a stop (or the shutdown) took over
}

// New runs recordings with the backends; those that are a call.Answerer also answer the
// direct calls of their kind (the first one for each kind).
func New(cfg Config, backends []call.Backend, chat Chat, lc Lifecycle, log zerolog.Logger) *Rooms {
	if cfg.MaxCalls <= 0 {
		cfg.MaxCalls = 32
	}
	answerers := map[recorder.Kind]call.Answerer{}
	for _, be := range backends {
		if a, ok := be.(call.Answerer); ok && a.Answers() != recorder.KindUnknown && answerers[a.Answers()] == nil {
			answerers[a.Answers()] = a
		}
	}
	return &Rooms{cfg: cfg, backends: backends, answerers: answerers, chat: chat, lc: lc, log: log,
		active: map[id.RoomID]*recording{}, optOuts: map[id.RoomID]map[id.UserID]time.Time{}}
}

// LoadOptOuts takes the opt-outs the state database keeps (they outlive restarts).
func (r *Rooms) LoadOptOuts(outs map[id.RoomID]map[id.UserID]time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for room, users := range outs {
		if r.optOuts[room] == nil {
			r.optOuts[room] = map[id.UserID]time.Time{}
		}
		maps.Copy(r.optOuts[room], users)
	}
}

// HandleEvent passes an event to every backend.
func (r *Rooms) HandleEvent(ctx context.Context, evt *event.Event) {
	for _, be := range r.backends {
		be.HandleEvent(ctx, evt)
	}
}

// BeginSync tells the backends that want to know (call.SyncBatcher) that a sync response
// is being processed.
func (r *Rooms) BeginSync() {
	for _, be := range r.backends {
		if sb, ok := be.(call.SyncBatcher); ok {
			sb.BeginSync()
		}
	}
}

// EndSync tells them that it is over.
func (r *Rooms) EndSync(ctx context.Context) {
	for _, be := range r.backends {
		if sb, ok := be.(call.SyncBatcher); ok {
			sb.EndSync(ctx)
		}
	}
}

// probe asks every backend whether it can record the room's call now, and returns the
// one that can with the highest priority, or the reasons of those that cannot.
func (r *Rooms) probe(ctx context.Context, room id.RoomID, args []string) (call.Backend, []string) {
	var (
		best    call.Backend
		bestP   call.Probe
		reasons []string
	)
	for _, be := range r.backends {
		p := be.Probe(ctx, room, args)
		if p.OK && (best == nil || p.Priority > bestP.Priority) {
			best, bestP = be, p
		} else if !p.OK && p.Reason != "" {
			reasons = append(reasons, p.Reason)
		}
	}
	return best, reasons
}

// take makes rec the room's recording, unless the room got one meanwhile.
func (r *Rooms) take(room id.RoomID, rec *recording) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.active[room] != nil {
		return false
	}
	r.active[room] = rec
	r.wg.Add(1)
	return true
}

// Start records the room's call (!start), and says so in the room.
func (r *Rooms) Start(ctx context.Context, req Request) error {
	if err := r.chat.MayRecord(ctx, req.Room, req.Sender); err != nil {
		return err
	}
	p := r.cfg.CommandPrefix
	r.mu.Lock()
	if cur := r.active[req.Room]; cur != nil {
		r.mu.Unlock()
		return usererr.Error{Msg: fmt.Sprintf("Already recording here since %s (started by %s). Type %sstop to end it.", cur.rec.Status().StartedAt.UTC().Format("15:04 UTC"), cur.by, p)}
	}
	running := 0 // group recordings: the direct calls answered count against MaxCalls
	for _, rec := range r.active {
		if rec.caller == "" {
			running++
		}
	}
	r.mu.Unlock()
	if running >= r.cfg.MaxRecordings {
		return usererr.Error{Msg: fmt.Sprintf("Sorry, I am already recording %d group calls, the most I record at once (calls.max_group_recordings). Try again when one has ended.", running)}
	}
	if err := r.lc.Admit(ctx, req.Room, recorder.KindMesh); err != nil {
		msg, ok := r.lc.LimitMessage(err)
		if !ok {
			return fmt.Errorf("admit a group recording: %w", err)
		}
		return usererr.Error{Msg: "Sorry, I cannot record here now: " + msg + ". Try again when one has ended."}
	}
	best, reasons := r.probe(ctx, req.Room, req.Args)
	if best == nil {
		msg := "There is no call in this room that I can record."
		if len(reasons) > 0 {
			msg += " " + strings.Join(reasons, " ")
		}
		return usererr.Error{Msg: msg}
	}
	rec, err := r.launch(ctx, best, call.StartRequest{RoomID: req.Room, By: req.Sender, Args: req.Args})
	if err != nil {
		return err
	}
	st := rec.rec.Status()
	names := make([]string, 0, len(st.Participants))
	var mentions []id.UserID
	for _, pt := range st.Participants {
		if !pt.OptedOut {
			if pt.DisplayName != "" {
				names = append(names, pt.DisplayName)
				continue
			}
			names = append(names, string(pt.UserID))
			mentions = append(mentions, pt.UserID)
		}
	}
	who := "everyone who joins the call"
	if len(names) > 0 {
		who = strings.Join(names, ", ") + " and everyone who joins later"
	}
	text := fmt.Sprintf("🔴 Recording started at %s by %s. Recording %s, each person's tracks as separate files. Type %sskipme not to be recorded, %sstop to end.",
		st.StartedAt.UTC().Format("15:04:05 UTC"), req.Sender, who, p, p)
	r.lc.Started(st.Folder, r.chat.Notice(ctx, req.Room, text, "", mentions...), text, mentions...)
	return nil
}

// ErrAlreadyRecording: the room has a recording already.
var ErrAlreadyRecording = usererr.Error{Msg: "Already recording here."}

// ErrBusy: calls.max_calls direct calls are being recorded already (in words that
// follow "I did not answer the call from …:", as a refused call's notice says).
var ErrBusy = usererr.Error{Msg: "the recorder is busy with too many calls (calls.max_calls)"}

// Answer records a direct call the bot answers, with the backend that answers its kind of
// call, and says so in the room (with bot.notices). The caller checked that the room is a
// direct one with the caller and that the call may be answered. A call that replaces the
// caller's answered call (Answer.Replace) stops that one first.
func (r *Rooms) Answer(ctx context.Context, room id.RoomID, ans call.Answer) error {
	be := r.answerers[ans.KindOf()]
	if be == nil {
		return fmt.Errorf("%w: no backend answers calls of kind %q", call.ErrNotAnswered, ans.KindOf())
	}
	r.mu.Lock()
	cur := r.active[room]
	replaced := ans.Replace && cur != nil && cur.caller == ans.Caller && cur.kind == ans.KindOf()
	answered := 0
	for _, rec := range r.active {
		if rec.caller != "" && !(replaced && rec == cur) {
			answered++
		}
	}
	r.mu.Unlock()
	if cur != nil && !replaced {
		return ErrAlreadyRecording
	}
	if answered >= r.cfg.MaxCalls {
		return ErrBusy
	}
	if replaced {
		// Their client has given up on the old call.
		r.StopFor(ctx, room, ans.Caller.String()+" called again")
	}
	rec, err := r.launch(ctx, be, call.StartRequest{RoomID: room, By: ans.Caller, Answer: &ans})
	if err != nil {
		return err
	}
	if !r.cfg.Notices {
		return nil
	}
	text := fmt.Sprintf("🔴 Recording this call with %s. Every track is saved as its own file. Hang up to stop.", ans.Caller)
	r.lc.Started(rec.folder, r.chat.Notice(ctx, room, text, "", ans.Caller), text, ans.Caller)
	return nil
}

// launch starts a recording of the room with a backend (the room's opt-outs go with it)
// and watches it; errors are in words for the room where they can be.
func (r *Rooms) launch(ctx context.Context, be call.Backend, req call.StartRequest) (*recording, error) {
	r.mu.Lock()
	req.OptedOut = maps.Clone(r.optOuts[req.RoomID])
	r.mu.Unlock()
	if req.OptedOut == nil {
		req.OptedOut = map[id.UserID]time.Time{}
	}
	cr, err := be.Start(ctx, req)
	if err != nil {
		var ue usererr.Error
		if errors.As(err, &ue) {
			return nil, ue
		}
		if msg, ok := r.lc.LimitMessage(err); ok {
			return nil, usererr.Error{Msg: "Sorry, I cannot record here now: " + msg + "."}
		}
		return nil, fmt.Errorf("start recording: %w", err)
	}
	rec := &recording{backend: be.Name(), rec: cr, by: req.By, stopped: make(chan struct{}), folder: cr.Status().Folder}
	if req.Answer != nil {
		rec.caller, rec.kind = req.Answer.Caller, req.Answer.KindOf()
	}
	if !r.take(req.RoomID, rec) {
		_, _ = cr.Stop(ctx, "started twice")
		return nil, ErrAlreadyRecording
	}
	if req.Answer != nil && req.Resume == "" {
		// A restart resumes it as the direct call it is.
		r.lc.Answered(rec.folder, req.Answer.Caller, req.Answer.Intent)
	}
	go r.watch(context.WithoutCancel(ctx), req.RoomID, rec)
	return rec, nil
}

// watch waits for a recording to end on its own and reports it; a recording that a stop
// ended is reported by the stop instead.
func (r *Rooms) watch(ctx context.Context, room id.RoomID, rec *recording) {
	defer r.wg.Done()
	select {
	case <-rec.rec.Done():
	case <-rec.stopped:
		return
	}
	r.mu.Lock()
	if r.active[room] == rec {
		delete(r.active, room)
	}
	r.mu.Unlock()
	m, why, err := rec.rec.Result()
	r.report(ctx, room, rec, m, why, err)
}

// report hands a recording that ended to the lifecycle. The summary of a direct call the
// bot answered goes to the room only with bot.notices, as a legacy 1:1 call's.
func (r *Rooms) report(ctx context.Context, room id.RoomID, rec *recording, m recorder.Manifest, why string, err error) {
	if err != nil {
		r.log.Error().Err(err).Stringer("room_id", room).Msg("Recording ended with an error")
	}
	headline := ""
	if why != "" {
		headline = "Recording stopped: " + why + "."
	}
	r.lc.Ended(room, rec.folder, m, headline, err, rec.caller == "" || r.cfg.Notices)
}

// remove takes the room's recording off the active ones, if it is still rec (any when rec
// is nil), and returns it.
func (r *Rooms) remove(room id.RoomID, rec *recording) *recording {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.active[room]
	if cur == nil || (rec != nil && cur != rec) {
		return nil
	}
	delete(r.active, room)
	close(cur.stopped)
	return cur
}

// Stop ends the room's recording because someone asked (!stop, or !hangup of a direct
// call); stopped is false when there is none. Who may: who may record there; a direct
// call the bot answered, its caller only.
func (r *Rooms) Stop(ctx context.Context, req Request) (stopped bool, err error) {
	r.mu.Lock()
	rec := r.active[req.Room]
	r.mu.Unlock()
	if rec == nil {
		return false, nil
	}
	if rec.caller != "" {
		if err := callerOnly(rec, req.Sender); err != nil {
			return false, err
		}
	} else if err := r.chat.MayRecord(ctx, req.Room, req.Sender); err != nil {
		return false, err
	}
	if r.remove(req.Room, rec) == nil {
		return true, nil // it ended meanwhile
	}
	r.lc.StoppedByUser(req.Room)
	command := req.Command
	if command == "" {
		command = "stop"
	}
	m, err := rec.rec.Stop(ctx, fmt.Sprintf("stopped by %s", req.Sender))
	r.report(ctx, req.Room, rec, m, fmt.Sprintf("%s typed %s%s", req.Sender, r.cfg.CommandPrefix, command), err)
	return true, nil
}

// callerOnly refuses who is not the caller of an answered call: a direct call is ended
// (or marked) by the person in it, not by whoever else is in the room.
func callerOnly(rec *recording, user id.UserID) error {
	if rec.caller == "" || rec.caller == user {
		return nil
	}
	return usererr.Error{Msg: fmt.Sprintf("Sorry %s, only the person in the call (%s) may do that.", user, rec.caller)}
}

// Decline refuses a direct call that rang (the backend that answers its kind tells the
// caller's client), when it is not answered.
func (r *Rooms) Decline(ctx context.Context, room id.RoomID, ans call.Answer) error {
	be := r.answerers[ans.KindOf()]
	if be == nil {
		return nil
	}
	return be.Decline(ctx, room, ans)
}

// StopFor stops a room's recording without a command (a limit, the disk).
func (r *Rooms) StopFor(ctx context.Context, room id.RoomID, why string) bool {
	rec := r.remove(room, nil)
	if rec == nil {
		return false
	}
	m, err := rec.rec.Stop(ctx, why)
	r.report(ctx, room, rec, m, why, err)
	return true
}

// SetOptOut stops (out) or resumes recording the sender in the room, now and in the room's
// next recordings, and confirms it in the room.
func (r *Rooms) SetOptOut(ctx context.Context, req Request, out bool) error {
	now := time.Now()
	r.mu.Lock()
	if r.optOuts[req.Room] == nil {
		r.optOuts[req.Room] = map[id.UserID]time.Time{}
	}
	if _, had := r.optOuts[req.Room][req.Sender]; out && !had {
		r.optOuts[req.Room][req.Sender] = now
	} else if !out {
		delete(r.optOuts[req.Room], req.Sender)
	}
	rec := r.active[req.Room]
	r.mu.Unlock()
	// Kept in the state database, so a restart (a resumed recording too) still knows it.
	if err := r.lc.SetOptOut(ctx, req.Room, req.Sender, out, now); err != nil {
		r.log.Error().Err(err).Stringer("room_id", req.Room).Stringer("user_id", req.Sender).Bool("opted_out", out).
			Msg("Could not keep the opt-out in the state database; it holds until the bot restarts")
	}
	if rec != nil {
		rec.rec.SetOptOut(ctx, req.Sender, out)
	}
	if out {
		r.chat.Notice(ctx, req.Room, fmt.Sprintf("OK %s, you are not recorded in this room from now on. Type %srecordme to undo.", req.Sender, r.cfg.CommandPrefix), req.Event, req.Sender)
	} else {
		r.chat.Notice(ctx, req.Room, fmt.Sprintf("OK %s, you are recorded again from now on.", req.Sender), req.Event, req.Sender)
	}
	return nil
}

// Status is the room's recording, if any.
func (r *Rooms) Status(room id.RoomID) (call.Status, bool) {
	r.mu.Lock()
	rec := r.active[room]
	r.mu.Unlock()
	if rec == nil {
		return call.Status{}, false
	}
	return rec.rec.Status(), true
}

// Mark puts a marker on the timeline of the room's recording (!mark [-30s] [text]): at
// most call.MaxMarkers per recording, no earlier than its start. Anyone in the room marks
// a group recording; a direct call the bot answered, its caller only.
func (r *Rooms) Mark(req Request) error {
	back, args := call.MarkBack(req.Args)
	text := call.MarkerText(strings.Join(args, " "))
	at := time.Now().Add(-back)
	r.mu.Lock()
	rec := r.active[req.Room]
	r.mu.Unlock()
	if rec == nil {
		return usererr.Error{Msg: "Nothing is being recorded in this room, so there is nothing to mark."}
	}
	if err := callerOnly(rec, req.Sender); err != nil {
		return err
	}
	if !r.marks.Take([]string{rec.folder}) {
		return usererr.Error{Msg: fmt.Sprintf("This recording already has %d markers; that is the limit.", call.MaxMarkers)}
	}
	if st := rec.rec.Status(); at.Before(st.StartedAt) {
		at = st.StartedAt
	}
	rec.rec.Mark(req.Sender, text, at)
	return nil
}

// Recording reports whether a recording runs in the room.
func (r *Rooms) Recording(room id.RoomID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active[room] != nil
}

// Answered reports whether the room's recording is a direct call the bot answered for
// caller (who may end it).
func (r *Rooms) Answered(room id.RoomID, caller id.UserID) bool {
	c := r.Caller(room)
	return c != "" && c == caller
}

// Caller is the caller of the direct call the bot answered and records in the room, or
// "" when the room's recording (if any) is not one.
func (r *Rooms) Caller(room id.RoomID) id.UserID {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec := r.active[room]; rec != nil {
		return rec.caller
	}
	return ""
}

// Resume restarts a room's recording that a restart paused or interrupted, in the same
// folder (recorder.WithResume): the backend that can record the room's call now starts as
// if !start was typed, with the room's opt-outs (those the state database keeps, and those
// the manifest still lists). A direct call the bot answered (caller set) resumes as one,
// with the answerer, without its ring (which may have expired meanwhile): the caller must
// still be in the call. When it cannot, why says why not.
func (r *Rooms) Resume(ctx context.Context, room id.RoomID, folder string, m *recorder.Manifest, caller id.UserID, intent string) (ok bool, why string) {
	if r.Recording(room) {
		return false, "the room is being recorded again already"
	}
	var best call.Backend
	var answer *call.Answer
	if a := r.answerers[recorder.KindDirect]; caller != "" && a != nil {
		best, answer = a, &call.Answer{Caller: caller, Intent: intent}
	}
	if best == nil {
		var reasons []string
		if best, reasons = r.probe(ctx, room, nil); best == nil {
			why := "the call has ended"
			if len(reasons) > 0 {
				why += " (" + strings.Join(reasons, " ") + ")"
			}
			return false, why
		}
	}
	r.mu.Lock()
	if r.optOuts[room] == nil {
		r.optOuts[room] = map[id.UserID]time.Time{}
	}
	if m != nil {
		for _, o := range m.OptOuts {
			if _, known := r.optOuts[room][id.UserID(o.UserID)]; o.Until == nil && !known {
				r.optOuts[room][id.UserID(o.UserID)] = o.From
			}
		}
	}
	r.mu.Unlock()
	by := r.cfg.Self
	if answer != nil {
		by = answer.Caller
	}
	rec, err := r.launch(recorder.WithResume(ctx, folder), best, call.StartRequest{RoomID: room, By: by, Resume: folder, Answer: answer})
	if err != nil {
		var ue usererr.Error
		switch {
		case errors.Is(err, ErrAlreadyRecording):
			return false, "the room is being recorded again already"
		case errors.As(err, &ue):
			return false, strings.TrimSuffix(ue.Msg, ".") // the lifecycle puts it in a sentence
		}
		clause := roomerr.Clause(r.log.With().Stringer("room_id", room).Logger(), err, "Could not resume the recording")
		if answer != nil {
			return false, "the call with " + string(answer.Caller) + " has ended (" + clause + ")"
		}
		return false, clause
	}
	if filepath.Base(rec.folder) != folder {
		r.log.Warn().Str("folder", folder).Str("new_folder", rec.folder).Msg("The backend started a new folder instead of resuming")
	}
	return true, ""
}

// Shutdown pauses every recording for the next start (Config.PauseOnShutdown; one that
// cannot pause is stopped), or stops them all, then closes the backends (bounded by ctx).
//
// A pause is a hand-over point: what continues the recording needs is in its folder and
// the state database, whoever resumes it.
func (r *Rooms) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	all := r.active
	r.active = map[id.RoomID]*recording{}
	for _, rec := range all {
		close(rec.stopped)
	}
	r.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for room, rec := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var m recorder.Manifest
			var err error
			p, canPause := rec.rec.(call.Pauser)
			if r.cfg.PauseOnShutdown && canPause {
				m, err = p.Pause(ctx, PauseReason)
			} else {
				m, err = rec.rec.Stop(ctx, "the recorder is shutting down")
			}
			if m.Status == recorder.StatusInterrupted {
				// Paused: no summary; the next start continues it and says so.
				r.log.Info().Err(err).Stringer("room_id", room).Str("folder", filepath.Base(rec.folder)).Msg("Recording paused until the recorder is back")
			} else {
				r.report(ctx, room, rec, m, "the recorder is shutting down", err)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.wg.Wait()
	for _, be := range r.backends {
		if err := be.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
