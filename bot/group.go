package bot

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/lifecycle"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// pauseReason is what the manifest says of a pause for a restart (its resumes list it).
const pauseReason = "the recorder was stopped for a restart"

// groups runs group recordings: at most one per room, each independent of the others.
type groups struct {
	b        *Bot
	backends []call.Backend

	mu      sync.Mutex
	active  map[id.RoomID]*groupRec
	optOuts map[id.RoomID]map[id.UserID]time.Time
	wg      sync.WaitGroup
}

type groupRec struct {
	backend string
	folder  string
	rec     call.Recording
	by      id.UserID
	// caller is set for a direct call the bot answered (livekit_dm.go): they may !stop it.
	caller  id.UserID
	stopped chan struct{} // closed when !stop (or shutdown) took over
}

func newGroups(b *Bot, backends []call.Backend) *groups {
	return &groups{b: b, backends: backends, active: map[id.RoomID]*groupRec{}, optOuts: map[id.RoomID]map[id.UserID]time.Time{}}
}

// loadOptOuts takes the opt-outs the state database keeps (they outlive restarts).
func (g *groups) loadOptOuts(ctx context.Context) error {
	outs, err := g.b.lc.OptOuts(ctx)
	if err != nil {
		return fmt.Errorf("read the opt-outs: %w", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for room, users := range outs {
		if g.optOuts[room] == nil {
			g.optOuts[room] = map[id.UserID]time.Time{}
		}
		for u, t := range users {
			g.optOuts[room][u] = t
		}
	}
	return nil
}

// handleEvent passes every event to every backend.
func (g *groups) handleEvent(ctx context.Context, evt *event.Event) {
	for _, be := range g.backends {
		be.HandleEvent(ctx, evt)
	}
}

// mayRecord checks whether user may start and stop recordings in a room.
func (g *groups) mayRecord(ctx context.Context, roomID id.RoomID, user id.UserID) error {
	return g.b.mayRecord(ctx, roomID, user, "start or stop recordings")
}

// probe asks every backend whether it can record the room's call now, and returns the
// one that can with the highest priority, or the reasons of those that cannot.
func (g *groups) probe(ctx context.Context, roomID id.RoomID, args []string) (call.Backend, []string) {
	var (
		best    call.Backend
		bestP   call.Probe
		reasons []string
	)
	for _, be := range g.backends {
		p := be.Probe(ctx, roomID, args)
		if p.OK && (best == nil || p.Priority > bestP.Priority) {
			best, bestP = be, p
		} else if !p.OK && p.Reason != "" {
			reasons = append(reasons, p.Reason)
		}
	}
	return best, reasons
}

// take makes gr the room's recording, unless the room got one meanwhile.
func (g *groups) take(roomID id.RoomID, gr *groupRec) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.active[roomID] != nil {
		return false
	}
	g.active[roomID] = gr
	g.wg.Add(1)
	return true
}

func (g *groups) start(ctx context.Context, cc *cmdContext) error {
	if err := g.mayRecord(ctx, cc.roomID, cc.sender); err != nil {
		return err
	}
	g.mu.Lock()
	if cur := g.active[cc.roomID]; cur != nil {
		g.mu.Unlock()
		return userError{Msg: fmt.Sprintf("Already recording here since %s (started by %s). Type %sstop to end it.", cur.rec.Status().StartedAt.UTC().Format("15:04 UTC"), cur.by, g.b.cfg.Bot.CommandPrefix)}
	}
	running := len(g.active)
	g.mu.Unlock()
	if running >= g.b.cfg.Calls.MaxGroupRecordings {
		return userError{Msg: fmt.Sprintf("Sorry, I am already recording %d group calls, the most I record at once (calls.max_group_recordings). Try again when one has ended.", running)}
	}
	if err := g.b.lc.Admit(ctx, cc.roomID, recorder.KindMesh); err != nil {
		var le lifecycle.LimitError
		if !errors.As(err, &le) {
			return fmt.Errorf("admit a group recording: %w", err)
		}
		return userError{Msg: "Sorry, I cannot record here now: " + le.Msg + ". Try again when one has ended."}
	}
	best, reasons := g.probe(ctx, cc.roomID, cc.args)
	if best == nil {
		msg := "There is no call in this room that I can record."
		if len(reasons) > 0 {
			msg += " " + strings.Join(reasons, " ")
		}
		return userError{Msg: msg}
	}
	gr, err := g.launch(ctx, best, call.StartRequest{RoomID: cc.roomID, By: cc.sender, Args: cc.args})
	if err != nil {
		return err
	}
	st := gr.rec.Status()
	names := make([]string, 0, len(st.Participants))
	var mentions []id.UserID
	for _, p := range st.Participants {
		if !p.OptedOut {
			if p.DisplayName != "" {
				names = append(names, p.DisplayName)
				continue
			}
			names = append(names, string(p.UserID))
			mentions = append(mentions, p.UserID)
		}
	}
	who := "everyone who joins the call"
	if len(names) > 0 {
		who = strings.Join(names, ", ") + " and everyone who joins later"
	}
	text := fmt.Sprintf("🔴 Recording started at %s by %s. Recording %s, each person's tracks as separate files. Type %sskipme not to be recorded, %sstop to end.",
		st.StartedAt.UTC().Format("15:04:05 UTC"), cc.sender, who, g.b.cfg.Bot.CommandPrefix, g.b.cfg.Bot.CommandPrefix)
	g.b.lc.Started(st.Folder, g.b.noticeMentions(ctx, cc.roomID, text, "", mentions), text, mentions...)
	return nil
}

// launch starts a recording of the room with a backend (the room's opt-outs go with it)
// and watches it; errors are in words for the room where they can be.
func (g *groups) launch(ctx context.Context, be call.Backend, req call.StartRequest) (*groupRec, error) {
	g.mu.Lock()
	opt := map[id.UserID]time.Time{}
	for u, t := range g.optOuts[req.RoomID] {
		opt[u] = t
	}
	g.mu.Unlock()
	req.OptedOut = opt
	rec, err := be.Start(ctx, req)
	if err != nil {
		var ue userError
		if errors.As(err, &ue) {
			return nil, ue
		}
		var le lifecycle.LimitError
		if errors.As(err, &le) {
			return nil, userError{Msg: "Sorry, I cannot record here now: " + le.Msg + "."}
		}
		return nil, fmt.Errorf("start recording: %w", err)
	}
	gr := &groupRec{backend: be.Name(), rec: rec, by: req.By, stopped: make(chan struct{}), folder: rec.Status().Folder}
	if req.Answer != nil {
		gr.caller = req.Answer.Caller
	}
	if !g.take(req.RoomID, gr) {
		_, _ = rec.Stop(ctx, "started twice")
		return nil, userError{Msg: "Already recording here."}
	}
	if req.Answer != nil && req.Resume == "" {
		// A restart resumes it as the direct call it is.
		g.b.lc.Answered(gr.folder, req.Answer.Caller, req.Answer.Intent)
	}
	go g.watch(context.WithoutCancel(ctx), req.RoomID, gr)
	return gr, nil
}

// watch waits for a recording to end on its own and posts the summary; a recording that
// !stop ended is reported by stop instead.
func (g *groups) watch(ctx context.Context, roomID id.RoomID, gr *groupRec) {
	defer g.wg.Done()
	select {
	case <-gr.rec.Done():
	case <-gr.stopped:
		return
	}
	g.mu.Lock()
	if g.active[roomID] == gr {
		delete(g.active, roomID)
	}
	g.mu.Unlock()
	m, why, err := gr.rec.Result()
	g.report(ctx, roomID, gr.folder, m, why, err)
}

func (g *groups) report(ctx context.Context, roomID id.RoomID, folder string, m recorder.Manifest, why string, err error) {
	g.b.postCallEnded(roomID, folder, m) // picture, exports, transcripts (postcall.go)
	if err != nil {
		g.b.log.Error().Err(err).Stringer("room_id", roomID).Msg("Group recording ended with an error")
	}
	headline := ""
	if why != "" {
		headline = "Recording stopped: " + why + "."
	}
	// The summary with links.
	g.b.lc.Ended(roomID, folder, m, headline, err, true)
}

func (g *groups) stop(ctx context.Context, cc *cmdContext) error {
	g.mu.Lock()
	gr := g.active[cc.roomID]
	g.mu.Unlock()
	if gr == nil {
		// A 1:1 call in this room is ended with !stop too, by the person in it.
		if err := g.b.mayEndCall(cc); err != nil {
			return err
		}
		if n := g.b.hangupByUser(cc.roomID, fmt.Sprintf("%s asked me to stop", cc.sender)); n > 0 {
			return nil
		}
		return userError{Msg: "Nothing is being recorded in this room."}
	}
	if gr.caller == "" || gr.caller != cc.sender {
		if err := g.mayRecord(ctx, cc.roomID, cc.sender); err != nil {
			return err
		}
	}
	g.mu.Lock()
	if g.active[cc.roomID] != gr {
		g.mu.Unlock()
		return nil
	}
	delete(g.active, cc.roomID)
	close(gr.stopped)
	g.mu.Unlock()
	g.b.lc.Stopping(cc.roomID, true, lifecycle.StopUser)
	m, err := gr.rec.Stop(ctx, fmt.Sprintf("stopped by %s", cc.sender))
	g.report(ctx, cc.roomID, gr.folder, m, fmt.Sprintf("%s typed %sstop", cc.sender, g.b.cfg.Bot.CommandPrefix), err)
	return nil
}

func (g *groups) setOptOut(ctx context.Context, cc *cmdContext, out bool) error {
	now := time.Now()
	g.mu.Lock()
	if g.optOuts[cc.roomID] == nil {
		g.optOuts[cc.roomID] = map[id.UserID]time.Time{}
	}
	if _, had := g.optOuts[cc.roomID][cc.sender]; out && !had {
		g.optOuts[cc.roomID][cc.sender] = now
	} else if !out {
		delete(g.optOuts[cc.roomID], cc.sender)
	}
	gr := g.active[cc.roomID]
	g.mu.Unlock()
	// Kept in the state database, so a restart (a resumed recording too) still knows it.
	if err := g.b.lc.SetOptOut(ctx, cc.roomID, cc.sender, out, now); err != nil {
		g.b.log.Error().Err(err).Stringer("room_id", cc.roomID).Stringer("user_id", cc.sender).Bool("opted_out", out).
			Msg("Could not keep the opt-out in the state database; it holds until the bot restarts")
	}
	if gr != nil {
		gr.rec.SetOptOut(ctx, cc.sender, out)
	}
	p := g.b.cfg.Bot.CommandPrefix
	if out {
		g.b.noticeMentions(ctx, cc.roomID, fmt.Sprintf("OK %s, you are not recorded in this room from now on. Type %srecordme to undo.", cc.sender, p), cc.event, []id.UserID{cc.sender})
	} else {
		g.b.noticeMentions(ctx, cc.roomID, fmt.Sprintf("OK %s, you are recorded again from now on.", cc.sender), cc.event, []id.UserID{cc.sender})
	}
	return nil
}

// statusLines describes the group recording in a room, if any.
func (g *groups) statusLines(roomID id.RoomID) []string {
	g.mu.Lock()
	gr := g.active[roomID]
	g.mu.Unlock()
	if gr == nil {
		return nil
	}
	st := gr.rec.Status()
	lines := []string{fmt.Sprintf("Recording (%s) since %s, %s so far, %s, %s, folder %s",
		st.Backend, st.StartedAt.UTC().Format("15:04:05 UTC"), lifecycle.FormatDuration(time.Since(st.StartedAt)), lifecycle.Plural(st.Tracks, "track"), lifecycle.FormatBytes(st.Bytes), lifecycle.FolderName(st.Folder))}
	ps := append([]call.ParticipantStatus(nil), st.Participants...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].UserID < ps[j].UserID })
	for _, p := range ps {
		state := lifecycle.Plural(p.Tracks, "track")
		if p.OptedOut {
			state = "not recorded (opted out)"
		}
		who := string(p.UserID)
		if p.DisplayName != "" {
			who = p.DisplayName + " — " + who
		}
		lines = append(lines, fmt.Sprintf("• %s (%s): %s", who, p.DeviceID, state))
	}
	return append(lines, st.Details...)
}

// shutdown pauses every group recording for the next start (recordings.pause_on_shutdown;
// one that cannot pause is stopped), or stops them all (bounded by ctx).
//
// A pause is a hand-over point: what continues the recording needs is in its folder and
// the state database, whoever resumes it (lifecycle.ResumeRequest).
func (g *groups) shutdown(ctx context.Context) error {
	g.mu.Lock()
	all := g.active
	g.active = map[id.RoomID]*groupRec{}
	for _, gr := range all {
		close(gr.stopped)
	}
	g.mu.Unlock()
	pause := g.b.cfg.Recordings.PauseOnShutdown
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for roomID, gr := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var m recorder.Manifest
			var err error
			p, canPause := gr.rec.(call.Pauser)
			if pause && canPause {
				m, err = p.Pause(ctx, pauseReason)
			} else {
				m, err = gr.rec.Stop(ctx, "the recorder is shutting down")
			}
			if m.Status == recorder.StatusInterrupted {
				// Paused: no summary; the next start continues it and says so.
				g.b.log.Info().Err(err).Stringer("room_id", roomID).Str("folder", lifecycle.FolderName(gr.folder)).Msg("Recording paused until the recorder is back")
			} else {
				g.report(ctx, roomID, gr.folder, m, "the recorder is shutting down", err)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	g.wg.Wait()
	for _, be := range g.backends {
		if err := be.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
