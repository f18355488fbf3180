package activity

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec/opus"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
	"github.com/matrix-recorder/matrix-recorder/recorder/oggwriter"
)

// celt20 is the TOC byte of one 20 ms CELT fullband frame (config 31, code 0).
const celt20 = 31 << 3

// writeTrack writes an Ogg Opus file of 20 ms packets: size(i) bytes for packet i, or a
// gap when size is 0 (left to the writer's gap policy).
func writeTrack(t *testing.T, packets int, size func(i int) int, opts ...oggwriter.Option) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := oggwriter.NewWith(&buf, media.TrackParams{ClockRate: 48000, Channels: 2}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	silence, err := opus.Silence(20 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for i := range packets {
		n := size(i)
		var p []byte
		switch {
		case n == 0:
			continue
		case n < 0:
			p = silence
		default:
			p = make([]byte, n)
			p[0] = celt20
			for j := 1; j < n; j++ {
				p[j] = byte(rng.IntN(256))
			}
		}
		if err := w.WriteFrame(media.Frame{Data: p, PTS: time.Duration(i) * 20 * time.Millisecond, Duration: 20 * time.Millisecond, Keyframe: true}); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func near(a, b, tol time.Duration) bool { return a-b <= tol && b-a <= tol }

func checkSpans(t *testing.T, got, want []Span, tol time.Duration) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("spans %v, want %v", got, want)
	}
	for i := range want {
		if !near(got[i].From, want[i].From, tol) || !near(got[i].To, want[i].To, tol) {
			t.Fatalf("span %d is %v, want %v (all: %v)", i, got[i], want[i], got)
		}
	}
}

func TestReadOggTimes(t *testing.T) {
	// 1 s of packets, a 1 s gap the writer keeps only in granule positions, 1 s more.
	// One packet per page: a gap inside a page cannot be placed (Ogg has no way to say
	// where it is; ReadOgg puts it before the page's first packet).
	data := writeTrack(t, 150, func(i int) int {
		if i >= 50 && i < 100 {
			return 0
		}
		return 60
	}, oggwriter.WithPreSkip(312), oggwriter.WithGapPolicy(oggwriter.GapKeep), oggwriter.WithMaxPagePackets(1))
	f, err := ReadOgg(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if f.PreSkip != 312 || f.Channels != 2 || f.Truncated {
		t.Fatalf("header: %+v", f)
	}
	// 100 real packets plus the writer's end packet.
	if n := len(f.Packets); n < 100 || n > 101 {
		t.Fatalf("%d packets", n)
	}
	for i, p := range f.Packets[:100] {
		at := time.Duration(i) * 20 * time.Millisecond
		if i >= 50 {
			at += time.Second
		}
		if p.Start != at || p.End != at+20*time.Millisecond || p.Bytes != 60 {
			t.Fatalf("packet %d: %+v, want start %v", i, p, at)
		}
	}
}

func TestReadOggTruncatedAndForeign(t *testing.T) {
	data := writeTrack(t, 100, func(int) int { return 80 }, oggwriter.WithMaxPagePackets(10))
	f, err := ReadOgg(bytes.NewReader(data[:len(data)/2]))
	if err != nil {
		t.Fatal(err)
	}
	if !f.Truncated || len(f.Packets) < 30 || len(f.Packets) > 60 {
		t.Fatalf("truncated file: truncated=%v, %d packets", f.Truncated, len(f.Packets))
	}
	for _, bad := range [][]byte{nil, []byte("RIFF....WAVE"), data[:20]} {
		if _, err := ReadOgg(bytes.NewReader(bad)); !errors.Is(err, ErrNotOpus) {
			t.Errorf("%q: err = %v, want ErrNotOpus", bad, err)
		}
	}
}

func TestFromPacketsFindsSpeech(t *testing.T) {
	// 10 s: noise (18 bytes per 20 ms, about 7 kbit/s), speech (90 bytes, 36 kbit/s)
	// from 2 s to 4.5 s and from 6 s to 7 s, digital silence from 8 s, and one short
	// burst at 9 s that is too short to count.
	data := writeTrack(t, 500, func(i int) int {
		at := time.Duration(i) * 20 * time.Millisecond
		switch {
		case at >= 2*time.Second && at < 4500*time.Millisecond, at >= 6*time.Second && at < 7*time.Second:
			if i%9 == 0 {
				return 30 // speech has quieter moments
			}
			return 90
		case at >= 9*time.Second && at < 9060*time.Millisecond:
			return 90
		case at >= 8*time.Second:
			return -1
		}
		return 18
	})
	f, err := ReadOgg(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	checkSpans(t, FromPackets(f), []Span{{2 * time.Second, 4500 * time.Millisecond}, {6 * time.Second, 7 * time.Second}}, 20*time.Millisecond)
}

func TestFromPacketsSteadyTracks(t *testing.T) {
	tone := writeTrack(t, 100, func(int) int { return 160 }) // 64 kbit/s all the way
	f, err := ReadOgg(bytes.NewReader(tone))
	if err != nil {
		t.Fatal(err)
	}
	checkSpans(t, FromPackets(f), []Span{{0, 2 * time.Second}}, 0)
	noise := writeTrack(t, 100, func(int) int { return 20 })
	if f, err = ReadOgg(bytes.NewReader(noise)); err != nil {
		t.Fatal(err)
	}
	if s := FromPackets(f); len(s) != 0 {
		t.Fatalf("steady background noise taken as speech: %v", s)
	}
	silent := writeTrack(t, 100, func(int) int { return -1 })
	if f, err = ReadOgg(bytes.NewReader(silent)); err != nil {
		t.Fatal(err)
	}
	if s := FromPackets(f); len(s) != 0 {
		t.Fatalf("silence taken as speech: %v", s)
	}
}

func TestSmooth(t *testing.T) {
	ms := func(a, b int) Span {
		return Span{time.Duration(a) * time.Millisecond, time.Duration(b) * time.Millisecond}
	}
	got := Smooth([]Span{ms(0, 100), ms(300, 600), ms(2000, 2100), ms(5000, 5300)})
	checkSpans(t, got, []Span{ms(0, 600), ms(5000, 5300)}, 0)
}

func TestFromLevels(t *testing.T) {
	// 20 ms windows: a noisy floor at -45 dBFS with speech at -20 dBFS from 1 s to 2 s.
	levels := make([]float64, 150)
	for i := range levels {
		levels[i] = -45
		if i >= 50 && i < 100 {
			levels[i] = -20
		}
	}
	checkSpans(t, FromLevels(levels), []Span{{time.Second, 2 * time.Second}}, 0)
	// A track that is loud all the way (a tone) is all sound.
	for i := range levels {
		levels[i] = -12
	}
	checkSpans(t, FromLevels(levels), []Span{{0, 3 * time.Second}}, 0)
}

// TestDetectEnergy decodes a real Opus file (made by ffmpeg's libopus) with tone bursts.
func TestDetectEnergy(t *testing.T) {
	bin, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg not installed")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "bursts.ogg")
	expr := "if(between(t,1,3)+between(t,5,6),0.4*sin(2*PI*300*t),0.003*sin(2*PI*50*t))"
	out, err := exec.Command(bin, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "aevalsrc='"+expr+"':s=48000:d=8",
		"-c:a", "libopus", "-b:a", "32k", path).CombinedOutput()
	if err != nil {
		t.Fatalf("make fixture: %v %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spans, method, err := Detect(ctx, bin, path)
	if err != nil {
		t.Fatal(err)
	}
	if method != MethodEnergy {
		t.Fatalf("method %s", method)
	}
	checkSpans(t, spans, []Span{{time.Second, 3 * time.Second}, {5 * time.Second, 6 * time.Second}}, 60*time.Millisecond)
	// Without ffmpeg the packet sizes find the same bursts, less precisely: after a hard
	// cut libopus keeps spending bits for about 400 ms, so ends come late.
	spans, method, err = Detect(ctx, "", path)
	if err != nil || method != MethodPackets {
		t.Fatal(method, err)
	}
	want := []Span{{time.Second, 3 * time.Second}, {5 * time.Second, 6 * time.Second}}
	if len(spans) != len(want) {
		t.Fatalf("packet spans %v, want %v", spans, want)
	}
	for i := range want {
		if !near(spans[i].From, want[i].From, 100*time.Millisecond) || spans[i].To < want[i].To-50*time.Millisecond || spans[i].To > want[i].To+800*time.Millisecond {
			t.Fatalf("packet span %d is %v, want about %v", i, spans[i], want[i])
		}
	}
}

func FuzzReadOgg(f *testing.F) {
	f.Add([]byte("OggS"))
	f.Fuzz(func(t *testing.T, data []byte) {
		of, err := ReadOgg(bytes.NewReader(data))
		if err != nil {
			return
		}
		_ = FromPackets(of)
	})
}
