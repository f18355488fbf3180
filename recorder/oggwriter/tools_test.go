package oggwriter

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec/opus"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// These tests check the writer's files with independent tools: ffprobe and ffmpeg
// (ffmpeg's own Ogg demuxer and Opus decoder), opusinfo and opusdec (libogg and libopus)
// and oggz-validate (liboggz). They skip when a tool is missing.

// advisory opusinfo warnings: pre-skip 0 is our choice (the file timeline is exact),
// and pages of more than a second of audio only matter to live streaming.
func opusinfoFindings(t *testing.T, path string) []string {
	t.Helper()
	needTool(t, "opusinfo")
	out, _ := exec.Command("opusinfo", path).CombinedOutput() // exits 1 on any warning
	var findings []string
	for _, line := range strings.Split(string(out), "\n") {
		l := strings.ToLower(line)
		if !strings.Contains(l, "warning") && !strings.Contains(l, "error") {
			continue
		}
		if strings.Contains(line, "Implausibly low preskip") || strings.Contains(line, "high muxing delay") {
			continue
		}
		findings = append(findings, line)
	}
	if !strings.Contains(string(out), "Playback length") {
		t.Fatalf("opusinfo did not read %s:\n%s", path, out)
	}
	return findings
}

// checkWithTools runs every tool on a finished file and checks its duration.
func checkWithTools(t *testing.T, path string, channels int, want time.Duration) {
	t.Helper()
	p := ffprobe(t, path)
	s := p.Streams[0]
	if s.CodecName != "opus" || s.Channels != channels || s.SampleRate != "48000" || p.Format.FormatName != "ogg" {
		t.Fatalf("ffprobe: %+v", p)
	}
	if got := seconds(t, p.Format.Duration); got.Round(time.Millisecond) != want {
		t.Fatalf("ffprobe duration %v, want %v", got, want)
	}
	run(t, "ffmpeg", "-v", "error", "-i", path, "-f", "null", "-") // stderr must stay empty
	if f := opusinfoFindings(t, path); len(f) > 0 {
		t.Fatalf("opusinfo: %q", f)
	}
	if out := run(t, "oggz-validate", path); len(out) > 0 {
		t.Fatalf("oggz-validate: %s", out)
	}
	if pcm := decodePCM(t, path); opus.SamplesToDuration(int64(len(pcm)/2)) != want {
		t.Fatalf("ffmpeg decoded %v, want %v", opus.SamplesToDuration(int64(len(pcm)/2)), want)
	}
}

func TestToolsAcceptFiles(t *testing.T) {
	needTool(t, "ffprobe")
	for _, tt := range []struct {
		name     string
		fixture  string
		channels uint16
		opts     []Option
	}{
		{"celt 20ms mono", "sine440.ogg", 1, nil},
		{"silk 60ms stereo", "voip60ms.ogg", 2, nil},
		{"page per packet", "sine440.ogg", 1, []Option{WithMaxPagePackets(1)}},
		{"small pages", "voip60ms.ogg", 2, []Option{WithMaxPageBody(100)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			packets := fixturePackets(t, tt.fixture)
			path := filepath.Join(t.TempDir(), "track.ogg")
			params := media.TrackParams{ClockRate: 48000, Channels: tt.channels, Title: "@alice:example.org microphone"}
			w, err := New(path, params, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			end := writeFrames(t, w, packets, 0, nil)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			checkWithTools(t, path, int(tt.channels), end)
			if title := ffprobe(t, path).Streams[0].Tags["TITLE"]; title != params.Title {
				t.Errorf("ffprobe title %q", title)
			}
		})
	}
}

// TestToolsPreSkip: with a pre-skip, a frame's PTS is still its place on the stream's
// timeline (granule position minus pre-skip); players drop the first pre-skip samples,
// so the stream starts at the pre-skip.
func TestToolsPreSkip(t *testing.T) {
	needTool(t, "ffprobe")
	packets := fixturePackets(t, "sine440.ogg")
	path := filepath.Join(t.TempDir(), "track.ogg")
	w, err := New(path, media.TrackParams{Channels: 1}, WithPreSkip(312))
	if err != nil {
		t.Fatal(err)
	}
	end := writeFrames(t, w, packets, 0, nil)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	skip := opus.SamplesToDuration(312)
	if st := seconds(t, ffprobe(t, path).Format.StartTime); st != skip {
		t.Errorf("ffprobe start time %v, want %v", st, skip)
	}
	run(t, "ffmpeg", "-v", "error", "-i", path, "-f", "null", "-")
	if d := opus.SamplesToDuration(int64(len(decodePCM(t, path)) / 2)); d != end-skip {
		t.Errorf("ffmpeg decoded %v, want %v", d, end-skip)
	}
	if d := opusdecDuration(t, path); d != end-skip {
		t.Errorf("opusdec decoded %v, want %v", d, end-skip)
	}
	if f := opusinfoFindings(t, path); len(f) > 0 {
		t.Errorf("opusinfo: %q", f)
	}
	if out := run(t, "oggz-validate", path); len(out) > 0 {
		t.Errorf("oggz-validate: %s", out)
	}
}

// TestFFmpegGapFinding records how players treat a gap in each policy: the finding the
// package documentation describes. The fixture is 3.02 s of tone with 1 s (packets
// 50-99) missing.
func TestFFmpegGapFinding(t *testing.T) {
	needTool(t, "ffmpeg")
	packets := fixturePackets(t, "sine440.ogg")
	write := func(t *testing.T, g GapPolicy, start time.Duration) string {
		path := filepath.Join(t.TempDir(), g.String()+".ogg")
		w, err := New(path, media.TrackParams{Channels: 1}, WithGapPolicy(g))
		if err != nil {
			t.Fatal(err)
		}
		writeFrames(t, w, packets, start, func(i int) bool { return i >= 50 && i < 100 })
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return path
	}
	full := 3020 * time.Millisecond
	collapsed := 2020 * time.Millisecond
	decoded := func(t *testing.T, path string, extra ...string) time.Duration {
		return opus.SamplesToDuration(int64(len(decodePCM(t, path, extra...)) / 2))
	}

	t.Run("keep", func(t *testing.T) {
		path := write(t, GapKeep, 0)
		if d := seconds(t, ffprobe(t, path).Format.Duration); d.Round(time.Millisecond) != full {
			t.Errorf("ffprobe duration %v, want the true %v", d, full)
		}
		// ffmpeg decodes packet after packet: the gap collapses.
		if d := decoded(t, path); d != collapsed {
			t.Errorf("ffmpeg decoded %v; the finding was %v (gap collapsed)", d, collapsed)
		}
		// Resampling by timestamps puts it back.
		if d := decoded(t, path, "-af", "aresample=async=1"); d != full {
			t.Errorf("ffmpeg with aresample=async=1 decoded %v, want %v", d, full)
		}
		if f := opusinfoFindings(t, path); len(f) == 0 || !strings.Contains(f[0], "Sample count behind granule") {
			t.Errorf("opusinfo findings %q; the finding was 'Sample count behind granule'", f)
		}
		if d := opusdecDuration(t, path); d != collapsed {
			t.Errorf("opusdec decoded %v; the finding was %v", d, collapsed)
		}
	})
	t.Run("keep leading gap", func(t *testing.T) {
		path := write(t, GapKeep, 2*time.Second)
		p := ffprobe(t, path)
		if st := seconds(t, p.Format.StartTime); st != 2*time.Second {
			t.Errorf("ffprobe start time %v, want 2s", st)
		}
		if d := decoded(t, path); d != collapsed {
			t.Errorf("ffmpeg decoded %v; the finding was %v (both gaps collapsed)", d, collapsed)
		}
	})
	for _, g := range []GapPolicy{GapSilence, GapConceal} {
		t.Run(g.String(), func(t *testing.T) {
			path := write(t, g, 2*time.Second)
			checkWithTools(t, path, 1, 2*time.Second+full)
			pcm := decodePCM(t, path)
			// Both channels of 0-2 s and 3.01-4 s are digital silence in ffmpeg's
			// decoder. The fixture's tone lags its packets by the encoder's 6.5 ms delay
			// and fades out over a 2.5 ms overlap: 3.009 s.
			for _, r := range [][2]time.Duration{{0, 2 * time.Second}, {3010 * time.Millisecond, 4 * time.Second}} {
				if peak := peakOf(pcm, r[0], r[1]); peak != 0 {
					t.Errorf("ffmpeg: peak %d in %v-%v", peak, r[0], r[1])
				}
			}
			if peak := peakOf(pcm, 2*time.Second, 3*time.Second); peak < 1000 {
				t.Errorf("ffmpeg: the tone is missing (peak %d)", peak)
			}
			lib := opusdecPCM(t, path)
			peak := peakOf(lib, 3010*time.Millisecond, 4*time.Second)
			switch g {
			case GapSilence:
				if peak != 0 {
					t.Errorf("opusdec: peak %d in the silence", peak)
				}
			case GapConceal:
				// libopus conceals: it keeps the tone going, quieter, through the gap.
				if peak < 100 {
					t.Errorf("opusdec: peak %d in the concealed gap; the finding was a concealed tone", peak)
				}
			}
		})
	}
}

// peakOf returns the largest absolute sample of interleaved stereo pcm between from and to.
func peakOf(pcm []int16, from, to time.Duration) int {
	peak := 0
	for i := 2 * opus.DurationToSamples(from); i < min(2*opus.DurationToSamples(to), int64(len(pcm))); i++ {
		peak = max(peak, abs(int(pcm[i])))
	}
	return peak
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// opusdecPCM decodes with libopus (opusdec, no dithering) to stereo 16-bit samples.
func opusdecPCM(t *testing.T, path string) []int16 {
	t.Helper()
	out := filepath.Join(t.TempDir(), "opusdec.raw")
	run(t, "opusdec", "--quiet", "--no-dither", "--force-stereo", "--rate", "48000", path, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, len(b)/2)
	for i := range pcm {
		pcm[i] = int16(uint16(b[2*i]) | uint16(b[2*i+1])<<8)
	}
	return pcm
}

func opusdecDuration(t *testing.T, path string) time.Duration {
	return opus.SamplesToDuration(int64(len(opusdecPCM(t, path)) / 2))
}

func TestSilenceFrameDecodesToSilence(t *testing.T) {
	needTool(t, "ffmpeg")
	for _, channels := range []uint16{1, 2} {
		// Every packet size one after the other, four times over.
		path := filepath.Join(t.TempDir(), "silence.ogg")
		w, err := New(path, media.TrackParams{Channels: channels})
		if err != nil {
			t.Fatal(err)
		}
		pts := time.Duration(0)
		for range 4 {
			for _, d := range []time.Duration{2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 60 * time.Millisecond, 80 * time.Millisecond, 100 * time.Millisecond, 120 * time.Millisecond} {
				p, err := opus.Silence(d)
				if err != nil {
					t.Fatal(err)
				}
				if err := w.WriteFrame(media.Frame{Data: p, PTS: pts, Duration: d}); err != nil {
					t.Fatal(err)
				}
				pts += d
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		checkWithTools(t, path, int(channels), pts)
		for tool, pcm := range map[string][]int16{"ffmpeg": decodePCM(t, path), "opusdec": opusdecPCM(t, path)} {
			if len(pcm) != int(2*opus.DurationToSamples(pts)) {
				t.Fatalf("%s: %d samples", tool, len(pcm))
			}
			if !bytes.Equal(int16Bytes(pcm), make([]byte, 2*len(pcm))) {
				t.Fatalf("%s, %d channels: not digital silence (peak %d)", tool, channels, peakOf(pcm, 0, pts))
			}
		}
	}
}

func TestSilenceFrame(t *testing.T) {
	for _, d := range []time.Duration{0, -ms20, time.Millisecond, 30 * time.Millisecond, 140 * time.Millisecond, ms20 + 1} {
		if p, err := opus.Silence(d); err == nil {
			t.Errorf("opus.Silence(%v) = %x", d, p)
		}
	}
	for _, d := range []time.Duration{2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond, ms20, 40 * time.Millisecond, 60 * time.Millisecond, 80 * time.Millisecond, 100 * time.Millisecond, 120 * time.Millisecond} {
		p, err := opus.Silence(d)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := opus.Duration(p); err != nil || got != d {
			t.Errorf("opus.Silence(%v) = %x lasts %v, %v", d, p, got, err)
		}
		if p[0]&0x04 != 0 || p[0]>>3 < 28 {
			t.Errorf("opus.Silence(%v) = %x is not CELT-only fullband mono", d, p)
		}
	}
	// The end packet covers the pre-skip of a stream with too little audio.
	for _, tt := range []struct {
		end     int64
		preSkip uint16
		want    int
	}{{0, 0, 120}, {960, 312, 120}, {0, 312, 480}, {0, 3840, 3840}, {100, 4900, 4800}, {100, 5000, 5760}, {0, 65535, 5760}} {
		n, err := opus.Samples(appendEndPacket(nil, tt.end, tt.preSkip))
		if err != nil || n != tt.want {
			t.Errorf("end packet after %d samples with pre-skip %d: %d samples, %v; want %d", tt.end, tt.preSkip, n, err, tt.want)
		}
	}
}

func int16Bytes(s []int16) []byte {
	b := make([]byte, 0, 2*len(s))
	for _, v := range s {
		b = append(b, byte(v), byte(uint16(v)>>8))
	}
	return b
}

// TestCrashCopyPlays simulates kill -9: the file's bytes as they are while the writer is
// still open, with no Close, must play up to the last Flush.
func TestCrashCopyPlays(t *testing.T) {
	needTool(t, "ffprobe")
	packets := fixturePackets(t, "sine440.ogg")
	dir := t.TempDir()
	path := filepath.Join(dir, "live.ogg")
	w, err := New(path, media.TrackParams{Channels: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// 1 s, Flush, then 0.4 s more that stays buffered: the crash loses it.
	writeFrames(t, w, packets[:50], 0, nil)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	writeFrames(t, w, packets[50:70], time.Second, nil)
	flushed := copyFile(t, path, filepath.Join(dir, "crash1.ogg"), 0)
	p := ffprobe(t, flushed)
	if d := seconds(t, p.Format.Duration); d.Round(time.Millisecond) != time.Second {
		t.Fatalf("crash copy lasts %v, want 1s", d)
	}
	run(t, "ffmpeg", "-v", "error", "-i", flushed, "-f", "null", "-")
	if pcm := decodePCM(t, flushed); len(pcm) != 2*48000 {
		t.Fatalf("crash copy decodes to %d samples", len(pcm)/2)
	}
	// Without the EOS page, oggz-validate complains; Repair appends one.
	r, err := Repair(flushed)
	if err != nil {
		t.Fatal(err)
	}
	if r.HadEOS || !r.AppendedEOS || r.TruncatedBytes != 0 || r.Duration != time.Second {
		t.Fatalf("repair of a flushed copy: %+v", r)
	}
	checkWithTools(t, flushed, 1, time.Second)

	// A crash in the middle of writing a page: the copy ends with half a page.
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	torn := copyFile(t, path, filepath.Join(dir, "crash2.ogg"), info.Size()-100)
	run(t, "ffmpeg", "-v", "error", "-i", torn, "-f", "null", "-")
	r, err = Repair(torn)
	if err != nil {
		t.Fatal(err)
	}
	if r.HadEOS || !r.AppendedEOS || r.TruncatedBytes == 0 || r.Duration != time.Second {
		t.Fatalf("repair of a torn copy: %+v", r)
	}
	checkWithTools(t, torn, 1, time.Second)
}

// copyFile copies the first n bytes of src (all if n is 0) to dst and returns dst.
func copyFile(t *testing.T, src, dst string, n int64) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		b = b[:n]
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestToolsEndPage checks the files whose last page Close must make up: closed right
// after a Flush, or with no audio at all, with and without a pre-skip.
func TestToolsEndPage(t *testing.T) {
	needTool(t, "ffmpeg")
	packets := fixturePackets(t, "sine440.ogg")
	for _, tt := range []struct {
		name    string
		frames  int
		preSkip uint16
	}{
		{"flush then close", 50, 0},
		{"flush then close with pre-skip", 50, 312},
		{"no audio", 0, 0},
		{"no audio with pre-skip", 0, 312},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "track.ogg")
			w, err := New(path, media.TrackParams{Channels: 1}, WithPreSkip(tt.preSkip))
			if err != nil {
				t.Fatal(err)
			}
			end := writeFrames(t, w, packets[:tt.frames], 0, nil)
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if s := checkStream(t, b, packets[:tt.frames]); !s.endTrimmed() {
				t.Fatal("no trimmed end packet")
			}
			want := max(0, end-opus.SamplesToDuration(int64(tt.preSkip)))
			run(t, "ffmpeg", "-v", "error", "-i", path, "-f", "null", "-")
			if d := opus.SamplesToDuration(int64(len(decodePCM(t, path)) / 2)); d != want {
				t.Errorf("ffmpeg decoded %v, want %v", d, want)
			}
			if d := opusdecDuration(t, path); d != want {
				t.Errorf("opusdec decoded %v, want %v", d, want)
			}
			if f := opusinfoFindings(t, path); len(f) > 0 {
				t.Errorf("opusinfo: %q", f)
			}
			if out := run(t, "oggz-validate", path); len(out) > 0 {
				t.Errorf("oggz-validate: %s", out)
			}
		})
	}
}

// TestToolsShorterThanPreSkip: a stream with less audio than its pre-skip (one 2.5 ms
// packet, found by FuzzPipeline) must still open in every player. Its last granule
// position has to lie at least the pre-skip after the stream's start, or opusfile refuses
// it (OP_EBADTIMESTAMP: opusdec cannot open it) and opusinfo reports a negative duration.
// Every sample of it lies in the pre-skip, so it plays as (next to) nothing: the padding
// that takes it there is silence, of which players may keep a few ms (opusfile keeps 1 ms
// when the stream is a single page, where it cannot trim at the end and start from the
// granule position at once). The same holds for the file Repair finishes after a crash.
func TestToolsShorterThanPreSkip(t *testing.T) {
	needTool(t, "opusdec")
	short, err := opus.Silence(2500 * time.Microsecond)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		frames int
		flush  bool // the audio is on a page of its own, before the last one
		crash  bool // no Close: Repair finishes the flushed file
	}{
		{"one packet, flushed", 1, true, false},
		{"one packet on the last page", 1, false, false},
		{"two packets, flushed", 2, true, false},
		{"one packet, crash and repair", 1, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "track.ogg")
			w, err := New(path, media.TrackParams{Channels: 2}, WithPreSkip(312))
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			packets := make([][]byte, tt.frames)
			for i := range packets {
				packets[i] = short
			}
			writeFrames(t, w, packets, 0, nil)
			if tt.flush {
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			if tt.crash {
				path = copyFile(t, path, filepath.Join(t.TempDir(), "crash.ogg"), 0)
				if r, err := Repair(path); err != nil || !r.AppendedEOS {
					t.Fatalf("repair: %+v, %v", r, err)
				}
			} else if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if f := opusinfoFindings(t, path); len(f) > 0 {
				t.Errorf("opusinfo: %q", f)
			}
			if out := run(t, "oggz-validate", path); len(out) > 0 {
				t.Errorf("oggz-validate: %s", out)
			}
			run(t, "ffmpeg", "-v", "error", "-i", path, "-f", "null", "-")
			if d := opusdecDuration(t, path); d > 2500*time.Microsecond {
				t.Errorf("opusdec decoded %v, want at most 2.5 ms", d)
			}
		})
	}
}
