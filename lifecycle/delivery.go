package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// linkWait is how long the summary waits for uploads before it is posted anyway (it is
// edited with the links once they are ready).
const linkWait = 2 * time.Minute

// Ended posts the summary of a finished recording: duration, participants and one line
// per file with a link, when announce (else the uploads go on and nothing is posted). It
// returns at once; the work (the rows, waiting for uploads) runs in the background.
// headline says why the recording ended; finErr is how finalising the files went.
func (lc *Lifecycle) Ended(roomID id.RoomID, folder string, m recorder.Manifest, headline string, finErr error, announce bool) {
	lc.wg.Add(1)
	lc.posting.Add(1)
	go func() {
		defer lc.wg.Done()
		lc.deliver(lc.ctx, roomID, filepath.Base(folder), &m, headline, finErr, lc.posting.Done, announce)
	}()
}

// deliver posts (and, once the uploads are done, edits) the summary of one recording and
// moves it to uploaded and notified. m may be nil (read from the folder). posted, when
// set, is called once the first message is out (or given up): shutdown waits for that.
func (lc *Lifecycle) deliver(ctx context.Context, roomID id.RoomID, folder string, m *recorder.Manifest, headline string, finErr error, posted func(), announce bool) {
	lc.deliverHeld(ctx, roomID, folder, m, headline, finErr, posted, announce, nil)
}

// deliverHeld is deliver by a caller that holds the summary's once-lease already (lease:
// what gives it back; nil when the caller holds nothing and deliver takes it itself).
// The lease is given back once the first summary is posted (or given up): the edit with
// the links that may follow for as long as the uploads take needs no lease (it stops when
// it finds the recording deleted), and holding it would refuse every other instance's
// !delete of a recording whose summary is out.
func (lc *Lifecycle) deliverHeld(ctx context.Context, roomID id.RoomID, folder string, m *recorder.Manifest, headline string, finErr error, posted func(), announce bool, lease func()) {
	if lease != nil {
		lease = sync.OnceFunc(lease)
		defer lease() // every return before the delivery takes it over
	}
	var once sync.Once
	firstDone := func() {
		if posted != nil {
			once.Do(posted)
		}
	}
	defer firstDone()
	log := lc.log.With().Str("folder", folder).Stringer("room_id", roomID).Logger()
	lc.flushRows(ctx, folder) // the rows the recording's hooks queued
	rec, err := lc.db.RecordingByFolder(ctx, folder)
	if err != nil {
		log.Error().Err(err).Msg("No state for the finished recording; posting a plain summary")
		if m == nil || !announce {
			return
		}
		lc.chat.Notice(ctx, roomID, strings.TrimSpace(headline+"\n"+plainSummary(*m, folder)), "")
		return
	}
	// One delivery per recording at a time; deleting the recording ends it.
	lc.mu.Lock()
	if _, busy := lc.delivering[rec.ID]; busy {
		lc.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	recID := rec.ID // rec is read again below, and nil when that fails
	lc.delivering[recID] = cancel
	lc.mu.Unlock()
	defer func() {
		lc.mu.Lock()
		delete(lc.delivering, recID)
		lc.mu.Unlock()
		cancel()
	}()
	release, held := lc.holdSummary(ctx, log, recID, lease)
	defer release()
	if !held {
		return
	}
	// Read again under the lease and the registration: a deletion (here or elsewhere) may
	// have run since the first read, and found no delivery to end then.
	if rec, err = lc.db.Recording(ctx, recID); err != nil {
		if ctx.Err() == nil {
			log.Warn().Err(err).Str("recording", recID).Msg("Could not read the recording again before its summary; it is retried later")
		}
		return
	}
	if rec.Status.Gone() {
		return
	}
	if headline == "" {
		headline = rec.StopReason // kept from an attempt that could not be posted
	}
	if finErr != nil {
		headline = strings.TrimSpace(headline + "\nSome files could not be finalised cleanly; they stay playable up to their last second.")
	}
	if lc.up != nil {
		// Wait for the links, but not past the start of a shutdown: then the summary goes
		// out with what is ready, and the next run adds the rest.
		wctx, cancel := context.WithTimeout(ctx, linkWait)
		stop := context.AfterFunc(lc.drainCtx, cancel)
		_ = lc.up.Wait(wctx, rec.ID)
		lc.up.WaitEvidence(wctx, rec.ID) // notifications of LiveKit Egress's copies
		stop()
		cancel()
	}
	if ctx.Err() != nil {
		return
	}
	lc.partsFromElsewhere(ctx, rec)
	lc.copiesFromElsewhere(ctx, rec)
	complete := lc.uploadsComplete(ctx, rec.ID)
	if complete && lc.s3 != nil {
		complete = lc.uploadManifest(ctx, rec) == nil
	}
	if !announce {
		return // bot.notices is off: the uploads go on, nothing is posted
	}
	withLinks := !lc.cfg.Storage.LinksByDM
	sum := lc.summarize(ctx, rec, headline, complete, withLinks)
	evt, filesEvt := lc.postSummary(ctx, roomID, sum, id.EventID(rec.SummaryEvent), "")
	// Posted means the whole summary: a thread without its files is posted again.
	whole := evt != "" && (filesEvt != "" || sum.files.Text == "")
	if !whole && ctx.Err() == nil {
		lc.log.Warn().Str("recording", rec.ID).Msg("Could not post the recording summary; retrying while the bot runs")
	}
	rec, err = lc.db.ModifyRecording(context.WithoutCancel(ctx), rec.ID, func(r *storage.Recording) {
		if evt != "" {
			r.SummaryEvent = string(evt)
		}
		if !whole {
			r.StopReason = headline
		}
		switch {
		case r.Status.Gone() || r.Status.Live():
		case !whole:
			r.Status = storage.RecordingFailedNotify
		case complete:
			r.Status = storage.RecordingNotified
		case lc.s3 == nil:
			r.Status = storage.RecordingNotified
		}
	})
	firstDone()
	release() // the first summary is out (or given up): see deliverHeld
	if whole {
		lc.mu.Lock()
		delete(lc.notifyRetry, recID)
		lc.mu.Unlock()
		if complete && withLinks && rec != nil {
			lc.linksPosted(rec)
		}
	}
	if err != nil || complete || lc.up == nil || !whole {
		return
	}
	// Uploads are still going (the store is slow or down): edit the summary's files once
	// they are done, however long that takes (or until the recording is deleted).
	if withLinks {
		log.Info().Msg("Summary posted before every upload finished; it will be edited with the links")
	}
	for ctx.Err() == nil {
		if err := lc.up.Wait(ctx, rec.ID); err != nil {
			return
		}
		if cur, err := lc.db.Recording(ctx, rec.ID); err != nil || cur.Status.Gone() {
			return // deleted meanwhile: nothing is left to link to
		}
		lc.partsFromElsewhere(ctx, rec)
		lc.copiesFromElsewhere(ctx, rec)
		if lc.uploadsComplete(ctx, rec.ID) && lc.uploadManifest(ctx, rec) == nil {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(lc.uploadPoll):
		}
	}
	if ctx.Err() != nil {
		return // shutdown or deletion: the next start finishes (or nothing is left)
	}
	if withLinks && filesEvt != "" {
		sum = lc.summarize(ctx, rec, headline, true, true)
		sum.files.Thread, sum.files.Replace = evt, filesEvt
		if lc.sendMessage(ctx, roomID, sum.files) == "" {
			return // stays uploaded: retried at the next start
		}
		lc.linksPosted(rec)
	}
	if _, err := lc.db.ModifyRecording(context.WithoutCancel(ctx), rec.ID, func(r *storage.Recording) {
		if !r.Status.Gone() && !r.Status.Live() {
			r.Status = storage.RecordingNotified
		}
	}); err != nil {
		log.Warn().Err(err).Msg("Could not mark the recording notified")
	}
}

// holdSummary takes the lease on the recording's summary for the delivery (once.go;
// release gives it back), unless the caller holds it already (lease, a retry of the
// summary: retrySummary). The delivery is told who holds it rather than asking this
// process's registry, where a !delete running here holds the same entry. held false:
// something else acts on the recording (a !delete, here or on another instance): the
// summary is left to the retries, which look at the row again then (deleted: nothing to
// post). A lease the database cannot give does not stop the summary.
func (lc *Lifecycle) holdSummary(ctx context.Context, log zerolog.Logger, recID string, lease func()) (release func(), held bool) {
	nothing := func() {}
	if lease != nil {
		return lease, true
	}
	release, err := lc.takeOnce(ctx, onceSummary, recID)
	var busy *errOnceBusy
	switch {
	case errors.As(err, &busy):
		ev := log.Info().Str("recording", recID)
		if busy.holder != "" {
			ev = ev.Str("by", busy.holder)
		}
		ev.Msg("Something else acts on the recording (its deletion); its summary is retried later")
		if _, err := lc.db.ModifyRecording(context.WithoutCancel(ctx), recID, func(r *storage.Recording) {
			if !r.Status.Gone() && !r.Status.Live() {
				r.Status = storage.RecordingFailedNotify
			}
		}); err != nil {
			log.Warn().Err(err).Msg("Could not mark the recording's summary for a retry")
		}
		return nothing, false
	case err != nil:
		if ctx.Err() == nil {
			log.Warn().Err(err).Str("recording", recID).Msg("Could not take the lease on the recording's summary; posting it all the same")
		}
		return nothing, true
	}
	return release, true
}

// linksPosted counts the time from a recording's end to its summary with links in the
// room (links_delay_seconds), when the summary has links.
func (lc *Lifecycle) linksPosted(rec *storage.Recording) {
	if lc.cfg.EffectiveLinks() == config.LinksNone || rec.EndedAt.IsZero() {
		return
	}
	lc.m.LinksDelay.WithLabelValues(recorder.Kind(rec.Kind).Label()).Observe(max(lc.now().Sub(rec.EndedAt).Seconds(), 0))
}

// postSummary posts a summary's message, or edits it when top is set, then its files in
// its thread (editing them when files is set). It returns both events ("" for one that
// could not be sent).
func (lc *Lifecycle) postSummary(ctx context.Context, roomID id.RoomID, sum summary, top, files id.EventID) (id.EventID, id.EventID) {
	sum.top.Replace = top
	evt := lc.sendMessage(ctx, roomID, sum.top)
	if evt == "" || sum.files.Text == "" {
		return evt, ""
	}
	sum.files.Thread, sum.files.Replace = evt, files
	return evt, lc.sendMessage(ctx, roomID, sum.files)
}

// uploadsComplete reports whether every file of a recording that exists is confirmed in
// object storage (true without object storage).
func (lc *Lifecycle) uploadsComplete(ctx context.Context, recID string) bool {
	if lc.s3 == nil {
		return true
	}
	parts, err := lc.db.Parts(ctx, recID)
	if err != nil {
		return false
	}
	ups, err := lc.db.Uploads(ctx, recID)
	if err != nil {
		return false
	}
	byFile := map[string]*storage.Upload{}
	for _, u := range ups {
		byFile[u.File] = u
	}
	for _, p := range parts {
		if p.Status == storage.PartFailedWrite {
			continue
		}
		u := byFile[p.File]
		if u == nil || (u.Status != storage.UploadConfirmed && u.Status != storage.UploadFailed) {
			return false
		}
	}
	return true
}

// uploadManifest copies the manifest (which by now says where every file went) next to
// the files, and marks the recording uploaded.
func (lc *Lifecycle) uploadManifest(ctx context.Context, rec *storage.Recording) error {
	lc.manifests.Lock()
	data, err := os.ReadFile(filepath.Join(lc.cfg.Recordings.Dir, rec.Folder, recorder.ManifestFile))
	lc.manifests.Unlock()
	if err != nil {
		return fmt.Errorf("read manifest: %w", err)
	}
	if _, err := lc.s3.Put(ctx, lc.s3.Key(rec.Folder, recorder.ManifestFile), data); err != nil {
		lc.log.Warn().Err(err).Str("folder", rec.Folder).Msg("Could not upload the manifest; will retry")
		lc.m.UploadFailures.Inc()
		return err
	}
	_, err = lc.db.ModifyRecording(ctx, rec.ID, func(r *storage.Recording) {
		if r.Status == storage.RecordingSaved || r.Status == storage.RecordingInterrupted || r.Status == storage.RecordingFailedNotify {
			r.Status = storage.RecordingUploaded
		}
	})
	return err
}

// sendMessage posts a message (or edits one, msg.Replace). It returns the event (the
// original's id for an edit), or "" when sending failed.
func (lc *Lifecycle) sendMessage(ctx context.Context, roomID id.RoomID, msg Message) id.EventID {
	var lastErr error
	// The chat retries each request on 429 and 5xx already; these are attempts on top.
	for attempt := 0; attempt < 3; attempt++ {
		evt, err := lc.chat.Post(ctx, roomID, msg)
		if err == nil {
			if msg.Replace != "" {
				return msg.Replace
			}
			return evt
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(time.Duration(attempt+1) * lc.sendBackoff):
		}
	}
	lc.log.Error().Err(lastErr).Stringer("room_id", roomID).Msg("Could not post the recording summary")
	return ""
}

// progress edits start notices with the time and size recorded so far.
func (lc *Lifecycle) progress(ctx context.Context) {
	every := lc.cfg.Recordings.ProgressInterval.D()
	now := lc.now()
	type edit struct {
		sess     *recorder.Session
		room     id.RoomID
		event    id.EventID
		text     string
		mentions []id.UserID
	}
	lc.mu.Lock()
	var due []edit
	for _, lr := range lc.live {
		if lr.startEvent != "" && !lr.stopping && now.Sub(lr.lastEdit) >= every {
			lr.lastEdit = now
			due = append(due, edit{lr.sess, lr.roomID, lr.startEvent, lr.startText, lr.startMentions})
		}
	}
	lc.mu.Unlock()
	for _, e := range due {
		elapsed := now.Sub(e.sess.StartedAt())
		size := folderBytes(e.sess.Folder())
		tracks := 0
		for _, t := range e.sess.Manifest().Tracks {
			if t.Status == recorder.StatusRecording {
				tracks++
			}
		}
		lc.chat.Edit(ctx, e.room, e.event, e.text+"\n"+progressLine(elapsed, size, tracks), e.mentions...)
	}
}

// folderBytes is the size of the files in a folder.
func folderBytes(folder string) int64 {
	entries, err := os.ReadDir(folder)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

// endDelivery ends the delivery of a recording that is being deleted.
func (lc *Lifecycle) endDelivery(recID string) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if cancel := lc.delivering[recID]; cancel != nil {
		cancel()
	}
	delete(lc.notifyRetry, recID)
}

// Summaries that could not be posted (the homeserver was down) are tried again while the
// bot runs, with a pause that doubles up to renotifyMax.
const (
	renotifyEvery = 15 * time.Second
	renotifyFirst = 30 * time.Second
	renotifyMax   = 10 * time.Minute
)

// retryState paces the retries of one summary.
type retryState struct {
	pause time.Duration
	next  time.Time
}

// renotify posts the summaries that could not be posted, each when its pause is over.
func (lc *Lifecycle) renotify(ctx context.Context) {
	recs, err := lc.db.RecordingsWithStatus(ctx, storage.RecordingFailedNotify)
	if err != nil {
		return
	}
	now := lc.now()
	for _, r := range recs {
		lc.mu.Lock()
		_, busy := lc.delivering[r.ID]
		rs := lc.notifyRetry[r.ID]
		if rs == nil {
			rs = &retryState{pause: renotifyFirst, next: now.Add(renotifyFirst)}
			lc.notifyRetry[r.ID] = rs
		}
		due := !busy && !now.Before(rs.next)
		if due {
			rs.next = now.Add(rs.pause)
			rs.pause = min(2*rs.pause, renotifyMax)
		}
		lc.mu.Unlock()
		if due {
			lc.retrySummary(ctx, r)
		}
	}
}

// retrySummary posts a summary that could not be posted. In a fleet every instance lists
// it: the delivery reads the recording's folder, so only an instance that has it tries,
// and only the one holding the lease on the recording's summary (handed to the delivery,
// which keeps it until the summary is posted), on the row as it is then, so the room gets
// one summary, never one per instance.
func (lc *Lifecycle) retrySummary(ctx context.Context, r *storage.Recording) {
	if lc.fleet == nil {
		lc.log.Info().Str("recording", r.ID).Msg("Trying again to post a recording summary")
		lc.goDeliver(id.RoomID(r.RoomID), r.Folder, nil, "")
		return
	}
	if _, err := os.Stat(filepath.Join(lc.cfg.Recordings.Dir, filepath.Base(r.Folder), recorder.ManifestFile)); err != nil {
		return // another instance has the folder
	}
	ok, release := lc.claimOnce(ctx, onceSummary, r.ID)
	if !ok {
		return
	}
	cur, err := lc.db.Recording(ctx, r.ID)
	if err != nil || cur.Status != storage.RecordingFailedNotify {
		release()
		return
	}
	lc.log.Info().Str("recording", r.ID).Msg("Trying again to post a recording summary")
	lc.goDeliverHeld(id.RoomID(r.RoomID), r.Folder, nil, "", release)
}
