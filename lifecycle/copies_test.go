package lifecycle

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// The store's notification of a copy LiveKit Egress uploaded can come before or after
// Egress's file is finished in the session, and after the recording ended: each time the
// manifest ends up saying the notification confirmed it, never the older "head" that the
// file's completion writes.
func TestLateNotificationReachesTheManifest(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	s := e.start(t, "group")
	folder := filepath.Base(s.Folder())
	info := recorder.TrackInfo{UserID: string(alice), DeviceID: "D", MimeType: "audio/opus", ClockRate: 48000, Channels: 2}
	early, err := s.AddExternal(recorder.External{Info: info, Remote: true, Writer: "livekit-egress"}, e.clock())
	if err != nil {
		t.Fatal(err)
	}
	later, err := s.AddExternal(recorder.External{Info: recorder.TrackInfo{UserID: string(bob), DeviceID: "D", MimeType: "audio/opus", ClockRate: 48000, Channels: 2}, Remote: true}, e.clock())
	if err != nil {
		t.Fatal(err)
	}
	e.lc.flushRows(ctx, folder)
	rec, err := e.lc.db.RecordingByFolder(ctx, folder)
	if err != nil {
		t.Fatal(err)
	}
	confirmed := func(file string) *storage.Upload {
		u, err := e.lc.db.EnsureUpload(ctx, rec.ID, file, "bucket", "calls/"+folder+"/"+file)
		if err != nil {
			t.Fatal(err)
		}
		u.Status, u.ConfirmedBy, u.Bytes, u.ConfirmedAt = storage.UploadConfirmed, "head+webhook", 10, time.Now()
		if err := e.lc.db.UpdateUpload(ctx, u); err != nil {
			t.Fatal(err)
		}
		return u
	}
	finish := func(file string) {
		up := &recorder.Upload{URL: "s3://bucket/calls/" + folder + "/" + file, Bucket: "bucket", Bytes: 10, Confirmed: "head"}
		if err := s.FinishExternal(file, recorder.ExternalResult{Duration: time.Second, Upload: up, Reason: "the track ended"}); err != nil {
			t.Fatal(err)
		}
	}
	entry := func(m recorder.Manifest, file string) string {
		for _, tr := range m.Tracks {
			if tr.File == file && tr.Upload != nil {
				return tr.Upload.Confirmed
			}
		}
		return "(no upload)"
	}

	// Before the file is finished: kept until its completion is written.
	e.lc.evidence(confirmed(early))
	finish(early)
	e.lc.flushRows(ctx, folder)
	if got := entry(s.Manifest(), early); got != "head+webhook" {
		t.Errorf("notification before the file was finished: manifest says %q", got)
	}
	// After the file is finished, while the recording goes on.
	finish(later)
	e.lc.flushRows(ctx, folder)
	e.lc.evidence(confirmed(later))
	if got := entry(s.Manifest(), later); got != "head+webhook" {
		t.Errorf("notification after the file was finished: manifest says %q", got)
	}
	// After the recording ended: the folder's manifest.
	third, err := s.AddExternal(recorder.External{Info: info, Remote: true}, e.clock())
	if err != nil {
		t.Fatal(err)
	}
	finish(third)
	if _, err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	e.lc.flushRows(ctx, folder)
	e.lc.evidence(confirmed(third))
	m, err := recorder.ReadManifest(s.Folder())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{early, later, third} {
		if got := entry(*m, f); got != "head+webhook" {
			t.Errorf("%s in the final manifest: %q", f, got)
		}
	}
}

// A change to a file's upload in a manifest that records none is refused without
// rewriting the manifest.
func TestUpdateUploadWithoutUploadWritesNothing(t *testing.T) {
	e := newEnv(t, nil)
	recID := e.finishedRecording(t, alice)
	r, err := e.lc.db.Recording(context.Background(), recID)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.lc.cfg.Recordings.Dir, r.Folder)
	m, err := recorder.ReadManifest(dir)
	if err != nil || len(m.Tracks) == 0 || m.Tracks[0].Upload != nil {
		t.Fatalf("the manifest before: %+v %v (want a file without an upload)", m, err)
	}
	path := filepath.Join(dir, recorder.ManifestFile)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.lc.updateUpload(r.Folder, m.Tracks[0].File, func(u *recorder.Upload) { u.Confirmed = "head" }); err == nil {
		t.Error("changing an upload the manifest does not record succeeded")
	}
	if after, err := os.Stat(path); err != nil || !os.SameFile(before, after) {
		t.Errorf("the manifest was rewritten (%v)", err)
	}
}
