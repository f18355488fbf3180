package upload

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/internal/devpg"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

type env struct {
	t      *testing.T
	db     *storage.DB
	store  *fakeStore
	dir    string
	rec    string
	folder string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	sc := storage.Config{Engine: storage.SQLite, Path: filepath.Join(dir, storage.FileName)}
	if devpg.WantPostgres(t) {
		sc = storage.Config{Engine: storage.Postgres, URI: pg.Database(t)}
	}
	db, err := storage.OpenConfig(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	r := &storage.Recording{RoomID: "!r:x", CallID: "c", Kind: "1:1", Folder: "call1"}
	if err := db.CreateRecording(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "call1"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, db: db, store: newFakeStore(), dir: dir, rec: r.ID, folder: "call1"}
}

func (e *env) uploader(ctx context.Context, confirmed *atomic.Int32) *Uploader {
	return New(ctx, e.db, e.store, Options{
		Dir: e.dir, Poll: 10 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		OnConfirmed: func(*storage.Upload) {
			if confirmed != nil {
				confirmed.Add(1)
			}
		},
		Log: zerolog.Nop(),
	})
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func (e *env) path(file string) string { return filepath.Join(e.dir, e.folder, file) }

func appendFile(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func patchFile(t *testing.T, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
}

func digest(t *testing.T, path string) (int64, string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return int64(len(data)), hex.EncodeToString(sum[:])
}

// finish tells u that file is final (its size and SHA-256 as they are now), waits for its
// upload and checks that the object is the file, byte for byte. It returns the size and
// the SHA-256.
func (e *env) finish(t *testing.T, u *Uploader, file string) (int64, string) {
	t.Helper()
	path := e.path(file)
	size, sum := digest(t, path)
	u.Finish(e.rec, e.folder, file, size, sum)
	if err := u.Wait(context.Background(), e.rec); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(path)
	if got := e.store.object(e.store.Key(e.folder, file)); !bytes.Equal(got, want) {
		t.Fatalf("the object of %s (%d bytes) differs from the file (%d bytes)", file, len(got), len(want))
	}
	return size, sum
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGrowingFileWithRewrites: whole parts go up while the file grows; when it is final,
// only the parts finalisation rewrote are sent again, and the object equals the file.
func TestGrowingFileWithRewrites(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var confirmed atomic.Int32
	u := e.uploader(ctx, &confirmed)
	defer u.Close(ctx)
	path := e.path("a.webm")
	u.Follow(e.rec, e.folder, "a.webm")
	appendFile(t, path, randomBytes(3<<20))
	appendFile(t, path, randomBytes(8<<20)) // 11 MiB: parts 1 and 2 are whole
	waitFor(t, "two parts sent while growing", func() bool { return e.store.sent(1) == 1 && e.store.sent(2) == 1 })
	if e.store.sent(3) != 0 {
		t.Fatal("a part that is not whole yet was sent")
	}
	// Finalisation: a header byte in part 1 changes and the tail grows.
	patchFile(t, path, 40, []byte{0x01, 2, 3, 4, 5, 6, 7, 8})
	appendFile(t, path, randomBytes(1<<20))
	size, sum := e.finish(t, u, "a.webm")
	if e.store.sent(1) != 2 || e.store.sent(2) != 1 || e.store.sent(3) != 1 {
		t.Errorf("parts sent: 1=%d 2=%d 3=%d, want 2 1 1 (only the rewritten part again)", e.store.sent(1), e.store.sent(2), e.store.sent(3))
	}
	row, err := e.db.UploadOf(ctx, e.rec, "a.webm")
	if err != nil || row.Status != storage.UploadConfirmed || row.SHA256 != sum || row.Bytes != size || row.ConfirmedBy != "head" {
		t.Errorf("upload row: %+v %v", row, err)
	}
	if confirmed.Load() != 1 {
		t.Errorf("OnConfirmed called %d times", confirmed.Load())
	}
	if cs, _ := e.db.Chunks(ctx, row.ID); len(cs) != 0 {
		t.Errorf("chunks kept after completion: %d", len(cs))
	}
}

// TestStoreDownAndRestart: the store fails for a while and the process restarts in the
// middle; the parts already sent are not sent again and the copy completes.
func TestStoreDownAndRestart(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	u := e.uploader(ctx, nil)
	path := e.path("b.ogg")
	appendFile(t, path, randomBytes(6<<20))
	u.Follow(e.rec, e.folder, "b.ogg")
	waitFor(t, "part 1", func() bool { return e.store.sent(1) == 1 })
	e.store.set(func(s *fakeStore) { s.down = true })
	appendFile(t, path, randomBytes(5<<20))
	time.Sleep(100 * time.Millisecond)
	row, _ := e.db.UploadOf(context.Background(), e.rec, "b.ogg")
	if row.Attempts == 0 || row.LastError == "" {
		t.Errorf("failed attempts not recorded: %+v", row)
	}
	// The process "dies".
	cancel()
	if err := u.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.store.set(func(s *fakeStore) { s.down = false })
	var confirmed atomic.Int32
	u2 := e.uploader(context.Background(), &confirmed)
	defer u2.Close(context.Background())
	e.finish(t, u2, "b.ogg")
	if e.store.sent(1) != 1 {
		t.Errorf("part 1 sent %d times across the restart, want 1", e.store.sent(1))
	}
	if confirmed.Load() != 1 {
		t.Errorf("confirmed %d", confirmed.Load())
	}
}

// TestLostMultipartUpload: the store forgets the upload (lifecycle rule, manual abort);
// the uploader starts over instead of failing forever.
func TestLostMultipartUpload(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.uploader(ctx, nil)
	defer u.Close(ctx)
	path := e.path("c.ogg")
	appendFile(t, path, randomBytes(6<<20))
	u.Follow(e.rec, e.folder, "c.ogg")
	waitFor(t, "part 1", func() bool { return e.store.sent(1) == 1 })
	e.store.set(func(s *fakeStore) { s.uploads = map[string]map[int][]byte{} })
	appendFile(t, path, randomBytes(100))
	e.finish(t, u, "c.ogg")
}

func TestSmallFileAndWebhook(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.uploader(ctx, nil)
	defer u.Close(ctx)
	path := e.path("d.ogg")
	appendFile(t, path, randomBytes(1000))
	size, _ := e.finish(t, u, "d.ogg")
	row, _ := e.db.UploadOf(ctx, e.rec, "d.ogg")
	if row.Status != storage.UploadConfirmed || e.store.sent(1) != 0 {
		t.Fatalf("small file: %+v, multipart parts %d", row, e.store.sent(1))
	}
	ok, err := u.ConfirmFromStore(ctx, "bucket", "rec/call1/d.ogg", size, row.ETag)
	if !ok || err != nil {
		t.Fatalf("webhook: %v %v", ok, err)
	}
	row, _ = e.db.UploadOf(ctx, e.rec, "d.ogg")
	if row.ConfirmedBy != "head+webhook" {
		t.Errorf("confirmed by %q", row.ConfirmedBy)
	}
	if ok, _ := u.ConfirmFromStore(ctx, "bucket", "rec/other", 1, "x"); ok {
		t.Error("an unknown key matched")
	}
}

func TestMissingFileIsTerminal(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.uploader(ctx, nil)
	defer u.Close(ctx)
	u.Finish(e.rec, e.folder, "gone.ogg", 10, "")
	if err := u.Wait(ctx, e.rec); err != nil {
		t.Fatal(err)
	}
	row, _ := e.db.UploadOf(ctx, e.rec, "gone.ogg")
	if row.Status != storage.UploadFailed {
		t.Errorf("status %s", row.Status)
	}
}

// TestEarlyStoreEvent: the store's notification can come before the uploader has recorded
// the upload as complete; it still counts. One that does not give the size (negative:
// versitygw's multipart completions say 0) confirms an upload by its ETag alone, and only
// by the right one.
func TestEarlyStoreEvent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.uploader(ctx, nil)
	defer u.Close(ctx)
	right := func(sum [16]byte) string { return hex.EncodeToString(sum[:]) }
	for _, tc := range []struct {
		file  string
		sized bool // the event gives the size
		etag  func(sum [16]byte) string
	}{
		{"sized.ogg", true, right},
		{"right.ogg", false, right},
		{"wrong.ogg", false, func([16]byte) string { return "0123456789abcdef0123456789abcdef" }},
		{"empty.ogg", false, func([16]byte) string { return "" }},
	} {
		path := e.path(tc.file)
		data := randomBytes(3000)
		appendFile(t, path, data)
		key := "rec/call1/" + tc.file
		if _, err := e.db.EnsureUpload(ctx, e.rec, tc.file, "bucket", key); err != nil {
			t.Fatal(err)
		}
		size := int64(-1)
		if tc.sized {
			size = int64(len(data))
		}
		if ok, err := u.ConfirmFromStore(ctx, "bucket", key, size, tc.etag(md5.Sum(data))); !ok || err != nil {
			t.Fatalf("%s: early event: %v %v", tc.file, ok, err)
		}
		size, sha := digest(t, path)
		u.Finish(e.rec, e.folder, tc.file, size, sha)
	}
	if err := u.Wait(ctx, e.rec); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file string
		by   string
	}{{"sized.ogg", "head+webhook"}, {"right.ogg", "head+webhook"}, {"wrong.ogg", "head"}, {"empty.ogg", "head"}} {
		row, _ := e.db.UploadOf(ctx, e.rec, tc.file)
		if row.Status != storage.UploadConfirmed || row.ConfirmedBy != tc.by {
			t.Errorf("%s: %s confirmed by %q, want %q", tc.file, row.Status, row.ConfirmedBy, tc.by)
		}
	}
	// After the HEAD check, a late event without a size adds the webhook when the ETag is
	// the object's.
	row, _ := e.db.UploadOf(ctx, e.rec, "wrong.ogg")
	if ok, err := u.ConfirmFromStore(ctx, "bucket", row.Key, -1, row.ETag); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if row, _ = e.db.UploadOf(ctx, e.rec, "wrong.ogg"); row.ConfirmedBy != "head+webhook" {
		t.Errorf("late event: confirmed by %q", row.ConfirmedBy)
	}
}

// waitDone waits for the recording's uploads to end (they must: nothing is left to do).
func (e *env) waitDone(t *testing.T, u *Uploader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := u.Wait(ctx, e.rec); err != nil {
		t.Fatalf("the uploads of the deleted recording did not stop: %v", err)
	}
}

// A small file's copy made while another instance deletes the recording (after that
// deletion emptied the store, before it marked the rows deleted) is deleted again, and
// the row stays deleted instead of being written back to uploaded.
func TestDeletedWhileASmallFileIsPut(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.uploader(ctx, nil)
	defer u.Close(ctx)
	appendFile(t, e.path("a.ogg"), randomBytes(1000))
	if _, err := e.db.EnsureUpload(ctx, e.rec, "a.ogg", e.store.Bucket(), e.store.Key(e.folder, "a.ogg")); err != nil {
		t.Fatal(err)
	}
	e.store.set(func(s *fakeStore) {
		s.beforePut = func(string) {
			if _, err := e.db.MarkRemoved(ctx, e.rec, storage.RemovedByRequest, time.Now()); err != nil {
				t.Error(err)
			}
		}
	})
	size, sum := digest(t, e.path("a.ogg"))
	u.Finish(e.rec, e.folder, "a.ogg", size, sum)
	e.waitDone(t, u)
	if keys := e.store.keys(""); len(keys) != 0 {
		t.Errorf("objects left after the deletion: %q", keys)
	}
	if row, err := e.db.UploadOf(ctx, e.rec, "a.ogg"); err != nil || row.Status != storage.UploadDeleted {
		t.Errorf("the row after the upload ran on: %+v %v; want deleted", row, err)
	}
}

// A large file's multipart upload that another instance's deletion aborted is not
// started again from the first byte (the lost upload is the deletion's doing): the upload
// stops, nothing is stored, and the row stays deleted.
func TestDeletedWhileALargeFileIsSent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.uploader(ctx, nil)
	defer u.Close(ctx)
	path := e.path("b.ogg")
	appendFile(t, path, randomBytes(6<<20))
	u.Follow(e.rec, e.folder, "b.ogg")
	waitFor(t, "part 1", func() bool { return e.store.sent(1) == 1 })
	// The other instance deletes: it aborts the open upload, empties the store and marks
	// the rows deleted.
	row, err := e.db.UploadOf(ctx, e.rec, "b.ogg")
	if err != nil || row.UploadID == "" {
		t.Fatalf("the row while sending: %+v %v", row, err)
	}
	if err := e.store.Abort(ctx, row.Key, row.UploadID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.MarkRemoved(ctx, e.rec, storage.RemovedByRequest, time.Now()); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, randomBytes(5<<20)) // part 2 finds the upload gone
	size, sum := digest(t, path)
	u.Finish(e.rec, e.folder, "b.ogg", size, sum)
	e.waitDone(t, u)
	if keys := e.store.keys(""); len(keys) != 0 || e.store.openUploads() != 0 {
		t.Errorf("left after the deletion: objects %q, %d open uploads", keys, e.store.openUploads())
	}
	if e.store.sent(1) != 1 {
		t.Errorf("part 1 sent %d times: the upload started again", e.store.sent(1))
	}
	if row, err := e.db.UploadOf(ctx, e.rec, "b.ogg"); err != nil || row.Status != storage.UploadDeleted {
		t.Errorf("the row after the upload ran on: %+v %v; want deleted", row, err)
	}
}

// An upload that keeps failing (the store is down) stops once its recording is deleted,
// instead of retrying for ever against a row it may no longer write.
func TestDeletedWhileTheStoreIsDown(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.uploader(ctx, nil)
	defer u.Close(ctx)
	appendFile(t, e.path("c.ogg"), randomBytes(6<<20))
	e.store.set(func(s *fakeStore) { s.down = true })
	u.Follow(e.rec, e.folder, "c.ogg")
	waitFor(t, "a failed attempt recorded", func() bool {
		row, err := e.db.UploadOf(ctx, e.rec, "c.ogg")
		return err == nil && row.Attempts > 0
	})
	if _, err := e.db.MarkRemoved(ctx, e.rec, storage.RemovedByRequest, time.Now()); err != nil {
		t.Fatal(err)
	}
	e.waitDone(t, u)
}
