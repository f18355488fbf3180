package recorder

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

func newOpusSource(t *testing.T, n int) *testmedia.RTPSource {
	t.Helper()
	s, err := testmedia.NewOpusRTP(testmedia.Tone440, n)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var testTrack = TrackInfo{UserID: "@alice:example.org", DeviceID: "DEV", MimeType: "audio/opus", ClockRate: 48000, Channels: 2, PayloadType: 111, SSRC: 42}

// hookLog records hook calls in order.
type hookLog struct {
	mu     sync.Mutex
	calls  []string
	failOn string
}

func (h *hookLog) add(s string) {
	h.mu.Lock()
	h.calls = append(h.calls, s)
	h.mu.Unlock()
}

func (h *hookLog) hooks(t *testing.T) *Hooks {
	return &Hooks{
		OnSessionStart: func(s *Session) error {
			h.add("start resumed=" + map[bool]string{true: "yes", false: "no"}[s.Resumed()])
			if h.failOn == "start" {
				return errors.New("disk full")
			}
			return nil
		},
		OnPartStart: func(s *Session, e FileEntry) {
			// The row must be able to exist before the first byte: no file yet.
			if _, err := os.Stat(filepath.Join(s.Folder(), e.File)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("part %s exists when OnPartStart runs (%v)", e.File, err)
			}
			h.add("part " + e.File + " " + e.Status)
		},
		OnPartComplete: func(s *Session, e FileEntry) {
			fi, err := os.Stat(filepath.Join(s.Folder(), e.File))
			if err != nil || fi.Size() != e.Bytes || e.SHA256 == "" {
				t.Errorf("part %s complete: stat %v, entry bytes %d sha %q", e.File, err, e.Bytes, e.SHA256)
			}
			h.add("done " + e.File + " " + e.Status)
		},
		OnSessionClosing: func(s *Session) { h.add("closing") },
		OnSessionEnd:     func(s *Session, m Manifest) { h.add("end " + m.Status) },
	}
}

func newTestRecorder(t *testing.T, dir string, h *Hooks) *Recorder {
	t.Helper()
	r, err := New(Options{Dir: dir, Hooks: h, FlushInterval: 50 * time.Millisecond}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func recordTrack(t *testing.T, s *Session, packets int) {
	t.Helper()
	tr, err := s.AddTrack(testTrack)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(context.Background(), Packets(newOpusSource(t, packets))); err != nil {
		t.Fatal(err)
	}
}

func TestHooksOrder(t *testing.T) {
	h := &hookLog{}
	r := newTestRecorder(t, t.TempDir(), h.hooks(t))
	s, err := r.Start(context.Background(), CallInfo{CallID: "c1", RoomID: "!room:example.org", Kind: "1:1"})
	if err != nil {
		t.Fatal(err)
	}
	recordTrack(t, s, 50)
	if _, err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The part's OnPartComplete comes after its SHA-256, from another goroutine: before
	// or after Close begins, but before the end.
	got := strings.Join(h.calls, "|")
	want := "start resumed=no|part alice_example.org-DEV-usermedia-audio.ogg recording|done alice_example.org-DEV-usermedia-audio.ogg complete|closing|end finished"
	alsoRight := "start resumed=no|part alice_example.org-DEV-usermedia-audio.ogg recording|closing|done alice_example.org-DEV-usermedia-audio.ogg complete|end finished"
	if got != want && got != alsoRight {
		t.Errorf("hooks:\n got %s\nwant %s", got, want)
	}
}

func TestHookRefusesStart(t *testing.T) {
	h := &hookLog{failOn: "start"}
	dir := t.TempDir()
	r := newTestRecorder(t, dir, h.hooks(t))
	if _, err := r.Start(context.Background(), CallInfo{CallID: "c1", RoomID: "!room:example.org"}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Start = %v, want the hook's error", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused recording left %d entries in the dir", len(entries))
	}
}

// TestResumeContinuesParts: a session that "crashed" (never closed) is repaired and resumed;
// the track continues as part 2 on the same timeline and the manifest lists the resume.
func TestResumeContinuesParts(t *testing.T) {
	dir := t.TempDir()
	r1 := newTestRecorder(t, dir, nil)
	s1, err := r1.Start(context.Background(), CallInfo{CallID: "c1", RoomID: "!room:example.org", Kind: "group"})
	if err != nil {
		t.Fatal(err)
	}
	recordTrack(t, s1, 50)
	folder := s1.Folder()
	// No Close: the process "died". A new run recovers the folder, then resumes it.
	reports, err := RecoverInterrupted(dir, zerolog.Nop())
	if err != nil || len(reports) != 1 {
		t.Fatalf("recover: %v %d", err, len(reports))
	}
	h := &hookLog{}
	r2 := newTestRecorder(t, dir, h.hooks(t))
	if _, err := r2.Resume(context.Background(), filepath.Base(folder), CallInfo{RoomID: "!other:example.org"}); !errors.Is(err, ErrNotResumable) {
		t.Errorf("resume for another room = %v, want ErrNotResumable", err)
	}
	ctx := WithResume(context.Background(), filepath.Base(folder))
	s2, err := r2.Start(ctx, CallInfo{CallID: "c2", RoomID: "!room:example.org", Kind: "group"})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Folder() != folder || !s2.Resumed() || !s2.StartedAt().Equal(s1.StartedAt()) {
		t.Fatalf("resumed session: folder %s resumed %v t0 %v, want %s true %v", s2.Folder(), s2.Resumed(), s2.StartedAt(), folder, s1.StartedAt())
	}
	if _, err := r2.Resume(context.Background(), filepath.Base(folder), CallInfo{}); !errors.Is(err, ErrNotResumable) {
		t.Errorf("resuming an open folder again = %v, want ErrNotResumable", err)
	}
	recordTrack(t, s2, 50)
	m, err := s2.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Tracks) != 2 || m.Tracks[0].Part != 1 || m.Tracks[1].Part != 2 || !strings.Contains(m.Tracks[1].File, ".part2.ogg") {
		t.Fatalf("tracks after resume: %+v", m.Tracks)
	}
	if m.Tracks[0].Status != StatusComplete || m.Tracks[1].Status != StatusComplete || m.Tracks[1].StartOffsetMs < m.Tracks[0].StartOffsetMs {
		t.Errorf("parts: %+v", m.Tracks)
	}
	if len(m.Resumes) != 1 || m.Resumes[0].CallID != "c2" || m.Status != StatusFinished || m.Interruption != "" {
		t.Errorf("manifest after resume: resumes %+v status %s interruption %q", m.Resumes, m.Status, m.Interruption)
	}
	if len(m.Markers) != 2 {
		t.Errorf("markers %+v, want interrupted and resumed", m.Markers)
	}
	if got := strings.Join(h.calls, "|"); !strings.HasPrefix(got, "start resumed=yes|part ") {
		t.Errorf("hooks after resume: %s", got)
	}
	// A finished folder is not resumable.
	if _, err := r2.Resume(context.Background(), folder, CallInfo{}); !errors.Is(err, ErrNotResumable) {
		t.Errorf("resume of a finished folder = %v", err)
	}
	// Neither is anything outside the recordings dir.
	if _, err := r2.Resume(context.Background(), "/etc", CallInfo{}); !errors.Is(err, ErrNotResumable) {
		t.Errorf("resume of /etc = %v", err)
	}
}

// TestPauseThenResume: a paused session (a planned restart) finalises its files, leaves a
// manifest that says interrupted with the reason, needs no repair at the next start, and is
// resumed like a crashed one: part 2 on the same timeline, the resume listed with its reason.
func TestPauseThenResume(t *testing.T) {
	dir := t.TempDir()
	h := &hookLog{}
	r1 := newTestRecorder(t, dir, h.hooks(t))
	s1, err := r1.Start(context.Background(), CallInfo{CallID: "c1", RoomID: "!room:example.org", Kind: "group"})
	if err != nil {
		t.Fatal(err)
	}
	recordTrack(t, s1, 50)
	m1, err := s1.Pause(context.Background(), "the recorder restarted")
	if err != nil {
		t.Fatal(err)
	}
	if m1.Status != StatusInterrupted || m1.Interruption != "the recorder restarted" || m1.Tracks[0].Status != StatusComplete || m1.Tracks[0].SHA256 == "" {
		t.Fatalf("paused manifest: status %s interruption %q tracks %+v", m1.Status, m1.Interruption, m1.Tracks)
	}
	if got := strings.Join(h.calls, "|"); !strings.HasSuffix(got, "|closing|end interrupted") && !strings.HasSuffix(got, "|closing|done alice_example.org-DEV-usermedia-audio.ogg complete|end interrupted") {
		t.Errorf("hooks: %s", got)
	}
	if again, _ := s1.Close(context.Background()); again.Status != StatusInterrupted {
		t.Errorf("a Close after the pause made it %s", again.Status)
	}
	if reports, err := RecoverInterrupted(dir, zerolog.Nop()); err != nil || len(reports) != 0 {
		t.Errorf("a paused folder was repaired at start: %v %d", err, len(reports))
	}
	r2 := newTestRecorder(t, dir, nil)
	s2, err := r2.Start(WithResume(context.Background(), filepath.Base(s1.Folder())), CallInfo{CallID: "c1", RoomID: "!room:example.org", Kind: "group"})
	if err != nil || !s2.Resumed() {
		t.Fatalf("resume: %v", err)
	}
	recordTrack(t, s2, 50)
	m, err := s2.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Tracks) != 2 || m.Tracks[1].Part != 2 || m.Tracks[1].StartOffsetMs < m.Tracks[0].StartOffsetMs || m.Tracks[1].Status != StatusComplete {
		t.Errorf("tracks after the pause: %+v", m.Tracks)
	}
	if len(m.Resumes) != 1 || m.Resumes[0].Reason != "the recorder restarted" || !m.Resumes[0].InterruptedAt.Equal(*m1.EndedAt) || m.Status != StatusFinished {
		t.Errorf("resumes %+v, status %s", m.Resumes, m.Status)
	}
}

func TestSetUploadFinishedFolder(t *testing.T) {
	r := newTestRecorder(t, t.TempDir(), nil)
	s, err := r.Start(context.Background(), CallInfo{CallID: "c1", RoomID: "!room:example.org"})
	if err != nil {
		t.Fatal(err)
	}
	recordTrack(t, s, 10)
	m, err := s.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	u := Upload{URL: "s3://b/k", Bytes: m.Tracks[0].Bytes, SHA256: m.Tracks[0].SHA256, Confirmed: "head"}
	if err := SetUpload(s.Folder(), m.Tracks[0].File, u); err != nil {
		t.Fatal(err)
	}
	if err := SetUpload(s.Folder(), "nope.ogg", u); !errors.Is(err, ErrNoSuchFile) {
		t.Errorf("unknown file: %v", err)
	}
	got, err := ReadManifest(s.Folder())
	if err != nil {
		t.Fatal(err)
	}
	if got.Tracks[0].Upload == nil || got.Tracks[0].Upload.URL != "s3://b/k" {
		t.Errorf("upload not in manifest: %+v", got.Tracks[0])
	}
}

// TestClosedSessionIgnoresLateChanges: a marker or participant change that arrives after the
// recording finished does not rewrite the final manifest.
func TestClosedSessionIgnoresLateChanges(t *testing.T) {
	h := newHarness(t, Options{})
	m := h.close()
	h.sess.AddMarker("@a:b", "late", base.Add(time.Minute))
	h.sess.AddParticipant("@a:b", "D", "", base.Add(time.Minute))
	h.sess.SetOptOut("@a:b", true, base.Add(time.Minute))
	got, err := ReadManifest(h.sess.Folder())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Markers) != len(m.Markers) || len(got.Participants) != len(m.Participants) || len(got.OptOuts) != len(m.OptOuts) {
		t.Errorf("a closed session's manifest changed: %+v", got)
	}
}

// TestFinalBeforeDigest: a part's entry in manifest.json says complete, with its size,
// while the part's SHA-256 is still being computed, and the track's goroutine does not
// wait for it: hashing a long video file takes seconds, and the file is final before that
// (issue 16: files final within 1 s of the hang-up; a part closed mid-call held up its
// track's reads for as long). The finished manifest and OnSessionEnd wait for the digest,
// and OnPartComplete has it.
func TestFinalBeforeDigest(t *testing.T) {
	h := &hookLog{}
	r := newTestRecorder(t, t.TempDir(), h.hooks(t))
	hashing := make(chan struct{}, 1)
	release := make(chan struct{})
	r.digest = func(path string) (int64, string, error) {
		hashing <- struct{}{}
		<-release
		return fileDigest(path)
	}
	s, err := r.Start(context.Background(), CallInfo{CallID: "c1", RoomID: "!room:example.org", Kind: "1:1"})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := s.AddTrack(testTrack)
	if err != nil {
		t.Fatal(err)
	}
	src := Packets(newOpusSource(t, 50))
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		if err := tr.Run(context.Background(), src); err != nil {
			t.Error(err)
		}
	}()
	<-hashing
	select {
	case <-ran:
	case <-time.After(30 * time.Second):
		close(release)
		t.Fatal("the track's Run waits for its file's digest")
	}
	onDisk := func() Manifest {
		t.Helper()
		m, err := ReadManifest(s.Folder())
		if err != nil {
			t.Fatal(err)
		}
		return *m
	}
	if m := onDisk(); len(m.Tracks) != 1 || m.Tracks[0].Status != StatusComplete || m.Tracks[0].SHA256 != "" || m.Tracks[0].Bytes == 0 || m.Tracks[0].EndedAt == nil {
		t.Errorf("while the digest runs, manifest.json has %+v, want the file complete with its size and no digest yet", m.Tracks)
	}
	closed := make(chan Manifest)
	go func() {
		m, err := s.Close(context.Background())
		if err != nil {
			t.Error(err)
		}
		closed <- m
	}()
	close(release)
	m := <-closed
	sum, want := m.Tracks[0].SHA256, onDisk().Tracks[0].SHA256
	if _, fileSum, _ := fileDigest(filepath.Join(s.Folder(), m.Tracks[0].File)); m.Status != StatusFinished || sum == "" || sum != fileSum || want != sum {
		t.Errorf("finished manifest %s: digest returned %q, on disk %q, file %q", m.Status, sum, want, fileSum)
	}
	// The part's hook comes once its digest is in, before the session's end; Close may have
	// begun (the "closing" hook) before or after the digest finished.
	got := strings.Join(h.calls, "|")
	done := strings.Index(got, "|done alice_example.org-DEV-usermedia-audio.ogg complete|")
	if done < 0 || !strings.HasSuffix(got, "|end finished") || strings.Count(got, "|done ") != 1 {
		t.Errorf("hooks: %s", got)
	}
}

// stuckSource delivers n packets, then blocks (deaf to read deadlines) until released,
// then ends: a track that does not stop when its session closes.
type stuckSource struct {
	TrackSource
	n       int
	stuck   chan struct{}
	release chan struct{}
}

func (s *stuckSource) ReadPacket(b []byte) (int, error) {
	if s.n == 0 {
		close(s.stuck)
		<-s.release
		return 0, io.EOF
	}
	s.n--
	return s.TrackSource.ReadPacket(b)
}

// TestDigestOfLateTrack: a track that ends after Close gave up waiting for it still gets
// its file's digest and OnPartComplete (on its own goroutine: the session no longer waits
// for digests), and nothing races with Close's wait.
func TestDigestOfLateTrack(t *testing.T) {
	h := &hookLog{}
	r := newTestRecorder(t, t.TempDir(), h.hooks(t))
	s, err := r.Start(context.Background(), CallInfo{CallID: "c1", RoomID: "!room:example.org", Kind: "1:1"})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := s.AddTrack(testTrack)
	if err != nil {
		t.Fatal(err)
	}
	src := &stuckSource{TrackSource: Packets(newOpusSource(t, 50)), n: 50, stuck: make(chan struct{}), release: make(chan struct{})}
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		if err := tr.Run(context.Background(), src); err != nil {
			t.Error(err)
		}
	}()
	<-src.stuck
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Close(ctx); err == nil {
		t.Fatal("Close with a stuck track and an ended context returned no error")
	}
	close(src.release)
	<-ran
	e := s.fileEntry("alice_example.org-DEV-usermedia-audio.ogg")
	if e.Status != StatusComplete || e.SHA256 == "" {
		t.Errorf("the late track's entry: %s, sha %q", e.Status, e.SHA256)
	}
	if got := strings.Join(h.calls, "|"); !strings.HasSuffix(got, "|end finished|done alice_example.org-DEV-usermedia-audio.ogg complete") {
		t.Errorf("hooks: %s", got)
	}
}
