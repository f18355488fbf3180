package lifecycle

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/lifecycle/upload"
	"github.com/matrix-recorder/matrix-recorder/storage"
	"github.com/matrix-recorder/matrix-recorder/storage/s3store"
)

// A summary that could not be posted (the homeserver was down) is posted while the bot
// runs, with its headline, once the homeserver is back: not only at the next start.
func TestSummaryRetriedWhileRunning(t *testing.T) {
	e := newEnv(t, nil)
	r := e.savedRecording(t, alice)
	recID := r.ID
	ctx := context.Background()
	e.chat.mu.Lock()
	e.chat.failPost = 1000
	e.chat.mu.Unlock()
	e.lc.deliver(ctx, room, r.Folder, nil, "Call ended: alice hung up.", nil, nil, true)
	if r, _ := e.lc.db.Recording(ctx, recID); r.Status != storage.RecordingFailedNotify {
		t.Fatalf("status after failing to post: %s", r.Status)
	}
	e.chat.mu.Lock()
	e.chat.failPost = 0
	e.chat.mu.Unlock()
	e.lc.renotify(ctx) // notes the failure; not due yet
	e.lc.wg.Wait()
	if got := e.chat.texts(room); len(got) != 0 {
		t.Fatalf("retried at once: %q", got)
	}
	e.advance(renotifyFirst)
	e.lc.renotify(ctx)
	e.lc.wg.Wait()
	got := joined(e.chat.texts(room))
	if !strings.Contains(got, "Recording saved") || !strings.Contains(got, "alice hung up") {
		t.Fatalf("summary after the homeserver came back: %q", got)
	}
	if r, _ := e.lc.db.Recording(ctx, recID); r.Status != storage.RecordingNotified {
		t.Errorf("status: %s", r.Status)
	}
	// Posted once: later rounds do nothing.
	e.advance(time.Hour)
	e.lc.renotify(ctx)
	e.lc.wg.Wait()
	if n := len(e.chat.texts(room)); n != 1 {
		t.Errorf("%d summaries", n)
	}
}

// The backoff between retries doubles up to renotifyMax.
func TestSummaryRetryBacksOff(t *testing.T) {
	e := newEnv(t, nil)
	recID := e.finishedRecording(t, alice)
	ctx := context.Background()
	if _, err := e.lc.db.ModifyRecording(ctx, recID, func(r *storage.Recording) { r.Status = storage.RecordingFailedNotify }); err != nil {
		t.Fatal(err)
	}
	e.chat.mu.Lock()
	e.chat.failPost = 1 << 30
	e.chat.mu.Unlock()
	var attempts []time.Duration
	start := e.clock()
	for i := 0; i < 2000 && len(attempts) < 7; i++ {
		before := e.chat.postCalls()
		e.lc.renotify(ctx)
		e.lc.wg.Wait()
		if e.chat.postCalls() > before {
			attempts = append(attempts, e.clock().Sub(start))
		}
		e.advance(15 * time.Second)
	}
	var gaps []time.Duration
	for i := 1; i < len(attempts); i++ {
		gaps = append(gaps, attempts[i]-attempts[i-1])
	}
	if len(gaps) < 5 || gaps[0] > gaps[1] || gaps[1] >= gaps[3] || gaps[len(gaps)-1] > renotifyMax+15*time.Second {
		t.Errorf("gaps between retries: %v", gaps)
	}
}

// A delivery that waits for uploads ends when its recording is deleted, instead of
// polling a store for files that are gone, for ever.
func TestDeliveryEndsWhenDeleted(t *testing.T) {
	e := newEnv(t, nil)
	st := e.lc
	var err error
	// A store that cannot be reached: the upload never completes.
	if st.s3, err = s3store.New(s3store.Config{Endpoint: "127.0.0.1:9", Bucket: "b", AccessKey: "a", SecretKey: "s"}); err != nil {
		t.Fatal(err)
	}
	st.up = upload.New(st.ctx, st.db, st.s3, upload.Options{Dir: st.cfg.Recordings.Dir, Log: zerolog.Nop()})
	st.uploadPoll = 10 * time.Millisecond
	r := e.savedRecording(t, alice)
	recID := r.ID
	ctx := context.Background()
	drain, cancel := context.WithCancel(context.Background())
	cancel()
	st.drainCtx = drain // do not wait linkWait for the uploads before posting
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.deliver(st.ctx, room, r.Folder, nil, "", nil, nil, true)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(e.chat.texts(room)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("the delivery ended before the uploads did")
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := st.db.ModifyRecording(ctx, recID, func(r *storage.Recording) { r.Status = storage.RecordingDeleted }); err != nil {
		t.Fatal(err)
	}
	st.endDelivery(recID) // what deleteRecording does first
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the delivery goes on after its recording was deleted")
	}
}

// A summary still being posted when shutdown gave up and closed the database ends with a
// logged error, not a crash.
func TestDeliveryOutlivesTheDatabase(t *testing.T) {
	e := newEnv(t, nil)
	r := e.savedRecording(t, alice)
	ctx := context.Background()
	e.chat.onPost = func() { _ = e.lc.db.Close() }
	e.lc.deliver(ctx, room, r.Folder, nil, "", nil, nil, true)
	if got := joined(e.chat.texts(room)); !strings.Contains(got, "Recording saved") {
		t.Errorf("summary: %q", got)
	}
}
