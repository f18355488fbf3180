package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/caller"
	"github.com/matrix-recorder/matrix-recorder/internal/devpg"
	"github.com/matrix-recorder/matrix-recorder/internal/devtools"
	"github.com/matrix-recorder/matrix-recorder/internal/testenv"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// startPostgres starts a PostgreSQL of the test's own and returns a fresh database's
// connection string.
func startPostgres(t *testing.T) string {
	t.Helper()
	ctx := timeout(t, 2*time.Minute)
	srv, err := devpg.Start(ctx)
	if err != nil {
		testenv.SkipOrFail(t, "PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	testenv.LogOnFailure(t, "postgres", func() string { return srv.LogTail(4000) })
	uri, err := srv.CreateDatabase(ctx, "recorder")
	if err != nil {
		t.Fatal(err)
	}
	return uri
}

// callFolders lists the call folders in a recordings dir.
func callFolders(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestIntegrationPostgresOneActiveInstance: two recorder binaries of one bot account on
// one PostgreSQL database (and one S3 store), each with its own data_dir. The first
// records a call, with its state in PostgreSQL; the second, started meanwhile, is refused
// and names the first, so the call is recorded once; after the first is killed (-9) the
// second takes over once the first's claim runs out, and records the next call.
func TestIntegrationPostgresOneActiveInstance(t *testing.T) {
	s := homeserver(t)
	e := startS3(t, false)
	uri := startPostgres(t)
	a := botConfig(t, s)
	e.apply(&a)
	a.Database = config.Database{Type: config.DatabasePostgres, URI: uri}
	a.Instance.ID = "rec-a"
	b := a
	dir := t.TempDir()
	b.DataDir, b.Recordings.Dir, b.Instance.ID = filepath.Join(dir, "data"), filepath.Join(dir, "recordings"), "rec-b"
	port, err := devtools.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	b.HTTP.Listen, b.HTTP.PublicURL = fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("http://127.0.0.1:%d", port)

	pa := startProcess(t, a)
	alice := newCaller(t, s, "alice")
	ctx := timeout(t, 6*time.Minute)
	room, err := alice.CreateDM(ctx, id.UserID(a.Matrix.UserID), false)
	if err != nil {
		t.Fatal(err)
	}

	// The second instance, started while the first runs, is refused (after waiting one
	// claim period to see whether the first still renews its claim) and says why.
	second := exec.Command(buildBinary(t), "-config", writeConfig(t, b))
	var secondLog syncBuffer
	second.Stdout, second.Stderr = &secondLog, &secondLog
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	secondDone := make(chan error, 1)
	go func() { secondDone <- second.Wait() }()
	t.Cleanup(func() {
		if second.ProcessState == nil {
			_ = second.Process.Kill()
			<-secondDone
		}
	})

	// Meanwhile the first records a call.
	placeShortCall(t, alice, room)
	select {
	case err := <-secondDone:
		if err == nil {
			t.Fatalf("the second instance exited 0:\n%s", secondLog.String())
		}
		if !strings.Contains(secondLog.String(), `instance \"rec-a\" is running on this database`) &&
			!strings.Contains(secondLog.String(), `instance "rec-a" is running on this database`) {
			t.Errorf("the second instance's refusal does not name the first:\n%s", secondLog.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("the second instance neither started nor was refused:\n%s", secondLog.String())
	}
	if fa, fb := callFolders(t, a.Recordings.Dir), callFolders(t, b.Recordings.Dir); len(fa) != 1 || len(fb) != 0 {
		t.Fatalf("call folders: first %v, second %v; want the call once, by the first", fa, fb)
	}
	db, err := storage.OpenConfig(context.Background(), storage.Config{Engine: storage.Postgres, URI: uri})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	recs, err := db.RecordingsInRoom(ctx, string(room), 10)
	if err != nil || len(recs) != 1 || recs[0].Folder != callFolders(t, a.Recordings.Dir)[0] || recs[0].Status.Live() {
		t.Fatalf("recordings in PostgreSQL: %+v %v", recs, err)
	}
	if parts, err := db.Parts(ctx, recs[0].ID); err != nil || len(parts) == 0 {
		t.Errorf("parts in PostgreSQL: %+v %v", parts, err)
	}
	if l, err := db.Lease(ctx, storage.ActiveInstanceResource); err != nil || !strings.HasPrefix(l.Owner, "rec-a/") {
		t.Errorf("the claim: %+v %v", l, err)
	}

	// The first dies without a word; the second takes over and records the next call.
	if err := pa.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-pa.done
	killed := time.Now()
	startProcess(t, b)
	t.Logf("the second instance synced %s after the first was killed", time.Since(killed).Round(time.Second))
	if l, err := db.Lease(ctx, storage.ActiveInstanceResource); err != nil || !strings.HasPrefix(l.Owner, "rec-b/") || l.Generation < 2 {
		t.Errorf("the claim after the take-over: %+v %v", l, err)
	}
	placeShortCall(t, alice, room)
	if fa, fb := callFolders(t, a.Recordings.Dir), callFolders(t, b.Recordings.Dir); len(fa) != 1 || len(fb) != 1 {
		t.Fatalf("call folders: first %v, second %v; want the second call by the second", fa, fb)
	}
	if recs, err := db.RecordingsInRoom(ctx, string(room), 10); err != nil || len(recs) != 2 {
		t.Errorf("recordings in PostgreSQL after the take-over: %+v %v", recs, err)
	}
}

// TestIntegrationPostgresKilledMidCall: the recorder on PostgreSQL is killed (-9) in the
// middle of a call and started again on the same data_dir: it takes its claim on the
// database back at once, repairs the files, marks the recording interrupted in
// PostgreSQL, finishes the uploads and posts the summary; the next call is recorded.
func TestIntegrationPostgresKilledMidCall(t *testing.T) {
	s := homeserver(t)
	e := startS3(t, false)
	uri := startPostgres(t)
	cfg := botConfig(t, s)
	e.apply(&cfg)
	cfg.Database = config.Database{Type: config.DatabasePostgres, URI: uri}
	p := startProcess(t, cfg)
	alice := newCaller(t, s, "alice")
	ctx := timeout(t, 4*time.Minute)
	room, err := alice.CreateDM(ctx, id.UserID(cfg.Matrix.UserID), false)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	call := dial(t, ctx, alice, room, caller.CallOptions{Audio: testmedia.Tone440})
	waitNotice(t, alice, room, start, 30*time.Second, "Recording this call")
	time.Sleep(4 * time.Second)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done

	restarted := time.Now()
	startProcess(t, cfg)
	if took := time.Since(restarted); took > 25*time.Second {
		t.Errorf("the restart took %s: it waited for its own dead claim", took)
	}
	summary := waitNotice(t, alice, room, restarted, 2*time.Minute, "Recording saved", "interrupted by a restart")
	select {
	case <-call.Hangups():
	case <-time.After(20 * time.Second):
		t.Error("the restarted bot did not hang up the call it had been in")
	}
	call.Close()
	folders := callFolders(t, cfg.Recordings.Dir)
	if len(folders) != 1 {
		t.Fatalf("call folders %v", folders)
	}
	folder := filepath.Join(cfg.Recordings.Dir, folders[0])
	m, err := recorder.ReadManifest(folder)
	if err != nil || m.Status != recorder.StatusInterrupted || len(m.Tracks) != 1 {
		t.Fatalf("repaired manifest: %+v %v", m, err)
	}
	checkLinks(t, summary, folder, m)

	db, err := storage.OpenConfig(context.Background(), storage.Config{Engine: storage.Postgres, URI: uri})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	recID := recordingID.FindStringSubmatch(summary)[1]
	r := waitRecording(t, db, recID, 20*time.Second, "notified", func(r *storage.Recording) bool { return r.Status == storage.RecordingNotified })
	if r.Interruptions != 1 || r.Folder != folders[0] {
		t.Errorf("recording row after the crash: %+v", r)
	}
	parts, _ := db.Parts(ctx, recID)
	ups, _ := db.Uploads(ctx, recID)
	if len(parts) != 1 || parts[0].Status != storage.PartInterrupted || parts[0].SHA256 != m.Tracks[0].SHA256 {
		t.Errorf("part rows %+v, manifest %+v", parts, m.Tracks)
	}
	if len(ups) != 1 || ups[0].File != parts[0].File || ups[0].Status != storage.UploadConfirmed || ups[0].SHA256 != m.Tracks[0].SHA256 {
		for _, u := range ups {
			t.Errorf("upload: %+v", *u)
		}
		t.Errorf("want the file's upload confirmed, with the manifest's checksum")
	}
	placeShortCall(t, alice, room)
}
