package upload

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/devs3"
	"github.com/matrix-recorder/matrix-recorder/internal/testenv"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// TestIntegrationS3SalvageWithTail runs tails and a salvage against a real S3 server
// (versitygw): an Ogg file past one whole part, its instance "killed"; the other instance
// completes the multipart upload with the tail segments as part 2, and the object is the
// file as it was at the last tail, whole Ogg pages, with no tail left beside it.
func TestIntegrationS3SalvageWithTail(t *testing.T) {
	testenv.RequireIntegration(t)
	ctx := testenv.Context(t)
	log := testenv.Logger(t)
	e := newEnv(t)
	_, store := startS3(t, ctx, devs3.Options{Logger: &log})
	uploader := func(ctx context.Context) *Uploader {
		return New(ctx, e.db, store, Options{
			Dir: e.dir, Poll: 20 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
			TailEvery: 20 * time.Millisecond, Log: log,
		})
	}
	key := store.Key(e.folder, "a.ogg")
	tailEnd := func() int64 {
		keys, err := store.List(ctx, tailPrefix(key))
		if err != nil {
			t.Fatal(err)
		}
		var end int64
		for _, k := range keys {
			if s, ok := parseSegment(tailPrefix(key), k); ok {
				end = max(end, s.to)
			}
		}
		return end
	}
	dctx, kill := context.WithCancel(ctx)
	dead := uploader(dctx)
	path := e.path("a.ogg")
	o := newOggFile(t, path, 1000)
	dead.Follow(e.rec, e.folder, "a.ogg")
	for range 7 {
		o.write(1000) // 1 MB, 20 s
		size := fileSize(t, path)
		waitFor(t, "the tail", func() bool { return tailEnd() == size })
	}
	want, _ := os.ReadFile(path)
	kill()
	_ = dead.Close(context.Background())
	o.write(100)

	taker := uploader(ctx)
	defer taker.Close(context.Background())
	var got Salvaged
	taker.Salvage(e.rec, e.folder, "a.ogg", func(s Salvaged) { got = s })
	if err := taker.Wait(ctx, e.rec); err != nil {
		t.Fatal(err)
	}
	obj, err := store.Get(ctx, key, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(obj, want) {
		t.Fatalf("the object (%d bytes) is not the file at its last tail (%d bytes)", len(obj), len(want))
	}
	if ms := checkOgg(t, obj); ms < 139000 || got.MediaMs != ms || got.Upload == nil || !strings.HasSuffix(got.Upload.ETag, "-2") {
		t.Errorf("salvage %+v; the object holds %d ms", got, ms)
	}
	if row, err := e.db.UploadOf(ctx, e.rec, "a.ogg"); err != nil || row.Status != storage.UploadConfirmed {
		t.Errorf("upload row %+v %v", row, err)
	}
	if keys, _ := store.List(ctx, tailPrefix(key)); len(keys) != 0 {
		t.Errorf("tail segments left: %v", keys)
	}
}
