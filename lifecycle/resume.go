package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// startupItem is a recording the previous run left unfinished.
type startupItem struct {
	rec *storage.Recording
	m   *recorder.Manifest
	// interrupted: the process died while recording it.
	interrupted bool
	// paused: a clean stop paused it, to be continued.
	paused bool
}

// Recover runs at start-up, after the recorder repaired the folders a crash left
// (reports): the database learns which recordings were interrupted and what their files
// are now (rows the last run's queues had not written yet included), unfinished uploads
// continue, and what the rooms must be told waits for the chat's first sync (Run).
func (lc *Lifecycle) Recover(ctx context.Context, reports []recorder.RecoveryReport) {
	live, err := lc.db.MarkInterruptedWhere(ctx, lc.mine())
	if err != nil {
		lc.log.Error().Err(err).Msg("Could not mark interrupted recordings")
	}
	lc.m.Interrupted.Add(float64(len(live)))
	repaired := map[string]*recorder.Manifest{}
	for i := range reports {
		repaired[filepath.Base(reports[i].Folder)] = &reports[i].Manifest
	}
	seen := map[string]bool{}
	lc.recoverPaused(ctx, repaired, seen)
	mine := lc.mine()
	for _, r := range live {
		seen[r.Folder] = true
		m := repaired[r.Folder]
		if m == nil {
			if m, err = recorder.ReadManifest(filepath.Join(lc.cfg.Recordings.Dir, r.Folder)); err != nil {
				lc.log.Warn().Err(err).Str("folder", r.Folder).Msg("Interrupted recording has no readable manifest")
				continue
			}
		}
		interrupted := m.Status != recorder.StatusFinished
		status := storage.RecordingInterrupted
		if !interrupted {
			status = storage.RecordingSaved // finished on disk, only the bookkeeping was cut short
		}
		lc.syncFromManifest(ctx, r, m, status)
		lc.startup = append(lc.startup, startupItem{rec: r, m: m, interrupted: interrupted})
	}
	// Folders the recorder repaired that the database never heard of.
	for folder, m := range repaired {
		if seen[folder] {
			continue
		}
		if r, err := lc.db.RecordingByFolder(ctx, folder); err == nil && lc.fleet != nil {
			// Another instance took the recording over while this one was down: what is
			// left here is the copies of the files it had written (adopt.go).
			lc.log.Info().Str("folder", folder).Str("recording", r.ID).Msg("Another instance took this recording over; uploading the files left here")
			lc.uploadLeftovers(r, m)
			seen[folder] = true // its summary is the other instance's
			continue
		}
		r := &storage.Recording{RoomID: m.RoomID, CallID: m.CallID, Kind: string(m.Kind), Folder: folder, StartedAt: m.StartedAt, Status: storage.RecordingInterrupted}
		if err := lc.db.CreateRecording(ctx, r); err != nil {
			lc.log.Error().Err(err).Str("folder", folder).Msg("Could not record a repaired recording")
			continue
		}
		r.Interruptions++
		lc.syncFromManifest(ctx, r, m, storage.RecordingInterrupted)
		lc.startup = append(lc.startup, startupItem{rec: r, m: m, interrupted: true})
	}
	// Recordings whose summary never went out.
	pending, err := lc.db.RecordingsWithStatus(ctx, storage.RecordingSaved, storage.RecordingUploaded, storage.RecordingFailedNotify)
	if err != nil {
		lc.log.Warn().Err(err).Msg("Could not list recordings to announce")
	}
	for _, r := range pending {
		if !seen[r.Folder] && (mine == nil || mine(r)) {
			lc.startup = append(lc.startup, startupItem{rec: r})
		}
	}
	lc.resumeUploads(ctx)
	lc.refreshExpiry(ctx)
	lc.marks.load(ctx)
}

// mine reports, on a database several instances share, whether a recording is this
// instance's to recover: its folder is in this instance's recordings dir (the others'
// recordings go on, or are theirs to finish). nil with SQLite: every recording is.
func (lc *Lifecycle) mine() func(*storage.Recording) bool {
	if lc.fleet == nil {
		return nil
	}
	return func(r *storage.Recording) bool {
		fi, err := os.Stat(filepath.Join(lc.cfg.Recordings.Dir, r.Folder))
		if err != nil || !fi.IsDir() {
			return false
		}
		// Taken over by another instance that records it now (adopt.go).
		l, err := lc.db.LiveLease(context.WithoutCancel(lc.ctx), storage.WatchResource(r.RoomID))
		return err != nil || l.Owner == lc.fleet.owner
	}
}

// recoverPaused lists the recordings a clean stop paused, to continue after the first
// sync. One whose folder the recorder had to repair was being resumed when the process
// died: it counts as interrupted by that crash.
func (lc *Lifecycle) recoverPaused(ctx context.Context, repaired map[string]*recorder.Manifest, seen map[string]bool) {
	paused, err := lc.db.RecordingsWithStatus(ctx, storage.RecordingPaused)
	if err != nil {
		lc.log.Error().Err(err).Msg("Could not list paused recordings")
		return
	}
	mine := lc.mine()
	for _, r := range paused {
		if mine != nil && !mine(r) {
			continue
		}
		seen[r.Folder] = true
		if m := repaired[r.Folder]; m != nil {
			r.Interruptions++
			lc.syncFromManifest(ctx, r, m, storage.RecordingInterrupted)
			lc.startup = append(lc.startup, startupItem{rec: r, m: m, interrupted: true})
			continue
		}
		m, err := recorder.ReadManifest(filepath.Join(lc.cfg.Recordings.Dir, r.Folder))
		if err != nil {
			lc.log.Warn().Err(err).Str("folder", r.Folder).Msg("A paused recording has no readable manifest")
		}
		lc.startup = append(lc.startup, startupItem{rec: r, m: m, paused: true})
	}
}

// syncFromManifest makes a recording's rows say what its (repaired) manifest says.
func (lc *Lifecycle) syncFromManifest(ctx context.Context, r *storage.Recording, m *recorder.Manifest, status storage.RecordingStatus) {
	lc.fillFromManifest(r, *m, status)
	if err := lc.db.UpdateRecording(ctx, r); err != nil {
		lc.log.Error().Err(err).Str("recording", r.ID).Msg("Could not update the recording")
	}
	listed := map[string]bool{}
	for _, e := range m.Tracks {
		listed[e.File] = true
		p := partRow(r.ID, e)
		if !fileExists(filepath.Join(lc.cfg.Recordings.Dir, r.Folder, e.File)) && e.Upload == nil {
			p.Status = storage.PartFailedWrite
		}
		if err := lc.db.SavePart(ctx, p); err != nil {
			lc.log.Error().Err(err).Str("file", e.File).Msg("Could not update the file's row")
		}
	}
	// The recorder writes a new part's entry to disk within the flush interval, and the
	// queue may have written its row first: a crash in between leaves a row the manifest
	// does not list. Its file, if it exists, is kept and uploaded like the others; a file
	// that was never created has nothing to wait for.
	parts, err := lc.db.Parts(ctx, r.ID)
	if err != nil {
		return
	}
	for _, p := range parts {
		if listed[p.File] || p.Status == storage.PartFailedWrite || p.Status.Gone() || p.LocalDeleted {
			continue
		}
		if !fileExists(filepath.Join(lc.cfg.Recordings.Dir, r.Folder, p.File)) {
			p.Status = storage.PartFailedWrite
			if err := lc.db.SavePart(ctx, p); err != nil {
				lc.log.Error().Err(err).Str("file", p.File).Msg("Could not update the file's row")
			}
		}
	}
}

// resumeUploads hands every file that is final but not yet confirmed in object storage to
// the uploader, which continues from the parts already sent.
func (lc *Lifecycle) resumeUploads(ctx context.Context) {
	if lc.up == nil {
		return
	}
	recs, err := lc.db.RecordingsWithStatus(ctx, storage.RecordingSaved, storage.RecordingInterrupted, storage.RecordingPaused,
		storage.RecordingUploaded, storage.RecordingNotified, storage.RecordingFailedNotify)
	if err != nil {
		lc.log.Warn().Err(err).Msg("Could not list recordings to upload")
		return
	}
	for _, r := range recs {
		parts, err := lc.db.Parts(ctx, r.ID)
		if err != nil {
			continue
		}
		for _, p := range parts {
			if p.LocalDeleted || (p.Status != storage.PartSaved && p.Status != storage.PartInterrupted) {
				continue
			}
			if u, err := lc.db.UploadOf(ctx, r.ID, p.File); err == nil && (u.Status == storage.UploadConfirmed || u.Status == storage.UploadFailed || u.Status.Gone()) {
				continue
			}
			if !fileExists(filepath.Join(lc.cfg.Recordings.Dir, r.Folder, p.File)) {
				continue
			}
			lc.up.Finish(r.ID, filepath.Join(lc.cfg.Recordings.Dir, r.Folder), p.File, p.Bytes, p.SHA256)
		}
	}
}

// refreshExpiry applies the current recordings.expire_after to every recording kept.
func (lc *Lifecycle) refreshExpiry(ctx context.Context) {
	recs, err := lc.db.RecordingsWithStatus(ctx, storage.RecordingSaved, storage.RecordingInterrupted, storage.RecordingUploaded, storage.RecordingNotified, storage.RecordingFailedNotify)
	if err != nil {
		return
	}
	d := lc.cfg.Recordings.ExpireAfter.D()
	for _, r := range recs {
		want := time.Time{}
		if d > 0 && !r.EndedAt.IsZero() {
			want = r.EndedAt.Add(d)
		}
		if want.Equal(r.ExpiresAt) {
			continue
		}
		r.ExpiresAt = want
		if err := lc.db.UpdateRecording(ctx, r); err != nil {
			lc.log.Warn().Err(err).Msg("Could not update the expiry")
		}
	}
}

// afterFirstSync tells rooms what happened to recordings the last run left, resumes group
// recordings whose call is still going (paused or interrupted), posts summaries that never
// went out, and then gives their plain display name back to rooms that kept a recording
// mark without a recording.
func (lc *Lifecycle) afterFirstSync(ctx context.Context) {
	items := lc.startup
	lc.startup = nil
	for _, it := range items {
		if ctx.Err() != nil {
			return
		}
		r := it.rec
		roomID := id.RoomID(r.RoomID)
		if it.paused {
			lc.resumePaused(ctx, it)
			continue
		}
		if !it.interrupted {
			lc.goDeliver(roomID, r.Folder, it.m, "")
			continue
		}
		at := r.EndedAt.UTC().Format("15:04:05 UTC")
		if recorder.Kind(r.Kind) == recorder.KindOneToOne {
			lc.endStaleCall(ctx, r, it.m)
			if !lc.cfg.Bot.Notices {
				lc.goDeliver(roomID, r.Folder, nil, "")
				continue
			}
			lc.chat.Notice(ctx, roomID, fmt.Sprintf("⚠️ The recorder was restarted at %s while it recorded the call with %s. Everything up to then is saved (the files were repaired). "+
				"A 1:1 call cannot continue after a restart: the call ended with the recorder's connection. Call again to record more.", at, peerName(it.m)), "")
			lc.goDeliver(roomID, r.Folder, nil, "Recording interrupted by a restart of the recorder at "+at+".")
			continue
		}
		ok, why := lc.calls.Resume(ctx, lc.resumeRequest(ctx, r, it.m, false))
		if ok {
			lc.chat.Notice(ctx, roomID, fmt.Sprintf("🔁 The recorder was restarted (the recording stopped at %s). It is recording again, in the same folder: the files continue as further parts on the call's timeline.", at), "")
			continue
		}
		lc.chat.Notice(ctx, roomID, fmt.Sprintf("⚠️ The recorder was restarted at %s while it recorded this room's call, and could not continue: %s. Everything up to then is saved (the files were repaired).", at, why), "")
		lc.goDeliver(roomID, r.Folder, nil, "Recording interrupted by a restart of the recorder at "+at+".")
	}
	lc.marks.cleanup()
}

// resumeRequest is what continuing a recording the last run left takes: its folder and
// manifest, and for a direct call the bot answered, the caller and the call's intent.
func (lc *Lifecycle) resumeRequest(ctx context.Context, r *storage.Recording, m *recorder.Manifest, paused bool) ResumeRequest {
	req := ResumeRequest{Room: id.RoomID(r.RoomID), Folder: r.Folder, Manifest: m, Paused: paused}
	if a, err := lc.db.AnswerOf(ctx, r.ID); err == nil {
		req.Caller, req.Intent = id.UserID(a.Caller), a.Intent
	} else if !errors.Is(err, storage.ErrNotFound) {
		lc.log.Warn().Err(err).Str("recording", r.ID).Msg("Could not read whether the recording is of an answered call")
	}
	return req
}

// resumePaused continues a recording a clean stop paused, with one notice in its room;
// when its call ended while the recorder was down, the recording ends where it was
// paused, with its summary.
//
// A paused recording is a hand-over point: its files are final, its manifest and row say
// paused, and everything a resume needs is in the folder and the database (the answered
// call, the room's opt-outs, an Egress state file). Any recorder that shares them can
// take it from here.
func (lc *Lifecycle) resumePaused(ctx context.Context, it startupItem) {
	r := it.rec
	roomID := id.RoomID(r.RoomID)
	req := lc.resumeRequest(ctx, r, it.m, true)
	why := "its kind of call cannot continue after a restart"
	if it.m == nil {
		why = "its manifest could not be read"
	}
	if recorder.Kind(r.Kind) != recorder.KindOneToOne && it.m != nil {
		var ok bool
		if ok, why = lc.calls.Resume(ctx, req); ok {
			lc.log.Info().Str("folder", r.Folder).Stringer("room_id", roomID).Msg("Resumed a paused recording")
			if lc.cfg.Bot.Notices || req.Caller == "" {
				lc.chat.Notice(ctx, roomID, pausedContinues(r.EndedAt, lc.now()), "")
			}
			return
		}
	}
	lc.log.Info().Str("folder", r.Folder).Stringer("room_id", roomID).Str("why", why).Msg("A paused recording cannot continue; it ends where it was paused")
	lc.endPaused(ctx, r)
	lc.goDeliver(roomID, r.Folder, nil, pausedEnded(r.EndedAt, why))
}

// endPaused ends a paused recording where it was paused: its manifest says finished (its
// files were final already) and its row saved.
func (lc *Lifecycle) endPaused(ctx context.Context, r *storage.Recording) {
	folder := filepath.Join(lc.cfg.Recordings.Dir, r.Folder)
	lc.manifests.Lock()
	m, err := recorder.ReadManifest(folder)
	if err == nil && m.Status == recorder.StatusInterrupted {
		m.Status = recorder.StatusFinished
		m.Interruption = ""
		err = recorder.WriteJSONAtomic(filepath.Join(folder, recorder.ManifestFile), m)
	}
	lc.manifests.Unlock()
	if err != nil {
		lc.log.Warn().Err(err).Str("folder", r.Folder).Msg("Could not mark the paused recording's manifest finished")
	}
	if m != nil {
		lc.fillFromManifest(r, *m, storage.RecordingSaved)
	} else {
		r.Status = storage.RecordingSaved
		if d := lc.cfg.Recordings.ExpireAfter.D(); d > 0 && !r.EndedAt.IsZero() {
			r.ExpiresAt = r.EndedAt.Add(d)
		}
	}
	if err := lc.db.UpdateRecording(ctx, r); err != nil {
		lc.log.Error().Err(err).Str("recording", r.ID).Msg("Could not mark the paused recording saved")
	}
}

// goDeliver runs deliver in the background.
func (lc *Lifecycle) goDeliver(roomID id.RoomID, folder string, m *recorder.Manifest, headline string) {
	lc.goDeliverHeld(roomID, folder, m, headline, nil)
}

// goDeliverHeld is goDeliver by a caller that holds the lease on the summary (lease gives
// it back; nil: none held): the delivery takes it over (deliverHeld).
func (lc *Lifecycle) goDeliverHeld(roomID id.RoomID, folder string, m *recorder.Manifest, headline string, lease func()) {
	lc.wg.Add(1)
	lc.posting.Add(1)
	go func() {
		defer lc.wg.Done()
		lc.deliverHeld(lc.ctx, roomID, folder, m, headline, nil, lc.posting.Done, lc.cfg.Bot.Notices, lease)
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

// endStaleCall hangs up a 1:1 call the last run was in (of the last ten minutes), so the
// caller's client stops waiting for a recorder that is gone.
func (lc *Lifecycle) endStaleCall(ctx context.Context, r *storage.Recording, m *recorder.Manifest) {
	if m == nil || m.CallID == "" || lc.now().Sub(r.EndedAt) > 10*time.Minute {
		return
	}
	lc.calls.HangUp(ctx, id.RoomID(r.RoomID), m.CallID)
}

// uploadLeftovers hands the files of a repaired folder to the uploader, for a recording
// another instance took over (their copies in object storage are all that instance can
// link to).
func (lc *Lifecycle) uploadLeftovers(r *storage.Recording, m *recorder.Manifest) {
	if lc.up == nil {
		return
	}
	dir := filepath.Join(lc.cfg.Recordings.Dir, r.Folder)
	for _, e := range m.Tracks {
		if fileExists(filepath.Join(dir, e.File)) {
			lc.up.Finish(r.ID, dir, e.File, e.Bytes, e.SHA256)
		}
	}
}
