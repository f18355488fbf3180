package oggwriter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec/opus"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// FuzzWriter runs a script of frames and flushes against the writer. Each script byte
// op is: 0xff Flush; 0xfe a padded packet whose length follows in 2 bytes (up to
// multi-page); else a frame of op&0x3f bytes taken from the script, at a PTS chosen by
// op>>6: 0 right after the previous frame, 1 after a gap of the next 2 bytes in
// samples, 2 back by the next byte in ms, 3 ten hours or the largest PTS later.
func FuzzWriter(f *testing.F) {
	f.Add([]byte{0x03, 0xf8, 0xff, 0xfe, 0x43, 0x01, 0x00, 0xf8, 0xff, 0xfe, 0xff, 0x01, 0x08, 0xfe, 0xff, 0x00, 0x81, 0x05, 0xc1, 0x01, 0x00}, uint8(1), uint8(0), uint16(4096))
	f.Add([]byte{0x01, 0xfc, 0x41, 0x02, 0x7a, 0xfc, 0xff, 0x02, 0xf9, 0x01}, uint8(2), uint8(254), uint16(100))
	f.Fuzz(func(t *testing.T, script []byte, policy, pagePackets uint8, pageBody uint16) {
		var buf bytes.Buffer
		w, err := NewWith(&buf, opusParams(), WithSerial(1), WithGapPolicy(GapPolicy(policy%3+1)),
			WithMaxPagePackets(int(pagePackets)%255+1), WithMaxPageBody(int(pageBody)%8192+1), WithMaxGap(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		take := func(n int) []byte {
			n = min(n, len(script))
			b := script[:n]
			script = script[n:]
			return b
		}
		var accepted [][]byte
		flushed := 0
		for len(script) > 0 {
			op := take(1)[0]
			if op == 0xff {
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
				// No packet is under way at a Flush, so what it and the writes before
				// it added since the last one reads on its own, and ends on a page.
				if s := readOgg(t, buf.Bytes()[flushed:]); s.rest != 0 {
					t.Fatalf("after Flush: %d bytes after the last page", s.rest)
				}
				flushed = buf.Len()
				continue
			}
			var data []byte
			pts := w.Duration()
			if op == 0xfe {
				n := 0
				if b := take(2); len(b) == 2 {
					n = int(binary.BigEndian.Uint16(b))
				}
				data = paddedPacket(n + 4)
			} else {
				data = bytes.Clone(take(int(op & 0x3f)))
				switch op >> 6 {
				case 1:
					var gap uint16
					if b := take(2); len(b) == 2 {
						gap = binary.BigEndian.Uint16(b)
					}
					pts += opus.SamplesToDuration(int64(gap))
				case 2:
					var back byte
					if b := take(1); len(b) == 1 {
						back = b[0]
					}
					pts -= time.Duration(back) * time.Millisecond
				case 3:
					pts += 10 * time.Hour
					if len(data)%2 == 1 {
						pts = 1<<63 - 1
					}
				}
			}
			before := w.Duration()
			_, perr := opus.Duration(data)
			err := w.WriteFrame(media.Frame{Data: data, PTS: pts})
			switch {
			case err == nil:
				if perr != nil {
					t.Fatalf("accepted an invalid packet %x", data)
				}
				accepted = append(accepted, data)
				d, _ := opus.Duration(data)
				if w.Duration() != opus.SamplesToDuration(opus.DurationToSamples(pts)+opus.DurationToSamples(d)) {
					t.Fatalf("Duration %v after a frame at %v of %v", w.Duration(), pts, d)
				}
			case errors.Is(err, ErrInvalidPacket):
				if perr == nil {
					t.Fatalf("refused a valid packet %x: %v", data, err)
				}
			case errors.Is(err, ErrBackwards), errors.Is(err, ErrGapTooLarge):
			default:
				t.Fatalf("unexpected error %v", err)
			}
			if err != nil && w.Duration() != before {
				t.Fatal("a refused frame moved the end")
			}
		}
		end := opus.DurationToSamples(w.Duration())
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		s := checkStream(t, buf.Bytes(), nil)
		audio := s.audio()
		// The accepted frames in order; between them only gap fills.
		i := 0
		for _, p := range audio {
			if i < len(accepted) && bytes.Equal(p, accepted[i]) {
				i++
				continue
			}
			if GapPolicy(policy%3+1) == GapKeep || !(isSilence(p) || len(p) == 1) {
				t.Fatalf("unexpected packet %x", p)
			}
		}
		if i != len(accepted) {
			t.Fatalf("%d of %d accepted frames in the stream", i, len(accepted))
		}
		// Granule positions: never less than the samples before them, and the last
		// one is the end of the last frame.
		samples := int64(0)
		pi := 0
		for _, pg := range s.pages {
			for range pg.Packets() {
				if pi >= 2 {
					n, err := opus.Samples(s.packets[pi])
					if err != nil {
						t.Fatal(err)
					}
					samples += int64(n)
				}
				pi++
			}
			if pg.granule != noGranule && pg.granule < samples && pg.flags&flagEOS == 0 {
				t.Fatalf("page %d: granule %d before %d samples", pg.seq, pg.granule, samples)
			}
		}
		if g := s.pages[len(s.pages)-1].granule; g != end {
			t.Fatalf("last granule %d, want %d", g, end)
		}
	})
}

// FuzzRepair repairs arbitrary file contents. Repair must never panic, never change a
// file it refuses, keep every byte before the cut, and leave a file that a second
// Repair finds whole.
func FuzzRepair(f *testing.F) {
	b, starts := liveFile(f)
	f.Add(b[:starts[3]+57])
	f.Add(b[:starts[2]])
	var buf bytes.Buffer
	w, err := NewWith(&buf, opusParams(), WithSerial(5), WithMaxPagePackets(2))
	if err != nil {
		f.Fatal(err)
	}
	writeFrames(f, w, fixturePackets(f, "voip60ms.ogg")[:5], 0, nil)
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, in []byte) {
		// A file in memory: the fuzzer runs thousands of inputs a second, which real
		// files and fsync would not allow. Repair's file handling has its own tests.
		file := &memFile{b: bytes.Clone(in)}
		r, err := repair(file, int64(len(in)))
		out := file.b
		if err != nil {
			if !errors.Is(err, ErrNotOpus) {
				t.Fatalf("Repair: %v", err)
			}
			if !bytes.Equal(out, in) {
				t.Fatal("Repair changed a file it refused")
			}
			return
		}
		kept := len(in) - int(r.TruncatedBytes)
		if kept < 0 || kept > len(in) || !bytes.Equal(out[:kept], in[:kept]) {
			t.Fatalf("Repair changed bytes it kept: %+v", r)
		}
		// No complete page starts in what was cut.
		for off := kept; off < len(in); off++ {
			if _, err := ParsePage(in[off:]); err == nil {
				t.Fatalf("cut a complete page at %d: %+v", off, r)
			}
		}
		// What was appended is whole pages, the last one ending the stream.
		tail := out[kept:]
		if (len(tail) > 0) != (r.AppendedEOS || r.AppendedTags) {
			t.Fatalf("appended %d bytes: %+v", len(tail), r)
		}
		for len(tail) > 0 {
			p, err := ParsePage(tail)
			if err != nil {
				t.Fatalf("appended page: %v", err)
			}
			tail = tail[p.Size():]
			if len(tail) == 0 && p.flags&flagEOS == 0 {
				t.Fatal("appended pages without end of stream")
			}
		}
		out = bytes.Clone(out)
		r2, err := repair(file, int64(len(file.b)))
		if err != nil {
			t.Fatalf("second Repair: %v", err)
		}
		out2 := file.b
		if !bytes.Equal(out2, out) || r2.AppendedEOS || r2.AppendedTags || r2.TruncatedBytes != 0 || !r2.HadEOS || r2.Duration != r.Duration {
			t.Fatalf("second Repair changed the file: %+v after %+v", r2, r)
		}
	})
}

// memFile is a file in memory for repair.
type memFile struct{ b []byte }

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memFile) Truncate(size int64) error {
	m.b = m.b[:size]
	return nil
}

func (m *memFile) Sync() error { return nil }
