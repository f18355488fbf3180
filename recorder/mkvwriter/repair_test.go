package mkvwriter

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
	"github.com/matrix-recorder/matrix-recorder/recorder/mkvwriter/mkvscan"
)

// crashCopy writes frames, flushes after the first flushed of them, writes a few more that
// stay in the buffer, and returns the file's bytes as a kill -9 at that moment leaves them.
func crashCopy(t *testing.T, codec media.Codec, frames []media.Frame, flushed int) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "live"+extension(codec))
	w, err := New(path, mkvCodec(codec), media.TrackParams{}, WithSyncOnFlush(true))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i, f := range frames[:flushed] {
		if err := w.WriteFrame(f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, f := range frames[flushed : flushed+3] {
		if err := w.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCrashAfterFlush: a file copied as a kill -9 leaves it decodes every frame up to the
// flush; Repair then gives it Duration and Cues without losing any.
func TestCrashAfterFlush(t *testing.T) {
	for _, tc := range videoCases() {
		t.Run(tc.name, func(t *testing.T) {
			frames := tc.frames(t, tc.fixture)
			const flushed = 30
			path := writeFile(t, "crash"+extension(tc.codec), crashCopy(t, tc.codec, frames, flushed))

			file, blocks := scanFile(t, path)
			if file.Torn || len(blocks) != flushed || file.Duration != 0 || file.Cues.ID != 0 {
				t.Fatalf("crashed file: torn %v, %d blocks, duration %v, cues %v", file.Torn, len(blocks),
					file.Duration, file.Cues.ID != 0)
			}
			ffmpegDecode(t, path)
			if n := countFrames(t, path); n != flushed {
				t.Errorf("ffprobe decoded %d frames of the crashed file, want %d", n, flushed)
			}

			report, err := Repair(path)
			if err != nil {
				t.Fatal(err)
			}
			want := flushed * frameInterval
			if report.Blocks != flushed || report.Dropped || report.AlreadyFinal || report.Cues == 0 ||
				report.Duration < want-frameInterval || report.Duration > want+frameInterval {
				t.Errorf("report %+v, want %d blocks, duration about %v", report, flushed, want)
			}
			checkRoundTrip(t, path, tc.codec, frames[:flushed])
			if d := ffprobe(t, path).duration(t); d < want-frameInterval || d > want+frameInterval {
				t.Errorf("ffprobe duration after repair %v, want about %v", d, want)
			}
			ffmpegDecode(t, path)
			if info := mkvinfo(t, path); !strings.Contains(info, "Cues") || !strings.Contains(info, "Duration") {
				t.Errorf("mkvinfo shows no Cues or Duration after repair:\n%s", info)
			}

			again, err := Repair(path)
			if err != nil || !again.AlreadyFinal || again.Blocks != flushed {
				t.Errorf("second repair: %+v, %v", again, err)
			}
		})
	}
}

// TestRepairTornTail cuts the crashed file in the middle of its last block.
func TestRepairTornTail(t *testing.T) {
	frames := readIVF(t, "vp8_320x240.ivf", media.CodecVP8)
	const flushed = 20
	b := crashCopy(t, media.CodecVP8, frames, flushed)
	path := writeFile(t, "torn.webm", b[:len(b)-10])

	report, err := Repair(path)
	if err != nil {
		t.Fatal(err)
	}
	if !report.Dropped || report.DroppedBytes == 0 || report.Blocks != flushed-1 {
		t.Errorf("report %+v, want the last block dropped", report)
	}
	checkRoundTrip(t, path, media.CodecVP8, frames[:flushed-1])
	ffmpegDecode(t, path)
	mkvinfo(t, path)
}

// TestRepairEveryCut cuts a crashed file at many points: Repair keeps exactly the blocks
// that were complete before the cut, or refuses when the header itself is cut.
func TestRepairEveryCut(t *testing.T) {
	for _, tc := range []codecCase{videoCases()[0], videoCases()[3]} {
		t.Run(tc.name, func(t *testing.T) {
			frames := tc.frames(t, tc.fixture)
			b := crashCopy(t, tc.codec, frames, 20)
			dir := t.TempDir()
			prev := 0
			var cuts []int
			for cut := 0; cut < len(b); cut += 1 + cut%53 {
				cuts = append(cuts, cut)
			}
			for _, cut := range append(cuts, len(b)) {
				path := filepath.Join(dir, "cut"+extension(tc.codec))
				if err := os.WriteFile(path, b[:cut], 0o644); err != nil {
					t.Fatal(err)
				}
				report, err := Repair(path)
				if err != nil {
					if !errors.Is(err, ErrNotRecoverable) || prev > 0 {
						t.Fatalf("cut at %d: %v", cut, err)
					}
					continue
				}
				if report.Blocks < prev {
					t.Fatalf("cut at %d keeps %d blocks, an earlier cut kept %d", cut, report.Blocks, prev)
				}
				prev = report.Blocks
				if report.Blocks > 0 {
					checkRoundTrip(t, path, tc.codec, frames[:report.Blocks])
				}
			}
			if prev != 20 {
				t.Errorf("the whole file kept %d blocks, want 20", prev)
			}
		})
	}
}

// TestRepairGarbage: zeros (a filesystem that lost the tail), random bytes, and a corrupted
// block in the middle.
func TestRepairGarbage(t *testing.T) {
	frames := readIVF(t, "vp8_320x240.ivf", media.CodecVP8)
	const flushed = 40
	b := crashCopy(t, media.CodecVP8, frames, flushed)
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 5000)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}

	t.Run("zero tail", func(t *testing.T) {
		path := writeFile(t, "z.webm", append(bytes.Clone(b), make([]byte, 4096)...))
		report, err := Repair(path)
		if err != nil || report.Blocks != flushed || !report.Dropped || report.DroppedBytes != 4096 {
			t.Fatalf("report %+v, %v", report, err)
		}
		checkRoundTrip(t, path, media.CodecVP8, frames[:flushed])
		ffmpegDecode(t, path)
	})
	t.Run("random tail", func(t *testing.T) {
		path := writeFile(t, "r.webm", append(bytes.Clone(b), random...))
		report, err := Repair(path)
		if err != nil || report.Blocks < flushed || !report.Dropped {
			t.Fatalf("report %+v, %v", report, err)
		}
		file, blocks := scanFile(t, path)
		if file.Torn || file.Skipped != 0 || len(blocks) != report.Blocks {
			t.Fatalf("repaired file: torn %v skipped %d, %d blocks", file.Torn, file.Skipped, len(blocks))
		}
	})
	t.Run("corrupt middle", func(t *testing.T) {
		c := bytes.Clone(b)
		var offsets []int64
		if _, err := mkvscan.Scan(bytes.NewReader(c), int64(len(c)), mkvscan.Visitor{Block: func(b mkvscan.Block) error {
			offsets = append(offsets, b.Offset)
			return nil
		}}); err != nil {
			t.Fatal(err)
		}
		// Zero the header of block 5: the scanner loses the rest of that cluster.
		copy(c[offsets[5]:], make([]byte, 8))
		path := writeFile(t, "m.webm", c)
		report, err := Repair(path)
		if err != nil || !report.Dropped || report.Blocks >= flushed || report.Blocks == 0 {
			t.Fatalf("report %+v, %v", report, err)
		}
		file, got := scanFile(t, path)
		if file.Torn || file.Skipped != 0 || len(got) != report.Blocks {
			t.Fatalf("repaired file: torn %v skipped %d, %d blocks", file.Torn, file.Skipped, len(got))
		}
		mkvinfo(t, path)
	})
}

// TestRepairNotRecoverable: nothing to save without the header.
func TestRepairNotRecoverable(t *testing.T) {
	frames := readIVF(t, "vp8_320x240.ivf", media.CodecVP8)
	b := crashCopy(t, media.CodecVP8, frames, 5)
	for name, data := range map[string][]byte{
		"empty":       nil,
		"ebml header": b[:20],
		"not ebml":    []byte("RIFF....WAVEfmt "),
	} {
		path := writeFile(t, "x.webm", data)
		if _, err := Repair(path); !errors.Is(err, ErrNotRecoverable) {
			t.Errorf("%s: %v, want ErrNotRecoverable", name, err)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
			t.Errorf("%s: file changed", name)
		}
	}
	if _, err := Repair(filepath.Join(t.TempDir(), "missing.webm")); err == nil {
		t.Error("repairing a missing file succeeded")
	}
}

// TestRepairFinishedFile leaves a file Close finished untouched.
func TestRepairFinishedFile(t *testing.T) {
	frames := readIVF(t, "vp8_320x240.ivf", media.CodecVP8)
	path := filepath.Join(t.TempDir(), "done.webm")
	writeFrames(t, path, media.CodecVP8, media.TrackParams{}, frames)
	before, _ := os.ReadFile(path)
	report, err := Repair(path)
	if err != nil || !report.AlreadyFinal || report.Blocks != len(frames) {
		t.Fatalf("report %+v, %v", report, err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("repair changed a finished file")
	}
}

// seekFailer is a file whose Seek fails once armed: Close cannot patch anything.
type seekFailer struct {
	*os.File
	armed bool
}

func (s *seekFailer) Seek(off int64, whence int) (int64, error) {
	if s.armed {
		return 0, errors.New("seek refused")
	}
	return s.File.Seek(off, whence)
}

// WriteAt fails too once armed: the writer patches in place with it when it can.
func (s *seekFailer) WriteAt(b []byte, off int64) (int, error) {
	if s.armed {
		return 0, errors.New("write in place refused")
	}
	return s.File.WriteAt(b, off)
}

// TestRepairAfterFailedClose: Close appended the Cues but could not patch the header.
func TestRepairAfterFailedClose(t *testing.T) {
	frames := readIVF(t, "vp8_320x240.ivf", media.CodecVP8)
	path := filepath.Join(t.TempDir(), "half.webm")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sf := &seekFailer{File: f}
	w, err := NewWith(sf, mkvCodec(media.CodecVP8), media.TrackParams{})
	if err != nil {
		t.Fatal(err)
	}
	for _, fr := range frames {
		if err := w.WriteFrame(fr); err != nil {
			t.Fatal(err)
		}
	}
	sf.armed = true
	if err := w.Close(); err == nil {
		t.Fatal("Close with a failing Seek succeeded")
	}
	file, _ := scanFile(t, path)
	if file.Cues.ID == 0 || file.Segment.Size != -1 {
		t.Fatalf("expected appended cues and an unpatched segment: %+v", file)
	}
	ffmpegDecode(t, path)
	report, err := Repair(path)
	if err != nil || report.Dropped || report.Blocks != len(frames) {
		t.Fatalf("report %+v, %v", report, err)
	}
	checkRoundTrip(t, path, media.CodecVP8, frames)
	mkvinfo(t, path)
}

// TestRepairKeepsPermissions: the rename must not turn a 0644 file into a 0600 one.
func TestRepairKeepsPermissions(t *testing.T) {
	frames := readIVF(t, "vp8_320x240.ivf", media.CodecVP8)
	path := writeFile(t, "p.webm", crashCopy(t, media.CodecVP8, frames, 10))
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := Repair(path); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

var _ io.WriteSeeker = (*seekFailer)(nil)

// TestRepairForeignFile repairs a truncated file written by ffmpeg (known-size Segment and
// Clusters, Cues at the end): everything before the cut is kept.
func TestRepairForeignFile(t *testing.T) {
	requireTool(t, "ffmpeg")
	dir := t.TempDir()
	ref := filepath.Join(dir, "ffmpeg.webm")
	out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-i", filepath.Join("testdata", "vp8_320x240.ivf"),
		"-c", "copy", "-cluster_time_limit", "500", ref).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	b, err := os.ReadFile(ref)
	if err != nil {
		t.Fatal(err)
	}
	frames := readIVF(t, "vp8_320x240.ivf", media.CodecVP8)
	path := writeFile(t, "cut.webm", b[:len(b)*2/3])
	report, err := Repair(path)
	if err != nil {
		t.Fatal(err)
	}
	if !report.Dropped || report.Blocks < len(frames)/2 || report.Blocks >= len(frames) {
		t.Errorf("report %+v", report)
	}
	_, blocks := scanFile(t, path)
	for i, blk := range blocks {
		if !bytes.Equal(blk.data, frames[i].Data) || blk.keyframe != frames[i].Keyframe {
			t.Fatalf("block %d differs from the input frame", i)
		}
	}
	ffmpegDecode(t, path)
	if info := mkvinfo(t, path); !strings.Contains(info, "Cues") {
		t.Errorf("no cues:\n%s", info)
	}
}
