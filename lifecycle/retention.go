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
	lc.sweepLocal(ctx)
	if lc.cfg.Recordings.ExpireAfter.D() <= 0 {
		return
	}
	now := lc.now()
	soon, err := lc.db.ExpiringBefore(ctx, now.Add(lc.cfg.Recordings.ExpireNotice.D()))
	if err != nil {
		lc.log.Warn().Err(err).Msg("Could not list expiring recordings")
		return
	}
	for _, r := range soon {
		if r.Status.Live() {
			continue
		}
		if !r.ExpiresAt.After(now) {
			lc.expire(ctx, r)
			continue
		}
		if !r.ExpiryNoticedAt.IsZero() {
			continue
		}
		text := fmt.Sprintf("🗑 The recording %s (%s, %s) will be deleted on %s, in %s. Download what you want to keep.",
			r.ID, r.StartedAt.UTC().Format("2006-01-02 15:04 UTC"), FormatDuration(time.Duration(r.DurationMs)*time.Millisecond),
			r.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC"), HumanDuration(r.ExpiresAt.Sub(now)))
		if evt := lc.chat.Notice(ctx, id.RoomID(r.RoomID), text, id.EventID(r.SummaryEvent)); evt == "" {
			continue // try again next round
		}
		if _, err := lc.db.ModifyRecording(ctx, r.ID, func(r *storage.Recording) { r.ExpiryNoticedAt = now }); err != nil {
			lc.log.Warn().Err(err).Msg("Could not store the expiry notice")
		}
	}
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

// uploadConfirmed writes where a file went into the manifest and, with
// storage.s3.delete_local_after_upload and no delay, removes the local copy.
func (lc *Lifecycle) uploadConfirmed(u *storage.Upload) {
	lc.m.UploadsConfirmed.Inc()
	ctx, cancel := lc.dbCtx()
	defer cancel()
	rec, err := lc.db.Recording(ctx, u.RecordingID)
	if err != nil {
		lc.log.Warn().Err(err).Msg("Upload confirmed for an unknown recording")
		return
	}
	info := recorder.Upload{
		URL: "s3://" + u.Bucket + "/" + u.Key, Bucket: u.Bucket, Key: u.Key, Bytes: u.Bytes, SHA256: u.SHA256,
		ETag: u.ETag, Confirmed: u.ConfirmedBy, UploadedAt: u.ConfirmedAt.UTC(),
	}
	if err := lc.setUpload(rec.Folder, u.File, info); err != nil {
		lc.log.Warn().Err(err).Str("file", u.File).Msg("Could not write the upload into the manifest")
		return
	}
	if s3c := lc.cfg.Storage.S3; s3c.DeleteLocalAfterUpload && s3c.DeleteLocalDelay.D() == 0 {
		lc.deleteLocalCopy(ctx, rec, u.File, info)
	}
}

// deleteLocalCopy removes a file whose uploaded copy is confirmed, saying so in the
// manifest first (so the manifest never points at a file that is neither here nor noted).
func (lc *Lifecycle) deleteLocalCopy(ctx context.Context, rec *storage.Recording, file string, info recorder.Upload) {
	info.LocalDeleted = true
	if err := lc.setUpload(rec.Folder, file, info); err != nil {
		lc.log.Warn().Err(err).Str("file", file).Msg("Could not note the local deletion in the manifest; keeping the file")
		return
	}
	path := filepath.Join(lc.cfg.Recordings.Dir, rec.Folder, file)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		lc.log.Warn().Err(err).Str("file", file).Msg("Could not remove the local copy after the upload")
		return
	}
	parts, err := lc.db.Parts(ctx, rec.ID)
	if err != nil {
		return
	}
	for _, p := range parts {
		if p.File == file {
			p.LocalDeleted = true
			if err := lc.db.SavePart(ctx, p); err != nil {
				lc.log.Warn().Err(err).Msg("Could not record the local deletion")
			}
		}
	}
	lc.log.Info().Str("file", file).Msg("Removed the local copy; the uploaded one is confirmed")
}

// sweepLocal removes the local copies of uploaded files delete_local_delay after their
// recording ended, once the summary is out (the after-call work reads the files first).
func (lc *Lifecycle) sweepLocal(ctx context.Context) {
	s3c := lc.cfg.Storage.S3
	if lc.s3 == nil || !s3c.DeleteLocalAfterUpload || s3c.DeleteLocalDelay.D() == 0 {
		return
	}
	recs, err := lc.db.RecordingsWithStatus(ctx, storage.RecordingUploaded, storage.RecordingNotified)
	if err != nil {
		return
	}
	now := lc.now()
	for _, r := range recs {
		if r.EndedAt.IsZero() || now.Sub(r.EndedAt) < s3c.DeleteLocalDelay.D() {
			continue
		}
		m, err := recorder.ReadManifest(filepath.Join(lc.cfg.Recordings.Dir, r.Folder))
		if err != nil {
			continue
		}
		for _, tr := range m.Tracks {
			if tr.Upload != nil && !tr.Upload.LocalDeleted {
				if u, err := lc.db.UploadOf(ctx, r.ID, tr.File); err == nil && u.Status == storage.UploadConfirmed {
					lc.deleteLocalCopy(ctx, r, tr.File, *tr.Upload)
				}
			}
		}
	}
}

// setUpload writes upload info into a manifest: through the session while it is live,
// else into the folder's manifest file.
func (lc *Lifecycle) setUpload(folder, file string, info recorder.Upload) error {
	// Holding mu keeps the session live (onSessionEnd waits) until its write is done: once
	// it ended, others (the after-call work) rewrite the file, and a late write from the
	// session's own copy would undo theirs.
	lc.mu.Lock()
	if lr := lc.live[folder]; lr != nil {
		defer lc.mu.Unlock()
		return lr.sess.SetUpload(file, info)
	}
	lc.mu.Unlock()
	lc.manifests.Lock()
	defer lc.manifests.Unlock()
	return recorder.SetUpload(filepath.Join(lc.cfg.Recordings.Dir, folder), file, info)
}
