package mediacheck

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

func TestOggOpusFile(t *testing.T) {
	Require(t)
	ctx := context.Background()
	dir := t.TempDir()
	path, err := testmedia.WriteFile(dir, testmedia.Tone440)
	if err != nil {
		t.Fatal(err)
	}
	info, err := Probe(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Format != "ogg" || len(info.Streams) != 1 {
		t.Fatalf("probe: %+v", info)
	}
	s := info.Streams[0]
	if s.CodecName != "opus" || s.CodecType != "audio" || s.Channels != 2 || s.SampleRate != 48000 {
		t.Errorf("stream: %+v", s)
	}
	if d := info.Duration - 5*time.Second; d < -50*time.Millisecond || d > 50*time.Millisecond {
		t.Errorf("duration %s, want about 5s", info.Duration)
	}
	if msg, err := DecodeErrors(ctx, path); err != nil || msg != "" {
		t.Errorf("DecodeErrors = %q, %v", msg, err)
	}
	if _, err := OpusInfo(ctx, path); err != nil {
		t.Error(err)
	}
	if err := OggValidate(ctx, path); err != nil {
		t.Error(err)
	}

	pcm, err := DecodePCM(ctx, path, 16000)
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(len(pcm)) * time.Second / 16000; got < 4900*time.Millisecond || got > 5100*time.Millisecond {
		t.Errorf("decoded %s of audio", got)
	}
	mid := pcm[len(pcm)/4 : len(pcm)/2]
	a, b := ToneLevel(mid, 16000, 440), ToneLevel(mid, 16000, 660)
	if a < 0.02 || a < 20*b {
		t.Errorf("440 Hz level %.4f, 660 Hz level %.4f: the 440 Hz tone should dominate", a, b)
	}
	if sil := Silences(pcm, 16000, 0.005, 100*time.Millisecond); len(sil) != 0 {
		t.Errorf("silences in a continuous tone: %v", sil)
	}

	// A cut file lacks its end of stream: oggz-validate notices.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.ogg")
	if err := os.WriteFile(cut, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := OggValidate(ctx, cut); err == nil {
		t.Error("oggz-validate accepted a file cut in half")
	}
	garbage := filepath.Join(dir, "garbage.ogg")
	if err := os.WriteFile(garbage, []byte("this is not an ogg file at all, just text"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpusInfo(ctx, garbage); err == nil {
		t.Error("opusinfo accepted garbage")
	}
	if _, err := Probe(ctx, garbage); err == nil {
		t.Error("ffprobe accepted garbage")
	}
}

func TestMatroskaFile(t *testing.T) {
	Require(t)
	ctx := context.Background()
	dir := t.TempDir()
	video, err := testmedia.WriteFile(dir, testmedia.VP8)
	if err != nil {
		t.Fatal(err)
	}
	audio, err := testmedia.WriteFile(dir, testmedia.Tone660)
	if err != nil {
		t.Fatal(err)
	}
	mkv := filepath.Join(dir, "call.mkv")
	if out, err := exec.Command(FFmpeg, "-v", "error", "-i", video, "-i", audio, "-c", "copy", mkv).CombinedOutput(); err != nil {
		t.Fatalf("making a Matroska file: %v: %s", err, out)
	}
	info, err := Probe(ctx, mkv)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.StreamsOfType("video")) != 1 || len(info.StreamsOfType("audio")) != 1 {
		t.Fatalf("streams: %+v", info.Streams)
	}
	v := info.StreamsOfType("video")[0]
	if v.CodecName != "vp8" || v.Width != 320 || v.Height != 240 {
		t.Errorf("video stream %+v", v)
	}
	if v.Duration < 2900*time.Millisecond || v.Duration > 3100*time.Millisecond {
		t.Errorf("video duration (from the Matroska tag) %s, want about 3s", v.Duration)
	}
	if _, err := MKVInfo(ctx, mkv); err != nil {
		t.Error(err)
	}
	if msg, err := DecodeErrors(ctx, mkv); err != nil || msg != "" {
		t.Errorf("DecodeErrors = %q, %v", msg, err)
	}
	data, err := os.ReadFile(mkv)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.mkv")
	if err := os.WriteFile(cut, data[:len(data)/3], 0o644); err != nil {
		t.Fatal(err)
	}
	if msg, _ := DecodeErrors(ctx, cut); msg == "" {
		t.Error("ffmpeg decoded a cut Matroska file without complaint")
	}
	if _, err := MKVInfo(ctx, audio); err == nil {
		t.Error("mkvinfo accepted an Ogg file")
	}
}

func TestToneLevelAndSilences(t *testing.T) {
	const rate = 8000
	pcm := make([]int16, rate) // 1 s: 0.4 s tone, 0.3 s silence, 0.3 s tone
	for i := range pcm {
		if i < 3200 || i >= 5600 {
			pcm[i] = int16(0.25 * 32767 * math.Sin(2*math.Pi*440*float64(i)/rate))
		}
	}
	if got := ToneLevel(pcm[:3200], rate, 440); math.Abs(got-0.25) > 0.01 {
		t.Errorf("ToneLevel = %.4f, want 0.25", got)
	}
	if got := ToneLevel(pcm[:3200], rate, 1000); got > 0.01 {
		t.Errorf("ToneLevel at another frequency = %.4f", got)
	}
	sil := Silences(pcm, rate, 0.01, 100*time.Millisecond)
	if len(sil) != 1 || sil[0].Start != 400*time.Millisecond || sil[0].End != 700*time.Millisecond {
		t.Errorf("Silences = %v, want [400ms-700ms]", sil)
	}
	if got := RMS(pcm[3300:5500]); got != 0 {
		t.Errorf("RMS of silence = %v", got)
	}
}
