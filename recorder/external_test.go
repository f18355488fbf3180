package recorder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// extHooks records what the hooks saw of external files.
type extHooks struct {
	mu    sync.Mutex
	calls []string
	seen  map[string]FileEntry
}

func (h *extHooks) hooks() *Hooks {
	h.seen = map[string]FileEntry{}
	note := func(what string, e FileEntry) {
		h.mu.Lock()
		h.calls = append(h.calls, what+" "+e.File+" "+e.Status)
		h.seen[e.File] = e
		h.mu.Unlock()
	}
	return &Hooks{
		OnPartStart:    func(_ *Session, e FileEntry) { note("start", e) },
		OnPartComplete: func(_ *Session, e FileEntry) { note("done", e) },
	}
}

func TestExternalFilesOnTheCallTimeline(t *testing.T) {
	h := &extHooks{}
	clock := newFakeClock()
	r, err := New(Options{Dir: t.TempDir(), Hooks: h.hooks(), Now: clock.Now}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.Start(context.Background(), CallInfo{CallID: "egress", RoomID: "!r:example.org", Kind: "egress"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := s.StartedAt()
	alice := TrackInfo{UserID: "@alice:example.org", DeviceID: "DEV", DisplayName: "Alice", MimeType: "audio/opus", ClockRate: 48000, Channels: 2, Source: SourceMicrophone}

	// A local file: the hooks hear of it once the program writes, before the file exists,
	// and its digest is read at the end.
	f1, err := s.AddExternal(External{Info: alice}, t0.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if f1 != "alice_example.org-DEV-usermedia-audio.ogg" {
		t.Fatalf("file name %q does not follow the native naming", f1)
	}
	if len(h.calls) != 0 {
		t.Fatalf("hooks called before the program writes: %v", h.calls)
	}
	if err := s.ActivateExternal(f1); err != nil {
		t.Fatal(err)
	}
	if err := s.ActivateExternal(f1); err != nil {
		t.Fatal(err)
	}
	data := []byte("OggS not really, but bytes")
	if err := os.WriteFile(filepath.Join(s.Folder(), f1), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := s.ExternalFiles(); len(got) != 1 || got[0] != f1 {
		t.Fatalf("ExternalFiles = %v", got)
	}
	started := t0.Add(2500 * time.Millisecond)
	if err := s.FinishExternal(f1, ExternalResult{StartedAt: started, Duration: 10 * time.Second, Reason: "track unpublished"}); err != nil {
		t.Fatal(err)
	}
	e := h.seen[f1]
	sum := sha256.Sum256(data)
	if e.Status != StatusComplete || e.Bytes != int64(len(data)) || e.SHA256 != hex.EncodeToString(sum[:]) || e.StartOffsetMs != 2500 || e.DurationMs != 10000 || e.EndReason != "track unpublished" {
		t.Fatalf("finished entry: %+v", e)
	}

	// The same logical track again continues as part 2; a part the program never started
	// is dropped and its number given back.
	dropped, err := s.AddExternal(External{Info: alice}, t0.Add(15*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DropExternal(dropped); err != nil {
		t.Fatal(err)
	}
	if err := s.DropExternal(f1); !errors.Is(err, ErrNotExternal) {
		t.Fatalf("dropping a finished file: %v", err)
	}
	f2, err := s.AddExternal(External{Info: alice}, t0.Add(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if f2 != "alice_example.org-DEV-usermedia-audio.part2.ogg" || dropped != f2 {
		t.Fatalf("second part named %q (dropped %q)", f2, dropped)
	}
	// It never appears: interrupted, with the reason.
	if err := s.FinishExternal(f2, ExternalResult{Reason: "egress ended"}); err != nil {
		t.Fatal(err)
	}
	if e := h.seen[f2]; e.Status != StatusInterrupted || e.EndReason != "egress ended; the file did not appear in the call folder" {
		t.Fatalf("missing file: %+v", e)
	}

	// A remote file reaches the hooks once, complete, with its upload.
	room := TrackInfo{DisplayName: "The whole room", MimeType: "video/H264", ClockRate: 90000, Source: "composite"}
	f3, err := s.AddExternal(External{Info: room, Track: "room", Ext: ".mp4", Remote: true}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if f3 != "room.mp4" {
		t.Fatalf("composite named %q", f3)
	}
	if _, ok := h.seen[f3]; ok {
		t.Fatal("the hooks heard of a remote file before it was finished")
	}
	up := &Upload{URL: "s3://b/calls/x/room.mp4", Bucket: "b", Key: "calls/x/room.mp4", Bytes: 1234, Confirmed: "head"}
	if err := s.FinishExternal(f3, ExternalResult{StartedAt: t0.Add(time.Second), Duration: time.Minute, Upload: up}); err != nil {
		t.Fatal(err)
	}
	if e := h.seen[f3]; e.Status != StatusComplete || e.Upload == nil || e.Upload.Key != up.Key || e.Bytes != 1234 || e.Source != "composite" {
		t.Fatalf("remote entry: %+v", e)
	}
	if err := s.FinishExternal(f3, ExternalResult{}); !errors.Is(err, ErrNotExternal) {
		t.Fatalf("finishing twice: %v", err)
	}
	want := []string{"start " + f1 + " recording", "done " + f1 + " complete", "start " + f2 + " interrupted", "done " + f2 + " interrupted", "done " + f3 + " complete"}
	if len(h.calls) != len(want) {
		t.Fatalf("hook calls %v, want %v", h.calls, want)
	}
	for i := range want {
		if h.calls[i] != want[i] {
			t.Fatalf("hook calls %v, want %v", h.calls, want)
		}
	}
	// An activated file cannot be dropped.
	f4, err := s.AddExternal(External{Info: TrackInfo{UserID: "bob", MimeType: "video/VP8", ClockRate: 90000}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ActivateExternal(f4); err != nil {
		t.Fatal(err)
	}
	if err := s.DropExternal(f4); err == nil {
		t.Fatal("an announced file was dropped")
	}
	if err := s.FinishExternal(f4, ExternalResult{Failed: "egress failed"}); err != nil {
		t.Fatal(err)
	}
	m, err := s.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Tracks) != 4 {
		t.Fatalf("manifest has %d files", len(m.Tracks))
	}
	if _, err := s.AddExternal(External{Info: alice}, t0); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("AddExternal after Close: %v", err)
	}
	if _, err := s.AddExternal(External{Info: alice, Ext: "../x"}, t0); err == nil {
		t.Fatal("a bad extension was accepted")
	}
}

// After a crash the recovery leaves files another program writes alone (no repair), and a
// resumed session adopts them back.
func TestExternalFilesSurviveACrash(t *testing.T) {
	dir := t.TempDir()
	r, err := New(Options{Dir: dir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.Start(context.Background(), CallInfo{CallID: "egress", RoomID: "!r:example.org", Kind: "egress"})
	if err != nil {
		t.Fatal(err)
	}
	info := TrackInfo{UserID: "ann", MimeType: "audio/opus", ClockRate: 48000, Channels: 2}
	local, err := s.AddExternal(External{Info: info, Writer: "livekit-egress"}, s.StartedAt())
	if err != nil {
		t.Fatal(err)
	}
	remote, err := s.AddExternal(External{Info: TrackInfo{UserID: "bob", MimeType: "audio/opus", ClockRate: 48000}, Remote: true, Writer: "livekit-egress"}, s.StartedAt())
	if err != nil {
		t.Fatal(err)
	}
	// Not an Ogg file: a repair would fail or change it.
	data := []byte("still being written by Egress")
	if err := os.WriteFile(filepath.Join(s.Folder(), local), data, 0o644); err != nil {
		t.Fatal(err)
	}
	folder := s.Folder()
	// The process dies here. The next start recovers the folder.
	reports, err := RecoverInterrupted(dir, zerolog.Nop())
	if err != nil || len(reports) != 1 {
		t.Fatalf("recovery: %v %+v", err, reports)
	}
	if len(reports[0].Failed) != 0 || len(reports[0].Repaired) != 0 {
		t.Errorf("recovery touched files another program writes: %+v", reports[0])
	}
	if got, _ := os.ReadFile(filepath.Join(folder, local)); string(got) != string(data) {
		t.Errorf("the file changed: %q", got)
	}
	for _, e := range reports[0].Manifest.Tracks {
		if e.Status != StatusInterrupted || e.Writer != "livekit-egress" || e.EndReason != "the recorder stopped while livekit-egress wrote this file" {
			t.Errorf("recovered entry: %+v", e)
		}
	}
	r2, err := New(Options{Dir: dir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s2, err := r2.Resume(context.Background(), folder, CallInfo{RoomID: "!r:example.org"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{local, remote} {
		if err := s2.AdoptExternal(f, f == remote); err != nil {
			t.Fatal(err)
		}
	}
	if err := s2.FinishExternal(local, ExternalResult{Duration: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := s2.FinishExternal(remote, ExternalResult{Duration: time.Minute, Upload: &Upload{Key: "k", Bytes: 9}}); err != nil {
		t.Fatal(err)
	}
	m, err := s2.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range m.Tracks {
		if e.Status != StatusComplete || e.DurationMs != 60000 || e.Part != 1 {
			t.Errorf("adopted file: %+v", e)
		}
	}
	if err := s2.AdoptExternal("nope.ogg", false); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("adopting after Close: %v", err)
	}
}
