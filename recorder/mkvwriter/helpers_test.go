package mkvwriter

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
	"github.com/matrix-recorder/matrix-recorder/recorder/mkvwriter/mkvscan"
)

// fixtureFPS is the frame rate of every video fixture (see testdata/gen.sh).
const fixtureFPS = 15

const frameInterval = time.Second / fixtureFPS

// readIVF reads the frames of an IVF fixture. Key frames are found from the bitstream with
// code of the test's own, and AV1 temporal delimiters are removed as media.Frame wants.
func readIVF(t testing.TB, name string, codec media.Codec) []media.Frame {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	var frames []media.Frame
	for {
		data, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading %s: %v", name, err)
		}
		// Every fixture runs at a constant frame rate; PTS from the frame index.
		pts := time.Duration(len(frames)) * frameInterval
		frame := media.Frame{Data: data, PTS: pts}
		switch codec {
		case media.CodecVP8:
			frame.Keyframe = data[0]&1 == 0
		case media.CodecVP9:
			// Profile 0: frame_marker(2) profile(2) show_existing_frame(1) frame_type(1).
			frame.Keyframe = data[0]&0x08 == 0 && data[0]&0x04 == 0
		case media.CodecAV1:
			frame.Data, frame.Keyframe = testStripTD(t, data)
		}
		frames = append(frames, frame)
	}
	if len(frames) == 0 || !frames[0].Keyframe {
		t.Fatalf("%s: no frames or first frame not a key frame", name)
	}
	return frames
}

// testStripTD removes temporal delimiter OBUs and reports whether a sequence header is there.
func testStripTD(t testing.TB, b []byte) ([]byte, bool) {
	var out []byte
	seq := false
	for len(b) > 0 {
		h := b[0]
		n := 1
		if h&4 != 0 {
			n++
		}
		if h&2 == 0 {
			t.Fatal("obu without size field in fixture")
		}
		var size, i int
		for ; ; i++ {
			size |= int(b[n+i]&0x7f) << (7 * i)
			if b[n+i]&0x80 == 0 {
				break
			}
		}
		end := n + i + 1 + size
		typ := (h >> 3) & 0xF
		if typ == 1 {
			seq = true
		}
		if typ != 2 {
			out = append(out, b[:end]...)
		}
		b = b[end:]
	}
	return out, seq
}

// readH264 groups the NAL units of an Annex B fixture into access units.
func readH264(t testing.TB, name string) []media.Frame {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := h264reader.NewReaderWithOptions(f, h264reader.WithIncludeSEI(true))
	if err != nil {
		t.Fatal(err)
	}
	var frames []media.Frame
	var cur []byte
	haveVCL, key := false, false
	emit := func() {
		if len(cur) > 0 {
			frames = append(frames, media.Frame{
				Data: cur, Keyframe: key, PTS: time.Duration(len(frames)) * frameInterval,
			})
		}
		cur, haveVCL, key = nil, false, false
	}
	for {
		nal, err := r.NextNAL()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading %s: %v", name, err)
		}
		typ := nal.Data[0] & 0x1F
		vcl := typ == 1 || typ == 5
		firstSlice := vcl && len(nal.Data) > 1 && nal.Data[1]&0x80 != 0
		if haveVCL && (!vcl || firstSlice) {
			emit()
		}
		cur = append(cur, 0, 0, 0, 1)
		cur = append(cur, nal.Data...)
		if vcl {
			haveVCL = true
		}
		if typ == 5 {
			key = true
		}
	}
	emit()
	return frames
}

// writeFrames writes frames to a new file and closes it.
func writeFrames(t testing.TB, path string, codec media.Codec, p media.TrackParams, frames []media.Frame, opts ...Option) {
	t.Helper()
	w, err := New(path, mkvCodec(codec), p, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		if err := w.WriteFrame(f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

type scannedBlock struct {
	track     uint64
	timestamp int64
	keyframe  bool
	data      []byte
}

// scanFile reads a file back with the package's own reader.
func scanFile(t testing.TB, path string) (*mkvscan.File, []scannedBlock) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var blocks []scannedBlock
	file, err := mkvscan.Scan(f, st.Size(), mkvscan.Visitor{Block: func(b mkvscan.Block) error {
		data := make([]byte, b.DataSize)
		if _, err := f.ReadAt(data, b.DataOffset); err != nil {
			return err
		}
		blocks = append(blocks, scannedBlock{b.Track, b.Timestamp, b.Keyframe, data})
		return nil
	}})
	if err != nil {
		t.Fatalf("scanning %s: %v", path, err)
	}
	return file, blocks
}

func requireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed (apt-get install ffmpeg mkvtoolnix): %v", name, err)
	}
}

type probeResult struct {
	Streams []struct {
		CodecName string `json:"codec_name"`
		CodecType string `json:"codec_type"`
		Width     int    `json:"width"`
		Height    int    `json:"height"`
		Channels  int    `json:"channels"`
	} `json:"streams"`
	Format struct {
		FormatName string `json:"format_name"`
		Duration   string `json:"duration"`
	} `json:"format"`
}

func (p probeResult) duration(t testing.TB) time.Duration {
	t.Helper()
	s, err := strconv.ParseFloat(p.Format.Duration, 64)
	if err != nil {
		t.Fatalf("ffprobe duration %q: %v", p.Format.Duration, err)
	}
	return time.Duration(s * float64(time.Second))
}

func ffprobe(t testing.TB, path string) probeResult {
	t.Helper()
	requireTool(t, "ffprobe")
	out, err := exec.Command("ffprobe", "-v", "error", "-print_format", "json",
		"-show_format", "-show_streams", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", path, err, out)
	}
	var p probeResult
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("ffprobe output: %v\n%s", err, out)
	}
	if len(p.Streams) != 1 {
		t.Fatalf("ffprobe: %d streams", len(p.Streams))
	}
	return p
}

// ffmpegDecode decodes the whole file and fails on any message from ffmpeg.
func ffmpegDecode(t testing.TB, path string) {
	t.Helper()
	requireTool(t, "ffmpeg")
	out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-i", path, "-f", "null", "-").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("ffmpeg decoding %s: %v\n%s", path, err, out)
	}
}

// countFrames decodes the file and returns the number of frames ffprobe read.
func countFrames(t testing.TB, path string) int {
	t.Helper()
	requireTool(t, "ffprobe")
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-show_entries",
		"stream=nb_read_frames", "-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe -count_frames %s: %v\n%s", path, err, out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("ffprobe -count_frames %s: %q", path, out)
	}
	return n
}

// mkvinfo runs mkvinfo and fails when it reports an error or a warning.
func mkvinfo(t testing.TB, path string) string {
	t.Helper()
	requireTool(t, "mkvinfo")
	out, err := exec.Command("mkvinfo", "-v", path).CombinedOutput()
	if err != nil {
		t.Fatalf("mkvinfo %s: %v\n%s", path, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		l := strings.ToLower(line)
		if strings.Contains(l, "error") || strings.Contains(l, "warning") {
			t.Fatalf("mkvinfo %s complains: %s", path, line)
		}
	}
	return string(out)
}

// mkvCodec is the writer's mapping of a codec, as the codec table gives it.
func mkvCodec(c media.Codec) Codec {
	return map[media.Codec]Codec{
		media.CodecVP8: VP8, media.CodecVP9: VP9, media.CodecAV1: AV1, media.CodecH264: H264, media.CodecOpus: Opus,
	}[c]
}

// extension is the file extension of a codec's file.
func extension(c media.Codec) string {
	if c == media.CodecH264 {
		return ".mkv"
	}
	return ".webm"
}
