package lifecycle

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/livekit/protocol/livekit"

	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// EgressStore lets LiveKit Egress upload into storage.s3 under the keys native uploads
// use (prefix/folder/file), and records what it uploaded as confirmed copies through the
// uploader, so links, !recordings, retention and the summary treat those files like the
// recorder's own. It is call/egress's Store.
type EgressStore struct{ lc *Lifecycle }

// Upload returns the S3 target for a file of a call folder: the recorder's own bucket and
// keys. From then on the store's notification for the key is kept.
func (s *EgressStore) Upload(folder, file string) (*livekit.S3Upload, string, error) {
	c := s.lc.cfg.Storage.S3
	access, secret, err := c.Credentials()
	if err != nil {
		return nil, "", err
	}
	scheme := "https://"
	if !c.TLS {
		scheme = "http://"
	}
	key := s.lc.s3.Key(folder, file)
	s.lc.up.Expect(key)
	return &livekit.S3Upload{
		AccessKey: access, Secret: secret, Region: c.Region, Endpoint: scheme + c.Endpoint,
		Bucket: c.Bucket, ForcePathStyle: c.PathStyle,
	}, key, nil
}

// Expect keeps the store's notification for an object Egress will upload (one a
// recording taken over after a restart goes on writing).
func (s *EgressStore) Expect(key string) { s.lc.up.Expect(key) }

// Confirm checks an object Egress uploaded: it must be in the bucket with the size Egress
// reported. The copy is recorded as the file's confirmed upload. It does not wait for the
// store's notification: one that came already counts, one that comes later is added to
// the row and the manifest, and the summary waits a little for it (WaitEvidence).
func (s *EgressStore) Confirm(ctx context.Context, folder, file, key string, size int64) (recorder.Upload, error) {
	lc := s.lc
	lc.flushRows(ctx, filepath.Base(folder)) // the recording's row
	rec, err := lc.db.RecordingByFolder(ctx, filepath.Base(folder))
	if err != nil {
		return recorder.Upload{}, fmt.Errorf("no state for the recording: %w", err)
	}
	u, err := lc.up.ConfirmExternal(ctx, rec.ID, file, key, size)
	if err != nil {
		return recorder.Upload{}, err
	}
	lc.m.UploadsConfirmed.Inc()
	return uploadInfo(u), nil
}
