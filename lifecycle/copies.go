package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// The copies of the files in object storage, as the manifest tells them: where each went
// and how it was checked, and the local copies removed after their upload.

// uploadInfo is a confirmed copy as the manifest tells it.
func uploadInfo(u *storage.Upload) recorder.Upload {
	return recorder.Upload{
		URL: "s3://" + u.Bucket + "/" + u.Key, Bucket: u.Bucket, Key: u.Key, Bytes: u.Bytes, SHA256: u.SHA256,
		ETag: u.ETag, Confirmed: u.ConfirmedBy, UploadedAt: u.ConfirmedAt.UTC(),
	}
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
	info := uploadInfo(u)
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
	return lc.updateFile(folder, file, func(e *recorder.FileEntry) { e.Upload = &info })
}

// evidence writes into the manifest that the store's notification confirmed a copy that
// was confirmed by reading it back (the uploader's OnEvidence). A file whose completion
// the recording's queue has not written yet gets it then: the manifest entry that
// completion writes (an external file's, with its upload) must not undo it.
func (lc *Lifecycle) evidence(u *storage.Upload) {
	ctx, cancel := lc.dbCtx()
	defer cancel()
	rec, err := lc.db.Recording(ctx, u.RecordingID)
	if err != nil {
		return
	}
	lc.mu.Lock()
	if lr := lc.live[rec.Folder]; lr != nil && !lr.completed[u.File] {
		lr.evidence[u.File] = u.ConfirmedBy
		lc.mu.Unlock()
		return
	}
	lc.mu.Unlock()
	lc.applyEvidence(rec.Folder, u.File, u.ConfirmedBy)
}

// applyEvidence sets how a file's copy was confirmed in the manifest of a folder.
func (lc *Lifecycle) applyEvidence(folder, file, confirmedBy string) {
	err := lc.updateUpload(folder, file, func(info *recorder.Upload) { info.Confirmed = confirmedBy })
	if err != nil {
		lc.log.Warn().Err(err).Str("file", file).Msg("Could not note the store's notification in the manifest")
	}
}

// updateUpload changes the upload a manifest records for a file (there must be one;
// else nothing is written), through updateFile like every other change of a file's entry.
func (lc *Lifecycle) updateUpload(folder, file string, fn func(info *recorder.Upload)) error {
	return lc.updateFileIf(folder, file, func(e recorder.FileEntry) error {
		if e.Upload == nil {
			return fmt.Errorf("%s: no upload in the manifest", file)
		}
		return nil
	}, func(e *recorder.FileEntry) { fn(e.Upload) })
}
