package ffmpeg

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFindMissing(t *testing.T) {
	if _, err := Find(filepath.Join(t.TempDir(), "ffmpeg")); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("missing ffmpeg: %v", err)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := Find(""); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("ffmpeg not in PATH: %v", err)
	}
}

func TestRunProgressAndErrors(t *testing.T) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg not installed")
	}
	bin, err := Find("")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var last time.Duration
	out := filepath.Join(t.TempDir(), "out.flac")
	err = Run(ctx, bin, []string{"-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "3", out}, func(d time.Duration) { last = d })
	if err != nil {
		t.Fatal(err)
	}
	if last < 2900*time.Millisecond || last > 3100*time.Millisecond {
		t.Errorf("last progress %v, want about 3 s", last)
	}
	err = Run(ctx, bin, []string{"-i", filepath.Join(t.TempDir(), "nope.ogg"), out}, nil)
	if err == nil || !strings.Contains(err.Error(), "nope.ogg") {
		t.Errorf("failure does not name the problem: %v", err)
	}
	if _, err := Probe(bin); err != nil {
		t.Errorf("ffprobe next to ffmpeg: %v", err)
	}
}
