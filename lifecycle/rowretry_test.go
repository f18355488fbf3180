package lifecycle

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// downRows is the state database during an outage: while down is set every write fails at
// once (a refused connection, a restarting server). It notes each write the database took.
type downRows struct {
	db   rowStore
	down atomic.Bool

	mu      sync.Mutex
	refused int
	writes  []string
}

var errDatabaseDown = errors.New("connection refused")

func (d *downRows) take(what string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down.Load() {
		d.refused++
		return errDatabaseDown
	}
	d.writes = append(d.writes, what)
	return nil
}

func (d *downRows) taken() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.writes)
}

func (d *downRows) refusals() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.refused
}

func (d *downRows) CreateRecording(ctx context.Context, r *storage.Recording) error {
	if err := d.take("create recording"); err != nil {
		return err
	}
	return d.db.CreateRecording(ctx, r)
}

func (d *downRows) UpdateRecording(ctx context.Context, r *storage.Recording) error {
	if err := d.take("update recording " + string(r.Status)); err != nil {
		return err
	}
	return d.db.UpdateRecording(ctx, r)
}

func (d *downRows) ModifyRecording(ctx context.Context, id string, fn func(r *storage.Recording)) (*storage.Recording, error) {
	// Noted with the status it writes (fn runs on the row inside the store's call).
	var status storage.RecordingStatus
	if d.down.Load() {
		return nil, d.take("modify recording")
	}
	r, err := d.db.ModifyRecording(ctx, id, func(r *storage.Recording) { fn(r); status = r.Status })
	if err != nil {
		return nil, err
	}
	return r, d.take("modify recording " + string(status))
}

func (d *downRows) SavePart(ctx context.Context, p *storage.Part) error {
	if err := d.take("part " + p.File + " " + string(p.Status)); err != nil {
		return err
	}
	return d.db.SavePart(ctx, p)
}

// A database outage in the middle of a recording: a file that started before it ends
// during it, another file starts and ends during it, and the recording ends during it.
// The writes the database refused wait, one per row with its latest state, and once it
// answers again every row says what the manifest says.
func TestRowsRefusedDuringOutageAreWrittenAfterIt(t *testing.T) {
	e := newEnv(t, nil)
	rows := &downRows{db: e.lc.rows}
	e.lc.rows = rows
	e.lc.rowRetry = 5 * time.Millisecond
	e.rec = newRealClockRecorder(t, e)
	ctx := context.Background()

	s, err := e.startIn(room, "c", "group")
	if err != nil {
		t.Fatal(err)
	}
	folder := filepath.Base(s.Folder())
	addTrack := func(ssrc uint32) (*recorder.Track, *testmedia.RTPSource) {
		t.Helper()
		src, err := testmedia.NewOpusRTP(testmedia.Tone440, 0)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := s.AddTrack(recorder.TrackInfo{UserID: string(alice), DeviceID: "DEV", MimeType: "audio/opus", ClockRate: 48000, Channels: 2, PayloadType: 111, SSRC: ssrc})
		if err != nil {
			t.Fatal(err)
		}
		return tr, src
	}
	// The first file starts with its first packets while the database answers.
	before, src1 := addTrack(42)
	held := &heldSource{RTPSource: src1, after: 50, release: make(chan struct{})}
	ran := make(chan error, 1)
	go func() { ran <- before.Run(ctx, recorder.Packets(held)) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		e.lc.flushRows(ctx, folder)
		if r, err := e.lc.db.RecordingByFolder(ctx, folder); err == nil && r.Status == storage.RecordingActive {
			if parts, err := e.lc.db.Parts(ctx, r.ID); err == nil && len(parts) == 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the first file's row was not written before the outage")
		}
	}

	rows.down.Store(true)
	t.Cleanup(func() { rows.down.Store(false) }) // before the env's Shutdown
	during, src2 := addTrack(43)
	close(held.release)
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if err := during.Run(ctx, recorder.Packets(src2)); err != nil {
		t.Fatal(err)
	}
	m, err := s.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Tracks) != 2 {
		t.Fatalf("manifest tracks: %+v", m.Tracks)
	}
	// The queue keeps trying while the database is down, and keeps the rows.
	for deadline := time.Now().Add(10 * time.Second); rows.refusals() < 8; {
		if time.Now().After(deadline) {
			t.Fatalf("the queue tried the database %d times during the outage", rows.refusals())
		}
		time.Sleep(5 * time.Millisecond)
	}
	r, err := e.lc.db.RecordingByFolder(ctx, folder)
	if err != nil || r.Status != storage.RecordingActive {
		t.Fatalf("recording row during the outage: %+v %v", r, err)
	}
	tookBefore := len(rows.taken())

	rows.down.Store(false)
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	e.lc.flushRows(fctx, folder)
	if fctx.Err() != nil {
		t.Fatal("the rows were not written after the outage")
	}

	r, err = e.lc.db.RecordingByFolder(ctx, folder)
	if err != nil || r.Status != storage.RecordingSaved || r.Bytes != m.Tracks[0].Bytes+m.Tracks[1].Bytes || r.DurationMs != m.DurationMs {
		t.Fatalf("recording row after the outage: %+v %v (manifest: %d ms)", r, err, m.DurationMs)
	}
	parts, err := e.lc.db.Parts(ctx, r.ID)
	if err != nil || len(parts) != 2 {
		t.Fatalf("part rows after the outage: %+v %v", parts, err)
	}
	for i, p := range parts {
		want := m.Tracks[i]
		if p.File != want.File || p.Status != storage.PartSaved || p.SHA256 != want.SHA256 || p.Bytes != want.Bytes ||
			p.DurationMs != want.DurationMs || p.EndedAt.IsZero() {
			t.Errorf("part row %d after the outage: %+v\nmanifest: %+v", i, p, want)
		}
	}
	// One write per row after the outage, the latest: the second file's start row, which
	// its end replaced, is never written.
	after := rows.taken()[tookBefore:]
	wantAfter := []string{
		"part " + m.Tracks[0].File + " saved",
		"part " + m.Tracks[1].File + " saved",
		"modify recording active",
		"modify recording stopping",
		"modify recording saved",
	}
	got := slices.Sorted(slices.Values(after))
	slices.Sort(wantAfter)
	if !slices.Equal(got, wantAfter) {
		t.Errorf("writes after the outage:\n%s\nwant, one each:\n%s", strings.Join(after, "\n"), strings.Join(wantAfter, "\n"))
	}
	// The recording's row goes through its states in order, whatever the files' rows do
	// between them (a retry that wrote an older state after a newer one would leave the
	// row behind the manifest), and its end is the last write.
	var states []string
	for _, w := range after {
		if st, ok := strings.CutPrefix(w, "modify recording "); ok {
			states = append(states, st)
		}
	}
	if strings.Join(states, " ") != "active stopping saved" || after[len(after)-1] != "modify recording saved" {
		t.Errorf("the recording's row after the outage went %q (the writes: %q); want active, stopping, saved, the end last", states, after)
	}
}

// heldSource holds its packets after the first ones until released.
type heldSource struct {
	*testmedia.RTPSource
	after   int
	release chan struct{}
}

func (h *heldSource) ReadPacket(b []byte) (int, error) {
	if h.Read() >= h.after {
		<-h.release
	}
	return h.RTPSource.ReadPacket(b)
}
