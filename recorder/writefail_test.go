package recorder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// fakeDisk is a file system that fails on purpose, behind the recorder's writer and probe
// seams. While it is full, a write to a part's file writes half of what it was given and
// fails with ENOSPC (a torn page or block, as a real full disk leaves it), a new file
// cannot be created, and the probe fails. The manifest is written to the real disk.
type fakeDisk struct {
	full   atomic.Bool
	probes atomic.Int32
}

func errNoSpace(op, path string) error { return &os.PathError{Op: op, Path: path, Err: syscall.ENOSPC} }

func (d *fakeDisk) install(r *Recorder) {
	r.newWriter = func(t *Track, path string, o Options) (media.Writer, error) {
		if d.full.Load() {
			return nil, errNoSpace("open", path)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, err
		}
		ff := &fakeFile{File: f, d: d}
		w, err := t.codec.NewWriterTo(ff, writerParams(t), writerOptions(t, o))
		if err != nil {
			return nil, errors.Join(err, f.Close(), os.Remove(path))
		}
		return &ownedWriter{Writer: w, f: f}, nil
	}
	r.probe = func(string) error {
		d.probes.Add(1)
		if d.full.Load() {
			return errNoSpace("write", "probe")
		}
		return nil
	}
}

type fakeFile struct {
	*os.File
	d *fakeDisk
}

func (f *fakeFile) Write(p []byte) (int, error) {
	if f.d.full.Load() {
		n, _ := f.File.Write(p[:len(p)/2])
		return n, errNoSpace("write", f.Name())
	}
	return f.File.Write(p)
}

// ownedWriter closes the file under a writer made with NewWith.
type ownedWriter struct {
	media.Writer
	f *os.File
}

func (w *ownedWriter) Close() error { return errors.Join(w.Writer.Close(), w.f.Close()) }

func (w *ownedWriter) Size() (int, int) {
	if s, ok := w.Writer.(interface{ Size() (int, int) }); ok {
		return s.Size()
	}
	return 0, 0
}

// writeEvents records what the write error hooks said.
type writeEvents struct {
	mu      sync.Mutex
	errs    []string // file: error
	resumed []string // file after lost
}

func (w *writeEvents) hooks() *Hooks {
	return &Hooks{
		OnWriteError: func(s *Session, e FileEntry, err error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.errs = append(w.errs, fmt.Sprintf("%s: %v", e.File, err))
		},
		OnWriteResumed: func(s *Session, e FileEntry, lost time.Duration) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.resumed = append(w.resumed, fmt.Sprintf("%s after %v", e.File, lost))
		},
	}
}

// newHarnessLog is newHarness with the recorder's log in buf.
func newHarnessLog(t *testing.T, opts Options, buf *bytes.Buffer) *harness {
	t.Helper()
	h := &harness{t: t, clock: newFakeClock()}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	opts.Now = h.clock.Now
	rec, err := New(opts, zerolog.New(&lockedWriter{w: buf}))
	if err != nil {
		t.Fatal(err)
	}
	h.rec = rec
	return h
}

func (h *harness) start() {
	h.t.Helper()
	sess, err := h.rec.Start(context.Background(), CallInfo{CallID: "call1", RoomID: "!room:example.org", Kind: "1:1"})
	if err != nil {
		h.t.Fatal(err)
	}
	h.sess = sess
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// TestWriteErrorRetry: the disk fills in the middle of a call and is freed again. The part
// that was being written ends (interrupted, with the error as its end reason), is repaired
// once space is back so everything written before plays, and the track goes on in a new
// part: no frame after the disk is free again is lost beyond the retry wait. The error is
// logged as an error, warned about in the manifest and reported to the hooks, once each.
// A track whose first file cannot be created goes the same way.
func TestWriteErrorRetry(t *testing.T) {
	for _, tt := range []struct {
		name       string
		info       TrackInfo
		stream     func() *rtpStream
		asset      string
		full, free time.Duration
	}{
		{"opus", opusInfo(), opusStream, testmedia.Tone440, 5 * time.Second, 11 * time.Second},
		{"vp8", vp8Info(), vp8Stream, testmedia.VP8, 5 * time.Second, 11 * time.Second},
		{"opus full from the start", opusInfo(), opusStream, testmedia.Tone440, 0, 6 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			ev := &writeEvents{}
			h := newHarnessLog(t, Options{Hooks: ev.hooks()}, &log)
			disk := &fakeDisk{}
			disk.install(h.rec)
			disk.full.Store(tt.full == 0)
			h.start()
			const end = 20 * time.Second
			evs := tt.stream().media(t, loadFrames(t, tt.asset), base, 0, end, nil)
			evs = append(evs,
				event{at: base.Add(tt.full), fn: func() { disk.full.Store(true) }},
				event{at: base.Add(tt.free), fn: func() { disk.full.Store(false) }})
			h.run(tt.info, evs)
			m := h.close()
			files := filesOf(m, "")
			if len(files) != 2 {
				t.Fatalf("want the part the disk broke and the next one: %s", describeFiles(files))
			}
			broken, next := files[0], files[1]
			if broken.Status != StatusInterrupted || !strings.Contains(broken.EndReason, "no space left on device") {
				t.Errorf("%s: %s (%s), want interrupted by the full disk", broken.File, broken.Status, broken.EndReason)
			}
			if tt.full > 0 {
				checkWrittenBefore(t, h, broken, tt.full)
			} else if _, err := os.Stat(h.path(broken.File)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s could not be created but exists: %v", broken.File, err)
			}
			// Tries 1, 2, 4, 8 s after the error: the new part starts at most 8 s after the
			// disk is free, and runs to the end.
			start := ms(next.StartOffsetMs)
			if next.Status != StatusComplete || start < tt.free || start > tt.free+8*time.Second || !near(start+ms(next.DurationMs), end, 100*time.Millisecond) {
				t.Errorf("%s: %s from %v for %d ms, want complete from after %v to %v", next.File, next.Status, start, next.DurationMs, tt.free, end)
			}
			checkEntry(t, h, next)
			if tt.info.Kind() == "video" {
				if _, blocks := readWebM(t, h.path(next.File)); len(blocks) == 0 || !blocks[0].key {
					t.Errorf("%s does not start with a key frame", next.File)
				}
			} else if f := readOggFile(t, h.path(next.File)); !f.eos || f.badPages != 0 || !near(f.decoded(), ms(next.DurationMs), 25*time.Millisecond) {
				t.Errorf("%s: eos %v, %d bad pages, decodes to %v", next.File, f.eos, f.badPages, f.decoded())
			}
			if len(m.Warnings) != 2 || !strings.Contains(m.Warnings[0], "writing the microphone track failed") && !strings.Contains(m.Warnings[0], "writing the camera track failed") ||
				!strings.Contains(m.Warnings[1], "goes on in "+next.File) {
				t.Errorf("warnings %q", m.Warnings)
			}
			if len(ev.errs) != 1 || !strings.HasPrefix(ev.errs[0], broken.File+": ") || len(ev.resumed) != 1 || !strings.HasPrefix(ev.resumed[0], next.File+" after ") {
				t.Errorf("hooks: errors %q, resumed %q", ev.errs, ev.resumed)
			}
			if n := strings.Count(log.String(), `"level":"error"`); n != 1 || !strings.Contains(log.String(), "no space left on device") {
				t.Errorf("%d errors logged, want 1:\n%s", n, log.String())
			}
			if n := disk.probes.Load(); n < 2 || n > 6 {
				t.Errorf("%d probes for a %v outage", n, tt.free-tt.full)
			}
		})
	}
}

// checkWrittenBefore checks the part a write error ended: repaired, its entry true to the
// file, and it plays up to shortly before the disk filled (the last flush).
func checkWrittenBefore(t *testing.T, h *harness, e FileEntry, full time.Duration) {
	t.Helper()
	if !strings.Contains(e.EndReason, "repaired") {
		t.Errorf("%s was not repaired: %s", e.File, e.EndReason)
	}
	b, err := os.ReadFile(h.path(e.File))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != e.Bytes || e.SHA256 == "" {
		t.Errorf("%s: entry says %d bytes (sha256 %q), file has %d", e.File, e.Bytes, e.SHA256, len(b))
	}
	d := ms(e.DurationMs)
	if d < full-2*time.Second || d > full+time.Second {
		t.Errorf("%s holds %v, the disk filled at %v", e.File, d, full)
	}
	if strings.HasSuffix(e.File, ".ogg") {
		f := readOggFile(t, h.path(e.File))
		if !f.eos || f.badPages != 0 || !f.playable() || !near(f.decoded(), d, 25*time.Millisecond) {
			t.Errorf("%s: eos %v, %d bad pages, playable %v, decodes to %v, entry %v", e.File, f.eos, f.badPages, f.playable(), f.decoded(), d)
		}
		return
	}
	w, blocks := readWebM(t, h.path(e.File))
	if w.Segment.Cues == nil || len(blocks) == 0 || !blocks[0].key || !near(time.Duration(w.Segment.Info.Duration)*time.Millisecond, d, time.Millisecond) {
		t.Errorf("%s: cues %v, %d blocks, duration %v, entry %v", e.File, w.Segment.Cues != nil, len(blocks), w.Segment.Info.Duration, d)
	}
}

// TestWriteErrorRealDisk: the same on a real file system: a 512 KiB tmpfs that a filler
// file fills in the middle of the call and that is freed again. Every byte of the file
// that reached the disk before it filled stays as it was; the repaired file and the new
// part play, and the manifest on disk, which could not be written while the disk was
// full, is whole and final at the end. Needs root (mount).
func TestWriteErrorRealDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	ev := &writeEvents{}
	var log bytes.Buffer
	h := newHarnessLog(t, Options{Dir: dir, Hooks: ev.hooks()}, &log)
	h.start()
	filler := filepath.Join(dir, "filler")
	const full, free, end = 4 * time.Second, 9 * time.Second, 15 * time.Second
	var before []byte
	tr := h.add(opusInfo())
	evs := opusStream().media(t, loadFrames(t, testmedia.Tone440), base, 0, end, nil)
	evs = append(evs,
		event{at: base.Add(full), fn: func() {
			b, err := os.ReadFile(h.path(tr.lid + ".ogg"))
			if err != nil {
				t.Fatal(err)
			}
			before = b
			fill(t, filler)
		}},
		event{at: base.Add(free), fn: func() {
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
		}})
	h.runOn(tr, evs)
	m := h.close()
	files := filesOf(m, "")
	if len(files) != 2 {
		t.Fatalf("want the part the disk broke and the next one: %s\n%s", describeFiles(files), log.String())
	}
	broken, next := files[0], files[1]
	if broken.Status != StatusInterrupted || !strings.Contains(broken.EndReason, "no space left on device") {
		t.Errorf("%s: %s (%s)", broken.File, broken.Status, broken.EndReason)
	}
	checkWrittenBefore(t, h, broken, full)
	after, err := os.ReadFile(h.path(broken.File))
	if err != nil {
		t.Fatal(err)
	}
	if len(before) == 0 || !bytes.HasPrefix(after, before) {
		t.Errorf("the %d bytes on disk before it filled changed (%d bytes now)", len(before), len(after))
	}
	start := ms(next.StartOffsetMs)
	if next.Status != StatusComplete || start < free || start > free+8*time.Second || !near(start+ms(next.DurationMs), end, 100*time.Millisecond) {
		t.Errorf("%s: %s from %v for %d ms", next.File, next.Status, start, next.DurationMs)
	}
	checkEntry(t, h, next)
	if f := readOggFile(t, h.path(next.File)); !f.eos || f.badPages != 0 || !f.playable() || !near(f.decoded(), ms(next.DurationMs), 25*time.Millisecond) {
		t.Errorf("%s: eos %v, %d bad pages, decodes to %v", next.File, f.eos, f.badPages, f.decoded())
	}
	onDisk, err := ReadManifest(h.sess.Folder())
	if err != nil {
		t.Fatal(err)
	}
	if onDisk.Status != StatusFinished || len(onDisk.Tracks) != 2 || len(onDisk.Warnings) != 2 {
		t.Errorf("manifest on disk: %s, %d files, warnings %q", onDisk.Status, len(onDisk.Tracks), onDisk.Warnings)
	}
	if len(ev.errs) != 1 || len(ev.resumed) != 1 {
		t.Errorf("hooks: errors %q, resumed %q", ev.errs, ev.resumed)
	}
	if !strings.Contains(log.String(), "Failed to write manifest") {
		t.Errorf("the manifest write that failed was not logged")
	}
}

// fill writes a file until the disk it is on is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}
