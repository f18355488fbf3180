package upload

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/storage"
)

// evidence records the copies OnEvidence reports.
type evidence struct {
	mu    sync.Mutex
	files []string
}

func (ev *evidence) String() string {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return strings.Join(ev.files, ",")
}

// externalUploader is an uploader whose notifications are awaited for wait (closed with
// the test), and what it reports to OnEvidence.
func (e *env) externalUploader(t *testing.T, wait time.Duration) (*Uploader, *evidence) {
	ev := &evidence{}
	u := New(context.Background(), e.db, e.store, Options{
		Dir: e.dir, Poll: 10 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		EvidenceWait: wait, Log: zerolog.Nop(),
		OnEvidence: func(u *storage.Upload) {
			ev.mu.Lock()
			ev.files = append(ev.files, u.File+" "+u.ConfirmedBy)
			ev.mu.Unlock()
		},
	})
	t.Cleanup(func() { _ = u.Close(context.Background()) })
	return u, ev
}

// putObject stores data as another program would, and returns its ETag.
func (e *env) putObject(t *testing.T, key string, data []byte) string {
	t.Helper()
	etag, err := e.store.Put(context.Background(), key, data)
	if err != nil {
		t.Fatal(err)
	}
	return etag
}

// Another program's upload (LiveKit Egress) is confirmed like the uploader's own: its
// notification, kept when it comes before the check because the key was expected, counts;
// a notification for a key nobody expects is not ours.
func TestExternalUploadWithEarlyNotification(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u, _ := e.externalUploader(t, time.Hour)
	data := randomBytes(3000)
	key := "rec/call1/egress.ogg"
	etag := e.putObject(t, key, data)
	if ok, _ := u.ConfirmFromStore(ctx, "bucket", key, 3000, etag); ok {
		t.Fatal("a notification for a key nobody expects was taken")
	}
	u.Expect(key)
	if ok, err := u.ConfirmFromStore(ctx, "bucket", key, 3000, etag); !ok || err != nil {
		t.Fatalf("notification for an expected key: %v %v", ok, err)
	}
	if ok, _ := u.ConfirmFromStore(ctx, "other-bucket", key, 3000, etag); ok {
		t.Error("a notification of another bucket was taken")
	}
	row, err := u.ConfirmExternal(ctx, e.rec, "egress.ogg", key, 3000)
	if err != nil {
		t.Fatal(err)
	}
	if row.Status != storage.UploadConfirmed || row.ConfirmedBy != "head+webhook" || row.Bytes != 3000 || row.ETag != etag {
		t.Errorf("row %+v", row)
	}
	// Nothing to wait for: it returns at once (an hour would fail the test's deadline).
	done := make(chan struct{})
	go func() { u.WaitEvidence(ctx, e.rec); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("WaitEvidence waits for a copy that has its notification")
	}
}

// A copy confirmed by reading it back gets the notification that comes after: the row and
// OnEvidence say both, and WaitEvidence waits for it.
func TestExternalUploadWithLateNotification(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u, ev := e.externalUploader(t, time.Hour)
	data := randomBytes(2000)
	key := "rec/call1/late.ogg"
	etag := e.putObject(t, key, data)
	u.Expect(key)
	row, err := u.ConfirmExternal(ctx, e.rec, "late.ogg", key, 0)
	if err != nil || row.ConfirmedBy != "head" {
		t.Fatalf("confirm: %+v %v", row, err)
	}
	waited := make(chan struct{})
	go func() { u.WaitEvidence(ctx, e.rec); close(waited) }()
	select {
	case <-waited:
		t.Fatal("WaitEvidence did not wait for the notification")
	case <-time.After(50 * time.Millisecond):
	}
	// A notification of other bytes does not count.
	if ok, _ := u.ConfirmFromStore(ctx, "bucket", key, 2000, "0123456789abcdef0123456789abcdef"); !ok {
		t.Fatal("the notification was not taken")
	}
	if r, _ := e.db.UploadOf(ctx, e.rec, "late.ogg"); r.ConfirmedBy != "head" {
		t.Errorf("a notification of another object confirmed it: %q", r.ConfirmedBy)
	}
	if ok, err := u.ConfirmFromStore(ctx, "bucket", key, 2000, etag); !ok || err != nil {
		t.Fatal(ok, err)
	}
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatal("WaitEvidence did not end when the notification came")
	}
	if r, _ := e.db.UploadOf(ctx, e.rec, "late.ogg"); r.ConfirmedBy != "head+webhook" {
		t.Errorf("after the notification: %q", r.ConfirmedBy)
	}
	if got := ev.String(); got != "late.ogg head+webhook" {
		t.Errorf("OnEvidence: %q", got)
	}
}

// A missing object, or one of another size than the program wrote, is not confirmed.
func TestExternalUploadRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u, _ := e.externalUploader(t, 0)
	if _, err := u.ConfirmExternal(ctx, e.rec, "missing.ogg", "rec/call1/missing.ogg", 10); err == nil || !strings.Contains(err.Error(), "not in the bucket") {
		t.Errorf("missing object: %v", err)
	}
	sum := md5.Sum([]byte("12345"))
	if etag := e.putObject(t, "rec/call1/short.ogg", []byte("12345")); etag != hex.EncodeToString(sum[:]) {
		t.Fatal(etag)
	}
	if _, err := u.ConfirmExternal(ctx, e.rec, "short.ogg", "rec/call1/short.ogg", 10); err == nil || !strings.Contains(err.Error(), "has 5 bytes") {
		t.Errorf("wrong size: %v", err)
	}
	if ups, _ := e.db.Uploads(ctx, e.rec); len(ups) != 0 {
		t.Errorf("refused copies have rows: %+v", ups)
	}
}
