package lifecycle

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// gatedRows is the state database behind a gate: while the gate is shut every write
// waits, as on a stalled disk or a database locked by someone else. It notes each write
// as it reaches the database.
type gatedRows struct {
	db   rowStore
	open chan struct{}

	mu     sync.Mutex
	writes []string
}

func (g *gatedRows) pass(ctx context.Context, what string) error {
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.mu.Lock()
	g.writes = append(g.writes, what)
	g.mu.Unlock()
	return nil
}

func (g *gatedRows) written() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.writes...)
}

func (g *gatedRows) CreateRecording(ctx context.Context, r *storage.Recording) error {
	if err := g.pass(ctx, "create recording"); err != nil {
		return err
	}
	return g.db.CreateRecording(ctx, r)
}

func (g *gatedRows) UpdateRecording(ctx context.Context, r *storage.Recording) error {
	if err := g.pass(ctx, "update recording "+string(r.Status)); err != nil {
		return err
	}
	return g.db.UpdateRecording(ctx, r)
}

func (g *gatedRows) ModifyRecording(ctx context.Context, id string, fn func(r *storage.Recording)) (*storage.Recording, error) {
	var status storage.RecordingStatus
	if err := g.pass(ctx, "modify recording"); err != nil {
		return nil, err
	}
	r, err := g.db.ModifyRecording(ctx, id, func(r *storage.Recording) {
		fn(r)
		status = r.Status
	})
	g.mu.Lock()
	g.writes[len(g.writes)-1] += " " + string(status)
	g.mu.Unlock()
	return r, err
}

func (g *gatedRows) SavePart(ctx context.Context, p *storage.Part) error {
	if err := g.pass(ctx, "part "+p.File+" "+string(p.Status)); err != nil {
		return err
	}
	return g.db.SavePart(ctx, p)
}

// stallBound is how long the test lets a track take with the database shut: far more than
// the few milliseconds five seconds of audio take to write, so that only a track that
// waits for the database runs into it.
const stallBound = 30 * time.Second

// No hook does I/O on the goroutine that writes media: with every database write blocked,
// a track still writes all its packets and finalises its file, and the session closes.
// Once the database answers again, the rows catch up in the order things happened, and
// say what the manifest says.
func TestBlockedDatabaseDoesNotStopMedia(t *testing.T) {
	e := newEnv(t, nil)
	gate := &gatedRows{db: e.lc.rows, open: make(chan struct{})}
	e.lc.rows = gate
	e.rec = newRealClockRecorder(t, e)
	ctx := context.Background()

	// The whole recording runs with the database shut: start, a track's five seconds of
	// audio, the end.
	src, err := testmedia.NewOpusRTP(testmedia.Tone440, 0)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		s   *recorder.Session
		m   recorder.Manifest
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := e.startIn(room, "c", "group")
		if err != nil {
			done <- result{err: err}
			return
		}
		tr, err := s.AddTrack(recorder.TrackInfo{UserID: string(alice), DeviceID: "DEV", MimeType: "audio/opus", ClockRate: 48000, Channels: 2, PayloadType: 111, SSRC: 42})
		if err == nil {
			err = tr.Run(ctx, recorder.Packets(src))
		}
		m, cerr := s.Close(ctx)
		done <- result{s, m, errors.Join(err, cerr)}
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(stallBound):
		t.Fatalf("the recording stalled behind the blocked database (%d of %d packets read)", src.Read(), src.Len())
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	s, m := res.s, res.m
	if len(m.Tracks) != 1 || m.Tracks[0].Status != recorder.StatusComplete || m.Tracks[0].Stats.PacketsReceived != uint64(src.Len()) || m.Tracks[0].Bytes == 0 {
		t.Fatalf("media while the database was blocked: %+v", m.Tracks)
	}
	if w := gate.written(); len(w) != 0 {
		t.Fatalf("rows written through a shut gate: %q", w)
	}

	close(gate.open)
	e.lc.flushRows(ctx, filepath.Base(s.Folder()))
	file := m.Tracks[0].File
	want := []string{
		"create recording",
		"part " + file + " started",
		"modify recording active",
		"part " + file + " saved",
		"modify recording stopping",
		"modify recording saved",
	}
	// The part's row comes when its SHA-256 is known, which the recorder computes after
	// the file is final, so it may come after Close began (recording stopping).
	alsoRight := []string{want[0], want[1], want[2], want[4], want[3], want[5]}
	if got := gate.written(); strings.Join(got, "\n") != strings.Join(want, "\n") && strings.Join(got, "\n") != strings.Join(alsoRight, "\n") {
		t.Errorf("rows written in this order:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	r, err := e.lc.db.RecordingByFolder(ctx, filepath.Base(s.Folder()))
	if err != nil || r.Status != storage.RecordingSaved || r.Bytes != m.Tracks[0].Bytes {
		t.Fatalf("recording row: %+v %v", r, err)
	}
	parts, err := e.lc.db.Parts(ctx, r.ID)
	if err != nil || len(parts) != 1 || parts[0].Status != storage.PartSaved || parts[0].SHA256 != m.Tracks[0].SHA256 || parts[0].Bytes != m.Tracks[0].Bytes {
		t.Fatalf("part rows: %+v %v", parts, err)
	}
}

// newRealClockRecorder is the env's recorder on the wall clock (the track's jitter buffer
// and flushes follow it).
func newRealClockRecorder(t *testing.T, e *env) *recorder.Recorder {
	t.Helper()
	e.lc.now = time.Now
	r, err := recorder.New(recorder.Options{Dir: e.lc.cfg.Recordings.Dir, Hooks: e.lc.Hooks(), FlushInterval: 50 * time.Millisecond}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return r
}
