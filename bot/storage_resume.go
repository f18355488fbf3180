package bot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/voip"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// startupItem is a recording the previous run left unfinished.
type startupItem struct {
	rec *storage.Recording
	m   *recorder.Manifest
	// interrupted: the process died while recording it.
	interrupted bool
}

// recoverState runs at start-up, after the recorder repaired the folders a crash left
// (reports): the database learns which recordings were interrupted and what their files
// are now, unfinished uploads continue, and what the rooms must be told waits for the
// first sync.
func (st *storeRT) recoverState(ctx context.Context, reports []recorder.RecoveryReport) {
	live, err := st.db.MarkInterrupted(ctx)
	if err != nil {
		st.log.Error().Err(err).Msg("Could not mark interrupted recordings")
	}
	st.m.Interrupted.Add(float64(len(live)))
	repaired := map[string]*recorder.Manifest{}
	for i := range reports {
		repaired[filepath.Base(reports[i].Folder)] = &reports[i].Manifest
	}
	seen := map[string]bool{}
	for _, r := range live {
		seen[r.Folder] = true
		m := repaired[r.Folder]
		if m == nil {
			if m, err = recorder.ReadManifest(filepath.Join(st.cfg.Recordings.Dir, r.Folder)); err != nil {
				st.log.Warn().Err(err).Str("folder", r.Folder).Msg("Interrupted recording has no readable manifest")
				continue
			}
		}
		interrupted := m.Status != recorder.StatusFinished
		status := storage.StatusInterrupted
		if !interrupted {
			status = storage.StatusSaved // finished on disk, only the bookkeeping was cut short
		}
		st.syncFromManifest(ctx, r, m, status)
		st.startup = append(st.startup, startupItem{rec: r, m: m, interrupted: interrupted})
	}
	// Folders the recorder repaired that the database never heard of.
	for folder, m := range repaired {
		if seen[folder] {
			continue
		}
		r := &storage.Recording{RoomID: m.RoomID, CallID: m.CallID, Kind: m.Kind, Folder: folder, StartedAt: m.StartedAt, Status: storage.StatusInterrupted}
		if err := st.db.CreateRecording(ctx, r); err != nil {
			st.log.Error().Err(err).Str("folder", folder).Msg("Could not record a repaired recording")
			continue
		}
		r.Interruptions++
		st.syncFromManifest(ctx, r, m, storage.StatusInterrupted)
		st.startup = append(st.startup, startupItem{rec: r, m: m, interrupted: true})
	}
	// Recordings whose summary never went out.
	pending, err := st.db.RecordingsWithStatus(ctx, storage.StatusSaved, storage.StatusUploaded, storage.StatusFailedNotify)
	if err != nil {
		st.log.Warn().Err(err).Msg("Could not list recordings to announce")
	}
	for _, r := range pending {
		if !seen[r.Folder] {
			st.startup = append(st.startup, startupItem{rec: r})
		}
	}
	st.resumeUploads(ctx)
	st.refreshExpiry(ctx)
}

// syncFromManifest makes a recording's rows say what its (repaired) manifest says.
func (st *storeRT) syncFromManifest(ctx context.Context, r *storage.Recording, m *recorder.Manifest, status storage.Status) {
	st.fillFromManifest(r, *m, status)
	if err := st.db.UpdateRecording(ctx, r); err != nil {
		st.log.Error().Err(err).Str("recording", r.ID).Msg("Could not update the recording")
	}
	for _, e := range m.Tracks {
		p := st.partRow(r.ID, e)
		if e.Status == recorder.StatusComplete {
			p.Status = storage.StatusSaved
		}
		if !fileExists(filepath.Join(st.cfg.Recordings.Dir, r.Folder, e.File)) && e.Upload == nil {
			p.Status = storage.StatusFailedWrite
		}
		if e.Upload != nil && e.Upload.LocalDeleted {
			p.LocalDeleted = true
		}
		if err := st.db.SavePart(ctx, p); err != nil {
			st.log.Error().Err(err).Str("file", e.File).Msg("Could not update the file's row")
		}
	}
}

// resumeUploads hands every file that is final but not yet confirmed in object storage to
// the uploader, which continues from the parts already sent.
func (st *storeRT) resumeUploads(ctx context.Context) {
	if st.up == nil {
		return
	}
	recs, err := st.db.RecordingsWithStatus(ctx, storage.StatusSaved, storage.StatusInterrupted, storage.StatusUploaded, storage.StatusNotified, storage.StatusFailedNotify)
	if err != nil {
		st.log.Warn().Err(err).Msg("Could not list recordings to upload")
		return
	}
	for _, r := range recs {
		parts, err := st.db.Parts(ctx, r.ID)
		if err != nil {
			continue
		}
		for _, p := range parts {
			if p.LocalDeleted || (p.Status != storage.StatusSaved && p.Status != storage.StatusInterrupted) {
				continue
			}
			if u, err := st.db.UploadOf(ctx, r.ID, p.File); err == nil && (u.Status == storage.StatusConfirmed || u.Status == storage.StatusFailedUpload || u.Status.Gone()) {
				continue
			}
			if !fileExists(filepath.Join(st.cfg.Recordings.Dir, r.Folder, p.File)) {
				continue
			}
			st.up.Finish(r.ID, filepath.Join(st.cfg.Recordings.Dir, r.Folder), p.File, p.Bytes, p.SHA256)
		}
	}
}

// refreshExpiry applies the current recordings.expire_after to every recording kept.
func (st *storeRT) refreshExpiry(ctx context.Context) {
	recs, err := st.db.RecordingsWithStatus(ctx, storage.StatusSaved, storage.StatusInterrupted, storage.StatusUploaded, storage.StatusNotified, storage.StatusFailedNotify)
	if err != nil {
		return
	}
	d := st.cfg.Recordings.ExpireAfter.D()
	for _, r := range recs {
		want := time.Time{}
		if d > 0 && !r.EndedAt.IsZero() {
			want = r.EndedAt.Add(d)
		}
		if want.Equal(r.ExpiresAt) {
			continue
		}
		r.ExpiresAt = want
		if err := st.db.UpdateRecording(ctx, r); err != nil {
			st.log.Warn().Err(err).Msg("Could not update the expiry")
		}
	}
}

// afterFirstSync tells rooms what happened to recordings the last run left, resumes group
// recordings whose call is still going, and posts summaries that never went out.
func (st *storeRT) afterFirstSync(ctx context.Context) {
	items := st.startup
	st.startup = nil
	for _, it := range items {
		if ctx.Err() != nil {
			return
		}
		r := it.rec
		roomID := id.RoomID(r.RoomID)
		if !it.interrupted {
			st.goDeliver(roomID, r.Folder, it.m, "")
			continue
		}
		at := r.EndedAt.UTC().Format("15:04:05 UTC")
		if r.Kind == "1:1" {
			st.endStaleCall(ctx, r, it.m)
			if !st.cfg.Bot.Notices {
				st.goDeliver(roomID, r.Folder, nil, "")
				continue
			}
			st.b.notice(ctx, roomID, fmt.Sprintf("⚠️ The recorder was restarted at %s while it recorded the call with %s. Everything up to then is saved (the files were repaired). "+
				"A 1:1 call cannot continue after a restart: the call ended with the recorder's connection. Call again to record more.", at, peerName(it.m)), "")
			st.goDeliver(roomID, r.Folder, nil, "Recording interrupted by a restart of the recorder at "+at+".")
			continue
		}
		ok, why := st.b.groups.resume(ctx, roomID, r.Folder, it.m)
		if ok {
			st.b.notice(ctx, roomID, fmt.Sprintf("🔁 The recorder was restarted (the recording stopped at %s). It is recording again, in the same folder: the files continue as further parts on the call's timeline.", at), "")
			continue
		}
		st.b.notice(ctx, roomID, fmt.Sprintf("⚠️ The recorder was restarted at %s while it recorded this room's call, and could not continue: %s. Everything up to then is saved (the files were repaired).", at, why), "")
		st.goDeliver(roomID, r.Folder, nil, "Recording interrupted by a restart of the recorder at "+at+".")
	}
}

// goDeliver runs deliver in the background.
func (st *storeRT) goDeliver(roomID id.RoomID, folder string, m *recorder.Manifest, headline string) {
	st.wg.Add(1)
	st.posting.Add(1)
	go func() {
		defer st.wg.Done()
		st.deliver(st.ctx, roomID, folder, m, headline, nil, st.posting.Done, st.cfg.Bot.Notices)
	}()
}

func peerName(m *recorder.Manifest) string {
	if m != nil {
		for _, p := range m.Participants {
			if p.DisplayName != "" {
				return p.DisplayName
			}
			return p.UserID
		}
	}
	return "the caller"
}

// endStaleCall hangs up a 1:1 call the last run was in, so the caller's client stops
// waiting for a recorder that is gone.
func (st *storeRT) endStaleCall(ctx context.Context, r *storage.Recording, m *recorder.Manifest) {
	if m == nil || m.CallID == "" || st.now().Sub(r.EndedAt) > 10*time.Minute {
		return
	}
	h := voip.Hangup{Common: voip.Common{CallID: m.CallID, PartyID: string(st.b.client.DeviceID), Version: voip.V1}, Reason: voip.ReasonUserHangup}
	if err := (voipSignaller{st.b}).SendCallEvent(ctx, id.RoomID(r.RoomID), voip.TypeHangup, h); err != nil {
		st.log.Debug().Err(err).Msg("Could not hang up the call the last run was in")
	}
}

// resume restarts a room's group recording that a restart interrupted, in the same
// folder (recorder.WithResume): the backend that can record the room's call now starts as
// if !start was typed, with the opt-outs the manifest still lists.
func (g *groups) resume(ctx context.Context, roomID id.RoomID, folder string, m *recorder.Manifest) (bool, string) {
	g.mu.Lock()
	busy := g.active[roomID] != nil
	g.mu.Unlock()
	if busy {
		return false, "the room is being recorded again already"
	}
	var (
		best    call.Backend
		bestP   call.Probe
		reasons []string
	)
	for _, be := range g.backends {
		p := be.Probe(ctx, roomID, nil)
		if p.OK && (best == nil || p.Priority > bestP.Priority) {
			best, bestP = be, p
		} else if !p.OK && p.Reason != "" {
			reasons = append(reasons, p.Reason)
		}
	}
	if best == nil {
		why := "the call has ended"
		if len(reasons) > 0 {
			why += " (" + strings.Join(reasons, " ") + ")"
		}
		return false, why
	}
	opt := map[id.UserID]time.Time{}
	if m != nil {
		for _, o := range m.OptOuts {
			if o.Until == nil {
				opt[id.UserID(o.UserID)] = o.From
			}
		}
	}
	g.mu.Lock()
	if len(opt) > 0 {
		if g.optOuts[roomID] == nil {
			g.optOuts[roomID] = map[id.UserID]time.Time{}
		}
		for u, t := range opt {
			g.optOuts[roomID][u] = t
		}
	}
	g.mu.Unlock()
	rec, err := best.Start(recorder.WithResume(ctx, folder), call.StartRequest{RoomID: roomID, By: g.b.client.UserID, OptedOut: opt, Resume: folder})
	if err != nil {
		var ue userError
		if errors.As(err, &ue) {
			return false, ue.Msg
		}
		return false, err.Error()
	}
	gr := &groupRec{backend: best.Name(), rec: rec, by: g.b.client.UserID, stopped: make(chan struct{}), folder: rec.Status().Folder}
	g.mu.Lock()
	if g.active[roomID] != nil {
		g.mu.Unlock()
		_, _ = rec.Stop(ctx, "started twice")
		return false, "the room is being recorded again already"
	}
	g.active[roomID] = gr
	g.wg.Add(1)
	g.mu.Unlock()
	go g.watch(context.WithoutCancel(ctx), roomID, gr)
	if filepath.Base(gr.folder) != folder {
		g.b.log.Warn().Str("folder", folder).Str("new_folder", gr.folder).Msg("The backend started a new folder instead of resuming")
	}
	return true, ""
}

// checkDataDir reports whether the state database's folder is writable (health checks).
func checkDataDir(dir string) error {
	f, err := os.CreateTemp(dir, ".health-*")
	if err != nil {
		return fmt.Errorf("data_dir is not writable: %w", err)
	}
	name := f.Name()
	return errors.Join(f.Close(), os.Remove(name))
}
