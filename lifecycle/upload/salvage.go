package upload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/matrix-recorder/matrix-recorder/storage"
	"github.com/matrix-recorder/matrix-recorder/storage/s3store"
)

// Salvage: an instance that takes a recording over from a dead one completes the copies
// of the files the dead one was writing, from what reached object storage: the whole
// parts of its multipart upload (their numbers, offsets and ETags are in the shared
// database) and the tail it kept beside them (tail.go) as the last part. The object is
// then the file as it was at the last tail, a few seconds before the instance died,
// unfinalised but playable (the writers keep their files playable at every cut the tail
// makes). The upload's row says confirmed, so the dead instance, if it comes back, does
// not upload the file again over that copy (completedElsewhere).

// Salvaged is what Salvage made of a file's copy.
type Salvaged struct {
	// Upload is the completed copy's row (confirmed); nil when there was nothing to
	// complete (nothing reached object storage, or the copy was complete already).
	Upload *storage.Upload
	// FromTail reports that the copy ends with the file's tail; false: it ends at the
	// last whole part.
	FromTail bool
	// MediaMs is the media time the copy reaches, from the file's start (-1: unknown).
	MediaMs int64
}

// salvageAttempts bounds the attempts of one salvage (the store may be down for a moment).
const salvageAttempts = 6

// maxSalvageTail bounds the tail a salvage assembles in memory.
const maxSalvageTail = 256 << 20

// Salvage completes, in the background, the copy of a file another instance was writing
// when it died. done, when set, is called with the result once it is known (not when the
// uploader closes first). Wait and Cancel cover it like an upload.
func (u *Uploader) Salvage(recordingID, folder, file string, done func(Salvaged)) {
	u.follower(recordingID, folder, file, func(f *follower) {
		backoff := u.opts.MinBackoff
		for attempt := 1; ; attempt++ {
			res, err := u.salvage(f.ctx, f)
			if err == nil {
				if done != nil {
					done(res)
				}
				return
			}
			if f.ctx.Err() != nil {
				return
			}
			if errors.Is(err, storage.ErrUploadGone) {
				u.removed(f.ctx, f, u.store.Key(f.folder, f.key.file), "")
				if done != nil {
					done(Salvaged{MediaMs: -1})
				}
				return
			}
			if attempt == salvageAttempts {
				f.log.Error().Err(err).Msg("Could not complete the copy the other instance left; what it uploaded stays as it is")
				if done != nil {
					done(Salvaged{MediaMs: -1})
				}
				return
			}
			f.log.Warn().Err(err).Msg("Could not complete the copy the other instance left; will retry")
			select {
			case <-f.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, u.opts.MaxBackoff)
		}
	})
}

// salvage is one attempt of Salvage.
func (u *Uploader) salvage(ctx context.Context, f *follower) (Salvaged, error) {
	none := Salvaged{MediaMs: -1}
	release, err := u.slot(ctx)
	if err != nil {
		return none, err
	}
	defer release()
	key := u.store.Key(f.folder, f.key.file)
	row, err := u.db.EnsureUpload(ctx, f.key.rec, f.key.file, u.store.Bucket(), key)
	if err != nil {
		return none, err
	}
	if row.Status != storage.UploadPending && row.Status != storage.UploadUploading {
		return none, nil // complete, failed or deleted: nothing to finish
	}
	if row.UploadID != "" {
		if err := u.loadChunks(ctx, f, row.ID); err != nil {
			return none, err
		}
	}
	bases := wholeParts(row.UploadID, f.chunks)
	segs, all, err := u.listSegments(ctx, key)
	if err != nil {
		return none, err
	}
	// The parts and tail that reach furthest: normally the tail starts where the whole
	// parts end; a kill between a part and the next tail leaves a tail that starts
	// earlier (read from its middle) or ends before the last part.
	got := map[string][]byte{}
	best, bestEnd := len(bases)-1, bases[len(bases)-1]
	var tail []byte
	ms := int64(-1)
	for j := len(bases) - 1; j >= 0; j-- {
		data, m, err := u.assemble(ctx, segs, bases[j], got)
		if err != nil {
			return none, err
		}
		if end := bases[j] + int64(len(data)); len(data) > 0 && end > bestEnd {
			best, bestEnd, tail, ms = j, end, data, m
		}
	}
	if bestEnd == 0 {
		return none, nil // nothing of the file reached object storage
	}
	var sums [][]byte
	parts := make([]s3store.Part, 0, best+1)
	for n := 1; n <= best; n++ {
		c := f.chunks[n]
		sum, err := hex.DecodeString(c.MD5)
		if err != nil {
			return none, fmt.Errorf("part %d's MD5 %q: %w", c.Number, c.MD5, err)
		}
		sums = append(sums, sum)
		parts = append(parts, s3store.Part{Number: n, ETag: c.ETag})
	}
	etag, err := u.complete(ctx, f, key, row.UploadID, parts, sums, tail)
	if s3store.IsNoSuchUpload(err) {
		return none, nil // the other instance came back and completed it (or gave it up)
	} else if err != nil {
		return none, err
	}
	var sha string // the file's SHA-256: known when the copy is the tail alone
	if row.UploadID == "" {
		h := sha256.Sum256(tail)
		sha = hex.EncodeToString(h[:])
	}
	// The other instance may have come back meanwhile and finished the file itself.
	cur, err := u.db.UploadOf(ctx, row.RecordingID, row.File)
	if err != nil {
		return none, err
	}
	if cur.Status.Gone() {
		return none, fmt.Errorf("complete the copy of %s: %w", row.File, storage.ErrUploadGone) // Salvage deletes it
	}
	if cur.Status != row.Status || cur.UploadID != row.UploadID {
		f.log.Info().Str("status", string(cur.Status)).Msg("The file's copy changed while it was completed; leaving it to the other instance")
		return none, nil
	}
	if _, err := u.uploaded(ctx, f, row, key, bestEnd, etag, sha); err != nil {
		return none, err
	}
	if err := u.store.Remove(context.WithoutCancel(ctx), all); err != nil {
		f.log.Warn().Err(err).Msg("Could not delete the file's tail; it stays beside the file")
	}
	f.log.Info().Int64("bytes", bestEnd).Int("parts", best).Int("tail_bytes", len(tail)).Int64("media_ms", ms).
		Msg("Completed the copy of a file the other instance was writing")
	return Salvaged{Upload: row, FromTail: len(tail) > 0, MediaMs: ms}, nil
}

// assemble reads the file's bytes from offset from on, as far as the tail segments reach
// without a hole; got caches the segments read. ms is the media time at the end.
func (u *Uploader) assemble(ctx context.Context, segs []tailSegment, from int64, got map[string][]byte) ([]byte, int64, error) {
	var out []byte
	ms := int64(-1)
	for pos := from; ; {
		best := -1
		for i, s := range segs {
			if s.from <= pos && s.to > pos && (best < 0 || s.to > segs[best].to) {
				best = i
			}
		}
		if best < 0 {
			return out, ms, nil
		}
		s := segs[best]
		if s.to-from > maxSalvageTail {
			return nil, -1, errors.New("the file's tail is larger than a salvage reads")
		}
		data, ok := got[s.key]
		if !ok {
			var err error
			if data, err = u.store.Get(ctx, s.key, s.to-s.from); err != nil {
				return nil, -1, err
			}
			if int64(len(data)) != s.to-s.from {
				return nil, -1, fmt.Errorf("tail segment %s has %d bytes, its name says %d", s.key, len(data), s.to-s.from)
			}
			got[s.key] = data
		}
		out = append(out, data[pos-s.from:]...)
		pos, ms = s.to, s.ms
	}
}
