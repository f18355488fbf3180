package oggwriter

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec/opus"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// liveFile writes 3 s of the fixture with a Flush every 0.5 s and returns the file's
// bytes as a crash would leave them (no Close), and where each page starts.
func liveFile(t testing.TB) ([]byte, []int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "live.ogg")
	w, err := New(path, media.TrackParams{Channels: 1}, WithSerial(99))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i, p := range fixturePackets(t, "sine440.ogg")[:150] {
		if err := w.WriteFrame(media.Frame{Data: p, PTS: time.Duration(i) * ms20}); err != nil {
			t.Fatal(err)
		}
		if i%25 == 24 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var starts []int
	for off := 0; off < len(b); {
		starts = append(starts, off)
		p, err := ParsePage(b[off:])
		if err != nil {
			t.Fatal(err)
		}
		off += p.Size()
	}
	return b, starts
}

func repairBytes(t testing.TB, b []byte) (RepairReport, []byte, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "r.ogg")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Repair(path)
	out, rerr := os.ReadFile(path)
	if rerr != nil {
		t.Fatal(rerr)
	}
	return r, out, err
}

func TestRepairClosedFileUnchanged(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWith(&buf, opusParams())
	if err != nil {
		t.Fatal(err)
	}
	writeFrames(t, w, fixturePackets(t, "sine440.ogg"), 0, nil)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, out, err := repairBytes(t, buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := RepairReport{Pages: len(readOgg(t, buf.Bytes()).pages), Granule: 151 * 960, Duration: 3020 * time.Millisecond, HadEOS: true}
	if r != want {
		t.Fatalf("report %+v, want %+v", r, want)
	}
	if !bytes.Equal(out, buf.Bytes()) {
		t.Fatal("Repair changed a whole file")
	}
}

func TestRepairTornLastPage(t *testing.T) {
	b, starts := liveFile(t)
	last := starts[len(starts)-1]
	prevGranule := int64(125 * 960) // the flush before the last one
	for cut := last; cut < len(b); cut++ {
		r, out, err := repairBytes(t, b[:cut])
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if r.TruncatedBytes != int64(cut-last) || r.Pages != len(starts)-1 || r.HadEOS || !r.AppendedEOS || r.AppendedTags ||
			r.Granule != prevGranule || r.Duration != opus.SamplesToDuration(prevGranule) || r.CorruptBytes != 0 {
			t.Fatalf("cut at %d (page at %d): %+v", cut, last, r)
		}
		if !bytes.Equal(out[:last], b[:last]) {
			t.Fatalf("cut at %d: complete pages changed", cut)
		}
		s := checkStream(t, out, fixturePackets(t, "sine440.ogg")[:125])
		if !s.endTrimmed() {
			t.Fatalf("cut at %d: no trimmed end packet", cut)
		}
		// Repair is idempotent.
		r2, out2, err := repairBytes(t, out)
		if err != nil || !bytes.Equal(out2, out) || !r2.HadEOS || r2.AppendedEOS || r2.TruncatedBytes != 0 || r2.Duration != r.Duration {
			t.Fatalf("second repair: %+v, %v", r2, err)
		}
		if cut == last+1 {
			cut = len(b) - 2 // the first and last bytes are the interesting cuts
		}
	}
	// Cut on a page boundary: nothing to truncate.
	r, _, err := repairBytes(t, b)
	if err != nil || r.TruncatedBytes != 0 || !r.AppendedEOS || r.Duration != 3*time.Second {
		t.Fatalf("uncut: %+v, %v", r, err)
	}
}

func TestRepairKeepsPagesAfterCorruption(t *testing.T) {
	b, starts := liveFile(t)
	bad := bytes.Clone(b)
	mid := starts[4]
	bad[mid+40] ^= 0x10 // inside the body: the checksum fails
	r, out, err := repairBytes(t, bad)
	if err != nil {
		t.Fatal(err)
	}
	if r.CorruptBytes != int64(starts[5]-starts[4]) || r.Pages != len(starts)-1 || r.TruncatedBytes != 0 || r.Duration != 3*time.Second {
		t.Fatalf("report %+v", r)
	}
	if !bytes.Equal(out[:len(bad)], bad) {
		t.Fatal("Repair changed the file before its end")
	}
	// Garbage at the end that holds a capture pattern is cut.
	tail := []byte("xxOggSyyyOggS\x00\x00")
	garbage := append(bytes.Clone(b), tail...)
	r, out, err = repairBytes(t, garbage)
	if err != nil || r.TruncatedBytes != int64(len(tail)) || !bytes.Equal(out[:len(b)], b) {
		t.Fatalf("garbage at the end: %+v, %v", r, err)
	}
}

func TestRepairKeepsForeignPages(t *testing.T) {
	b, _ := liveFile(t)
	foreign := appendPage(nil, 0, 5, 12345, 0, []byte{2}, []byte{1, 2})
	r, out, err := repairBytes(t, append(bytes.Clone(b), foreign...))
	if err != nil {
		t.Fatal(err)
	}
	if r.TruncatedBytes != 0 || !bytes.Equal(out[:len(b)+len(foreign)], append(bytes.Clone(b), foreign...)) {
		t.Fatalf("foreign page lost: %+v", r)
	}
}

func TestRepairHeaders(t *testing.T) {
	b, starts := liveFile(t)
	for _, tt := range []struct {
		name string
		cut  int
		tags bool
	}{
		{"after head", starts[1], true},
		{"torn tags", starts[1] + 10, true},
		{"after tags", starts[2], false},
		{"torn first audio page", starts[2] + 1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, out, err := repairBytes(t, b[:tt.cut])
			if err != nil {
				t.Fatal(err)
			}
			if r.AppendedTags != tt.tags || !r.AppendedEOS || r.Duration != 0 {
				t.Fatalf("report %+v", r)
			}
			if s := checkStream(t, out, nil); len(s.audio()) != 0 || !s.endTrimmed() {
				t.Fatalf("%d audio packets", len(s.audio()))
			}
			path := filepath.Join(t.TempDir(), "repaired.ogg")
			if err := os.WriteFile(path, out, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat("/usr/bin/opusinfo"); err == nil {
				if f := opusinfoFindings(t, path); len(f) > 0 {
					t.Errorf("opusinfo: %q", f)
				}
				if o := run(t, "oggz-validate", path); len(o) > 0 {
					t.Errorf("oggz-validate: %s", o)
				}
				run(t, "ffmpeg", "-v", "error", "-i", path, "-f", "null", "-")
			}
		})
	}
}

func TestRepairRefusesOtherFiles(t *testing.T) {
	b, starts := liveFile(t)
	vorbis := appendPage(nil, flagBOS, 0, 1, 0, []byte{30}, append([]byte("\x01vorbis"), make([]byte, 23)...))
	multiPageTags := bytes.Clone(b[:starts[1]])
	tags := appendOpusTags(nil, "v", []string{"X=" + string(make([]byte, 70000))})
	var lacing []byte
	for range 255 {
		lacing = append(lacing, 255)
	}
	multiPageTags = appendPage(multiPageTags, 0, noGranule, 99, 1, lacing, tags[:255*255])
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", []byte("Og")},
		{"garbage", bytes.Repeat([]byte("not an ogg file "), 100)},
		{"torn head", b[:starts[1]-1]},
		{"bad head checksum", append(append([]byte{}, b[:30]...), append([]byte{b[30] ^ 1}, b[31:]...)...)},
		{"vorbis", vorbis},
		{"head not first", append(bytes.Repeat([]byte{0}, 10), b...)},
		{"comment header cut between its pages", multiPageTags},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, out, err := repairBytes(t, tt.b)
			if !errors.Is(err, ErrNotOpus) {
				t.Fatalf("Repair: %+v, %v", r, err)
			}
			if !bytes.Equal(out, tt.b) {
				t.Fatal("Repair changed a file it refused")
			}
		})
	}
	if _, err := Repair(filepath.Join(t.TempDir(), "missing.ogg")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}
