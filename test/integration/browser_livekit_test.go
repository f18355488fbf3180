package integration

import (
	"encoding/base64"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/lkpeer"
	"github.com/matrix-recorder/matrix-recorder/internal/mediacheck"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// TestIntegrationBrowserLiveKitE2EE: Element Call's media path is LiveKit's client SDK,
// whose E2EE worker encrypts every frame. Here livekit-client in headless Chromium
// publishes the fake camera and microphone with E2EE (its own worker) on the harness's
// livekit-server, with a token from the JWT service; the Matrix side (membership, key to
// every member device over Olm) is lkpeer's, with the same key. The bot's files must be
// plain media: our frame decryption against the real encryptor. ExternalKeyProvider uses
// the SDK's ExternalE2EEKeyProvider (one key at index 0); ParticipantKeyRotation a
// per-participant provider with Element Call's options, and rotates the key mid-call (the
// new index in every frame's trailer from then on).
func TestIntegrationBrowserLiveKitE2EE(t *testing.T) {
	requireBrowser(t, "livekit.html")
	env := startLKEnv(t)
	t.Run("ExternalKeyProvider", func(t *testing.T) { browserLiveKit(t, env, "external", false) })
	t.Run("ParticipantKeyRotation", func(t *testing.T) { browserLiveKit(t, env, "participant", true) })
}

type lkPublication struct {
	Kind       string `json:"kind"`
	Source     string `json:"source"`
	MimeType   string `json:"mimeType"`
	Encryption int    `json:"encryption"`
}

type lkPageStatus struct {
	State            string          `json:"state"`
	Identity         string          `json:"identity"`
	Room             string          `json:"room"`
	E2EE             bool            `json:"e2ee"`
	Publications     []lkPublication `json:"publications"`
	EncryptionErrors []string        `json:"encryptionErrors"`
}

func browserLiveKit(t *testing.T, env *lkEnv, provider string, rotate bool) {
	page := startBrowser(t, "livekit.html", "--use-file-for-fake-audio-capture="+toneWAV(t, 440))
	rb := startBot(t, env.botConfig(t))
	alice := env.peer(t, "browser", lkpeer.Options{Encrypt: true, ExternalMedia: true})
	room := callRoom(t, alice, true, rb.bot.UserID())
	ctx := timeout(t, 3*time.Minute)
	if err := alice.Join(ctx, room); err != nil {
		t.Fatal(err)
	}
	url, jwt, err := alice.ExternalAccess()
	if err != nil {
		t.Fatal(err)
	}
	idx, key := alice.MediaKey()
	if idx != 0 || len(key) == 0 {
		t.Fatalf("media key %d %x: want a first key at index 0", idx, key)
	}

	var st lkPageStatus
	page.must(ctx, &st, "connect", map[string]any{"url": url, "token": jwt, "key": base64.StdEncoding.EncodeToString(key),
		"keyIndex": idx, "provider": provider, "rawAudio": true})
	want := string(alice.UserID()) + ":" + string(alice.DeviceID())
	if st.Identity != want || !st.E2EE {
		t.Fatalf("browser connected as %q (e2ee %v), want %q with E2EE", st.Identity, st.E2EE, want)
	}
	st, err = waitPage(timeout(t, 30*time.Second), page, "camera and microphone published", func(s lkPageStatus) bool {
		return len(s.Publications) == 2
	}, "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Publications {
		if p.Encryption == 0 {
			t.Errorf("the SDK published %s unencrypted: %+v", p.Source, p)
		}
	}
	t.Logf("browser publishes in LiveKit room %s: %+v", st.Room, st.Publications)

	folder, m := record(t, rb, alice, room, func() {
		if !rotate {
			time.Sleep(8 * time.Second)
			return
		}
		time.Sleep(3 * time.Second)
		// As Element Call does: the new key goes to every member, then, a second later, the
		// sender encrypts with it.
		if err := alice.RotateKey(ctx); err != nil {
			t.Fatal(err)
		}
		idx, key := alice.MediaKey()
		if idx != 1 {
			t.Fatalf("after the rotation the key index is %d, want 1", idx)
		}
		page.must(ctx, nil, "setKey", map[string]any{"key": base64.StdEncoding.EncodeToString(key), "keyIndex": idx})
		time.Sleep(4 * time.Second)
	})
	if err := page.call(ctx, &st, "status"); err != nil {
		t.Fatal(err)
	}
	if len(st.EncryptionErrors) > 0 {
		t.Errorf("the SDK reported encryption errors: %v", st.EncryptionErrors)
	}
	page.must(ctx, nil, "disconnect")

	mic := fileOf(t, m, alice.UserID(), recorder.SourceMicrophone)
	cam := fileOf(t, m, alice.UserID(), recorder.SourceCamera)
	for _, f := range []recorder.FileEntry{mic, cam} {
		if f.Stats.FramesUndecrypted != 0 {
			t.Errorf("%s: %d frames the bot could not decrypt", f.File, f.Stats.FramesUndecrypted)
		}
		if d := time.Duration(f.DurationMs) * time.Millisecond; d < 5*time.Second {
			t.Errorf("%s lasts only %v of an 8 s recording", f.File, d)
		}
		checkFile(t, filepath.Join(folder, f.File), f.Codec, time.Duration(f.DurationMs)*time.Millisecond)
	}
	checkFakeMicrophone(t, filepath.Join(folder, mic.File))
	checkFakeCamera(t, filepath.Join(folder, cam.File))
}

// checkFakeMicrophone: the fake microphone plays a 440 Hz tone (toneWAV); every full half
// second after the first must carry it. Audio still encrypted, or decrypted wrongly, would
// not decode, or decode to noise or silence.
func checkFakeMicrophone(t *testing.T, path string) {
	t.Helper()
	pcm, err := mediacheck.DecodePCM(timeout(t, time.Minute), path, pcmRate)
	if err != nil {
		t.Fatal(err)
	}
	wins := mediacheck.Windows(pcm, pcmRate, 500*time.Millisecond)
	if len(wins) < 4 {
		t.Fatalf("%s: only %d half seconds of audio", filepath.Base(path), len(wins))
	}
	var levels []string
	bad := 0
	for _, w := range wins[1 : len(wins)-1] { // the first may hold the start, the last is partial
		tone, rms := mediacheck.ToneLevel(w, pcmRate, 440), mediacheck.RMS(w)
		levels = append(levels, fmt.Sprintf("%.3f/%.3f", tone, rms))
		// A clean sine of amplitude a has an RMS of a/√2.
		if tone < 0.05 || tone < rms {
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d half seconds without the 440 Hz tone (tone/RMS: %v)", filepath.Base(path), bad, levels)
	}
}

// checkFakeCamera: Chromium's fake camera draws a smooth picture (a green field, a turning
// circle, a counter); a frame still encrypted, or decrypted wrongly, decodes (if at all) to
// blocky noise. Every half second, decoded small and grey, must be smooth (neighbouring
// pixels close) and not blank.
func checkFakeCamera(t *testing.T, path string) {
	t.Helper()
	const w, h = 160, 90
	out, err := exec.CommandContext(timeout(t, time.Minute), "ffmpeg", "-v", "error", "-i", path,
		"-vf", fmt.Sprintf("fps=2,scale=%d:%d,format=gray", w, h), "-f", "rawvideo", "-").Output()
	if err != nil || len(out) < w*h {
		t.Fatalf("%s: decode frames: %v (%d bytes)", filepath.Base(path), err, len(out))
	}
	frames := len(out) / (w * h)
	for i := 0; i < frames; i++ {
		px := out[i*w*h : (i+1)*w*h]
		var diff, sum, sq float64
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				v := float64(px[y*w+x])
				sum += v
				sq += v * v
				if x > 0 {
					diff += math.Abs(v - float64(px[y*w+x-1]))
				}
			}
		}
		n := float64(w * h)
		mean, nd := sum/n, diff/float64((w-1)*h)
		std := math.Sqrt(max(sq/n-mean*mean, 0))
		// The field is dark in luma (its green is in the chroma); the circle is bright.
		if nd > 8 || std < 5 {
			t.Errorf("%s frame %d of %d (about %.1f s): mean %.1f, std %.1f, mean neighbour difference %.2f: not the fake camera's picture",
				filepath.Base(path), i+1, frames, float64(i)/2, mean, std, nd)
		}
	}
}
