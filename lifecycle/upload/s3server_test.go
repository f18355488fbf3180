package upload

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/matrix-recorder/matrix-recorder/internal/devs3"
	"github.com/matrix-recorder/matrix-recorder/internal/testenv"
	"github.com/matrix-recorder/matrix-recorder/storage"
	"github.com/matrix-recorder/matrix-recorder/storage/s3store"
)

// TestIntegrationS3GrowingFileAndOutage runs the uploader against a real S3 server
// (versitygw, internal/devs3): parts go up while the file grows, the server goes away in
// the middle and comes back on the same port and folder, finalisation rewrites bytes in
// the first part, the object ends up byte for byte the file, and the server's event
// notification of the multipart completion, taken by the recorder's own /s3/events
// handler, confirms the upload too.
func TestIntegrationS3GrowingFileAndOutage(t *testing.T) {
	testenv.RequireIntegration(t)
	ctx := testenv.Context(t)
	log := testenv.Logger(t)
	e := newEnv(t)

	// The recorder's webhook endpoint, up before the S3 server starts (it posts a test
	// event then), handing events to the uploader once there is one.
	const token = "webhook-token-0123456789"
	var up atomic.Pointer[Uploader]
	var events atomic.Int32
	hook := httptest.NewServer(Events(EventOptions{
		Token: token, Log: log,
		Confirm: func(ctx context.Context, bucket, key string, size int64, etag string) (bool, error) {
			events.Add(1)
			if u := up.Load(); u != nil {
				return u.ConfirmFromStore(ctx, bucket, key, size, etag)
			}
			return false, nil
		},
	}))
	defer hook.Close()

	srv, store := startS3(t, ctx, devs3.Options{Logger: &log, Webhook: hook.URL + EventsPath + "?token=" + token})
	if err := store.Check(ctx); err != nil {
		t.Fatal(err)
	}
	var confirmed, failures atomic.Int32
	u := New(ctx, e.db, store, Options{
		Dir: e.dir, Poll: 50 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		OnConfirmed: func(*storage.Upload) { confirmed.Add(1) },
		OnFailure:   func(*storage.Upload, error) { failures.Add(1) },
		Log:         log,
	})
	up.Store(u)
	defer u.Close(context.Background())
	path := e.path("alice.webm")
	u.Follow(e.rec, e.folder, "alice.webm")
	appendFile(t, path, randomBytes(6<<20))
	row := func() *storage.Upload {
		r, _ := e.db.UploadOf(ctx, e.rec, "alice.webm")
		return r
	}
	waitFor(t, "part 1 in the store while the file grows", func() bool {
		r := row()
		if r == nil || r.UploadID == "" {
			return false
		}
		cs, _ := e.db.Chunks(ctx, r.ID)
		return len(cs) == 1
	})
	client, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	parts, err := minio.Core{Client: client}.ListObjectParts(ctx, "rec", "calls/call1/alice.webm", row().UploadID, 0, 100)
	if err != nil || len(parts.ObjectParts) != 1 || parts.ObjectParts[0].Size != MinPartSize {
		t.Fatalf("the store's view of the open upload: %+v %v", parts.ObjectParts, err)
	}

	if err := srv.Halt(); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, randomBytes(6<<20))
	waitFor(t, "failed attempts while the store is down", func() bool { return failures.Load() > 0 })
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	patchFile(t, path, 4, []byte("FINAL"))
	appendFile(t, path, randomBytes(12345))
	size, sum := digest(t, path)
	u.Finish(e.rec, e.folder, "alice.webm", size, sum)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := u.Wait(wctx, e.rec); err != nil {
		t.Fatal(err)
	}
	obj, err := client.GetObject(ctx, "rec", "calls/call1/alice.webm", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(e.dir, e.folder, "alice.webm"))
	if !bytes.Equal(got, want) {
		t.Fatalf("object (%d bytes) differs from the file (%d bytes)", len(got), len(want))
	}
	if r := row(); r.Status != storage.UploadConfirmed || r.SHA256 != sum || confirmed.Load() != 1 {
		t.Errorf("upload row %+v, confirmed %d", r, confirmed.Load())
	}
	// The store's notification of the completed multipart upload (versitygw gives no size
	// there, only the ETag) confirms it as well, whichever came first.
	waitFor(t, "the store's event to confirm the upload", func() bool {
		return strings.Contains(row().ConfirmedBy, "webhook")
	})
	t.Logf("confirmed by %s after %d store events", row().ConfirmedBy, events.Load())
	// Nothing is left open in the bucket.
	if res, err := (minio.Core{Client: client}).ListMultipartUploads(ctx, "rec", "calls/", "", "", "", 100); err != nil || len(res.Uploads) != 0 {
		t.Errorf("open uploads left: %+v %v", res.Uploads, err)
	}
}

// startS3 starts the harness's S3 server (versitygw) with a bucket "rec" and returns it
// with a store on it under the prefix "calls"; it is stopped when the test ends.
func startS3(t *testing.T, ctx context.Context, opts devs3.Options) (*devs3.Server, *s3store.Store) {
	t.Helper()
	srv, err := devs3.Start(ctx, opts)
	if err != nil {
		testenv.SkipOrFail(t, "S3 server: %v", err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	testenv.LogOnFailure(t, "versitygw", func() string { return srv.LogTail(4000) })
	if err := srv.CreateBucket(ctx, "rec"); err != nil {
		t.Fatal(err)
	}
	store, err := s3store.New(s3store.Config{Endpoint: srv.Endpoint(), Bucket: "rec", Region: devs3.Region, Prefix: "calls",
		AccessKey: srv.AccessKey(), SecretKey: srv.SecretKey(), PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	return srv, store
}
