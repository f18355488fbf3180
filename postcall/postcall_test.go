package postcall

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/internal/mediacheck"
	"github.com/matrix-recorder/matrix-recorder/postcall/export"
	"github.com/matrix-recorder/matrix-recorder/postcall/picture"
	"github.com/matrix-recorder/matrix-recorder/postcall/transcript"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/usererr"
)

// fakeRoom records what the manager posts (a unit-test stand-in for the bot).
type fakeRoom struct {
	mu      sync.Mutex
	notices map[string]string // event id -> current text
	order   []string
	files   []File
	changed chan struct{}
}

func newFakeRoom() *fakeRoom {
	return &fakeRoom{notices: map[string]string{}, changed: make(chan struct{}, 1)}
}

func (f *fakeRoom) poke() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

func (f *fakeRoom) Notice(_ context.Context, _ string, text string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := fmt.Sprintf("$%d", len(f.order))
	f.notices[id] = text
	f.order = append(f.order, id)
	f.poke()
	return id
}

func (f *fakeRoom) Edit(_ context.Context, _ string, eventID, text string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notices[eventID] = text
	f.poke()
}

func (f *fakeRoom) SendFile(_ context.Context, _ string, file File) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files = append(f.files, file)
	f.poke()
	return nil
}

func (f *fakeRoom) DisplayNames(context.Context, string) map[string]string {
	return map[string]string{"@alice:example.org": "Alice"}
}

func (f *fakeRoom) RoomName(context.Context, string) string { return "Podcast" }

// snapshot returns the messages (in order, with their current text) and files.
func (f *fakeRoom) snapshot() ([]string, []File) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var texts []string
	for _, id := range f.order {
		texts = append(texts, f.notices[id])
	}
	return texts, append([]File(nil), f.files...)
}

// wait waits until cond holds for the room's messages.
func (f *fakeRoom) wait(t *testing.T, what string, cond func(texts []string, files []File) bool) {
	t.Helper()
	deadline := time.After(90 * time.Second)
	for {
		texts, files := f.snapshot()
		if cond(texts, files) {
			return
		}
		select {
		case <-f.changed:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s; messages: %q, %d files", what, texts, len(files))
		}
	}
}

func anyText(texts []string, sub string) bool {
	for _, s := range texts {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// callFolder makes a finished call folder: Alice speaks (a tone) from 1 s to 3 s of a 6 s
// call into her microphone, which starts at 0.5 s; Bob's microphone starts at 2 s and
// stays silent; one marker at 4 s.
func callFolder(t *testing.T, root, room string) (string, recorder.Manifest) {
	t.Helper()
	mediacheck.Require(t, mediacheck.FFmpeg, mediacheck.FFprobe)
	start := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	folder := filepath.Join(root, recorder.FolderName(start, room, "call1"))
	if err := os.MkdirAll(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	gen := func(file, expr string, d float64) {
		out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
			"-i", fmt.Sprintf("aevalsrc='%s':s=48000:d=%.1f", expr, d), "-ac", "2", "-c:a", "libopus", "-b:a", "32k", filepath.Join(folder, file)).CombinedOutput()
		if err != nil {
			t.Fatalf("make %s: %v %s", file, err, out)
		}
	}
	gen("alice-A-usermedia-audio.ogg", "if(between(t,0.5,2.5),0.4*sin(2*PI*300*t),0.002*sin(2*PI*50*t))", 5.5)
	gen("bob-B-usermedia-audio.ogg", "0.002*sin(2*PI*50*t)", 4)
	end := start.Add(6 * time.Second)
	m := recorder.Manifest{
		Version: 1, CallID: "call1", RoomID: room, Kind: "1:1", Status: recorder.StatusFinished, StartedAt: start, EndedAt: &end, DurationMs: 6000,
		Participants: []recorder.Participant{{UserID: "@alice:example.org", DeviceID: "A", JoinedAt: start}, {UserID: "@bob:example.org", DeviceID: "B", JoinedAt: start}},
		Markers:      []recorder.Marker{{AtMs: 4000, Text: "the good bit", UserID: "@bob:example.org"}},
		Tracks: []recorder.FileEntry{
			{File: "alice-A-usermedia-audio.ogg", Track: "alice-A-usermedia-audio", Part: 1, UserID: "@alice:example.org", DeviceID: "A", Kind: "audio", Codec: "opus", Source: recorder.SourceMicrophone, StartOffsetMs: 500, DurationMs: 5500, Status: recorder.StatusComplete},
			{File: "bob-B-usermedia-audio.ogg", Track: "bob-B-usermedia-audio", Part: 1, UserID: "@bob:example.org", DeviceID: "B", Kind: "audio", Codec: "opus", Source: recorder.SourceMicrophone, StartOffsetMs: 2000, DurationMs: 4000, Status: recorder.StatusComplete},
		},
	}
	writeManifest(t, folder, m)
	return folder, m
}

func writeManifest(t *testing.T, folder string, m recorder.Manifest) {
	t.Helper()
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(folder, recorder.ManifestFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func newManager(t *testing.T, cfg Config, room Room) *Manager {
	t.Helper()
	m, err := New(cfg, room, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	return m
}

func hookScript(t *testing.T, body string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "calls.log")
	path := filepath.Join(dir, "hook.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+strings.ReplaceAll(body, "LOG", log)), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, log
}

// TestCallEndedPictureAndTranscript: the picture is posted and saved, the hook runs once
// per track with its offset, and the transcripts come back merged on the call's timeline.
func TestCallEndedPictureAndTranscript(t *testing.T) {
	root := t.TempDir()
	folder, man := callFolder(t, root, "!room:example.org")
	hook, log := hookScript(t, `echo "$(basename "$1") $2 $3" >> LOG
printf 'WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nhello from %s\n' "$2" > "$4"
`)
	room := newFakeRoom()
	m := newManager(t, Config{Picture: true, Transcript: transcript.Hook{Command: []string{hook, "{file}", "{user}", "{offset_ms}", "{vtt}"}}}, room)
	m.CallEnded("!room:example.org", folder, man)
	room.wait(t, "the picture and the transcript", func(texts []string, files []File) bool {
		img, vtt := false, false
		for _, f := range files {
			img = img || f.Kind == "image"
			vtt = vtt || f.MIME == "text/vtt"
		}
		return img && vtt
	})
	var pic, vttFile File
	_, posted := room.snapshot()
	for _, f := range posted {
		if f.Kind == "image" {
			pic = f
		} else if f.MIME == "text/vtt" {
			vttFile = f
		}
	}
	img, err := png.Decode(bytes.NewReader(pic.Data))
	if err != nil {
		t.Fatalf("posted picture: %v", err)
	}
	if img.Bounds().Dx() != 1080 || pic.Width != 1080 || pic.MIME != "image/png" {
		t.Errorf("picture %v, %+v", img.Bounds(), pic.Name)
	}
	// Alice (row 0) speaks 1.5 s to 3 s of the call; Bob (row 1) never does. Rendering
	// the same input again gives the layout to read the posted picture at.
	r, _ := picture.NewRenderer(0)
	_, l, _ := r.Render(m.pictureInput(context.Background(), "!room:example.org", Call{Folder: folder, Manifest: &man}))
	at := func(row int, s float64) [3]uint8 {
		c := img.At(l.X(time.Duration(s*float64(time.Second))), (l.Rows[row].Speech.Min.Y+l.Rows[row].Speech.Max.Y)/2)
		r, g, b, _ := c.RGBA()
		return [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}
	}
	rc := picture.RowColor(0)
	if got := at(0, 2.2); got != [3]uint8{rc.R, rc.G, rc.B} {
		t.Errorf("alice at 2.2 s: %v, want her speech color", got)
	}
	pc := picture.PresentColor
	if got := at(0, 4.5); got != [3]uint8{pc.R, pc.G, pc.B} {
		t.Errorf("alice at 4.5 s: %v, want silent", got)
	}
	if got := at(1, 2.2); got != [3]uint8{pc.R, pc.G, pc.B} {
		t.Errorf("bob at 2.2 s: %v, want silent", got)
	}
	if _, err := os.Stat(filepath.Join(folder, export.Dir, PictureFile)); err != nil {
		t.Errorf("picture not saved: %v", err)
	}
	// The hook ran once per track.
	calls, _ := os.ReadFile(log)
	lines := strings.Split(strings.TrimSpace(string(calls)), "\n")
	if len(lines) != 2 || !containsLine(lines, "alice-A-usermedia-audio.ogg @alice:example.org 500") || !containsLine(lines, "bob-B-usermedia-audio.ogg @bob:example.org 2000") {
		t.Errorf("hook calls: %q", lines)
	}
	// Merged: Alice's cue at 1.5 s, Bob's at 3 s, labelled.
	merged := string(vttFile.Data)
	for _, s := range []string{"00:00:01.500 --> 00:00:02.500\n<v Alice>hello from @alice:example.org", "00:00:03.000 --> 00:00:04.000\n<v @bob:example.org>hello from @bob:example.org"} {
		if !strings.Contains(merged, s) {
			t.Errorf("merged transcript lacks %q:\n%s", s, merged)
		}
	}
	room.wait(t, "the transcript notice", func(texts []string, _ []File) bool { return anyText(texts, "📝 Transcript") })
	// The manifest lists both, and keeps everything else.
	got, err := recorder.ReadManifest(folder)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, e := range got.Exports {
		kinds[e.Kind] = e.File
	}
	if kinds["picture"] != "exports/summary.png" || kinds["transcript"] != TranscriptFile || len(got.Tracks) != 2 || len(got.Markers) != 1 {
		t.Errorf("manifest after: exports %+v, %d tracks, %d markers", got.Exports, len(got.Tracks), len(got.Markers))
	}
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func TestFailingHookIsReported(t *testing.T) {
	root := t.TempDir()
	folder, man := callFolder(t, root, "!room:example.org")
	hook, _ := hookScript(t, "echo 'no model loaded' >&2\nexit 2\n")
	room := newFakeRoom()
	m := newManager(t, Config{Transcript: transcript.Hook{Command: []string{hook, "{file}"}}}, room)
	before, _ := os.ReadFile(filepath.Join(folder, "alice-A-usermedia-audio.ogg"))
	m.CallEnded("!room:example.org", folder, man)
	room.wait(t, "the failure notice", func(texts []string, _ []File) bool {
		return anyText(texts, "failed for 2 of 2 tracks") && anyText(texts, "in the operator's log") && anyText(texts, "not affected")
	})
	// The hook's own words (which can name its URL or paths) stay in the log.
	room.mu.Lock()
	for _, text := range room.notices {
		if strings.Contains(text, "no model loaded") {
			t.Errorf("the hook's error reached the room: %q", text)
		}
	}
	room.mu.Unlock()
	after, _ := os.ReadFile(filepath.Join(folder, "alice-A-usermedia-audio.ogg"))
	if !bytes.Equal(before, after) {
		t.Error("the recorded file changed")
	}
}

func TestExportProgressAndManifest(t *testing.T) {
	root := t.TempDir()
	folder, _ := callFolder(t, root, "!room:example.org")
	room := newFakeRoom()
	m := newManager(t, Config{}, room)
	call, err := FindCall(root, "!room:example.org", Latest)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Export("!room:example.org", call, []export.Kind{export.KindMix, export.KindFLAC}); err != nil {
		t.Fatal(err)
	}
	room.wait(t, "the finished export", func(texts []string, _ []File) bool { return anyText(texts, "✅ Export") })
	texts, _ := room.snapshot()
	if len(texts) != 1 {
		t.Errorf("progress went into %d messages, want one edited message: %q", len(texts), texts)
	}
	text := texts[0]
	for _, s := range []string{"exports/mix.ogg", "exports/alice-A-usermedia-audio.flac", "exports/labels.txt"} {
		if !strings.Contains(text, s) {
			t.Errorf("final message lacks %s: %q", s, text)
		}
	}
	got, _ := recorder.ReadManifest(folder)
	files := map[string]bool{}
	for _, e := range got.Exports {
		files[e.File] = true
	}
	if !files["exports/mix.ogg"] || !files["exports/bob-B-usermedia-audio.flac"] || !files["exports/labels.txt"] || !files["exports/mix.cue"] {
		t.Errorf("manifest exports %+v", got.Exports)
	}
	// Exporting again replaces the entries instead of adding new ones.
	n := len(got.Exports)
	if err := m.Export("!room:example.org", call, []export.Kind{export.KindMix}); err != nil {
		t.Fatal(err)
	}
	room.wait(t, "the second export", func(texts []string, _ []File) bool { return len(texts) == 2 && strings.HasPrefix(texts[1], "✅") })
	got, _ = recorder.ReadManifest(folder)
	if len(got.Exports) != n {
		t.Errorf("exports grew from %d to %d entries", n, len(got.Exports))
	}
}

func TestExportWithoutFFmpeg(t *testing.T) {
	root := t.TempDir()
	folder, man := callFolder(t, root, "!room:example.org")
	room := newFakeRoom()
	m := newManager(t, Config{FFmpeg: filepath.Join(t.TempDir(), "ffmpeg"), AutoExport: []export.Kind{export.KindMix}}, room)
	m.CallEnded("!room:example.org", folder, man)
	room.wait(t, "the ffmpeg notice", func(texts []string, _ []File) bool { return anyText(texts, "ffmpeg is not installed") })
	if _, err := os.Stat(filepath.Join(folder, export.Dir, "mix.ogg")); err == nil {
		t.Error("a mix appeared without ffmpeg")
	}
}

// TestCloseStopsExports: an export running at shutdown is stopped and says so.
func TestCloseStopsExports(t *testing.T) {
	root := t.TempDir()
	folder, _ := callFolder(t, root, "!room:example.org")
	slow, _ := hookScript(t, "exec sleep 60\n")
	room := newFakeRoom()
	m, err := New(Config{FFmpeg: slow}, room, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	man, _ := recorder.ReadManifest(folder)
	if err := m.Export("!room:example.org", Call{Folder: folder, Manifest: man}, []export.Kind{export.KindMix}); err != nil {
		t.Fatal(err)
	}
	room.wait(t, "the export to start", func(texts []string, _ []File) bool { return anyText(texts, "0%") })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 15*time.Second {
		t.Errorf("close took %v", time.Since(start))
	}
	room.wait(t, "the shutdown message", func(texts []string, _ []File) bool { return anyText(texts, "shutting down") })
	if err := m.Export("!room:example.org", Call{Folder: folder, Manifest: man}, []export.Kind{export.KindMix}); !errors.Is(err, ErrClosed) {
		t.Errorf("export after close: %v", err)
	}
}

func TestPoolBounds(t *testing.T) {
	p := newPool(1, 1, zerolog.Nop())
	release := make(chan struct{})
	started := make(chan struct{})
	if err := p.submit(func() { close(started); <-release }); err != nil {
		t.Fatal(err)
	}
	<-started
	if err := p.submit(func() {}); err != nil {
		t.Fatal(err)
	}
	if err := p.submit(func() {}); !errors.Is(err, ErrBusy) {
		t.Errorf("third job: %v, want ErrBusy", err)
	}
	if p.waiting() != 2 {
		t.Errorf("waiting %d", p.waiting())
	}
	close(release)
	if err := p.submit(func() { panic("boom") }); err != nil && !errors.Is(err, ErrBusy) {
		t.Fatal(err)
	}
	p.close()
	p.wait()
	if err := p.submit(func() {}); !errors.Is(err, ErrClosed) {
		t.Errorf("after close: %v", err)
	}
}

func TestFindCall(t *testing.T) {
	root := t.TempDir()
	folder, _ := callFolder(t, root, "!room:example.org")
	other, _ := callFolder(t, root, "!other:example.org")
	live := filepath.Join(root, "20990101T000000Z_room_live")
	_ = os.MkdirAll(live, 0o755)
	writeManifest(t, live, recorder.Manifest{RoomID: "!room:example.org", Status: recorder.StatusRecording, StartedAt: time.Now()})
	for _, ref := range []string{"latest", "", filepath.Base(folder), "call1"} {
		c, err := FindCall(root, "!room:example.org", ref)
		if err != nil || c.Folder != folder {
			t.Errorf("%q: %v %v", ref, c.Folder, err)
		}
	}
	var ue usererr.Error
	if _, err := FindCall(root, "!room:example.org", filepath.Base(other)); !errors.As(err, &ue) {
		t.Errorf("another room's recording found: %v", err)
	}
	if _, err := FindCall(root, "!none:example.org", "latest"); !errors.As(err, &ue) {
		t.Errorf("no recordings: %v", err)
	}
	if _, err := FindCall(root, "!room:example.org", "../"+filepath.Base(other)); !errors.As(err, &ue) {
		t.Errorf("path: %v", err)
	}
}
