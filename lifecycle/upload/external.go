package upload

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/matrix-recorder/matrix-recorder/storage"
)

// Files another program uploads into the bucket (LiveKit Egress writes its tracks there
// itself) are recorded and confirmed here like the uploader's own: the same rows, the same
// early notifications, the same upgrade when a notification comes after the check.

// Bounds of what is kept for other programs' uploads.
const (
	expectTTL     = 48 * time.Hour
	maxExpected   = 100000
	headTries     = 4
	maxAwaitedAll = 100000
)

// externals is what the uploader keeps for other programs' uploads.
type externals struct {
	mu       sync.Mutex
	expected map[string]time.Time // keys another program was told to upload, and when
	// awaited are copies confirmed by reading them back only, whose notification the
	// summary waits for a little (WaitEvidence), by key.
	awaited map[string]awaited
	wake    chan struct{} // closed and replaced when an awaited notification came
}

type awaited struct {
	rec   string
	until time.Time
}

func newExternals() externals {
	return externals{expected: map[string]time.Time{}, awaited: map[string]awaited{}, wake: make(chan struct{})}
}

func (x *externals) expecting(key string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	_, ok := x.expected[key]
	return ok
}

func (x *externals) evidenceCame(key string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.awaited[key]; ok {
		delete(x.awaited, key)
		close(x.wake)
		x.wake = make(chan struct{})
	}
}

// Expect says another program will upload key into the bucket: the store's notification
// for it is kept until the copy is confirmed (ConfirmExternal).
func (u *Uploader) Expect(key string) {
	x := &u.external
	x.mu.Lock()
	defer x.mu.Unlock()
	now := time.Now()
	if len(x.expected) >= maxExpected {
		for k, at := range x.expected {
			if now.Sub(at) > expectTTL {
				delete(x.expected, k)
			}
		}
	}
	x.expected[key] = now
}

// ConfirmExternal checks an object another program uploaded for a file of a recording: it
// must be in the bucket (read back; retried a few times, the program may report before
// the store shows it) with size bytes when size > 0. A notification the store sent for it
// counts too. The copy is recorded as the file's confirmed upload, and returned. A
// notification that comes later adds to it (ConfirmFromStore, OnEvidence); WaitEvidence
// waits a little for it.
func (u *Uploader) ConfirmExternal(ctx context.Context, recordingID, file, key string, size int64) (*storage.Upload, error) {
	var err error
	var size0 int64
	var etag string
	for try := 0; try < headTries; try++ {
		obj, herr := u.store.Head(ctx, key)
		if err = herr; err == nil {
			size0, etag = obj.Size, obj.ETag
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s is not in the bucket: %w", key, err)
		case <-time.After(time.Duration(try+1) * u.opts.MinBackoff):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s is not in the bucket: %w", key, err)
	}
	if size > 0 && size0 != size {
		return nil, fmt.Errorf("the stored %s has %d bytes, the uploader wrote %d", key, size0, size)
	}
	u.confirmMu.Lock()
	defer u.confirmMu.Unlock()
	row, err := u.db.EnsureUpload(ctx, recordingID, file, u.store.Bucket(), key)
	if err != nil {
		return nil, err
	}
	row.Bytes, row.ETag = size0, etag
	if err := u.markConfirmed(ctx, row, readBack(u.earlyEvent(row.Bucket, key, size0, etag))); err != nil {
		return nil, err
	}
	x := &u.external
	x.mu.Lock()
	delete(x.expected, key)
	if row.ConfirmedBy == "head" && u.opts.EvidenceWait > 0 {
		if len(x.awaited) >= maxAwaitedAll {
			clear(x.awaited)
		}
		x.awaited[key] = awaited{rec: recordingID, until: time.Now().Add(u.opts.EvidenceWait)}
	}
	x.mu.Unlock()
	u.log.Info().Str("key", key).Int64("bytes", size0).Str("confirmed_by", row.ConfirmedBy).Msg("Upload by another program confirmed")
	return row, nil
}

// WaitEvidence waits until the store's notifications came for the copies of a
// recording that other programs uploaded and that were confirmed by reading them back
// only, each at most EvidenceWait after its confirmation, or until ctx ends.
func (u *Uploader) WaitEvidence(ctx context.Context, recordingID string) {
	x := &u.external
	for {
		now := time.Now()
		var next time.Time
		x.mu.Lock()
		for k, a := range x.awaited {
			switch {
			case !now.Before(a.until):
				delete(x.awaited, k) // waited long enough: read back is what it stays
			case a.rec == recordingID && (next.IsZero() || a.until.Before(next)):
				next = a.until
			}
		}
		wake := x.wake
		x.mu.Unlock()
		if next.IsZero() {
			return
		}
		t := time.NewTimer(next.Sub(now))
		select {
		case <-wake:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		t.Stop()
	}
}
