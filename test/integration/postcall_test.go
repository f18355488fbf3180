package integration

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/internal/caller"
	"github.com/matrix-recorder/matrix-recorder/internal/mediacheck"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/postcall/picture"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// timeline reads the room's latest events as the caller sees them, decrypted.
func timeline(ctx context.Context, t *testing.T, c *caller.Client, room id.RoomID) []*event.Event {
	t.Helper()
	cli := c.Matrix()
	resp, err := cli.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 100)
	if err != nil {
		t.Fatalf("read the room: %v", err)
	}
	var out []*event.Event
	for _, evt := range resp.Chunk {
		evt.RoomID = room
		if evt.Type == event.EventEncrypted {
			if err := evt.Content.ParseRaw(evt.Type); err != nil {
				continue
			}
			dec, err := cli.Crypto.Decrypt(ctx, evt)
			if err != nil {
				continue
			}
			evt = dec
		} else {
			_ = evt.Content.ParseRaw(evt.Type)
		}
		out = append(out, evt)
	}
	return out
}

// waitEvent polls the room until match finds an event.
func waitEvent(t *testing.T, c *caller.Client, room id.RoomID, what string, d time.Duration, match func(*event.Event) bool) *event.Event {
	t.Helper()
	ctx := timeout(t, d+10*time.Second)
	deadline := time.Now().Add(d)
	for {
		for _, evt := range timeline(ctx, t, c, room) {
			if match(evt) {
				return evt
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s in the room within %v (notices: %v)", what, d, c.Notices(room))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// downloadImage fetches a posted m.image (decrypting an encrypted attachment) and decodes it.
func downloadImage(t *testing.T, c *caller.Client, evt *event.Event) image.Image {
	t.Helper()
	ctx := timeout(t, time.Minute)
	msg := evt.Content.AsMessage()
	url := msg.URL
	if msg.File != nil {
		url = msg.File.URL
	}
	mxc, err := url.Parse()
	if err != nil {
		t.Fatalf("image url %q: %v", url, err)
	}
	data, err := c.Matrix().DownloadBytes(ctx, mxc)
	if err != nil {
		t.Fatalf("download the picture: %v", err)
	}
	if msg.File != nil {
		if data, err = msg.File.Decrypt(data); err != nil {
			t.Fatalf("decrypt the picture: %v", err)
		}
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("decode the picture: %v", err)
	}
	return img
}

// columnsOf counts the columns of img that hold at least n pixels of color c.
func columnsOf(img image.Image, c [3]uint8, n int) int {
	b := img.Bounds()
	cols := 0
	for x := b.Min.X; x < b.Max.X; x++ {
		k := 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if uint8(r>>8) == c[0] && uint8(g>>8) == c[1] && uint8(bl>>8) == c[2] {
				k++
			}
		}
		if k >= n {
			cols++
		}
	}
	return cols
}

func rgb(c interface{ RGBA() (r, g, b, a uint32) }) [3]uint8 {
	r, g, b, _ := c.RGBA()
	return [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}
}

// hookScript writes a transcription hook that logs its arguments and writes a WebVTT.
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

// TestIntegrationAfterTheCall: in an encrypted 1:1 call, !mark is confirmed with a reaction
// and stored; after hang-up the summary picture arrives encrypted through the media repo and
// shows the speech and the marker; the transcription hook runs once per audio track with
// its offset and the merged transcript is posted; !export latest mix makes a mixdown as
// long as the call and lists it in the manifest.
func TestIntegrationAfterTheCall(t *testing.T) {
	mediacheck.Require(t, mediacheck.FFmpeg, mediacheck.FFprobe)
	s := homeserver(t)
	cfg := botConfig(t, s)
	hook, hookLog := hookScript(t, `echo "$(basename "$1")|$2|$3" >> LOG
printf 'WEBVTT\n\n00:00:00.500 --> 00:00:01.500\nhello from %s\n' "$2" > "$4"
`)
	cfg.PostCall.Transcript.Command = []string{hook, "{file}", "{user}", "{offset_ms}", "{vtt}"}
	rb := startBot(t, cfg)
	alice := newCaller(t, s, "alice")
	room, ctx := directRoom(t, rb, alice, true, 4*time.Minute)
	start := time.Now()
	call := dial(t, ctx, alice, room, caller.CallOptions{Audio: testmedia.Tone440, Video: testmedia.VP8})
	if _, err := alice.WaitNotice(ctx, room, start, func(b string) bool { return strings.Contains(b, "Recording this call") }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	resp, err := alice.Matrix().SendMessageEvent(ctx, room, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgText, Body: "!mark intro\x07 done"})
	if err != nil {
		t.Fatal(err)
	}
	markAt := time.Now()
	waitEvent(t, alice, room, "✅ reaction on !mark", 30*time.Second, func(evt *event.Event) bool {
		if evt.Type != event.EventReaction || evt.Sender != rb.bot.UserID() {
			return false
		}
		r := evt.Content.AsReaction()
		return r.RelatesTo.EventID == resp.EventID && r.RelatesTo.Key == "✅"
	})
	time.Sleep(3 * time.Second)
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	waitSummary(t, alice, room, start)
	folder, m := finishedFolder(t, rb)
	t.Logf("files:\n%s", describe(m))

	// The marker, sanitised, where it was set.
	if len(m.Markers) != 1 || m.Markers[0].Text != "intro done" || m.Markers[0].UserID != string(alice.UserID()) {
		t.Fatalf("markers %+v", m.Markers)
	}
	if want := markAt.Sub(m.StartedAt).Milliseconds(); m.Markers[0].AtMs < want-3000 || m.Markers[0].AtMs > want+1000 {
		t.Errorf("marker at %d ms, sent at about %d ms", m.Markers[0].AtMs, want)
	}

	// The picture: encrypted attachment, 1080 px wide, a marker line and speech bars.
	imgEvt := waitEvent(t, alice, room, "summary picture", 60*time.Second, func(evt *event.Event) bool {
		msg := evt.Content.AsMessage()
		return evt.Type == event.EventMessage && evt.Sender == rb.bot.UserID() && msg.MsgType == event.MsgImage
	})
	if imgEvt.Content.AsMessage().File == nil {
		t.Error("the picture was posted unencrypted in an encrypted room")
	}
	img := downloadImage(t, alice, imgEvt)
	if img.Bounds().Dx() != 1080 {
		t.Errorf("picture is %v", img.Bounds())
	}
	if n := columnsOf(img, rgb(picture.MarkerColor), 50); n < 1 || n > 6 {
		t.Errorf("%d columns hold a marker line, want one line", n)
	}
	if n := columnsOf(img, rgb(picture.RowColor(0)), 30); n < 500 {
		t.Errorf("speech bar covers %d columns; the caller sent a tone for the whole call", n)
	}

	// The transcription hook: once per audio file, with the manifest's offsets.
	audio := mustOne(t, m, recorder.SourceMicrophone)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(folder, "transcript.vtt")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no transcript.vtt (notices: %v)", alice.Notices(room))
		}
		time.Sleep(300 * time.Millisecond)
	}
	calls, _ := os.ReadFile(hookLog)
	if got, want := strings.TrimSpace(string(calls)), audio.File+"|"+string(alice.UserID())+"|"+itoa(audio.StartOffsetMs); got != want {
		t.Errorf("hook calls %q, want %q", got, want)
	}
	merged, _ := os.ReadFile(filepath.Join(folder, "transcript.vtt"))
	if !strings.Contains(string(merged), "hello from "+string(alice.UserID())) || !strings.Contains(string(merged), "<v ") {
		t.Errorf("merged transcript:\n%s", merged)
	}
	if _, err := alice.WaitNotice(ctx, room, start, func(b string) bool { return strings.Contains(b, "📝 Transcript") }); err != nil {
		t.Errorf("no transcript notice: %v", err)
	}

	// !export latest mix: progress in one edited message, a mixdown as long as the call.
	if err := alice.SendMessage(ctx, room, "!export latest mix"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitNotice(timeout(t, 2*time.Minute), room, start, func(b string) bool { return strings.Contains(b, "✅ Export") }); err != nil {
		t.Fatalf("export did not finish: %v (notices %v)", err, alice.Notices(room))
	}
	mix := filepath.Join(folder, "exports", "mix.ogg")
	info, err := mediacheck.Probe(ctx, mix)
	if err != nil {
		t.Fatal(err)
	}
	after, err := recorder.ReadManifest(folder)
	if err != nil {
		t.Fatal(err)
	}
	call0 := time.Duration(after.DurationMs) * time.Millisecond
	if d := info.Duration; d < call0-20*time.Millisecond || d > call0+40*time.Millisecond {
		t.Errorf("mix lasts %v, the call %v", d, call0)
	}
	listed := map[string]bool{}
	for _, e := range after.Exports {
		listed[e.File] = true
	}
	for _, f := range []string{"exports/mix.ogg", "exports/labels.txt", "exports/summary.png", "transcript.vtt"} {
		if !listed[f] {
			t.Errorf("manifest does not list %s: %+v", f, after.Exports)
		}
	}
	if len(after.Tracks) != len(m.Tracks) || after.Status != recorder.StatusFinished {
		t.Errorf("manifest changed beyond exports: %d tracks, status %s", len(after.Tracks), after.Status)
	}
	// The mixdown is small, so it was also posted in the room (encrypted, as audio).
	audioEvt := waitEvent(t, alice, room, "posted mixdown", 30*time.Second, func(evt *event.Event) bool {
		return evt.Type == event.EventMessage && evt.Sender == rb.bot.UserID() && evt.Content.AsMessage().MsgType == event.MsgAudio
	})
	if msg := audioEvt.Content.AsMessage(); msg.File == nil || msg.Body != "mix.ogg" {
		t.Errorf("posted mixdown: %+v", msg)
	}
	labels, _ := os.ReadFile(filepath.Join(folder, "exports", "labels.txt"))
	if !strings.Contains(string(labels), "\tintro done\n") {
		t.Errorf("labels.txt: %q", labels)
	}
	checkFile(t, filepath.Join(folder, audio.File), "opus", time.Duration(audio.DurationMs)*time.Millisecond)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestIntegrationAfterTheCallFailures: a failing transcription hook and a missing ffmpeg
// are reported in the room, the picture still comes (voice activity from packet sizes),
// and the recording is complete and intact.
func TestIntegrationAfterTheCallFailures(t *testing.T) {
	mediacheck.Require(t, mediacheck.FFmpeg, mediacheck.FFprobe)
	s := homeserver(t)
	cfg := botConfig(t, s)
	hook, _ := hookScript(t, "echo 'transcriber exploded' >&2\nexit 4\n")
	cfg.PostCall.Transcript.Command = []string{hook, "{file}"}
	cfg.PostCall.Export.Auto = []string{"mix"}
	rb := startBot(t, cfg)
	alice := newCaller(t, s, "alice")
	// From here on there is no ffmpeg in PATH (the hook script needs none).
	path := os.Getenv("PATH")
	t.Setenv("PATH", t.TempDir())
	room, ctx := directRoom(t, rb, alice, false, 3*time.Minute)
	start := time.Now()
	call := dial(t, ctx, alice, room, caller.CallOptions{Audio: testmedia.Tone440})
	time.Sleep(4 * time.Second)
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	waitSummary(t, alice, room, start)
	for _, want := range []string{"transcription hook failed", "ffmpeg is not installed"} {
		n, err := alice.WaitNotice(timeout(t, time.Minute), room, start, func(b string) bool { return strings.Contains(b, want) })
		if err != nil {
			t.Fatalf("no notice saying %q: %v (notices %v)", want, err, alice.Notices(room))
		}
		t.Logf("notice: %s", n.Body)
	}
	if err := alice.SendMessage(ctx, room, "!export latest zip"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitNotice(timeout(t, time.Minute), room, time.Now().Add(-time.Second), func(b string) bool {
		return strings.Contains(b, "ffmpeg is not installed") && strings.Contains(b, "untouched")
	}); err != nil {
		t.Fatalf("!export without ffmpeg not reported: %v", err)
	}
	waitEvent(t, alice, room, "summary picture", 60*time.Second, func(evt *event.Event) bool {
		return evt.Type == event.EventMessage && evt.Sender == rb.bot.UserID() && evt.Content.AsMessage().MsgType == event.MsgImage
	})
	t.Setenv("PATH", path)
	folder, m := finishedFolder(t, rb)
	audio := mustOne(t, m, recorder.SourceMicrophone)
	if audio.Status != recorder.StatusComplete || m.Status != recorder.StatusFinished || m.Interruption != "" {
		t.Errorf("recording not complete: %+v", m)
	}
	if d := time.Duration(audio.DurationMs) * time.Millisecond; d < 3500*time.Millisecond {
		t.Errorf("audio lasts %v", d)
	}
	checkFile(t, filepath.Join(folder, audio.File), "opus", time.Duration(audio.DurationMs)*time.Millisecond)
	if _, err := os.Stat(filepath.Join(folder, "exports", "mix.ogg")); err == nil {
		t.Error("a mixdown appeared without ffmpeg")
	}
}
