package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/caller"
	"github.com/matrix-recorder/matrix-recorder/internal/devpg"
	"github.com/matrix-recorder/matrix-recorder/internal/devtools"
	"github.com/matrix-recorder/matrix-recorder/internal/lkpeer"
	"github.com/matrix-recorder/matrix-recorder/internal/meshpeer"
	"github.com/matrix-recorder/matrix-recorder/internal/testenv"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// startPostgresServer starts a PostgreSQL of the test's own and returns the server (to
// restart it) and a fresh database's connection string.
func startPostgresServer(t *testing.T) (*devpg.Server, string) {
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
	return srv, uri
}

// fleetEnv is what the instances of a fleet test share: one S3 store and one PostgreSQL
// database, applied to one bot account's config (base).
type fleetEnv struct {
	s3   *s3Env
	pg   *devpg.Server
	uri  string
	base config.Config
}

// newFleetEnv starts the S3 store and PostgreSQL for bot config base.
func newFleetEnv(t *testing.T, base config.Config) *fleetEnv {
	t.Helper()
	f := &fleetEnv{s3: startS3(t, false)}
	f.pg, f.uri = startPostgresServer(t)
	f.s3.apply(&base)
	base.Database = config.Database{Type: config.DatabasePostgres, URI: f.uri}
	f.base = base
	return f
}

// testFleet is n running instances (processes of the real binary) on a fleetEnv.
type testFleet struct {
	*fleetEnv
	cfgs  []config.Config
	procs []*process
}

// startFleet starts S3, PostgreSQL and n instances of the bot account of base: each
// with its own instance id, data_dir (device), recordings dir and HTTP port.
func startFleet(t *testing.T, base config.Config, n int) *testFleet {
	t.Helper()
	f := &testFleet{fleetEnv: newFleetEnv(t, base)}
	f.cfgs = fleetConfigsFrom(t, f.base, n)
	for _, c := range f.cfgs {
		f.procs = append(f.procs, startProcess(t, c))
	}
	return f
}

// recording returns the instance that records the one call (the one with a call
// folder), and another one.
func (f *testFleet) recording(t *testing.T) (owner, other int) {
	t.Helper()
	owner, other = -1, -1
	total := 0
	for i, c := range f.cfgs {
		n := len(callFolders(t, c.Recordings.Dir))
		total += n
		if n == 1 {
			owner = i
		} else if other < 0 {
			other = i
		}
	}
	if owner < 0 || other < 0 || total != 1 {
		var all [][]string
		for _, c := range f.cfgs {
			all = append(all, callFolders(t, c.Recordings.Dir))
		}
		t.Fatalf("call folders %v; want one, on one instance", all)
	}
	return owner, other
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

// fleetConfigsFrom returns the configs of n recorder instances from base, a bot config
// of one account with S3 and PostgreSQL applied: each with its own instance id, data_dir
// (device), recordings dir and HTTP port.
func fleetConfigsFrom(t *testing.T, base config.Config, n int) []config.Config {
	t.Helper()
	out := make([]config.Config, n)
	for i := range out {
		c := base
		dir := t.TempDir()
		c.DataDir, c.Recordings.Dir, c.Instance.ID = filepath.Join(dir, "data"), filepath.Join(dir, "recordings"), fmt.Sprintf("rec-%c", 'a'+i)
		if i > 0 {
			port, err := devtools.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			// The bucket's notifications go to the first instance only.
			c.HTTP.Listen, c.HTTP.PublicURL, c.HTTP.WebhookToken = fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("http://127.0.0.1:%d", port), ""
		}
		out[i] = c
	}
	return out
}

// openPostgres opens the state database at uri, as the recorder does.
func openPostgres(t *testing.T, uri string) *storage.DB {
	t.Helper()
	db, err := storage.OpenConfig(context.Background(), storage.Config{Engine: storage.Postgres, URI: uri})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// botSaidIn counts the bot's messages in room (edits left out) that contain substr.
func botSaidIn(p *lkpeer.Peer, room id.RoomID, bot id.UserID, substr string) int {
	return countContaining(botSaid(p.MessagesIn(room), bot, time.Time{}, time.Time{}), substr)
}

// fleetSettle is how long a test waits for an answer that must not come: longer than the
// longest wait an instance makes before it tries for a call (8 s at its limit), plus a
// loaded machine's sync delay. It bounds nothing the test measures.
const fleetSettle = 15 * time.Second

// TestIntegrationFleetSharesTheWork: two recorder binaries of one bot account on one
// PostgreSQL database run side by side. Two rooms with encrypted Element Call (LiveKit)
// calls: each call is recorded by exactly one instance, with one greeting, one start
// notice, one answer per command and one summary in its room, and the second room's call
// goes to the instance that was idle (the busy one waits a second per recording before it
// tries for a call).
func TestIntegrationFleetSharesTheWork(t *testing.T) {
	env := startLKEnv(t)
	fl := startFleet(t, env.botConfig(t), 2)
	cfgs := fl.cfgs
	bot := id.UserID(cfgs[0].Matrix.UserID)
	alice := env.peer(t, "alice", lkpeer.Options{Encrypt: true})
	bob := env.peer(t, "bob", lkpeer.Options{Encrypt: true})
	carol := env.peer(t, "carol", lkpeer.Options{Encrypt: true})
	dave := env.peer(t, "dave", lkpeer.Options{Encrypt: true})
	room1 := callRoom(t, alice, true, bot, bob)
	room2 := callRoom(t, carol, true, bot, dave)
	joinCall(t, room1, alice, bob)
	joinCall(t, room2, carol, dave)
	mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
	mustPublish(t, bob, testmedia.Tone660, livekit.TrackSource_MICROPHONE)
	mustPublish(t, carol, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
	mustPublish(t, dave, testmedia.Tone660, livekit.TrackSource_MICROPHONE)

	since := send(t, alice, room1, "!start")
	waitMessage(t, alice, room1, since, 90*time.Second, "Recording started")
	since = send(t, carol, room2, "!start")
	waitMessage(t, carol, room2, since, 90*time.Second, "Recording started")
	since = send(t, alice, room1, "!status")
	waitMessage(t, alice, room1, since, 30*time.Second, "Recording (livekit)")
	time.Sleep(fleetSettle)
	for _, c := range []struct {
		p    *lkpeer.Peer
		room id.RoomID
	}{{alice, room1}, {carol, room2}} {
		for _, what := range []string{"Hello! I record calls", "Recording started", "Recording (livekit)"} {
			if c.room == room2 && what == "Recording (livekit)" {
				continue
			}
			if n := botSaidIn(c.p, c.room, bot, what); n != 1 {
				t.Errorf("%s: the bot said %q %d times, want once", c.room, what, n)
			}
		}
		since := send(t, c.p, c.room, "!stop")
		waitMessage(t, c.p, c.room, since, 90*time.Second, "Recording saved")
	}
	time.Sleep(fleetSettle)
	for _, c := range []struct {
		p    *lkpeer.Peer
		room id.RoomID
	}{{alice, room1}, {carol, room2}} {
		if n := botSaidIn(c.p, c.room, bot, "Recording saved"); n != 1 {
			t.Errorf("%s: %d summaries, want one", c.room, n)
		}
		if n := botSaidIn(c.p, c.room, bot, "Nothing is being recorded"); n != 0 {
			t.Errorf("%s: an instance that does not record answered !stop", c.room)
		}
	}
	fa, fb := callFolders(t, cfgs[0].Recordings.Dir), callFolders(t, cfgs[1].Recordings.Dir)
	if len(fa) != 1 || len(fb) != 1 {
		t.Fatalf("call folders: rec-a %v, rec-b %v; want one call on each instance", fa, fb)
	}
	for i, dir := range []string{cfgs[0].Recordings.Dir, cfgs[1].Recordings.Dir} {
		folder := filepath.Join(dir, callFolders(t, dir)[0])
		m, err := recorder.ReadManifest(folder)
		if err != nil || m.Status != recorder.StatusFinished {
			t.Fatalf("rec-%c's manifest: %+v %v", 'a'+i, m, err)
		}
		users := map[string]bool{}
		for _, f := range m.Tracks {
			users[f.UserID] = true
		}
		if len(users) != 2 || len(m.Tracks) != 2 {
			t.Errorf("rec-%c recorded %s", 'a'+i, describe(m))
		}
	}
	db := openPostgres(t, fl.uri)
	for _, room := range []id.RoomID{room1, room2} {
		// The room's lease was given back when its recording ended.
		if l, err := db.LiveLease(context.Background(), storage.WatchResource(string(room))); err == nil {
			t.Errorf("%s's lease outlived its recording: %+v", room, l)
		}
	}
	fleetDeleteOnce(t, fl, db, alice, room1, bot)
}

// fleetDeleteOnce deletes room's one recording with !delete, which one instance answers
// (while the recording's summary still waits for its uploads on the instance that
// recorded it, another one says to try again): the room hears of the deletion once, the
// copies in S3 are gone, and so is the local folder on every instance.
func fleetDeleteOnce(t *testing.T, fl *testFleet, db *storage.DB, p *lkpeer.Peer, room id.RoomID, bot id.UserID) {
	t.Helper()
	ctx := context.Background()
	recs, err := db.RecordingsInRoom(ctx, string(room), 5)
	if err != nil || len(recs) != 1 {
		t.Fatalf("%s's recordings: %+v %v", room, recs, err)
	}
	rec := recs[0]
	deleted := false
	for try := 0; try < 6 && !deleted; try++ {
		since := send(t, p, room, "!delete "+rec.ID)
		answer := waitMessage(t, p, room, since, 60*time.Second, rec.ID)
		t.Logf("!delete %s answered: %s", rec.ID, answer)
		switch {
		case strings.Contains(answer, "Deleted the recording "+rec.ID):
			deleted = true
		case strings.Contains(answer, "again once the summary is there"):
			time.Sleep(10 * time.Second)
		default:
			t.Fatalf("!delete answered %q", answer)
		}
	}
	if !deleted {
		t.Fatal("the recording was never deleted")
	}
	time.Sleep(fleetSettle)
	if n := botSaidIn(p, room, bot, "Deleted the recording "+rec.ID); n != 1 {
		t.Errorf("the room heard of the deletion %d times, want once", n)
	}
	if r, err := db.Recording(ctx, rec.ID); err != nil || r.Status != storage.RecordingDeleted {
		t.Errorf("the deleted recording's row: %+v %v", r, err)
	}
	if keys := fl.s3.keys(t, "calls/"+rec.Folder+"/"); len(keys) != 0 {
		t.Errorf("copies left in S3 after the deletion: %q", keys)
	}
	// The instance that did not answer removes its copy at its next retention round.
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		var left []string
		for _, c := range fl.cfgs {
			if _, err := os.Stat(filepath.Join(c.Recordings.Dir, rec.Folder)); err == nil {
				left = append(left, c.Instance.ID)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deleted recording's local folder is still on %v", left)
		}
	}
}

// TestIntegrationPostgresKilledMidCall: the recorder on PostgreSQL is killed (-9) in the
// middle of a call and started again on the same data_dir: it takes its claim on the
// database back at once, repairs the files, marks the recording interrupted in
// PostgreSQL, finishes the uploads and posts the summary; the next call is recorded.
func TestIntegrationPostgresKilledMidCall(t *testing.T) {
	s := homeserver(t)
	fe := newFleetEnv(t, botConfig(t, s))
	cfg := fe.base
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

	db := openPostgres(t, fe.uri)
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

// TestIntegrationFleetHandOverAtStop: of two instances, the one that records an encrypted
// Element Call (LiveKit) call is stopped cleanly (SIGTERM): it pauses the recording,
// waits for its files' copies, and hands the room over; the other continues the recording
// in the same folder with its own device, says so once in the room, and ends it at !stop
// with one summary.
func TestIntegrationFleetHandOverAtStop(t *testing.T) { fleetTakeOver(t, false) }

// TestIntegrationFleetFailover: the instance that records an encrypted Element Call
// (LiveKit) call is killed (-9); once its room's lease runs out the other instance takes
// the recording over and continues it in new parts under the same folder and S3 prefix.
func TestIntegrationFleetFailover(t *testing.T) { fleetTakeOver(t, true) }

func fleetTakeOver(t *testing.T, kill bool) {
	env := startLKEnv(t)
	fl := startFleet(t, env.botConfig(t), 2)
	cfgs, procs, e := fl.cfgs, fl.procs, fl.s3
	bot := id.UserID(cfgs[0].Matrix.UserID)
	room, alice, bob, _ := startedTwoSpeakerCall(t, env, bot)
	time.Sleep(6 * time.Second)
	if kill {
		// Files long enough that losing their end (all of it, below 5 MB, before the
		// tails) shows against tailLoss.
		time.Sleep(10 * time.Second)
	}
	owner, other := fl.recording(t)
	t.Logf("%s records; stopping it (kill: %v)", cfgs[owner].Instance.ID, kill)
	stopped := time.Now()
	p := procs[owner]
	if kill {
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
	} else if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if !kill && err != nil {
			t.Errorf("the clean stop exited with %v", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("the owner did not exit")
	}
	// Bounded generously: the design is a lease of 5 s (none at a clean stop), a look
	// every half second and a join of the call; a loaded 2-core machine takes longer.
	// The gap itself is checked in the manifest below.
	note := waitMessage(t, alice, room, stopped, 2*time.Minute, "continues the recording")
	t.Logf("after %s: %s", time.Since(stopped).Round(time.Second), note)
	if !strings.Contains(note, cfgs[other].Instance.ID) || !strings.Contains(note, cfgs[owner].Instance.ID) {
		t.Errorf("the notice does not name both instances: %s", note)
	}
	if !kill && !strings.Contains(note, "handed the recording over") {
		t.Errorf("the notice does not say the recording was handed over: %s", note)
	}
	time.Sleep(6 * time.Second)
	since := send(t, alice, room, "!stop")
	summary := waitMessage(t, alice, room, since, 2*time.Minute, "Recording saved")
	t.Logf("summary:\n%s", summary)
	time.Sleep(fleetSettle)
	for what, want := range map[string]int{"continues the recording": 1, "Recording saved": 1, "Recording started": 1, "⚠️": 0} {
		if n := botSaidIn(alice, room, bot, what); n != want {
			t.Errorf("the bot said %q %d times, want %d", what, n, want)
		}
	}

	folders := callFolders(t, cfgs[other].Recordings.Dir)
	if len(folders) != 1 || folders[0] != callFolders(t, cfgs[owner].Recordings.Dir)[0] {
		t.Fatalf("the other instance's folders %v; want the owner's %v", folders, callFolders(t, cfgs[owner].Recordings.Dir))
	}
	folder := filepath.Join(cfgs[other].Recordings.Dir, folders[0])
	ownerFolder := filepath.Join(cfgs[owner].Recordings.Dir, folders[0])
	keepOnFailure(t, folder)
	m, err := recorder.ReadManifest(folder)
	if err != nil || m.Status != recorder.StatusFinished {
		t.Fatalf("manifest: %+v %v", m, err)
	}
	t.Logf("files:\n%s", describe(m))
	if len(m.Resumes) != 1 || m.Resumes[0].Instance != cfgs[other].Instance.ID || m.Resumes[0].PreviousInstance != cfgs[owner].Instance.ID {
		t.Fatalf("resumes %+v; want one, by %s after %s", m.Resumes, cfgs[other].Instance.ID, cfgs[owner].Instance.ID)
	}
	res := m.Resumes[0]
	gap := res.ResumedAt.Sub(res.InterruptedAt)
	t.Logf("hand-over in the manifest: resumed %s after the earlier instance's last write (negative: they overlap)", gap)
	switch {
	case kill && (gap < 0 || gap > time.Minute):
		t.Errorf("the recording stopped at %s and went on at %s", res.InterruptedAt, res.ResumedAt)
	case !kill && gap > 0:
		// A clean stop records on until the other instance records (issue 17: no gap).
		t.Errorf("handed over with a gap: the recording stopped at %s and went on at %s", res.InterruptedAt, res.ResumedAt)
	}
	// Each speaker: the parts the first instance wrote, then the second's, on one timeline.
	salvaged := map[string]string{} // the killed instance's files: their copies' ETags
	for _, u := range []*lkpeer.Peer{alice, bob} {
		parts := lkFiles(m, u.UserID(), recorder.SourceMicrophone)
		var before, after []recorder.FileEntry // by which instance wrote them
		for _, f := range parts {
			if _, err := os.Stat(filepath.Join(folder, f.File)); err == nil {
				after = append(after, f)
			} else {
				before = append(before, f)
			}
		}
		if len(before) == 0 || len(after) == 0 {
			t.Errorf("%s: %d parts of the first instance, %d of the second; want both", u.UserID(), len(before), len(after))
			continue
		}
		first, last := before[len(before)-1], after[0]
		end := first.StartOffsetMs + first.DurationMs
		if kill && last.StartOffsetMs < end {
			t.Errorf("%s: the second instance's part starts at %d ms, before the first's ends (%d ms)", u.UserID(), last.StartOffsetMs, end)
		}
		if !kill {
			// No gap on the call's timeline: the taker's first part begins before the
			// stopped instance's last part ends.
			if last.StartOffsetMs > end {
				t.Errorf("%s: a gap of %d ms on the timeline at the hand-over: the first instance's part ends at %d ms, the second's begins at %d ms",
					u.UserID(), last.StartOffsetMs-end, end, last.StartOffsetMs)
			} else {
				t.Logf("%s: the parts overlap by %d ms", u.UserID(), end-last.StartOffsetMs)
			}
		}
		if want := res.ResumedAt.Sub(m.StartedAt).Milliseconds(); last.StartOffsetMs < want-2000 {
			t.Errorf("%s: the continued part starts at %d ms, the resume was at %d ms", u.UserID(), last.StartOffsetMs, want)
		}
		if last.Upload == nil {
			t.Errorf("%s: the continued part %s has no copy", u.UserID(), last.File)
		}
		hz := 440.0
		if u == bob {
			hz = 660
		}
		checkAudio(t, folder, last, hz, 1100-hz)
		if kill {
			if first.Status != recorder.StatusInterrupted {
				t.Errorf("%s: the killed instance's part is %s", u.UserID(), first.Status)
			}
			// Its copy in S3 was completed by the other instance from the last tail.
			salvaged[first.File] = checkSalvagedCopy(t, e, folders[0], m, first, stopped, hz, 1100-hz)
			continue
		}
		// Handed over cleanly: the first instance's part is complete, copied, and on its
		// disk, and the manifest has its whole length.
		if first.Upload == nil || first.Status != recorder.StatusComplete {
			t.Errorf("%s: the handed-over part %+v", u.UserID(), first)
		}
		checkAudio(t, ownerFolder, first, hz, 1100-hz)
	}
	keys := e.keys(t, "calls/"+folders[0]+"/")
	t.Logf("S3 keys: %v", keys)
	for _, f := range m.Tracks {
		if f.Upload != nil && !slices.Contains(keys, "calls/"+folders[0]+"/"+f.File) {
			t.Errorf("%s has a copy in the manifest but not in S3", f.File)
		}
	}
	if !slices.Contains(keys, "calls/"+folders[0]+"/"+recorder.ManifestFile) {
		t.Error("no manifest in S3")
	}
	noTails(t, keys)
	if !kill {
		return
	}
	// The killed instance comes back: the files it had written are repaired and copied
	// to the same prefix; it says nothing in the room (the recording was taken over and
	// summarised by the other).
	back := time.Now()
	startProcess(t, cfgs[owner])
	for _, u := range []*lkpeer.Peer{alice, bob} {
		first := lkFiles(m, u.UserID(), recorder.SourceMicrophone)[0]
		key := "calls/" + folders[0] + "/" + first.File
		for deadline := time.Now().Add(2 * time.Minute); !slices.Contains(e.keys(t, "calls/"+folders[0]+"/"), key); time.Sleep(time.Second) {
			if time.Now().After(deadline) {
				t.Fatalf("the returning instance did not upload %s", first.File)
			}
		}
	}
	// The other instance's summary learns of those copies (it looks at the uploads every
	// 30 s while some are missing): its manifest lists every file with its copy.
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		m, err := recorder.ReadManifest(folder)
		missing := 0
		for _, f := range m.Tracks {
			if f.Upload == nil {
				missing++
			}
		}
		if err == nil && missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the manifest still misses %d copies: %v\n%s", missing, err, describe(m))
		}
	}
	time.Sleep(fleetSettle)
	for _, msg := range botSaid(alice.MessagesIn(room), bot, back, time.Time{}) {
		t.Errorf("the returning instance said: %s", msg)
	}
	// It did not upload its files over the copies the other instance completed.
	for file, etag := range salvaged {
		if got := e.etag(t, "calls/"+folders[0]+"/"+file); etag != "" && got != etag {
			t.Errorf("%s: the returning instance replaced the completed copy (ETag %s, was %s)", file, got, etag)
		}
	}
	noTails(t, e.keys(t, "calls/"+folders[0]+"/"))
}

// TestIntegrationFleetOneToOneCannotMove: two instances and a legacy 1:1 call (Element
// Web's): one instance answers it (the other stays silent: one answer, one recording);
// when that one is killed (-9), the call cannot move (its peer connection was in the
// killed process): the other instance ends the recording, hangs the call up, and says so
// once, with one summary.
func TestIntegrationFleetOneToOneCannotMove(t *testing.T) {
	s := homeserver(t)
	fl := startFleet(t, botConfig(t, s), 2)
	cfgs, procs := fl.cfgs, fl.procs
	bot := id.UserID(cfgs[0].Matrix.UserID)
	alice := newCaller(t, s, "alice")
	ctx := timeout(t, 5*time.Minute)
	room, err := alice.CreateDM(ctx, bot, false)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	call := dial(t, ctx, alice, room, caller.CallOptions{Audio: testmedia.Tone440})
	defer call.Close()
	waitNotice(t, alice, room, start, 60*time.Second, "Recording this call")
	time.Sleep(4 * time.Second)
	owner, other := fl.recording(t)
	killed := time.Now()
	if err := procs[owner].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-procs[owner].done
	note := waitNotice(t, alice, room, killed, 2*time.Minute, "cannot move to another instance")
	t.Logf("after %s: %s", time.Since(killed).Round(time.Second), note)
	summary := waitNotice(t, alice, room, killed, 2*time.Minute, "Recording saved")
	t.Logf("summary:\n%s", summary)
	select {
	case <-call.Hangups():
	case <-time.After(30 * time.Second):
		t.Error("the call was not hung up")
	}
	time.Sleep(fleetSettle)
	said := botSaid(alice.Notices(room), bot, time.Time{}, time.Time{})
	for what, want := range map[string]int{"Hello! I record calls": 1, "Recording this call": 1, "cannot move to another instance": 1, "Recording saved": 1, "I did not answer": 0} {
		if n := countContaining(said, what); n != want {
			t.Errorf("the bot said %q %d times, want %d:\n%s", what, n, want, strings.Join(said, "\n---\n"))
		}
	}
	folders := callFolders(t, cfgs[other].Recordings.Dir)
	if len(folders) != 1 {
		t.Fatalf("the other instance's folders: %v", folders)
	}
	m, err := recorder.ReadManifest(filepath.Join(cfgs[other].Recordings.Dir, folders[0]))
	if err != nil || m.Status == recorder.StatusRecording || !strings.Contains(m.Interruption, cfgs[owner].Instance.ID) {
		t.Errorf("the manifest the other instance ended: %+v %v", m, err)
	}
}

// TestIntegrationFleetMeshFailover: the instance that records an encrypted full-mesh
// Element Call call is killed (-9); the other instance takes the recording over: it joins
// the call with its own device (MatrixRTC membership, to-device signalling), the
// participants connect to it, and the files go on in new parts on the call's timeline.
func TestIntegrationFleetMeshFailover(t *testing.T) {
	s := homeserver(t)
	fl := startFleet(t, botConfig(t, s), 2)
	cfgs, procs, e := fl.cfgs, fl.procs, fl.s3
	bot := id.UserID(cfgs[0].Matrix.UserID)
	ctx := timeout(t, 5*time.Minute)
	alice := newMeshPeer(t, s, "alice", false)
	zoe := newMeshPeer(t, s, "zoe", false)
	room := meshRoom(t, ctx, alice, bot, zoe)
	conf, err := alice.CreateCall(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*meshpeer.Client{alice, zoe} {
		if _, err := c.Enter(ctx, room, conf, meshpeer.Media{Audio: testmedia.Tone440}); err != nil {
			t.Fatal(err)
		}
	}
	since := time.Now()
	if err := alice.SendMessage(ctx, room, "!start"); err != nil {
		t.Fatal(err)
	}
	waitNoticeOf(t, alice, room, since, "recording started", func(b string) bool { return strings.Contains(b, "Recording started") })
	// Files long enough that losing their end (all of it, below 5 MB, before the tails)
	// shows against tailLoss.
	time.Sleep(16 * time.Second)
	owner, other := fl.recording(t)
	killed := time.Now()
	if err := procs[owner].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-procs[owner].done
	// Bounded generously (the lease is 5 s; a loaded machine connects slowly); the gap is
	// read from the manifest.
	n, err := alice.WaitNotice(timeout(t, 2*time.Minute), room, killed, func(b string) bool { return strings.Contains(b, "continues the recording") })
	if err != nil {
		t.Fatalf("no take-over notice: %v", err)
	}
	t.Logf("after %s: %s", time.Since(killed).Round(time.Second), n.Body)
	time.Sleep(8 * time.Second)
	since = time.Now()
	if err := alice.SendMessage(ctx, room, "!stop"); err != nil {
		t.Fatal(err)
	}
	waitNoticeOf(t, alice, room, since, "summary", func(b string) bool { return strings.Contains(b, "Recording saved") })
	time.Sleep(fleetSettle)
	said := botSaid(alice.Notices(room), bot, time.Time{}, time.Time{})
	for what, want := range map[string]int{"Recording started": 1, "continues the recording": 1, "Recording saved": 1} {
		if n := countContaining(said, what); n != want {
			t.Errorf("the bot said %q %d times, want %d", what, n, want)
		}
	}
	folder, m := finishedFolderIn(t, cfgs[other].Recordings.Dir)
	keepOnFailure(t, folder)
	t.Logf("files:\n%s", describe(m))
	if len(m.Resumes) != 1 || m.Resumes[0].Instance != cfgs[other].Instance.ID || m.Resumes[0].PreviousInstance != cfgs[owner].Instance.ID {
		t.Fatalf("resumes %+v", m.Resumes)
	}
	res := m.Resumes[0]
	t.Logf("hand-over gap in the manifest: %s", res.ResumedAt.Sub(res.InterruptedAt))
	for _, u := range []*meshpeer.Client{alice, zoe} {
		var parts []recorder.FileEntry
		for _, f := range m.Tracks {
			if f.UserID == string(u.UserID()) && f.Kind == "audio" {
				parts = append(parts, f)
			}
		}
		if len(parts) < 2 {
			t.Errorf("%s: %d audio parts, want the first instance's and the second's", u.UserID(), len(parts))
			continue
		}
		first, last := parts[0], parts[len(parts)-1]
		if last.StartOffsetMs < first.StartOffsetMs+first.DurationMs || last.StartOffsetMs < res.ResumedAt.Sub(m.StartedAt).Milliseconds()-2000 {
			t.Errorf("%s: the continued part starts at %d ms (first part %d+%d ms, resumed at %s)", u.UserID(), last.StartOffsetMs, first.StartOffsetMs, first.DurationMs, res.ResumedAt)
		}
		checkAudio(t, folder, last, 440, 660)
		// The killed instance's file: its copy in S3 completed from its last tail.
		checkSalvagedCopy(t, e, filepath.Base(folder), m, first, killed, 440, 660)
	}
	noTails(t, e.keys(t, "calls/"+filepath.Base(folder)+"/"))
}

// TestIntegrationFleetAutorecord: with two instances, !autorecord on is answered once, and
// a call that begins in the room is recorded once (one start notice, one folder), by the
// instance that wins the room; after !stop it is not started again by the other.
func TestIntegrationFleetAutorecord(t *testing.T) {
	env := startLKEnv(t)
	cfgs := startFleet(t, env.botConfig(t), 2).cfgs
	bot := id.UserID(cfgs[0].Matrix.UserID)
	alice := env.peer(t, "alice", lkpeer.Options{Encrypt: true})
	bob := env.peer(t, "bob", lkpeer.Options{Encrypt: true}) // in the room, not in the call
	room := callRoom(t, alice, true, bot, bob)
	since := send(t, alice, room, "!autorecord on")
	waitMessage(t, alice, room, since, 30*time.Second, "Autorecord is on")
	began := time.Now()
	joinCall(t, room, alice)
	mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
	waitMessage(t, alice, room, began, 90*time.Second, "Recording started")
	time.Sleep(5 * time.Second)
	since = send(t, alice, room, "!stop")
	waitMessage(t, alice, room, since, 90*time.Second, "Recording saved")
	time.Sleep(fleetSettle)
	for what, want := range map[string]int{"Autorecord is on": 1, "Recording started": 1, "Recording saved": 1, "Autorecord:": 0} {
		if n := botSaidIn(alice, room, bot, what); n != want {
			t.Errorf("the bot said %q %d times, want %d", what, n, want)
		}
	}
	if fa, fb := callFolders(t, cfgs[0].Recordings.Dir), callFolders(t, cfgs[1].Recordings.Dir); len(fa)+len(fb) != 1 {
		t.Errorf("call folders: rec-a %v, rec-b %v; want the call once", fa, fb)
	}
}
