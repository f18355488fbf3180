package mkvwriter

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// memFile is an in-memory io.WriteSeeker.
type memFile struct {
	b   []byte
	pos int64
}

func (m *memFile) Write(p []byte) (int, error) {
	if need := int(m.pos) + len(p); need > len(m.b) {
		m.b = append(m.b, make([]byte, need-len(m.b))...)
	}
	copy(m.b[m.pos:], p)
	m.pos += int64(len(p))
	return len(p), nil
}

func (m *memFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		m.pos = off
	case io.SeekCurrent:
		m.pos += off
	case io.SeekEnd:
		m.pos = int64(len(m.b)) + off
	}
	if m.pos < 0 {
		return 0, errors.New("negative position")
	}
	return m.pos, nil
}

// failAfter fails every Write once limit bytes were written.
type failAfter struct {
	memFile
	limit int
}

func (f *failAfter) Write(p []byte) (int, error) {
	if len(f.b)+len(p) > f.limit {
		return 0, errors.New("disk full")
	}
	return f.memFile.Write(p)
}

func newVP8Writer(t *testing.T, opts ...Option) (*Writer, *memFile) {
	t.Helper()
	m := &memFile{}
	w, err := NewWith(m, mkvCodec(media.CodecVP8), media.TrackParams{}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return w, m
}

func TestFirstFrameMustBeKeyframe(t *testing.T) {
	w, m := newVP8Writer(t)
	err := w.WriteFrame(media.Frame{Data: vp8Frame(false, 0, 0, 20)})
	if !errors.Is(err, ErrNotKeyframe) {
		t.Fatalf("inter frame first: %v, want ErrNotKeyframe", err)
	}
	if len(m.b) != 0 {
		t.Error("a refused frame wrote bytes")
	}
	if err := w.WriteFrame(media.Frame{Data: vp8Frame(true, 64, 48, 20), Keyframe: true}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestBadFrames: hostile input is refused with ErrBadFrame and the writer carries on.
func TestBadFrames(t *testing.T) {
	garbage := []byte{0xff, 0xfe, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09}
	cases := []struct {
		codec    media.Codec
		good     media.Frame
		bad      [][]byte // refused as key frames anywhere
		badFirst [][]byte // refused as the first key frame only
	}{
		{media.CodecVP8, media.Frame{Data: vp8Frame(true, 64, 48, 20), Keyframe: true}, [][]byte{
			garbage, {0x10}, vp8Frame(false, 0, 0, 20), vp8Frame(true, 0, 48, 20),
		}, nil},
		{media.CodecVP9, readIVF(t, "vp9_320x240.ivf", media.CodecVP9)[0], [][]byte{
			garbage, {0x82}, {0x82, 0x49, 0x83},
		}, nil},
		{media.CodecAV1, readIVF(t, "av1_320x240.ivf", media.CodecAV1)[0], [][]byte{
			garbage, {0x12, 0x00}, {0x0a, 0x05, 0x00}, {0x0a, 0x01, 0xff},
		}, nil},
		{media.CodecH264, readH264(t, "h264_320x180.h264")[0], [][]byte{
			garbage, {0, 0, 1}, {0, 0, 0, 0}, {0, 0, 1, 0x41, 0x9a},
		}, [][]byte{
			{0, 0, 1, 0x65, 0x88}, // no parameter sets
			{0, 0, 1, 0x67, 0x42, 0, 0x1e, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 0x88}, // SPS cut short
		}},
	}
	for _, tc := range cases {
		t.Run(tc.codec.String(), func(t *testing.T) {
			w, err := NewWith(&memFile{}, mkvCodec(tc.codec), media.TrackParams{})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.WriteFrame(media.Frame{Keyframe: true}); !errors.Is(err, ErrBadFrame) {
				t.Errorf("empty frame: %v", err)
			}
			for i, b := range append(tc.bad, tc.badFirst...) {
				if err := w.WriteFrame(media.Frame{Data: b, Keyframe: true}); !errors.Is(err, ErrBadFrame) {
					t.Errorf("bad first key frame %d: %v, want ErrBadFrame", i, err)
				}
			}
			if err := w.WriteFrame(tc.good); err != nil {
				t.Fatalf("good frame after bad ones: %v", err)
			}
			if err := w.WriteFrame(media.Frame{PTS: time.Second}); !errors.Is(err, ErrBadFrame) {
				t.Errorf("empty frame later: %v", err)
			}
			for i, b := range tc.bad {
				if err := w.WriteFrame(media.Frame{Data: b, Keyframe: true, PTS: time.Second}); !errors.Is(err, ErrBadFrame) {
					t.Errorf("bad key frame %d later: %v, want ErrBadFrame", i, err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTimestamps(t *testing.T) {
	key := func(pts time.Duration) media.Frame {
		return media.Frame{Data: vp8Frame(true, 64, 48, 20), Keyframe: true, PTS: pts}
	}
	w, m := newVP8Writer(t, WithMaxGap(time.Hour))
	if err := w.WriteFrame(key(-time.Millisecond)); !errors.Is(err, ErrBadTimestamp) {
		t.Errorf("negative pts: %v", err)
	}
	if err := w.WriteFrame(key(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFrame(key(time.Second - time.Millisecond)); !errors.Is(err, ErrBadTimestamp) {
		t.Errorf("pts going back: %v", err)
	}
	if err := w.WriteFrame(key(time.Second)); err != nil {
		t.Errorf("repeated pts: %v", err)
	}
	if err := w.WriteFrame(key(time.Second + time.Hour + time.Millisecond)); !errors.Is(err, media.ErrNewPart) {
		t.Errorf("jump beyond max gap: %v, want ErrNewPart", err)
	}
	if err := w.WriteFrame(key(time.Second + time.Hour)); err != nil {
		t.Errorf("jump of exactly the max gap: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, "ts.webm", m.b)
	_, blocks := scanFile(t, path)
	want := []int64{1000, 1000, 3601000}
	if len(blocks) != len(want) {
		t.Fatalf("%d blocks, want %d", len(blocks), len(want))
	}
	for i, b := range blocks {
		if b.timestamp != want[i] {
			t.Errorf("block %d at %d, want %d", i, b.timestamp, want[i])
		}
	}

	// Without a limit, even an absurd PTS is stored: nothing overflows.
	w, m = newVP8Writer(t, WithMaxGap(0))
	for _, pts := range []time.Duration{0, 1<<62 + 5, 1<<63 - 1} {
		if err := w.WriteFrame(key(pts)); err != nil {
			t.Fatalf("pts %d: %v", pts, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	file, blocks := scanFile(t, writeFile(t, "absurd.webm", m.b))
	if len(blocks) != 3 || file.Torn || file.Duration <= 0 {
		t.Errorf("absurd pts file: %d blocks, torn %v, duration %v", len(blocks), file.Torn, file.Duration)
	}
}

func TestClosed(t *testing.T) {
	w, _ := newVP8Writer(t)
	if err := w.WriteFrame(media.Frame{Data: vp8Frame(true, 64, 48, 20), Keyframe: true}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := w.WriteFrame(media.Frame{Data: vp8Frame(true, 64, 48, 20), Keyframe: true}); !errors.Is(err, media.ErrClosed) {
		t.Errorf("WriteFrame after Close: %v", err)
	}
	if err := w.Flush(); !errors.Is(err, media.ErrClosed) {
		t.Errorf("Flush after Close: %v", err)
	}
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.webm")
	if err := os.WriteFile(path, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(path, mkvCodec(media.CodecVP8), media.TrackParams{}); err == nil {
		t.Error("New over an existing file succeeded")
	}
	if b, _ := os.ReadFile(path); string(b) != "keep" {
		t.Error("New touched an existing file")
	}

	other := filepath.Join(dir, "b.webm")
	if _, err := New(other, mkvCodec(media.CodecUnknown), media.TrackParams{}); !errors.Is(err, ErrUnsupportedCodec) {
		t.Errorf("unknown codec: %v", err)
	}
	if _, err := New(other, mkvCodec(media.CodecVP8), media.TrackParams{}, WithClusterDuration(-1)); err == nil {
		t.Error("bad option accepted")
	}
	if _, err := os.Stat(other); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed New left a file: %v", err)
	}
	if _, err := New(other, mkvCodec(media.CodecOpus), media.TrackParams{Channels: 6}); !errors.Is(err, ErrUnsupportedCodec) {
		t.Errorf("6-channel opus: %v", err)
	}

	// Closed before the first frame: an empty file.
	w, err := New(other, mkvCodec(media.CodecVP8), media.TrackParams{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if fileSize(t, other) != 0 {
		t.Error("a writer without frames wrote something")
	}
}

type seekError struct{ memFile }

func (*seekError) Seek(int64, int) (int64, error) { return 0, errors.New("not seekable") }

func TestNewWithErrors(t *testing.T) {
	if _, err := NewWith(&seekError{}, mkvCodec(media.CodecVP8), media.TrackParams{}); err == nil {
		t.Error("NewWith on a writer that cannot Seek succeeded")
	}
	if _, err := NewWith(nil, mkvCodec(media.CodecVP8), media.TrackParams{}); err == nil {
		t.Error("NewWith(nil) succeeded")
	}
}

// TestNewWithOffset writes into a stream that already holds other data.
func TestNewWithOffset(t *testing.T) {
	m := &memFile{}
	prefix := bytes.Repeat([]byte("x"), 100)
	if _, err := m.Write(prefix); err != nil {
		t.Fatal(err)
	}
	w, err := NewWith(m, mkvCodec(media.CodecVP8), media.TrackParams{})
	if err != nil {
		t.Fatal(err)
	}
	frames := readIVF(t, "vp8_320x240.ivf", media.CodecVP8)
	for _, f := range frames {
		if err := w.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.b[:100], prefix) || m.pos != int64(len(m.b)) {
		t.Fatal("prefix overwritten or stream not left at its end")
	}
	checkRoundTrip(t, writeFile(t, "o.webm", m.b[100:]), media.CodecVP8, frames)
}

// TestWriteErrorSticks: after an I/O error, every call reports it.
func TestWriteErrorSticks(t *testing.T) {
	f := &failAfter{limit: 2000}
	w, err := NewWith(f, mkvCodec(media.CodecVP8), media.TrackParams{}, WithBufferSize(512))
	if err != nil {
		t.Fatal(err)
	}
	var first error
	for i := 0; i < 100 && first == nil; i++ {
		first = w.WriteFrame(media.Frame{Data: vp8Frame(i == 0, 64, 48, 100), Keyframe: i == 0,
			PTS: time.Duration(i) * 33 * time.Millisecond})
	}
	if first == nil {
		t.Fatal("no error from a full disk")
	}
	if !errors.Is(first, media.ErrWrite) {
		t.Errorf("the I/O error %q does not wrap media.ErrWrite", first)
	}
	if err := w.WriteFrame(media.Frame{Data: vp8Frame(false, 0, 0, 10), PTS: 10 * time.Second}); !errors.Is(err, media.ErrWrite) {
		t.Errorf("WriteFrame after an I/O error: %v", err)
	}
	if err := w.Flush(); !errors.Is(err, media.ErrWrite) {
		t.Errorf("Flush after an I/O error: %v", err)
	}
	if err := w.Close(); !errors.Is(err, media.ErrWrite) {
		t.Errorf("Close after an I/O error: %v", err)
	}
}

// TestFlushReachesFile: after Flush, the file holds every byte written.
func TestFlushReachesFile(t *testing.T) {
	w, m := newVP8Writer(t)
	if err := w.WriteFrame(media.Frame{Data: vp8Frame(true, 64, 48, 200), Keyframe: true}); err != nil {
		t.Fatal(err)
	}
	if len(m.b) != 0 {
		t.Fatal("expected the first frame to wait in the buffer")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	_, blocks := scanFile(t, writeFile(t, "f.webm", m.b))
	if len(blocks) != 1 {
		t.Errorf("%d blocks after Flush, want 1", len(blocks))
	}
}

// TestAV1TemporalDelimiter: a leading temporal delimiter is dropped from the block.
func TestAV1TemporalDelimiter(t *testing.T) {
	frames := readIVF(t, "av1_320x240.ivf", media.CodecAV1)
	m := &memFile{}
	w, err := NewWith(m, mkvCodec(media.CodecAV1), media.TrackParams{})
	if err != nil {
		t.Fatal(err)
	}
	first := frames[0]
	first.Data = append([]byte{0x12, 0x00}, first.Data...)
	if err := w.WriteFrame(first); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, blocks := scanFile(t, writeFile(t, "td.webm", m.b))
	if len(blocks) != 1 || !bytes.Equal(blocks[0].data, frames[0].Data) {
		t.Error("temporal delimiter kept in the block")
	}
}

// TestWriteFrameAllocs: the steady state allocates nothing, for every codec.
func TestWriteFrameAllocs(t *testing.T) {
	for _, tc := range videoCases() {
		t.Run(tc.name, func(t *testing.T) {
			frames := tc.frames(t, tc.fixture)
			w, err := NewWith(&discard{}, mkvCodec(tc.codec), media.TrackParams{})
			if err != nil {
				t.Fatal(err)
			}
			pts := time.Duration(0)
			i := 0
			write := func() {
				f := frames[i%len(frames)]
				f.PTS = pts
				if err := w.WriteFrame(f); err != nil {
					t.Fatal(err)
				}
				pts += frameInterval
				i++
			}
			for range len(frames) {
				write() // warm up: buffers grow to the largest frame
			}
			if allocs := testing.AllocsPerRun(200, write); allocs != 0 {
				t.Errorf("%v allocations per WriteFrame, want 0", allocs)
			}
			if allocs := testing.AllocsPerRun(20, func() {
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
			}); allocs != 0 {
				t.Errorf("%v allocations per Flush, want 0", allocs)
			}
		})
	}
}

// discard is a WriteSeeker that drops everything.
type discard struct{ pos int64 }

func (d *discard) Write(p []byte) (int, error) {
	d.pos += int64(len(p))
	return len(p), nil
}

func (d *discard) Seek(off int64, whence int) (int64, error) {
	if whence == io.SeekStart {
		d.pos = off
	} else {
		d.pos += off
	}
	return d.pos, nil
}

func BenchmarkWriteFrameVP8(b *testing.B) {
	frames := readIVF(b, "vp8_320x240.ivf", media.CodecVP8)
	w, err := NewWith(&discard{}, mkvCodec(media.CodecVP8), media.TrackParams{})
	if err != nil {
		b.Fatal(err)
	}
	var bytes int64
	for _, f := range frames {
		bytes += int64(len(f.Data))
	}
	b.SetBytes(bytes / int64(len(frames)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		f := frames[i%len(frames)]
		f.PTS = time.Duration(i) * frameInterval
		if err := w.WriteFrame(f); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteFrameH264(b *testing.B) {
	frames := readH264(b, "h264_320x180.h264")
	w, err := NewWith(&discard{}, mkvCodec(media.CodecH264), media.TrackParams{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f := frames[i%len(frames)]
		f.PTS = time.Duration(i) * frameInterval
		if err := w.WriteFrame(f); err != nil {
			b.Fatal(err)
		}
	}
}
