package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/internal/caller"
	"github.com/matrix-recorder/matrix-recorder/internal/lkpeer"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// TestIntegrationFleetDatabaseRestart: of two instances on one PostgreSQL, one records an
// encrypted Element Call (LiveKit) call when PostgreSQL goes down for twice a room lease
// and comes back (issue 17: "the database restarted mid-recording: nothing lost"). The
// database was gone for every instance, so nobody takes the recording over: the owner
// renews its room's lease when the database is back and records on, the other instance
// stays silent. One folder, no resume, one summary, and each speaker's audio runs from
// the start to !stop without a hole, every file copied.
func TestIntegrationFleetDatabaseRestart(t *testing.T) {
	const outage = 12 * time.Second // more than twice a room lease (5 s)
	env := startLKEnv(t)
	fl := startFleet(t, env.botConfig(t), 2)
	cfgs := fl.cfgs
	bot := id.UserID(cfgs[0].Matrix.UserID)
	room, alice, bob, _ := startedTwoSpeakerCall(t, env, bot)
	time.Sleep(4 * time.Second)
	owner, other := fl.recording(t)
	t.Logf("%s records; PostgreSQL goes down for %s", cfgs[owner].Instance.ID, outage)
	if err := fl.pg.Down(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(outage)
	if err := fl.pg.Up(timeout(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Longer than a lease and the other instance's wait after the outage: a take-over
	// would have happened by now.
	time.Sleep(15 * time.Second)
	stop := send(t, alice, room, "!stop")
	summary := waitMessage(t, alice, room, stop, 2*time.Minute, "Recording saved")
	t.Logf("summary:\n%s", summary)
	time.Sleep(fleetSettle)
	for what, want := range map[string]int{"Recording started": 1, "Recording saved": 1, "continues the recording": 0, "Recording ended": 0} {
		if n := botSaidIn(alice, room, bot, what); n != want {
			t.Errorf("the bot said %q %d times, want %d", what, n, want)
		}
	}
	if f := callFolders(t, cfgs[other].Recordings.Dir); len(f) != 0 {
		t.Errorf("the other instance has call folders %v; nothing was to be taken over", f)
	}
	folder, m := finishedFolderIn(t, cfgs[owner].Recordings.Dir)
	keepOnFailure(t, folder)
	t.Logf("files:\n%s", describe(m))
	if len(m.Resumes) != 0 {
		t.Errorf("resumes %+v; the recording was never interrupted", m.Resumes)
	}
	stopMs := stop.Sub(m.StartedAt).Milliseconds()
	for i, u := range []*lkpeer.Peer{alice, bob} {
		parts := lkFiles(m, u.UserID(), recorder.SourceMicrophone)
		if len(parts) == 0 {
			t.Errorf("%s: no audio", u.UserID())
			continue
		}
		end := parts[0].StartOffsetMs
		for _, f := range parts {
			if f.StartOffsetMs > end+1000 {
				t.Errorf("%s: a hole of %d ms before %s", u.UserID(), f.StartOffsetMs-end, f.File)
			}
			end = max(end, f.StartOffsetMs+f.DurationMs)
			if f.Status != recorder.StatusComplete || f.Upload == nil {
				t.Errorf("%s: %s is %s (copy %+v)", u.UserID(), f.File, f.Status, f.Upload)
			}
			checkAudio(t, folder, f, []float64{440, 660}[i], []float64{660, 440}[i])
		}
		if end < stopMs-3000 {
			t.Errorf("%s: the audio ends at %d ms; !stop was at %d ms", u.UserID(), end, stopMs)
		}
	}
	db := openPostgres(t, fl.uri)
	ctx := context.Background()
	recs, err := db.RecordingsInRoom(ctx, string(room), 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("recordings of the room: %+v %v", recs, err)
	}
	if r := recs[0]; r.Interruptions != 0 || (r.Status != storage.RecordingNotified && r.Status != storage.RecordingSaved) {
		t.Errorf("the recording's row: %+v", r)
	}
	parts, err := db.Parts(ctx, recs[0].ID)
	if err != nil || len(parts) != len(m.Tracks) {
		t.Errorf("%d part rows for %d files: %v", len(parts), len(m.Tracks), err)
	}
}

// TestIntegrationPostgresRestartSingle: one recorder on PostgreSQL records a legacy 1:1
// call while PostgreSQL is down for 8 s (more than a room lease) and comes back: the call
// goes on being recorded, one file without a hole, one summary, nothing interrupted.
func TestIntegrationPostgresRestartSingle(t *testing.T) {
	d := dmCallOnPostgres(t)
	fe, cfg, alice, room, ctx, call, start := d.fe, d.fe.base, d.alice, d.room, d.ctx, d.call, d.start
	time.Sleep(3 * time.Second)
	if err := fe.pg.Down(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(8 * time.Second)
	if err := fe.pg.Up(timeout(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(8 * time.Second)
	hungUp := time.Now()
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	summary := waitSummary(t, alice, room, start)
	t.Logf("summary:\n%s", summary)
	time.Sleep(fleetSettle)
	said := botSaid(alice.Notices(room), id.UserID(cfg.Matrix.UserID), time.Time{}, time.Time{})
	for what, want := range map[string]int{"Recording this call": 1, "Recording saved": 1, "interrupted": 0} {
		if n := countContaining(said, what); n != want {
			t.Errorf("the bot said %q %d times, want %d", what, n, want)
		}
	}
	folder, m := finishedFolderIn(t, cfg.Recordings.Dir)
	keepOnFailure(t, folder)
	if len(m.Resumes) != 0 {
		t.Fatalf("manifest: %+v", m)
	}
	t.Logf("files:\n%s", describe(m))
	end := int64(0)
	for _, f := range m.Tracks {
		if f.Kind != "audio" {
			continue
		}
		if f.StartOffsetMs > end+1000 {
			t.Errorf("a hole of %d ms before %s", f.StartOffsetMs-end, f.File)
		}
		end = max(end, f.StartOffsetMs+f.DurationMs)
		if f.Status != recorder.StatusComplete || f.Upload == nil {
			t.Errorf("%s is %s (copy %+v)", f.File, f.Status, f.Upload)
		}
		checkAudio(t, folder, f, 440, 660)
	}
	if want := hungUp.Sub(m.StartedAt).Milliseconds() - 3000; end < want {
		t.Errorf("the audio ends at %d ms; the call was hung up at %d ms", end, want+3000)
	}
}

// TestIntegrationPostgresOutageEndsFile: one recorder on PostgreSQL records a legacy 1:1
// call whose caller hangs up while PostgreSQL is down: the file ends during the outage,
// and its row cannot be written then. Once the database is back the row is written: it
// says what the file's manifest entry says (saved, its length, duration and checksum),
// not what it said when the file started. The hangup itself came in a sync response the
// bot could not record its place after (the sync position lives in PostgreSQL): it is not
// skipped, the bot ends the call and posts the summary once the database is back.
func TestIntegrationPostgresOutageEndsFile(t *testing.T) {
	d := dmCallOnPostgres(t)
	fe, cfg, alice, room, ctx, call, start := d.fe, d.fe.base, d.alice, d.room, d.ctx, d.call, d.start
	time.Sleep(4 * time.Second)
	if err := fe.pg.Down(); err != nil {
		t.Fatal(err)
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(8 * time.Second) // the file ends while the database is down
	if err := fe.pg.Up(timeout(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	folders := callFolders(t, cfg.Recordings.Dir)
	if len(folders) != 1 {
		t.Fatalf("call folders %v", folders)
	}
	folder := filepath.Join(cfg.Recordings.Dir, folders[0])
	keepOnFailure(t, folder)
	db := openPostgres(t, fe.uri)
	// The rows that waited are written within the recorder's retry pause (at most 10 s)
	// of the database answering again.
	var problems []string
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		problems = outageRowProblems(t, db, folder)
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
	// The hangup came while the database was down: the bot handles it once the database
	// is back, ends the call and posts its summary.
	summary := waitSummary(t, alice, room, start)
	t.Logf("summary:\n%s", summary)
}

// outageRowProblems compares the rows of a call folder's audio files with its manifest.
func outageRowProblems(t *testing.T, db *storage.DB, folder string) []string {
	t.Helper()
	ctx := context.Background()
	m, err := recorder.ReadManifest(folder)
	if err != nil {
		return []string{fmt.Sprintf("manifest: %v", err)}
	}
	r, err := db.RecordingByFolder(ctx, filepath.Base(folder))
	if err != nil {
		return []string{fmt.Sprintf("the recording's row: %v", err)}
	}
	parts, err := db.Parts(ctx, r.ID)
	if err != nil {
		return []string{fmt.Sprintf("part rows: %v", err)}
	}
	rows := map[string]*storage.Part{}
	for _, p := range parts {
		rows[p.File] = p
	}
	var out []string
	audio := 0
	for _, f := range m.Tracks {
		if f.Kind != "audio" {
			continue
		}
		audio++
		p := rows[f.File]
		if f.Status != recorder.StatusComplete {
			out = append(out, fmt.Sprintf("%s is %s in the manifest", f.File, f.Status))
		}
		if p == nil || p.Status != storage.PartSaved || p.Bytes != f.Bytes || p.DurationMs != f.DurationMs || p.SHA256 != f.SHA256 || p.EndedAt.IsZero() {
			out = append(out, fmt.Sprintf("%s: row %+v\nmanifest entry: %+v", f.File, p, f))
		}
	}
	if audio == 0 {
		out = append(out, "no audio file in the manifest")
	}
	return out
}

// pgDMCall is a legacy 1:1 call of alice to a recorder on PostgreSQL, being recorded.
type pgDMCall struct {
	fe    *fleetEnv
	alice *caller.Client
	room  id.RoomID
	ctx   context.Context
	call  *caller.Call
	start time.Time // when alice dialled
}

// dmCallOnPostgres starts S3, PostgreSQL and one recorder on them, and has alice call it
// with a 440 Hz tone; it returns once the bot said it records.
func dmCallOnPostgres(t *testing.T) pgDMCall {
	t.Helper()
	s := homeserver(t)
	d := pgDMCall{fe: newFleetEnv(t, botConfig(t, s))}
	startProcess(t, d.fe.base)
	d.alice = newCaller(t, s, "alice")
	d.ctx = timeout(t, 4*time.Minute)
	room, err := d.alice.CreateDM(d.ctx, id.UserID(d.fe.base.Matrix.UserID), false)
	if err != nil {
		t.Fatal(err)
	}
	d.room, d.start = room, time.Now()
	d.call = dial(t, d.ctx, d.alice, room, caller.CallOptions{Audio: testmedia.Tone440})
	t.Cleanup(d.call.Close)
	waitNotice(t, d.alice, room, d.start, 30*time.Second, "Recording this call")
	return d
}
