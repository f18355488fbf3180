package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/caller"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	dlink "github.com/matrix-recorder/matrix-recorder/lifecycle/download"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// recordDM places a call with audio and video in a new DM, keeps it up for d, hangs up and
// returns the room, the summary and when the call started.
func recordDM(t *testing.T, alice *caller.Client, bot id.UserID, encrypted bool, d time.Duration) (id.RoomID, string) {
	t.Helper()
	ctx := timeout(t, 3*time.Minute)
	room, err := alice.CreateDM(ctx, bot, encrypted)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	call := dial(t, ctx, alice, room, caller.CallOptions{Audio: testmedia.Tone440, Video: testmedia.VP8})
	waitNotice(t, alice, room, start, 30*time.Second, "Recording this call")
	time.Sleep(d)
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	return room, waitNotice(t, alice, room, start, 3*time.Minute, "Recording saved", "(recording ")
}

// checkLinks downloads every file of a manifest through the links of a summary and
// compares the bytes with the manifest's SHA-256.
func checkLinks(t *testing.T, summary, folder string, m *recorder.Manifest) {
	t.Helper()
	urls := links(summary)
	if len(urls) != len(m.Tracks) {
		t.Fatalf("summary has %d links for %d files:\n%s", len(urls), len(m.Tracks), summary)
	}
	for _, tr := range m.Tracks {
		var link string
		for _, u := range urls {
			if strings.Contains(u, url.PathEscape(tr.File)) {
				link = u
			}
		}
		if link == "" {
			t.Errorf("no link for %s in %q", tr.File, summary)
			continue
		}
		code, sum := fetch(t, link)
		if code != http.StatusOK || sum != tr.SHA256 {
			t.Errorf("%s: GET %s gave %d, sha256 %s; manifest says %s", tr.File, link, code, sum, tr.SHA256)
		}
	}
}

// TestIntegrationS3LinksInRoom: files go to the S3 server, the summary in the (encrypted)
// room links every file, the downloads match the manifest's checksums, the manifest says
// where each file went, the server's event notifications confirm the uploads, and the state database,
// the bot's own download links, /metrics and /healthz agree.
func TestIntegrationS3LinksInRoom(t *testing.T) {
	s := homeserver(t)
	e := startS3(t, true)
	cfg := botConfig(t, s)
	e.apply(&cfg)
	rb := startBot(t, cfg)
	alice := newCaller(t, s, "alice")
	_, summary := recordDM(t, alice, rb.bot.UserID(), true, 6*time.Second)
	t.Logf("summary:\n%s", summary)
	folder, m := finishedFolder(t, rb)
	checkLinks(t, summary, folder, m)

	// The manifest records where each file went, with the checksum of what was uploaded.
	var m2 *recorder.Manifest
	deadline := time.Now().Add(10 * time.Second)
	for {
		m2, _ = recorder.ReadManifest(folder)
		done := m2 != nil
		for _, tr := range m2.Tracks {
			done = done && tr.Upload != nil
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	prefix := "calls/" + filepath.Base(folder) + "/"
	for _, tr := range m2.Tracks {
		if tr.Upload == nil || tr.Upload.SHA256 != tr.SHA256 || tr.Upload.URL != "s3://"+e.bucket+"/"+prefix+tr.File || tr.Upload.Bytes != tr.Bytes {
			t.Errorf("%s: upload in manifest %+v (file sha %s, %d bytes)", tr.File, tr.Upload, tr.SHA256, tr.Bytes)
		}
	}
	keys := strings.Join(e.keys(t, prefix), " ")
	for _, want := range append([]string{recorder.ManifestFile}, fileNames(m)...) {
		if !strings.Contains(keys, prefix+want) {
			t.Errorf("bucket lacks %s (has %s)", want, keys)
		}
	}

	db := stateDB(t, cfg)
	recID := recordingID.FindStringSubmatch(summary)[1]
	r := waitRecording(t, db, recID, 10*time.Second, "notified", func(r *storage.Recording) bool { return r.Status == storage.RecordingNotified })
	if r.Folder != filepath.Base(folder) || r.Kind != "1:1" || r.EndedAt.IsZero() || r.Bytes == 0 {
		t.Errorf("recording row: %+v", r)
	}
	parts, err := db.Parts(context.Background(), recID)
	if err != nil || len(parts) != len(m.Tracks) {
		t.Fatalf("parts: %d rows for %d files (%v)", len(parts), len(m.Tracks), err)
	}
	for _, p := range parts {
		tr := entry(m, p.File)
		if p.Status != storage.PartSaved || p.SHA256 != tr.SHA256 || p.Bytes != tr.Bytes {
			t.Errorf("part row %+v disagrees with the manifest %+v", p, tr)
		}
		// The bot's own download link serves the same bytes.
		if code, sum := fetch(t, dlink.URL(cfg.HTTP.PublicURL, p.Token, p.File)); code != 200 || sum != tr.SHA256 {
			t.Errorf("%s via the bot: %d %s", p.File, code, sum)
		}
	}
	// The S3 server's event notifications confirm the uploads too.
	deadline = time.Now().Add(20 * time.Second)
	for {
		ups, _ := db.Uploads(context.Background(), recID)
		webhooked := 0
		for _, u := range ups {
			if u.Status == storage.UploadConfirmed && strings.Contains(u.ConfirmedBy, "webhook") {
				webhooked++
			}
		}
		if webhooked == len(m.Tracks) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bucket notifications did not confirm the uploads: %+v", ups)
		}
		time.Sleep(200 * time.Millisecond)
	}
	metrics := get(t, cfg.HTTP.PublicURL+"/metrics")
	// http.listen still serves /metrics without metrics.listen (for a release).
	for _, want := range []string{`matrix_recorder_recordings_started_total{kind="1:1"} 1`, `matrix_recorder_recordings_stopped_total{kind="1:1",reason="call_ended"} 1`,
		`matrix_recorder_links_delay_seconds_count{kind="1:1"} 1`, "matrix_recorder_uploads_confirmed_total 2", "matrix_recorder_active_recordings 0", "matrix_recorder_packets_lost_total"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if h := get(t, cfg.HTTP.PublicURL+"/healthz"); !strings.Contains(h, `"ok"`) {
		t.Errorf("/healthz: %s", h)
	}
}

// TestIntegrationS3OutageMidCall: the S3 server stops in the middle of a call and comes back after
// it ended: nothing is lost (the local files stay until their copies are confirmed), the
// uploads complete and the links work. With delete_local_after_upload the local files go
// then, and the bot's own links redirect to the store.
func TestIntegrationS3OutageMidCall(t *testing.T) {
	s := homeserver(t)
	e := startS3(t, false)
	cfg := botConfig(t, s)
	e.apply(&cfg)
	cfg.Storage.S3.DeleteLocalAfterUpload = true
	cfg.Storage.S3.DeleteLocalDelay = 0
	rb := startBot(t, cfg)
	alice := newCaller(t, s, "alice")
	room, ctx := directRoom(t, rb, alice, false, 4*time.Minute)
	start := time.Now()
	call := dial(t, ctx, alice, room, caller.CallOptions{Audio: testmedia.Tone440, Video: testmedia.VP8})
	time.Sleep(3 * time.Second)
	if err := e.srv.Halt(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	folder, m := finishedFolder(t, rb)
	db := stateDB(t, cfg)
	time.Sleep(3 * time.Second)
	r, err := db.RecordingByFolder(ctx, filepath.Base(folder))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status == storage.RecordingNotified {
		t.Fatal("the recording counts as delivered while the store is down")
	}
	ups, _ := db.Uploads(ctx, r.ID)
	for _, u := range ups {
		if u.Status == storage.UploadConfirmed || u.Attempts == 0 {
			t.Errorf("upload while the store is down: %+v", u)
		}
	}
	for _, tr := range m.Tracks {
		if _, err := os.Stat(filepath.Join(folder, tr.File)); err != nil {
			t.Errorf("local file gone before its upload: %v", err)
		}
	}
	if err := e.srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	summary := waitNotice(t, alice, room, start, 3*time.Minute, "Recording saved", "(recording ")
	t.Logf("summary:\n%s", summary)
	checkLinks(t, summary, folder, m)
	waitRecording(t, db, r.ID, 20*time.Second, "notified", func(r *storage.Recording) bool { return r.Status == storage.RecordingNotified })
	m2, err := recorder.ReadManifest(folder)
	if err != nil {
		t.Fatal(err)
	}
	parts, _ := db.Parts(ctx, r.ID)
	for _, p := range parts {
		tr := entry(m2, p.File)
		if _, err := os.Stat(filepath.Join(folder, p.File)); !os.IsNotExist(err) || !p.LocalDeleted || tr.Upload == nil || !tr.Upload.LocalDeleted {
			t.Errorf("%s: local copy after a confirmed upload: stat %v, row %v, manifest %+v", p.File, err, p.LocalDeleted, tr.Upload)
		}
		if code, sum := fetch(t, dlink.URL(cfg.HTTP.PublicURL, p.Token, p.File)); code != 200 || sum != tr.SHA256 {
			t.Errorf("%s via the bot after the local copy went: %d %s", p.File, code, sum)
		}
	}
}

// TestIntegrationKilledMidCall: the real binary, SIGKILLed in the middle of a 1:1 call and
// started again, repairs the files, tells the room (and hangs up the dead call), uploads
// what was recorded and posts the links; the state database agrees with the manifest; and
// it records the next call.
func TestIntegrationKilledMidCall(t *testing.T) {
	s := homeserver(t)
	e := startS3(t, false)
	cfg := botConfig(t, s)
	e.apply(&cfg)
	p := startProcess(t, cfg)
	alice := newCaller(t, s, "alice")
	ctx := timeout(t, 4*time.Minute)
	room, err := alice.CreateDM(ctx, id.UserID(cfg.Matrix.UserID), true)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	call := dial(t, ctx, alice, room, caller.CallOptions{Audio: testmedia.Tone440, Video: testmedia.VP8})
	waitNotice(t, alice, room, start, 30*time.Second, "Recording this call")
	time.Sleep(5 * time.Second)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	entries, _ := os.ReadDir(cfg.Recordings.Dir)
	if len(entries) != 1 {
		t.Fatalf("want one call folder, have %d", len(entries))
	}
	folder := filepath.Join(cfg.Recordings.Dir, entries[0].Name())
	if m, err := recorder.ReadManifest(folder); err != nil || m.Status != recorder.StatusRecording {
		t.Fatalf("after SIGKILL the manifest should still say recording: %+v %v", m, err)
	}

	restarted := time.Now()
	startProcess(t, cfg)
	waitNotice(t, alice, room, restarted, time.Minute, "recorder was restarted", "cannot continue")
	summary := waitNotice(t, alice, room, restarted, 2*time.Minute, "Recording saved", "interrupted by a restart")
	t.Logf("summary:\n%s", summary)
	select {
	case reason := <-call.Hangups():
		t.Logf("the restarted bot hung up the dead call: %s", reason)
	case <-time.After(20 * time.Second):
		t.Error("the restarted bot did not hang up the call it had been in")
	}
	call.Close()

	m, err := recorder.ReadManifest(folder)
	if err != nil || m.Status != recorder.StatusInterrupted || len(m.Tracks) != 2 {
		t.Fatalf("repaired manifest: %+v %v", m, err)
	}
	for _, tr := range m.Tracks {
		d := time.Duration(tr.DurationMs) * time.Millisecond
		if d < 3*time.Second {
			t.Errorf("%s kept only %v of about 5 s", tr.File, d)
		}
		checkFile(t, filepath.Join(folder, tr.File), tr.Codec, d)
	}
	checkLinks(t, summary, folder, m)

	db := stateDB(t, cfg)
	recID := recordingID.FindStringSubmatch(summary)[1]
	r := waitRecording(t, db, recID, 20*time.Second, "notified", func(r *storage.Recording) bool { return r.Status == storage.RecordingNotified })
	if r.Interruptions != 1 || r.Folder != filepath.Base(folder) || r.EndedAt.IsZero() {
		t.Errorf("recording row after the crash: %+v", r)
	}
	parts, _ := db.Parts(ctx, recID)
	if len(parts) != len(m.Tracks) {
		t.Fatalf("%d part rows for %d files", len(parts), len(m.Tracks))
	}
	ups, _ := db.Uploads(ctx, recID)
	upBy := map[string]*storage.Upload{}
	for _, u := range ups {
		upBy[u.File] = u
	}
	for _, p := range parts {
		tr := entry(m, p.File)
		if p.Status != storage.PartInterrupted || p.SHA256 != tr.SHA256 || p.Bytes != tr.Bytes {
			t.Errorf("part row %+v disagrees with the repaired manifest %+v", p, tr)
		}
		if u := upBy[p.File]; u == nil || u.Status != storage.UploadConfirmed || u.SHA256 != tr.SHA256 {
			t.Errorf("upload of %s: %+v", p.File, u)
		}
	}
	if live, _ := db.RecordingsWithStatus(ctx, storage.RecordingStarted, storage.RecordingActive, storage.RecordingStopping); len(live) != 0 {
		t.Errorf("recordings still live in the database: %+v", live)
	}

	// The restarted bot records the next call.
	placeShortCall(t, alice, room)
}

// TestIntegrationExpiry: with a short recordings.expire_after the room is told before, then
// the local folder and the uploaded copies are deleted and !recordings says so.
func TestIntegrationExpiry(t *testing.T) {
	s := homeserver(t)
	e := startS3(t, false)
	cfg := botConfig(t, s)
	e.apply(&cfg)
	cfg.Recordings.ExpireAfter = config.Duration(20 * time.Second)
	cfg.Recordings.ExpireNotice = config.Duration(12 * time.Second)
	rb := startBot(t, cfg)
	alice := newCaller(t, s, "alice")
	room, ctx := directRoom(t, rb, alice, false, 3*time.Minute)
	start := time.Now()
	placeShortCall(t, alice, room)
	summary := waitNotice(t, alice, room, start, time.Minute, "Recording saved", "will be deleted on")
	recID := recordingID.FindStringSubmatch(summary)[1]
	folder, _ := finishedFolder(t, rb)
	prefix := "calls/" + filepath.Base(folder) + "/"
	db := stateDB(t, cfg)
	waitRecording(t, db, recID, 20*time.Second, "uploaded", func(r *storage.Recording) bool { return r.Status == storage.RecordingNotified })
	if len(e.keys(t, prefix)) == 0 {
		t.Fatal("nothing uploaded")
	}
	warned := waitNotice(t, alice, room, start, 30*time.Second, "will be deleted", "Download what you want to keep", recID)
	t.Logf("warning: %s", warned)
	if _, err := os.Stat(folder); err != nil {
		t.Fatalf("deleted before its time: %v", err)
	}
	waitNotice(t, alice, room, start, 40*time.Second, "Deleted the recording", recID)
	if _, err := os.Stat(folder); !os.IsNotExist(err) {
		t.Errorf("folder still there: %v", err)
	}
	if keys := e.keys(t, prefix); len(keys) != 0 {
		t.Errorf("uploaded copies still there: %v", keys)
	}
	r, _ := db.Recording(ctx, recID)
	if r.Status != storage.RecordingExpired || r.DeletedAt.IsZero() {
		t.Errorf("recording row: %+v", r)
	}
	since := time.Now()
	if err := alice.SendMessage(ctx, room, "!recordings"); err != nil {
		t.Fatal(err)
	}
	waitNotice(t, alice, room, since, 20*time.Second, recID, "expired and deleted")
}

// TestIntegrationMaxDuration: recordings.max_duration warns before and stops the recording
// (hanging up the 1:1 call) with a notice; the file lasts as long as the limit.
func TestIntegrationMaxDuration(t *testing.T) {
	s := homeserver(t)
	cfg := botConfig(t, s)
	cfg.Recordings.MaxDuration = config.Duration(12 * time.Second)
	rb := startBot(t, cfg)
	alice := newCaller(t, s, "alice")
	room, ctx := directRoom(t, rb, alice, false, 2*time.Minute)
	start := time.Now()
	call := dial(t, ctx, alice, room, caller.CallOptions{Audio: testmedia.Tone440})
	warning := waitNotice(t, alice, room, start, 20*time.Second, "reaches its maximum length")
	if since := time.Since(start); since > 11*time.Second {
		t.Errorf("warning came %v after the start, the limit is 12 s", since)
	}
	t.Logf("warning: %s", warning)
	stoppedByBot(t, alice, room, start, call, "maximum recording length")
	folder, m := finishedFolder(t, rb)
	audio := mustOne(t, m, recorder.SourceMicrophone)
	if d := time.Duration(m.DurationMs) * time.Millisecond; d < 11*time.Second || d > 14*time.Second {
		t.Errorf("recording lasts %v, the limit is 12 s", d)
	}
	checkFile(t, filepath.Join(folder, audio.File), "opus", time.Duration(audio.DurationMs)*time.Millisecond)
}

// TestIntegrationDeleteNeedsPower: !delete is refused to a member without the power level
// to start recordings, and works for one with it.
func TestIntegrationDeleteNeedsPower(t *testing.T) {
	s := homeserver(t)
	cfg := botConfig(t, s)
	rb := startBot(t, cfg)
	alice := newCaller(t, s, "alice")
	room, ctx := directRoom(t, rb, alice, false, 3*time.Minute)
	start := time.Now()
	placeShortCall(t, alice, room)
	summary := waitNotice(t, alice, room, start, time.Minute, "Recording saved", "(recording ")
	recID := recordingID.FindStringSubmatch(summary)[1]
	folder, _ := finishedFolder(t, rb)

	bob := newCaller(t, s, "bob")
	if _, err := alice.Matrix().InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: bob.UserID()}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Matrix().JoinRoomByID(ctx, room); err != nil {
		t.Fatal(err)
	}
	if err := bob.WaitMembership(ctx, room, bob.UserID(), "join"); err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	if err := bob.SendMessage(ctx, room, "!delete "+recID); err != nil {
		t.Fatal(err)
	}
	refusal := waitNotice(t, bob, room, since, 30*time.Second, "may delete recordings")
	t.Logf("refusal: %s", refusal)
	if _, err := os.Stat(folder); err != nil {
		t.Fatalf("refused !delete removed the folder: %v", err)
	}
	db := stateDB(t, cfg)
	if r, _ := db.Recording(ctx, recID); r.Status.Gone() {
		t.Fatalf("refused !delete changed the status: %s", r.Status)
	}
	// Anyone may list.
	if err := bob.SendMessage(ctx, room, "!recordings"); err != nil {
		t.Fatal(err)
	}
	waitNotice(t, bob, room, since, 30*time.Second, "Recordings in this room", recID)

	since = time.Now()
	if err := alice.SendMessage(ctx, room, "!delete "+recID); err != nil {
		t.Fatal(err)
	}
	waitNotice(t, alice, room, since, 30*time.Second, "Deleted the recording", recID)
	if _, err := os.Stat(folder); !os.IsNotExist(err) {
		t.Errorf("folder still there after !delete: %v", err)
	}
	if r, _ := db.Recording(ctx, recID); r.Status != storage.RecordingDeleted {
		t.Errorf("status after !delete: %s", r.Status)
	}
}

func entry(m *recorder.Manifest, file string) recorder.FileEntry {
	for _, tr := range m.Tracks {
		if tr.File == file {
			return tr
		}
	}
	return recorder.FileEntry{}
}

func fileNames(m *recorder.Manifest) []string {
	var out []string
	for _, tr := range m.Tracks {
		out = append(out, tr.File)
	}
	return out
}

func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestIntegrationDiskAlmostFull: when the recordings disk runs low in the middle of a call
// (here a 40 MiB tmpfs that the test fills), the bot stops the recording before anything
// can be damaged, hangs up and says why; the file it wrote is whole.
func TestIntegrationDiskAlmostFull(t *testing.T) {
	dir := smallDisk(t, 40<<20)
	s := homeserver(t)
	cfg := botConfig(t, s)
	cfg.Recordings.Dir = dir
	cfg.Recordings.MinFreeSpace = config.Size(30 << 20)
	rb := startBot(t, cfg)
	alice := newCaller(t, s, "alice")
	room, ctx := directRoom(t, rb, alice, false, 2*time.Minute)
	start := time.Now()
	call := dial(t, ctx, alice, room, caller.CallOptions{Audio: testmedia.Tone440})
	waitNotice(t, alice, room, start, 20*time.Second, "Recording this call")
	time.Sleep(3 * time.Second)
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	stoppedByBot(t, alice, room, start, call, "disk is almost full")
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	folder, m := finishedFolder(t, rb)
	audio := mustOne(t, m, recorder.SourceMicrophone)
	if audio.Status != recorder.StatusComplete || audio.DurationMs < 2500 {
		t.Errorf("the file was not finished whole: %+v", audio)
	}
	checkFile(t, filepath.Join(folder, audio.File), "opus", time.Duration(audio.DurationMs)*time.Millisecond)
}

// stoppedByBot waits for the summary of a 1:1 recording the bot stopped by itself (saying
// why) and checks that it hung up on the caller.
func stoppedByBot(t *testing.T, c *caller.Client, room id.RoomID, since time.Time, call *caller.Call, why string) {
	t.Helper()
	summary := waitNotice(t, c, room, since, 40*time.Second, "Recording saved", why)
	t.Logf("summary:\n%s", summary)
	select {
	case <-call.Hangups():
	case <-time.After(10 * time.Second):
		t.Error("the caller was not hung up on")
	}
	call.Close()
}

// smallDisk mounts a tmpfs of size bytes for the test (root only).
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}
