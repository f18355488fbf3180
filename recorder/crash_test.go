package recorder

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder/mkvwriter"
)

// copyDir copies the files of a call folder as they are at this moment: what a crash
// (kill -9, power loss after the last fsync) would leave.
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRecoveryPoint: at any moment the files hold everything up to the last flush, at
// most flush_interval ago, and play that far without any repair.
func TestRecoveryPoint(t *testing.T) {
	for _, flush := range []time.Duration{time.Second, 250 * time.Millisecond} {
		t.Run(flush.String(), func(t *testing.T) {
			crashAt := 4321 * time.Millisecond
			h := newHarness(t, Options{FlushInterval: flush})
			dir := t.TempDir()
			var audioLen time.Duration
			tr := h.add(opusInfo())
			evs := opusStream().media(t, loadFrames(t, testmedia.Tone440), base, 0, 6*time.Second, nil)
			h.runOn(tr, append(evs, event{at: base.Add(crashAt), fn: func() {
				copyDir(t, h.sess.Folder(), dir)
				f := readOggFile(t, filepath.Join(dir, tr.lid+".ogg"))
				if f.badPages != 0 {
					t.Errorf("the file has %d broken pages while recording", f.badPages)
				}
				audioLen = f.decoded()
			}}))
			var videoLen time.Duration
			vt := h.add(vp8Info())
			vevs := vp8Stream().media(t, loadFrames(t, testmedia.VP8), base, 0, 6*time.Second, nil)
			h.runOn(vt, append(vevs, event{at: base.Add(crashAt), fn: func() {
				copyDir(t, h.sess.Folder(), dir)
				r, err := mkvwriter.Repair(filepath.Join(dir, vt.lid+".webm"))
				if err != nil {
					t.Errorf("repair the video file of a crash: %v", err)
				}
				videoLen = r.Duration
			}}))
			h.close()
			t.Logf("crash at %v: audio plays %v, video %v", crashAt, audioLen, videoLen)
			if audioLen < crashAt-flush || audioLen > crashAt {
				t.Errorf("audio written up to %v at a crash at %v, want no more than %v lost", audioLen, crashAt, flush)
			}
			if videoLen < crashAt-flush || videoLen > crashAt+67*time.Millisecond {
				t.Errorf("video written up to %v at a crash at %v, want no more than %v lost", videoLen, crashAt, flush)
			}
		})
	}
}

// TestRecoverInterrupted: a folder a crash left (torn tails included) is found at start-up,
// its files repaired (Ogg ends with an end-of-stream page, WebM gets Duration and Cues),
// and the manifest marks the call and each file interrupted with their true durations and
// checksums. A second run finds nothing left to do.
func TestRecoverInterrupted(t *testing.T) {
	h := newHarness(t, Options{})
	root := t.TempDir()
	crashed := filepath.Join(root, filepath.Base(h.sess.Folder()))
	crashAt := 3500 * time.Millisecond
	at := h.add(opusInfo())
	h.runOn(at, append(opusStream().media(t, loadFrames(t, testmedia.Tone440), base, 0, 6*time.Second, nil),
		event{at: base.Add(crashAt), fn: func() { copyDir(t, h.sess.Folder(), crashed) }}))
	vt := h.add(vp8Info())
	crashedVideo := filepath.Join(t.TempDir(), "video.webm")
	h.runOn(vt, append(vp8Stream().media(t, loadFrames(t, testmedia.VP8), base, 0, 6*time.Second, nil),
		event{at: base.Add(crashAt), fn: func() {
			b, err := os.ReadFile(filepath.Join(h.sess.Folder(), vt.lid+".webm"))
			if err != nil {
				t.Fatal(err)
			}
			// A torn write: half of the block in progress reached the disk.
			b = append(b, 0xa3, 0x42, 0x10, 0x81, 0, 0, 0x80, 1, 2, 3)
			if err := os.WriteFile(crashedVideo, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}}))
	h.close()
	// The crash left the manifest as of the audio snapshot (video not yet in it): use the
	// manifest written while both were recording instead.
	audioFile, videoFile := at.lid+".ogg", vt.lid+".webm"
	mustCopy(t, crashedVideo, filepath.Join(crashed, videoFile))
	m, err := ReadManifest(crashed)
	if err != nil {
		t.Fatal(err)
	}
	m.Tracks = append(m.Tracks, FileEntry{File: videoFile, Track: vt.lid, Part: 1, Kind: "video", Codec: "vp8", Status: StatusRecording, Gaps: []Gap{}})
	if err := writeJSONAtomic(filepath.Join(crashed, ManifestFile), m); err != nil {
		t.Fatal(err)
	}
	torn, err := os.OpenFile(filepath.Join(crashed, audioFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = torn.Write([]byte("OggS\x00\x00\x01\x02")) // a page header cut short
	_ = torn.Close()

	reports, err := RecoverInterrupted(root, zerolog.Nop())
	if err != nil || len(reports) != 1 {
		t.Fatalf("recover: %v, %d reports", err, len(reports))
	}
	rep := reports[0]
	if len(rep.Repaired) != 2 || len(rep.Failed) != 0 {
		t.Errorf("repaired %v, failed %v", rep.Repaired, rep.Failed)
	}
	got, err := ReadManifest(crashed)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusInterrupted || got.EndedAt == nil || got.Interruption == "" {
		t.Errorf("manifest: status %s, ended %v, interruption %q", got.Status, got.EndedAt, got.Interruption)
	}
	for _, e := range got.Tracks {
		b, err := os.ReadFile(filepath.Join(crashed, e.File))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if e.Status != StatusInterrupted || e.EndedAt == nil || e.SHA256 != hex.EncodeToString(sum[:]) || e.Bytes != int64(len(b)) {
			t.Errorf("%s: %+v", e.File, e)
		}
		d := ms(e.DurationMs)
		if d < crashAt-time.Second || d > crashAt+100*time.Millisecond {
			t.Errorf("%s: %v recovered of a crash at %v", e.File, d, crashAt)
		}
		switch {
		case strings.HasSuffix(e.File, ".ogg"):
			f := readOggFile(t, filepath.Join(crashed, e.File))
			if !f.eos || f.badPages != 0 || !near(f.decoded(), d, 25*time.Millisecond) {
				t.Errorf("%s: eos %v, %d bad pages, decodes to %v, manifest %v", e.File, f.eos, f.badPages, f.decoded(), d)
			}
		default:
			w, blocks := readWebM(t, filepath.Join(crashed, e.File))
			if w.Segment.Cues == nil || len(w.Segment.Cues.CuePoint) == 0 || !near(time.Duration(w.Segment.Info.Duration)*time.Millisecond, d, time.Millisecond) || len(blocks) == 0 {
				t.Errorf("%s: cues %v, duration %v, %d blocks", e.File, w.Segment.Cues, w.Segment.Info.Duration, len(blocks))
			}
		}
	}
	again, err := RecoverInterrupted(root, zerolog.Nop())
	if err != nil || len(again) != 0 {
		t.Errorf("second recovery: %v, %d reports", err, len(again))
	}
}

func mustCopy(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStartRecreatesRoot: a recordings root removed while the bot runs does not stop new
// recordings.
func TestStartRecreatesRoot(t *testing.T) {
	h := newHarness(t, Options{})
	h.close()
	if err := os.RemoveAll(h.rec.Dir()); err != nil {
		t.Fatal(err)
	}
	s, err := h.rec.Start(t.Context(), CallInfo{CallID: "again", RoomID: "!r:x", Kind: "1:1"})
	if err != nil {
		t.Fatalf("start after the root was removed: %v", err)
	}
	if _, err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}
