package lifecycle

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// restartEnv is a lifecycle on the wall clock whose state a second run can take over.
func restartEnv(t *testing.T, from *env) *env {
	t.Helper()
	e := newEnv(t, func(c *config.Config) {
		if from != nil {
			c.DataDir, c.Recordings.Dir, c.Database = from.lc.cfg.DataDir, from.lc.cfg.Recordings.Dir, from.lc.cfg.Database
		}
	})
	e.rec = newRealClockRecorder(t, e)
	e.lc.marks.gap, e.lc.marks.pace = 0, time.Millisecond
	return e
}

// recordAudio records a second of a tone as alice's microphone in s.
func recordAudio(t *testing.T, s *recorder.Session) {
	t.Helper()
	src, err := testmedia.NewOpusRTP(testmedia.Tone440, 50)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := s.AddTrack(recorder.TrackInfo{UserID: string(alice), DeviceID: "DEV", MimeType: "audio/opus", ClockRate: 48000, Channels: 2, PayloadType: 111, SSRC: 42})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(context.Background(), recorder.Packets(src)); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A recording a clean stop paused is saved as paused (no summary, no expiry, the room's
// mark kept); the next run continues it in the same folder as a direct call when it was
// one, says so once, and its summary at the end covers both runs.
func TestPausedRecordingContinuesAfterRestart(t *testing.T) {
	ctx := context.Background()
	e := restartEnv(t, nil)
	e.lc.cfg.Recordings.ExpireAfter = config.Duration(48 * time.Hour)
	e.lc.Run(ctx)
	s, err := e.rec.Start(ctx, recorder.CallInfo{CallID: "element-call", RoomID: string(room), Kind: "livekit"})
	if err != nil {
		t.Fatal(err)
	}
	folder := filepath.Base(s.Folder())
	e.lc.Answered(folder, alice, "audio")
	recordAudio(t, s)
	m, err := s.Pause(ctx, "the recorder is restarting")
	if err != nil || m.Status != recorder.StatusInterrupted {
		t.Fatalf("pause: %v %s", err, m.Status)
	}
	e.lc.flushRows(ctx, folder)
	r, err := e.lc.db.RecordingByFolder(ctx, folder)
	if err != nil || r.Status != storage.RecordingPaused || r.Interruptions != 1 || !r.ExpiresAt.IsZero() {
		t.Fatalf("paused row: %+v %v", r, err)
	}
	waitUntil(t, "the mark", func() bool { return e.chat.markLog() == string(room)+" on" })
	if err := e.lc.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if said, _ := e.log(); said != "" {
		t.Errorf("the pause said %q", said)
	}
	if got := e.chat.markLog(); got != string(room)+" on" {
		t.Errorf("marks after the pause: %q, want the mark kept", got)
	}

	// The next run.
	e2 := restartEnv(t, e)
	var mu sync.Mutex
	var resumed *recorder.Session
	e2.calls.resume = func(req ResumeRequest) (bool, string) {
		s, err := e2.rec.Start(recorder.WithResume(ctx, req.Folder), recorder.CallInfo{CallID: "element-call", RoomID: string(req.Room), Kind: "livekit"})
		if err != nil {
			return false, err.Error()
		}
		mu.Lock()
		resumed = s
		mu.Unlock()
		return true, ""
	}
	e2.lc.Recover(ctx, nil)
	e2.lc.Run(ctx)
	waitUntil(t, "the notice", func() bool { return len(e2.chat.texts(room)) > 0 })
	if got := joined(e2.chat.texts(room)); !strings.Contains(got, "The recorder restarted; recording continues") {
		t.Fatalf("notice after the restart: %q", got)
	}
	e2.calls.mu.Lock()
	req := e2.calls.resumes[0]
	e2.calls.mu.Unlock()
	if !req.Paused || req.Folder != folder || req.Caller != alice || req.Intent != "audio" || req.Manifest == nil || req.Manifest.Status != recorder.StatusInterrupted {
		t.Errorf("resume request: %+v", req)
	}
	mu.Lock()
	s2 := resumed
	mu.Unlock()
	if s2 == nil || !s2.Resumed() || filepath.Base(s2.Folder()) != folder {
		t.Fatalf("not resumed in the same folder: %+v", s2)
	}
	recordAudio(t, s2)
	m2, err := s2.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e2.lc.Ended(room, folder, m2, "", nil, true)
	waitUntil(t, "the summary", func() bool { return len(e2.chat.texts(room)) > 1 })
	texts := e2.chat.texts(room)
	if len(texts) != 2 || !strings.Contains(texts[1], "Recording saved") || !strings.Contains(texts[1], "restarted 1 time") {
		t.Errorf("said after the restart: %q", texts)
	}
	if len(m2.Tracks) != 2 || m2.Tracks[1].Part != 2 || len(m2.Resumes) != 1 || m2.Resumes[0].Reason != "the recorder is restarting" {
		t.Errorf("manifest: tracks %s resumes %+v", describeTracks(m2), m2.Resumes)
	}
	// The mark goes once the recording ends (the room had it from the first run).
	waitUntil(t, "the mark to go", func() bool { return e2.chat.markLog() == string(room)+" off" })
	// Its row goes right after the name is back (not before: a crash in between must
	// find the mark to remove).
	waitUntil(t, "the mark's row to go", func() bool { marks, err := e2.lc.db.NameMarks(ctx); return err == nil && len(marks) == 0 })
}

func describeTracks(m recorder.Manifest) string {
	var out []string
	for _, tr := range m.Tracks {
		out = append(out, tr.File)
	}
	return strings.Join(out, ", ")
}

// A paused recording whose call ended while the recorder was down ends where it was
// paused: no "continues" notice, a summary that says why, a finished manifest, and the
// room's mark goes.
func TestPausedRecordingWhoseCallEnded(t *testing.T) {
	ctx := context.Background()
	e := restartEnv(t, nil)
	e.lc.Run(ctx)
	s, err := e.rec.Start(ctx, recorder.CallInfo{CallID: "c", RoomID: string(room), Kind: "group"})
	if err != nil {
		t.Fatal(err)
	}
	folder := filepath.Base(s.Folder())
	recordAudio(t, s)
	if _, err := s.Pause(ctx, "the recorder is restarting"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the mark", func() bool { return e.chat.markLog() == string(room)+" on" })
	if err := e.lc.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	e2 := restartEnv(t, e)
	e2.lc.Recover(ctx, nil)
	e2.lc.Run(ctx)
	waitUntil(t, "the summary", func() bool { return len(e2.chat.texts(room)) > 0 })
	got := joined(e2.chat.texts(room))
	if !strings.Contains(got, "could not continue: no call") || !strings.Contains(got, "Recording saved") || strings.Contains(got, "recording continues") {
		t.Errorf("said: %q", got)
	}
	m, err := recorder.ReadManifest(filepath.Join(e.lc.cfg.Recordings.Dir, folder))
	if err != nil || m.Status != recorder.StatusFinished || m.Interruption != "" || len(m.Tracks) != 1 {
		t.Errorf("manifest: %+v %v", m, err)
	}
	r, _ := e2.lc.db.RecordingByFolder(ctx, folder)
	waitUntil(t, "the row", func() bool {
		r, _ = e2.lc.db.RecordingByFolder(ctx, folder)
		return r.Status == storage.RecordingNotified
	})
	waitUntil(t, "the mark to go", func() bool { return e2.chat.markLog() == string(room)+" off" })
}

// Opt-outs are kept in the state database: a new run reads them back.
func TestOptOutsSurviveARestart(t *testing.T) {
	ctx := context.Background()
	e := restartEnv(t, nil)
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, u := range []id.UserID{alice, bob} {
		if err := e.lc.SetOptOut(ctx, room, u, true, at); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.lc.SetOptOut(ctx, room, bob, false, at); err != nil {
		t.Fatal(err)
	}
	if err := e.lc.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	e2 := restartEnv(t, e)
	got, err := e2.lc.OptOuts(ctx)
	if err != nil || len(got) != 1 || len(got[room]) != 1 || !got[room][alice].Equal(at) {
		t.Errorf("opt-outs after the restart: %v %v", got, err)
	}
}

// The display name's mark is paced: changes within the gap wait, a start and a stop
// within it cancel out, a failed change is retried after a pause, and a mark the last
// run left in a room without a recording goes at start-up.
func TestRecordingMarkPacing(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	n := e.lc.marks
	n.ready = true
	const other = id.RoomID("!other:example.org")
	n.want(room, true)
	if w := n.step(ctx, false); w != n.pace || e.chat.markLog() != string(room)+" on" {
		t.Fatalf("first change: wait %v, marks %q", w, e.chat.markLog())
	}
	n.want(room, false)
	if w := n.step(ctx, false); w != markGap || e.chat.markLog() != string(room)+" on" {
		t.Fatalf("a change within the gap went out: wait %v, marks %q", w, e.chat.markLog())
	}
	n.want(room, true) // started again before the gap: nothing to change
	e.advance(markGap)
	if w := n.step(ctx, false); w != time.Hour || e.chat.markLog() != string(room)+" on" {
		t.Fatalf("stop and start within the gap: wait %v, marks %q", w, e.chat.markLog())
	}
	e.chat.mu.Lock()
	e.chat.failMark = 1
	e.chat.mu.Unlock()
	n.want(room, false)
	n.step(ctx, false)
	if w := n.step(ctx, false); w != markRetry || e.chat.markLog() != string(room)+" on" {
		t.Fatalf("retry: wait %v, marks %q", w, e.chat.markLog())
	}
	e.advance(markRetry)
	n.step(ctx, false)
	if got := e.chat.markLog(); got != string(room)+" on|"+string(room)+" off" {
		t.Fatalf("marks after the retry: %q", got)
	}
	// A mark the last run left in a room that records nothing now.
	if err := e.lc.db.SetNameMark(ctx, string(other), e.clock()); err != nil {
		t.Fatal(err)
	}
	n.load(ctx)
	n.cleanup()
	n.flush(ctx)
	if got := e.chat.markLog(); !strings.HasSuffix(got, "|"+string(other)+" off") {
		t.Errorf("left mark not cleaned: %q", got)
	}
	if marks, _ := e.lc.db.NameMarks(ctx); len(marks) != 0 {
		t.Errorf("marks in the database: %v", marks)
	}
}

// bot.recording_displayname off: recordings leave the name alone.
func TestRecordingMarkOff(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Bot.RecordingDisplayName = false })
	e.lc.marks.ready = true
	s := e.start(t, "group")
	if _, err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.lc.marks.flush(context.Background())
	if got := e.chat.markLog(); got != "" {
		t.Errorf("marks %q", got)
	}
}
