package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/mediacheck"
	"github.com/matrix-recorder/matrix-recorder/internal/testenv"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// TestIntegrationDemo runs the README's first command as a new user would (with a shorter
// call): a homeserver, the bot and a caller, an encrypted call, and a folder whose files
// play for as long as the call lasted.
func TestIntegrationDemo(t *testing.T) {
	testenv.RequireIntegration(t)
	mediacheck.Require(t, mediacheck.FFprobe)
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := run([]string{"demo", "-duration", "4s", "-recordings", dir}, &out, &errb); code != exitOK {
		t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	t.Logf("demo said:\n%s", out.String())
	if strings.Contains(errb.String(), "Request canceled") {
		t.Errorf("the demo's stop logs cancelled requests as warnings:\n%s", errb.String())
	}
	for _, want := range []string{"an encrypted room", "Recording saved", "Files of recording", "Recording folder: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo's output does not say %q", want)
		}
	}
	folders, _ := filepath.Glob(filepath.Join(dir, "*", recorder.ManifestFile))
	if len(folders) != 1 {
		t.Fatalf("%d call folders with a manifest in %s, want 1", len(folders), dir)
	}
	folder := filepath.Dir(folders[0])
	m, err := recorder.ReadManifest(folder)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, f := range m.Tracks {
		kinds[f.Kind] = f.Codec
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		info, err := mediacheck.Probe(ctx, filepath.Join(folder, f.File))
		cancel()
		if err != nil {
			t.Errorf("ffprobe %s: %v", f.File, err)
			continue
		}
		if info.Duration < 3*time.Second || info.Duration > 6*time.Second {
			t.Errorf("%s plays for %v, the call lasted about 4 s", f.File, info.Duration)
		}
	}
	if kinds["audio"] != "opus" || kinds["video"] != "vp8" {
		t.Errorf("tracks %v, want an Opus and a VP8 track", kinds)
	}
}
