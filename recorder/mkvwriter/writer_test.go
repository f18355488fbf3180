package mkvwriter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
	"github.com/matrix-recorder/matrix-recorder/recorder/mkvwriter/mkvscan"
)

type codecCase struct {
	name    string
	codec   media.Codec
	fixture string
	small   string // a smaller fixture, for size changes
	ffname  string // ffprobe's codec_name
	width   int
	height  int
	frames  func(t testing.TB, name string) []media.Frame
}

func videoCases() []codecCase {
	ivf := func(c media.Codec) func(testing.TB, string) []media.Frame {
		return func(t testing.TB, name string) []media.Frame { return readIVF(t, name, c) }
	}
	return []codecCase{
		{"vp8", media.CodecVP8, "vp8_320x240.ivf", "vp8_176x144.ivf", "vp8", 320, 240, ivf(media.CodecVP8)},
		{"vp9", media.CodecVP9, "vp9_320x240.ivf", "vp9_176x144.ivf", "vp9", 320, 240, ivf(media.CodecVP9)},
		{"av1", media.CodecAV1, "av1_320x240.ivf", "av1_176x144.ivf", "av1", 320, 240, ivf(media.CodecAV1)},
		{"h264", media.CodecH264, "h264_320x180.h264", "", "h264", 320, 180, readH264},
	}
}

// TestVideoCodecs writes each fixture and checks the file with ffprobe, ffmpeg, mkvinfo and
// the package's own reader.
func TestVideoCodecs(t *testing.T) {
	for _, tc := range videoCases() {
		t.Run(tc.name, func(t *testing.T) {
			frames := tc.frames(t, tc.fixture)
			path := filepath.Join(t.TempDir(), "track"+extension(tc.codec))
			writeFrames(t, path, tc.codec, media.TrackParams{ClockRate: 90000, Title: "@alice:example.org camera"}, frames)

			checkRoundTrip(t, path, tc.codec, frames)

			p := ffprobe(t, path)
			s := p.Streams[0]
			if s.CodecName != tc.ffname || s.Width != tc.width || s.Height != tc.height {
				t.Errorf("ffprobe: %s %dx%d, want %s %dx%d", s.CodecName, s.Width, s.Height, tc.ffname, tc.width, tc.height)
			}
			want := time.Duration(len(frames)) * frameInterval
			if d := p.duration(t); d < want-frameInterval || d > want+frameInterval {
				t.Errorf("ffprobe duration %v, want %v within a frame", d, want)
			}
			wantFormat := "matroska,webm"
			if !strings.Contains(p.Format.FormatName, "matroska") {
				t.Errorf("format %q, want %q", p.Format.FormatName, wantFormat)
			}
			ffmpegDecode(t, path)
			if n := countFrames(t, path); n != len(frames) {
				t.Errorf("ffprobe decoded %d frames, want %d", n, len(frames))
			}
			info := mkvinfo(t, path)
			for _, want := range []string{"Cues", "Duration", "Seek head"} {
				if !strings.Contains(info, want) {
					t.Errorf("mkvinfo shows no %s:\n%s", want, info)
				}
			}
		})
	}
}

// checkRoundTrip reads the file back and compares every block with the frame written.
func checkRoundTrip(t *testing.T, path string, codec media.Codec, frames []media.Frame) {
	t.Helper()
	file, blocks := scanFile(t, path)
	if file.Torn || file.Skipped != 0 {
		t.Errorf("scan: torn %v, skipped %d", file.Torn, file.Skipped)
	}
	wantDoc := "webm"
	if codec == media.CodecH264 {
		wantDoc = "matroska"
	}
	if file.DocType != wantDoc {
		t.Errorf("DocType %q, want %q", file.DocType, wantDoc)
	}
	if file.Segment.Size == mkvscan.UnknownSize || file.Segment.End() != fileSize(t, path) {
		t.Errorf("segment size %d not patched to the file end", file.Segment.Size)
	}
	if file.Cues.ID == 0 || file.Duration <= 0 {
		t.Errorf("no cues (%v) or no duration (%v)", file.Cues.ID != 0, file.Duration)
	}
	if len(blocks) != len(frames) {
		t.Fatalf("%d blocks, want %d", len(blocks), len(frames))
	}
	for i, b := range blocks {
		f := frames[i]
		if b.timestamp != f.PTS.Milliseconds() || b.keyframe != (f.Keyframe || !(codec != media.CodecOpus)) || b.track != 1 {
			t.Fatalf("block %d: track %d ts %d key %v, want ts %d key %v", i, b.track, b.timestamp, b.keyframe,
				f.PTS.Milliseconds(), f.Keyframe)
		}
		want := f.Data
		if codec == media.CodecH264 {
			want = testAnnexBToAVCC(t, f.Data)
		}
		if !bytes.Equal(b.data, want) {
			t.Fatalf("block %d: data differs (%d bytes, want %d)", i, len(b.data), len(want))
		}
	}
}

// testAnnexBToAVCC is the test's own conversion: split at start codes, drop trailing zeros.
func testAnnexBToAVCC(t *testing.T, b []byte) []byte {
	var out []byte
	parts := bytes.Split(b, []byte{0, 0, 1})
	for _, p := range parts[1:] {
		p = bytes.TrimRight(p, "\x00")
		if len(p) == 0 {
			continue
		}
		out = binary.BigEndian.AppendUint32(out, uint32(len(p)))
		out = append(out, p...)
	}
	return out
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestCodecPrivateMatchesFFmpeg compares the avcC and av1C built here with the ones ffmpeg
// writes when it remuxes the same stream.
func TestCodecPrivateMatchesFFmpeg(t *testing.T) {
	requireTool(t, "ffmpeg")
	for _, tc := range []struct {
		name, fixture string
		codec         media.Codec
		frames        []media.Frame
	}{
		{"h264 high", "h264_176x144_high.h264", media.CodecH264, readH264(t, "h264_176x144_high.h264")},
		{"h264 baseline", "h264_320x180.h264", media.CodecH264, readH264(t, "h264_320x180.h264")},
		{"av1", "av1_320x240.ivf", media.CodecAV1, readIVF(t, "av1_320x240.ivf", media.CodecAV1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ref := filepath.Join(dir, "ffmpeg.mkv")
			out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-i", filepath.Join("testdata", tc.fixture),
				"-c", "copy", ref).CombinedOutput()
			if err != nil {
				t.Fatalf("ffmpeg: %v\n%s", err, out)
			}
			mine := filepath.Join(dir, "mine.mkv")
			writeFrames(t, mine, tc.codec, media.TrackParams{}, tc.frames[:1])
			refFile, _ := scanFile(t, ref)
			myFile, _ := scanFile(t, mine)
			want, got := refFile.TrackList[0].CodecPrivate, myFile.TrackList[0].CodecPrivate
			if !bytes.Equal(got, want) {
				t.Errorf("CodecPrivate\n got %x\nwant %x", got, want)
			}
		})
	}
}

// TestResolutionChange feeds a small stream and then a larger one: VP8, VP9 and AV1 carry on
// in the same file and record the larger size.
func TestResolutionChange(t *testing.T) {
	for _, tc := range videoCases() {
		if tc.small == "" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			small := tc.frames(t, tc.small)
			large := tc.frames(t, tc.fixture)
			frames := append([]media.Frame(nil), small...)
			for _, f := range large {
				f.PTS += time.Duration(len(small)) * frameInterval
				frames = append(frames, f)
			}
			path := filepath.Join(t.TempDir(), "change.webm")
			w, err := New(path, mkvCodec(tc.codec), media.TrackParams{})
			if err != nil {
				t.Fatal(err)
			}
			for i, f := range frames {
				if err := w.WriteFrame(f); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if i == 0 {
					if w, h := w.Size(); w != 176 || h != 144 {
						t.Errorf("size after the first frame %dx%d, want 176x144", w, h)
					}
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			file, _ := scanFile(t, path)
			if tr := file.TrackList[0]; tr.Width != 320 || tr.Height != 240 {
				t.Errorf("Tracks say %dx%d, want the larger 320x240", tr.Width, tr.Height)
			}
			checkRoundTrip(t, path, tc.codec, frames)
			ffmpegDecode(t, path)
			if n := countFrames(t, path); n != len(frames) {
				t.Errorf("ffprobe decoded %d frames, want %d", n, len(frames))
			}
			mkvinfo(t, path)
		})
	}
}

// TestH264ParameterSetChange: a new SPS needs a new part, which then starts with that frame.
func TestH264ParameterSetChange(t *testing.T) {
	first := readH264(t, "h264_320x180.h264")
	second := readH264(t, "h264_176x144_high.h264")
	dir := t.TempDir()
	p := media.TrackParams{}

	w, err := New(filepath.Join(dir, "part1.mkv"), H264, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range first {
		if err := w.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	next := second[0]
	next.PTS = time.Duration(len(first)) * frameInterval
	if err := w.WriteFrame(next); !errors.Is(err, media.ErrNewPart) {
		t.Fatalf("frame with a new SPS: %v, want ErrNewPart", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkRoundTrip(t, filepath.Join(dir, "part1.mkv"), media.CodecH264, first)

	writeFrames(t, filepath.Join(dir, "part2.mkv"), media.CodecH264, p, second)
	s := ffprobe(t, filepath.Join(dir, "part2.mkv")).Streams[0]
	if s.Width != 176 || s.Height != 144 {
		t.Errorf("part 2 is %dx%d, want 176x144", s.Width, s.Height)
	}
	ffmpegDecode(t, filepath.Join(dir, "part1.mkv"))
	ffmpegDecode(t, filepath.Join(dir, "part2.mkv"))
	mkvinfo(t, filepath.Join(dir, "part2.mkv"))
}

// readOggOpus returns the audio packets of an Ogg Opus file (headers skipped). The test's
// own minimal page parser: 27-byte page header, segment table, packets by lacing.
func readOggOpus(t testing.TB, name string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var packets [][]byte
	var cur []byte
	for len(b) >= 27 {
		if string(b[:4]) != "OggS" {
			t.Fatal("bad ogg page")
		}
		nseg := int(b[26])
		segs := b[27 : 27+nseg]
		body := b[27+nseg:]
		off := 0
		for _, s := range segs {
			cur = append(cur, body[off:off+int(s)]...)
			off += int(s)
			if s < 255 {
				packets = append(packets, cur)
				cur = nil
			}
		}
		b = body[off:]
	}
	if len(packets) < 3 || !bytes.HasPrefix(packets[0], []byte("OpusHead")) {
		t.Fatalf("%s: no opus packets", name)
	}
	return packets[2:]
}

func TestOpusInWebM(t *testing.T) {
	packets := readOggOpus(t, "opus_1s.ogg")
	var frames []media.Frame
	for i, p := range packets {
		frames = append(frames, media.Frame{Data: p, PTS: time.Duration(i) * 20 * time.Millisecond, Duration: 20 * time.Millisecond})
	}
	path := filepath.Join(t.TempDir(), "audio.webm")
	writeFrames(t, path, media.CodecOpus, media.TrackParams{ClockRate: 48000, Channels: 2}, frames)
	checkRoundTrip(t, path, media.CodecOpus, frames)
	file, _ := scanFile(t, path)
	tr := file.TrackList[0]
	if tr.CodecID != "A_OPUS" || tr.Channels != 2 || tr.SamplingFrequency != 48000 || !bytes.HasPrefix(tr.CodecPrivate, []byte("OpusHead")) {
		t.Errorf("track %+v", tr)
	}
	p := ffprobe(t, path)
	if s := p.Streams[0]; s.CodecName != "opus" || s.Channels != 2 {
		t.Errorf("ffprobe: %+v", s)
	}
	if d, want := p.duration(t), time.Duration(len(frames))*20*time.Millisecond; d != want {
		t.Errorf("duration %v, want %v", d, want)
	}
	ffmpegDecode(t, path)
	mkvinfo(t, path)
}

// vp8Frame makes a VP8 frame that parses: a key frame header of the given size, or an inter
// frame tag.
func vp8Frame(key bool, w, h int, n int) []byte {
	b := make([]byte, max(n, 10))
	if key {
		b[0] = 0x10 // key frame, version 0, show_frame
		b[3], b[4], b[5] = 0x9d, 0x01, 0x2a
		binary.LittleEndian.PutUint16(b[6:], uint16(w))
		binary.LittleEndian.PutUint16(b[8:], uint16(h))
	} else {
		b[0] = 0x11
	}
	return b
}

// TestClusters checks where clusters start: on a key frame after the cluster duration, at
// the maximum cluster duration without key frames, and around gaps.
func TestClusters(t *testing.T) {
	var frames []media.Frame
	pts := time.Duration(0)
	add := func(key bool, step time.Duration) {
		frames = append(frames, media.Frame{Data: vp8Frame(key, 64, 48, 20), PTS: pts, Keyframe: key})
		pts += step
	}
	add(true, 100*time.Millisecond)
	// Key frames every 300 ms for 3 s: clusters only once a cluster is 1 s old.
	for i := 1; i < 30; i++ {
		add(i%3 == 0, 100*time.Millisecond)
	}
	// 12 s without key frames: forced clusters every 5 s.
	for i := 0; i < 120; i++ {
		add(false, 100*time.Millisecond)
	}
	// A 40 s gap: longer than the int16 range of a block timecode.
	pts += 40 * time.Second
	add(false, 100*time.Millisecond)
	add(true, 0)

	path := filepath.Join(t.TempDir(), "clusters.webm")
	writeFrames(t, path, media.CodecVP8, media.TrackParams{}, frames)

	var clusters []uint64
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := mkvscan.Scan(f, fileSize(t, path), mkvscan.Visitor{Cluster: func(c mkvscan.Cluster) error {
		clusters = append(clusters, c.Timestamp)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	want := []uint64{0, 1200, 2400, 7400, 12400, 55000}
	if len(clusters) != len(want) {
		t.Fatalf("clusters at %v, want %v", clusters, want)
	}
	for i := range want {
		if clusters[i] != want[i] {
			t.Fatalf("clusters at %v, want %v", clusters, want)
		}
	}
	checkRoundTrip(t, path, media.CodecVP8, frames)
}
