package lifecycle

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// EgressStore lets LiveKit Egress upload into storage.s3 under the keys native uploads
// use (prefix/folder/file), and records what it uploaded as confirmed copies, so links,
// !recordings, retention and the summary treat those files like the bot's own.
type EgressStore struct {
	lc *Lifecycle

	mu       sync.Mutex
	expected map[string]time.Time    // keys Egress was told to upload, and when
	events   map[string]egressObject // bucket notifications for those keys
	wake     chan struct{}
}

type egressObject struct {
	size int64
	etag string
}

// Bounds of the notifications kept.
const (
	egressExpectTTL  = 48 * time.Hour
	egressMaxExpect  = 100000
	egressEventWait  = 5 * time.Second
	egressHeadTries  = 4
	egressHeadBackof = time.Second
)

func newEgressStore(lc *Lifecycle) *EgressStore {
	return &EgressStore{lc: lc, expected: map[string]time.Time{}, events: map[string]egressObject{}, wake: make(chan struct{})}
}

// Upload returns the S3 target for a file of a call folder: the bot's own bucket and keys.
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
	s.Expect(key)
	return &livekit.S3Upload{
		AccessKey: access, Secret: secret, Region: c.Region, Endpoint: scheme + c.Endpoint,
		Bucket: c.Bucket, ForcePathStyle: c.PathStyle,
	}, key, nil
}

// Expect keeps the bucket's notifications for an object Egress will upload.
func (s *EgressStore) Expect(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if len(s.expected) >= egressMaxExpect {
		for k, at := range s.expected {
			if now.Sub(at) > egressExpectTTL {
				delete(s.expected, k)
				delete(s.events, k)
			}
		}
	}
	s.expected[key] = now
}

// storeEvent takes a bucket notification; it reports whether the object is one Egress
// uploads.
func (s *EgressStore) storeEvent(bucket, key string, size int64, etag string) bool {
	if bucket != s.lc.s3.Bucket() {
		return false
	}
	s.mu.Lock()
	_, ok := s.expected[key]
	if ok {
		s.events[key] = egressObject{size: size, etag: etag}
		close(s.wake)
		s.wake = make(chan struct{})
	}
	s.mu.Unlock()
	if ok {
		s.lc.log.Debug().Str("key", key).Int64("bytes", size).Msg("Store notification for a file LiveKit Egress uploaded")
	}
	return ok
}

// webhooks tells whether the store's notifications reach the bot.
func (s *EgressStore) webhooks() bool {
	h := s.lc.cfg.HTTP
	return h.Listen != "" && h.WebhookToken != ""
}

// Confirm checks an object Egress uploaded: it must be in the bucket with the size Egress
// reported; the store's notification, when it comes, confirms it too. The copy is
// recorded as the file's confirmed upload.
func (s *EgressStore) Confirm(ctx context.Context, folder, file, key string, size int64) (recorder.Upload, error) {
	var obj struct {
		size int64
		etag string
	}
	var err error
	for try := 0; try < egressHeadTries; try++ {
		o, herr := s.lc.s3.Head(ctx, key)
		if err = herr; err == nil {
			obj.size, obj.etag = o.Size, o.ETag
			break
		}
		select {
		case <-ctx.Done():
			return recorder.Upload{}, fmt.Errorf("%s is not in the bucket: %w", key, err)
		case <-time.After(time.Duration(try+1) * egressHeadBackof):
		}
	}
	if err != nil {
		return recorder.Upload{}, fmt.Errorf("%s is not in the bucket: %w", key, err)
	}
	if size > 0 && obj.size != size {
		return recorder.Upload{}, fmt.Errorf("the stored %s has %d bytes, Egress wrote %d", key, obj.size, size)
	}
	confirmed := "head"
	if ev, ok := s.waitEvent(ctx, key); ok {
		// A negative size is one the event did not give (versitygw's multipart
		// completions): the ETag decides then.
		if (ev.size == obj.size || ev.size < 0 && ev.etag != "") && (ev.etag == "" || ev.etag == obj.etag) {
			confirmed = "head+webhook"
		} else {
			s.lc.log.Warn().Str("key", key).Int64("event_bytes", ev.size).Int64("head_bytes", obj.size).Msg("The store's notification disagrees with the object")
		}
	} else if s.webhooks() {
		s.lc.log.Info().Str("key", key).Msg("No store notification for an Egress upload yet; confirmed by reading it back")
	}
	rec, err := s.lc.db.RecordingByFolder(ctx, folder)
	if err != nil {
		return recorder.Upload{}, fmt.Errorf("no state for the recording: %w", err)
	}
	u, err := s.lc.db.EnsureUpload(ctx, rec.ID, file, s.lc.s3.Bucket(), key)
	if err != nil {
		return recorder.Upload{}, err
	}
	now := time.Now()
	u.Status = storage.UploadConfirmed
	u.Bytes, u.ETag, u.ConfirmedBy, u.ConfirmedAt, u.LastError = obj.size, obj.etag, confirmed, now, ""
	if err := s.lc.db.UpdateUpload(ctx, u); err != nil {
		return recorder.Upload{}, err
	}
	s.forget(key)
	s.lc.m.UploadsConfirmed.Inc()
	s.lc.log.Info().Str("key", key).Int64("bytes", obj.size).Str("confirmed_by", confirmed).Msg("LiveKit Egress upload confirmed")
	return recorder.Upload{
		URL: "s3://" + s.lc.s3.Bucket() + "/" + key, Bucket: s.lc.s3.Bucket(), Key: key, Bytes: obj.size,
		ETag: obj.etag, Confirmed: confirmed, UploadedAt: now.UTC(),
	}, nil
}

// waitEvent waits a little for the store's notification of a key (it usually came first).
func (s *EgressStore) waitEvent(ctx context.Context, key string) (egressObject, bool) {
	if !s.webhooks() {
		return egressObject{}, false
	}
	deadline := time.After(egressEventWait)
	for {
		s.mu.Lock()
		ev, ok := s.events[key]
		wake := s.wake
		s.mu.Unlock()
		if ok {
			return ev, true
		}
		select {
		case <-wake:
		case <-deadline:
			return egressObject{}, false
		case <-ctx.Done():
			return egressObject{}, false
		}
	}
}

func (s *EgressStore) forget(key string) {
	s.mu.Lock()
	delete(s.expected, key)
	delete(s.events, key)
	s.mu.Unlock()
}
