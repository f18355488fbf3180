package lifecycle

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/storage"
)

// retentionInterval is how often expiry is checked: a minute, or more often when the
// configured times are short.
func (lc *Lifecycle) retentionInterval() time.Duration {
	every := time.Minute
	for _, d := range []time.Duration{lc.cfg.Recordings.ExpireAfter.D(), lc.cfg.Recordings.ExpireNotice.D(), lc.cfg.Storage.S3.DeleteLocalDelay.D()} {
		if d > 0 && d/10 < every {
			every = max(d/10, time.Second)
		}
	}
	return every
}

// retention tells rooms about recordings that expire soon and deletes expired ones.
func (lc *Lifecycle) retention(ctx context.Context) {
	now := lc.now()
	lc.sweepLocal(ctx)
	lc.sweepRemoved(ctx, now)
	if lc.cfg.Recordings.ExpireAfter.D() <= 0 {
		return
	}
	soon, err := lc.db.ExpiringBefore(ctx, now.Add(lc.cfg.Recordings.ExpireNotice.D()))
	if err != nil {
		lc.log.Warn().Err(err).Msg("Could not list expiring recordings")
		return
	}
	for _, r := range soon {
		if r.Status.Live() {
			continue
		}
		if !r.ExpiresAt.After(now) || r.ExpiryNoticedAt.IsZero() {
			lc.retain(ctx, r.ID, now)
		}
	}
}

// retain deletes one recording that has expired or tells its room that it soon will. In
// a fleet every instance lists the same rows: the one holding the recording's lease acts,
// on the row as it is once the lease is held (another may have acted already), so the
// room gets one notice and one deletion, never one per instance.
func (lc *Lifecycle) retain(ctx context.Context, recID string, now time.Time) {
	ok, release := lc.claimOnce(ctx, onceRemoval, recID)
	if !ok {
		return
	}
	defer release()
	r, err := lc.db.Recording(ctx, recID)
	if err != nil {
		lc.log.Warn().Err(err).Str("recording", recID).Msg("Could not read an expiring recording")
		return
	}
	if r.Status.Live() || r.Status.Gone() || r.ExpiresAt.IsZero() || r.ExpiresAt.After(now.Add(lc.cfg.Recordings.ExpireNotice.D())) {
		return
	}
	if !r.ExpiresAt.After(now) {
		lc.expire(ctx, r)
		return
	}
	if !r.ExpiryNoticedAt.IsZero() {
		return
	}
	text := fmt.Sprintf("🗑 The recording %s (%s, %s) will be deleted on %s, in %s. Download what you want to keep.",
		r.ID, r.StartedAt.UTC().Format("2006-01-02 15:04 UTC"), FormatDuration(time.Duration(r.DurationMs)*time.Millisecond),
		r.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC"), HumanDuration(r.ExpiresAt.Sub(now)))
	if evt := lc.chat.Notice(ctx, id.RoomID(r.RoomID), text, id.EventID(r.SummaryEvent)); evt == "" {
		return // try again next round
	}
	if _, err := lc.db.ModifyRecording(ctx, r.ID, func(r *storage.Recording) { r.ExpiryNoticedAt = now }); err != nil {
		lc.log.Warn().Err(err).Msg("Could not store the expiry notice")
	}
}

// removedOverlap is how far before its previous look each look for recordings deleted
// elsewhere reaches (sweepRemoved): a deletion's time is the deleting instance's clock,
// and a deletion that was under way at the previous look is seen at the next.
const removedOverlap = time.Hour

// sweepRemoved removes this instance's local folders of recordings that another instance
// of the fleet deleted (expired or !delete): deleteRecording removes only the folder of
// the instance that runs it, and the files of a deleted recording must be gone everywhere.
// Before the folder goes, this instance's uploads of its files stop and what they stored
// is deleted again (removeCopies): an upload that was running here when the other
// instance deleted may have stored a copy after that deletion emptied the store.
// It looks at the deletions since its previous look (with removedOverlap), not at every
// recording ever deleted; the first look of a process, which may have been stopped while
// others deleted, asks about the folders on its disk instead. start is the look's time.
func (lc *Lifecycle) sweepRemoved(ctx context.Context, start time.Time) {
	if lc.fleet == nil {
		return
	}
	var recs []*storage.Recording
	var err error
	if lc.removedLook.IsZero() {
		var folders []string
		if folders, err = localFolders(lc.cfg.Recordings.Dir); err == nil {
			recs, err = lc.db.RemovedAmong(ctx, folders)
		}
	} else {
		recs, err = lc.db.RemovedSince(ctx, lc.removedLook.Add(-removedOverlap))
	}
	if err != nil {
		lc.log.Warn().Err(err).Msg("Could not list the deleted recordings")
		return
	}
	failed := false
	for _, r := range recs {
		folder := filepath.Join(lc.cfg.Recordings.Dir, filepath.Base(r.Folder))
		if _, err := os.Lstat(folder); err != nil {
			continue
		}
		// This instance may still be uploading the files (or editing the summary with
		// their links): that stops first, then what its uploads stored before they
		// stopped, after the deleting instance emptied the store, is deleted again.
		lc.endDelivery(r.ID)
		if err := lc.removeCopies(ctx, r); err != nil {
			lc.log.Warn().Err(err).Str("recording", r.ID).Msg("Could not delete the copies of a deleted recording this instance uploaded; retrying")
			failed = true
			continue // the folder stays, so the next look comes back to it
		}
		if err := os.RemoveAll(folder); err != nil {
			lc.log.Warn().Err(err).Str("recording", r.ID).Msg("Could not delete the local copy of a deleted recording")
			failed = true
			continue
		}
		if lc.up != nil {
			lc.up.Forget(r.ID)
		}
		lc.log.Info().Str("recording", r.ID).Str("folder", r.Folder).Msg("Deleted the local copy of a recording deleted elsewhere in the fleet")
	}
	if !failed { // else the next look covers this one's deletions again
		lc.removedLook = start
	}
}

// localFolders lists the names of the folders in dir.
func localFolders(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list the recordings folder: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// removeCopies stops this process's uploads of r's files (waiting for them) and deletes
// its copies in object storage: the multipart uploads its rows name and every object
// under its folder.
func (lc *Lifecycle) removeCopies(ctx context.Context, r *storage.Recording) error {
	if lc.up != nil {
		lc.up.Cancel(r.ID)
		ups, err := lc.db.Uploads(ctx, r.ID)
		if err != nil {
			return err
		}
		for _, u := range ups {
			if u.UploadID != "" {
				if err := lc.s3.Abort(ctx, u.Key, u.UploadID); err != nil {
					return err
				}
			}
		}
	}
	if lc.s3 != nil {
		if err := lc.s3.DeletePrefix(ctx, lc.s3.FolderPrefix(r.Folder)); err != nil {
			return fmt.Errorf("delete the uploaded copies: %w", err)
		}
	}
	return nil
}

func (lc *Lifecycle) expire(ctx context.Context, r *storage.Recording) {
	if err := lc.deleteRecording(ctx, r, storage.RemovedByExpiry); err != nil {
		lc.log.Warn().Err(err).Str("recording", r.ID).Msg("Could not delete an expired recording; will retry")
		return
	}
	lc.log.Info().Str("recording", r.ID).Str("folder", r.Folder).Msg("Deleted an expired recording")
	lc.chat.Notice(ctx, id.RoomID(r.RoomID), fmt.Sprintf("🗑 Deleted the recording %s of %s: it was kept for %s (the recorder's retention setting).",
		r.ID, r.StartedAt.UTC().Format("2006-01-02 15:04 UTC"), HumanDuration(lc.cfg.Recordings.ExpireAfter.D())), "")
}

// deleteRecording removes a recording's files everywhere: uploads in flight are stopped,
// the copies in object storage and the local folder are deleted, and the rows are marked
// removed (expired or deleted). The rows stay, so !recordings still shows what was.
func (lc *Lifecycle) deleteRecording(ctx context.Context, r *storage.Recording, why storage.Removal) error {
	// A delivery still waiting for uploads of this recording ends now (even if the
	// deletion fails below and is tried again: nobody wants links to it any more).
	lc.endDelivery(r.ID)
	if err := lc.removeCopies(ctx, r); err != nil {
		return err
	}
	folder := filepath.Join(lc.cfg.Recordings.Dir, filepath.Base(r.Folder))
	if err := os.RemoveAll(folder); err != nil {
		return fmt.Errorf("delete the local files: %w", err)
	}
	_, err := lc.db.MarkRemoved(ctx, r.ID, why, lc.now())
	if lc.up != nil {
		lc.up.Forget(r.ID)
	}
	return err
}
