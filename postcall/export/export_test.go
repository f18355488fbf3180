package export

import (
	"archive/zip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/mediacheck"
	"github.com/matrix-recorder/matrix-recorder/postcall/ffmpeg"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// clickFile makes an Opus file (ffmpeg, libopus) of d seconds with short 1 kHz clicks at
// the given file times over a faint hum.
func clickFile(t *testing.T, path string, d float64, clicks ...float64) {
	t.Helper()
	var terms []string
	for _, c := range clicks {
		terms = append(terms, fmt.Sprintf("between(t,%.4f,%.4f)", c, c+0.003))
	}
	expr := fmt.Sprintf("if(%s,0.8*sin(2*PI*1000*t),0.01*sin(2*PI*200*t))", strings.Join(terms, "+"))
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
		"-i", fmt.Sprintf("aevalsrc='%s':s=48000:d=%.3f", expr, d), "-ac", "2", "-c:a", "libopus", "-b:a", "64k", path).CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v %s", path, err, out)
	}
}

// fixture is a 9 s call. Alice's microphone starts at 1 s with clicks at 2 s and 4.5 s of
// her file (3 s and 5.5 s of the call). Bob's microphone comes in two parts: from 2.5 s
// with a click at 0.5 s (3 s of the call: the same moment as Alice's first click), and
// from 6 s with a click at 1 s (7 s of the call). Bob's camera starts at 1.5 s.
func fixture(t *testing.T) (string, *recorder.Manifest) {
	t.Helper()
	mediacheck.Require(t, mediacheck.FFmpeg, mediacheck.FFprobe)
	dir := t.TempDir()
	clickFile(t, filepath.Join(dir, "alice-A-usermedia-audio.ogg"), 6, 2, 4.5)
	clickFile(t, filepath.Join(dir, "bob-B-usermedia-audio.ogg"), 2, 0.5)
	clickFile(t, filepath.Join(dir, "bob-B-usermedia-audio.part2.ogg"), 2, 1)
	if err := os.WriteFile(filepath.Join(dir, "bob-B-usermedia-video.webm"), []byte("not really a webm"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m := &recorder.Manifest{
		Version: 1, CallID: "c1", RoomID: "!r:example.org", Kind: "1:1", Status: recorder.StatusFinished,
		StartedAt: start, DurationMs: 9000,
		Markers: []recorder.Marker{{AtMs: 6500, Text: "second\tpart"}, {AtMs: 2000, Text: "first = \"intro\"; #1"}},
		Tracks: []recorder.FileEntry{
			{File: "alice-A-usermedia-audio.ogg", Track: "alice-A-usermedia-audio", Part: 1, UserID: "@alice:example.org", Kind: "audio", Codec: "opus", Source: recorder.SourceMicrophone, StartOffsetMs: 1000, DurationMs: 6000},
			{File: "bob-B-usermedia-audio.ogg", Track: "bob-B-usermedia-audio", Part: 1, UserID: "@bob:example.org", Kind: "audio", Codec: "opus", Source: recorder.SourceMicrophone, StartOffsetMs: 2500, DurationMs: 2000},
			{File: "bob-B-usermedia-audio.part2.ogg", Track: "bob-B-usermedia-audio", Part: 2, UserID: "@bob:example.org", Kind: "audio", Codec: "opus", Source: recorder.SourceMicrophone, StartOffsetMs: 6000, DurationMs: 2000},
			{File: "bob-B-usermedia-video.webm", Track: "bob-B-usermedia-video", Part: 1, UserID: "@bob:example.org", Kind: "video", Codec: "vp8", Source: recorder.SourceCamera, StartOffsetMs: 1500, DurationMs: 5000},
			{File: "../escape.ogg", Track: "x", Kind: "audio", Codec: "opus"},
		},
	}
	return dir, m
}

// clicks finds the loud moments of decoded audio (runs above half scale, 100 ms apart).
func clicks(pcm []int16, rate int) []time.Duration {
	var out []time.Duration
	last := -rate
	for i, s := range pcm {
		if math.Abs(float64(s)) > 0.3*32768 {
			if i-last > rate/10 {
				out = append(out, time.Duration(i)*time.Second/time.Duration(rate))
			}
			last = i
		}
	}
	return out
}

func wantClicks(t *testing.T, what string, got []time.Duration, want ...time.Duration) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: clicks at %v, want %v", what, got, want)
	}
	for i := range want {
		if d := got[i] - want[i]; d < -20*time.Millisecond || d > 20*time.Millisecond {
			t.Errorf("%s: click %d at %v, want %v ±20 ms", what, i, got[i], want[i])
		}
	}
}

func run(t *testing.T, dir string, m *recorder.Manifest, kinds ...Kind) Result {
	t.Helper()
	bin, err := ffmpeg.Find("")
	if err != nil {
		t.Fatal(err)
	}
	var fractions []float64
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, Request{Folder: dir, Manifest: m, Kinds: kinds, FFmpeg: bin, Progress: func(f float64) { fractions = append(fractions, f) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(fractions) < 2 || fractions[len(fractions)-1] != 1 {
		t.Errorf("progress %v does not end at 1", fractions)
	}
	if !sort.Float64sAreSorted(fractions) {
		t.Errorf("progress goes backwards: %v", fractions)
	}
	return res
}

func probeDuration(t *testing.T, path string) time.Duration {
	t.Helper()
	info, err := mediacheck.Probe(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Duration
}

func TestExportAligned(t *testing.T) {
	dir, m := fixture(t)
	res := run(t, dir, m, KindMix, KindZip, KindWAV)
	ctx := context.Background()
	files := map[string]recorder.Export{}
	for _, e := range res.Files {
		files[e.File] = e
		if e.Bytes <= 0 || len(e.SHA256) != 64 {
			t.Errorf("entry %+v incomplete", e)
		}
	}
	if len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0], "escape") {
		t.Errorf("skipped %v, want the file outside the folder", res.Skipped)
	}
	call := 9 * time.Second
	sec := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	// Every aligned track is as long as the call, and the simultaneous clicks coincide.
	var firstClicks []time.Duration
	for _, c := range []struct {
		track string
		want  []time.Duration
	}{{"alice-A-usermedia-audio", []time.Duration{sec(3), sec(5.5)}}, {"bob-B-usermedia-audio", []time.Duration{sec(3), sec(7)}}} {
		for _, ext := range []string{"flac", "wav"} {
			rel := "exports/" + c.track + "." + ext
			e, ok := files[rel]
			if !ok || e.Kind != "track" || e.Track != c.track || e.Format != ext {
				t.Fatalf("no %s in %v", rel, res.Files)
			}
			path := filepath.Join(dir, rel)
			if d := probeDuration(t, path); d < call-5*time.Millisecond || d > call+5*time.Millisecond {
				t.Errorf("%s lasts %v, the call %v", rel, d, call)
			}
			info, _ := mediacheck.Probe(ctx, path)
			if ch := info.Streams[0].Channels; ch != 1 {
				t.Errorf("%s has %d channels, want mono for a microphone", rel, ch)
			}
			pcm, err := mediacheck.DecodePCM(ctx, path, 48000)
			if err != nil {
				t.Fatal(err)
			}
			got := clicks(pcm, 48000)
			wantClicks(t, rel, got, c.want...)
			if ext == "flac" && len(got) > 0 {
				firstClicks = append(firstClicks, got[0])
			}
		}
	}
	if len(firstClicks) == 2 {
		if d := firstClicks[0] - firstClicks[1]; d < -20*time.Millisecond || d > 20*time.Millisecond {
			t.Errorf("the click both made at 3 s is %v apart in the aligned tracks", d)
		}
	}
	// The mixdown: as long as the call, all clicks in place, markers as chapters.
	mix := filepath.Join(dir, "exports", "mix.ogg")
	if files["exports/mix.ogg"].Kind != "mix" {
		t.Fatalf("no mix entry: %v", res.Files)
	}
	if d := probeDuration(t, mix); d < call-5*time.Millisecond || d > call+25*time.Millisecond {
		t.Errorf("mix lasts %v, the call %v", d, call)
	}
	pcm, err := mediacheck.DecodePCM(ctx, mix, 48000)
	if err != nil {
		t.Fatal(err)
	}
	wantClicks(t, "mix", clicks(pcm, 48000), sec(3), sec(5.5), sec(7))
	out, err := exec.Command("ffprobe", "-v", "error", "-show_chapters", "-of", "json", mix).Output()
	if err != nil {
		t.Fatal(err)
	}
	var ch struct {
		Chapters []struct {
			Start string            `json:"start_time"`
			Tags  map[string]string `json:"tags"`
		} `json:"chapters"`
	}
	if err := json.Unmarshal(out, &ch); err != nil {
		t.Fatal(err)
	}
	if len(ch.Chapters) != 3 || ch.Chapters[1].Start != "2.000000" || ch.Chapters[1].Tags["title"] != `first = "intro"; #1` || ch.Chapters[2].Tags["title"] != "second part" {
		t.Errorf("chapters: %s", out)
	}
	// Labels and cue sheet.
	labels, err := os.ReadFile(filepath.Join(dir, "exports", LabelsFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := "2.000000\t2.000000\tfirst = \"intro\"; #1\n6.500000\t6.500000\tsecond part\n"; string(labels) != want {
		t.Errorf("labels.txt:\n%q\nwant\n%q", labels, want)
	}
	cue, err := os.ReadFile(filepath.Join(dir, "exports", CueFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cue), `FILE "mix.ogg" WAVE`) || !strings.Contains(string(cue), "INDEX 01 00:06:37") || !strings.Contains(string(cue), `TITLE "first = 'intro'; #1"`) {
		t.Errorf("cue sheet:\n%s", cue)
	}
	// The zip: aligned audio, the video as recorded, offsets, labels, manifest.
	zipName := "exports/" + filepath.Base(dir) + "-aligned.zip"
	if files[zipName].Kind != "zip" {
		t.Fatalf("no zip entry %s in %v", zipName, res.Files)
	}
	zr, err := zip.OpenReader(filepath.Join(dir, zipName))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	names := map[string]*zip.File{}
	for _, f := range zr.File {
		names[strings.TrimPrefix(f.Name, filepath.Base(dir)+"/")] = f
	}
	for _, n := range []string{"audio/alice-A-usermedia-audio.flac", "audio/bob-B-usermedia-audio.flac", "video/bob-B-usermedia-video.webm", "offsets.json", "offsets.txt", "labels.txt", "manifest.json", "README.txt"} {
		if names[n] == nil {
			t.Errorf("zip lacks %s (has %v)", n, names)
		}
	}
	if f := names["offsets.json"]; f != nil {
		r, _ := f.Open()
		var offs []offsetEntry
		if err := json.NewDecoder(r).Decode(&offs); err != nil {
			t.Fatal(err)
		}
		r.Close()
		found := false
		for _, o := range offs {
			if o.File == "video/bob-B-usermedia-video.webm" && o.StartOffsetMs == 1500 && !o.Aligned {
				found = true
			}
			if o.Aligned && o.StartOffsetMs != 0 {
				t.Errorf("aligned file with an offset: %+v", o)
			}
		}
		if !found {
			t.Errorf("offsets.json lacks the video's offset: %+v", offs)
		}
	}
	// Nothing temporary is left behind.
	entries, _ := os.ReadDir(filepath.Join(dir, "exports"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestExportFLACMixAndErrors(t *testing.T) {
	dir, m := fixture(t)
	bin, _ := ffmpeg.Find("")
	ctx := context.Background()
	res, err := Run(ctx, Request{Folder: dir, Manifest: m, Kinds: []Kind{KindMix}, MixFormat: MixFLAC, FFmpeg: bin})
	if err != nil {
		t.Fatal(err)
	}
	if d := probeDuration(t, filepath.Join(dir, "exports", "mix.flac")); d != 9*time.Second {
		t.Errorf("flac mix lasts %v", d)
	}
	if len(res.Files) != 3 { // labels, mix, cue
		t.Errorf("files %v", res.Files)
	}
	if _, err := Run(ctx, Request{Folder: dir, Manifest: m, Kinds: []Kind{KindMix}}); !errors.Is(err, ffmpeg.ErrNotInstalled) {
		t.Errorf("without ffmpeg: %v", err)
	}
	video := *m
	video.Tracks = m.Tracks[3:4]
	if _, err := Run(ctx, Request{Folder: dir, Manifest: &video, Kinds: []Kind{KindMix}, FFmpeg: bin}); !errors.Is(err, ErrNoAudio) {
		t.Errorf("without audio: %v", err)
	}
	// A cancelled export leaves no file that looks finished.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_ = os.Remove(filepath.Join(dir, "exports", "mix.ogg"))
	if _, err := Run(cctx, Request{Folder: dir, Manifest: m, Kinds: []Kind{KindMix}, FFmpeg: bin}); err == nil {
		t.Error("cancelled export succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "exports", "mix.ogg")); !os.IsNotExist(err) {
		t.Errorf("cancelled export left mix.ogg: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "exports"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestSafeName(t *testing.T) {
	for s, want := range map[string]bool{"a.ogg": true, "alice_example.org-DEV-usermedia-audio.part2.ogg": true, "": false, ".hidden": false, "../x": false, "a/b": false, "a b": false, "é": false} {
		if SafeName(s) != want {
			t.Errorf("SafeName(%q) = %v", s, !want)
		}
	}
}
