package integration

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// The test assets are 320x240; frames are compared as 8-bit luma.
const patternW, patternH = 320, 240

// grayFrames decodes up to n frames (all when n is 0) of a video file to 320x240 luma.
func grayFrames(ctx context.Context, path string, n int) ([][]byte, error) {
	args := []string{"-nostdin", "-hide_banner", "-v", "error", "-i", path}
	if n > 0 {
		args = append(args, "-frames:v", strconv.Itoa(n))
	}
	args = append(args, "-vf", "scale="+strconv.Itoa(patternW)+":"+strconv.Itoa(patternH), "-f", "rawvideo", "-pix_fmt", "gray", "-")
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, "ffmpeg", args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, &decodeError{err: err, stderr: errb.String()}
	}
	size := patternW * patternH
	var frames [][]byte
	for b := out.Bytes(); len(b) >= size; b = b[size:] {
		frames = append(frames, b[:size])
	}
	return frames, nil
}

type decodeError struct {
	err    error
	stderr string
}

func (e *decodeError) Error() string { return e.err.Error() + ": " + e.stderr }

var (
	refMu     sync.Mutex
	refFrames = map[string][][]byte{}
)

// assetGray decodes every frame of a test asset once.
func assetGray(t *testing.T, asset string) [][]byte {
	t.Helper()
	refMu.Lock()
	defer refMu.Unlock()
	if f, ok := refFrames[asset]; ok {
		return f
	}
	path, err := testmedia.WriteFile(t.TempDir(), asset)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, err := grayFrames(ctx, path, 0)
	if err != nil || len(f) == 0 {
		t.Fatalf("decode asset %s: %v", asset, err)
	}
	refFrames[asset] = f
	return f
}

func mse(a, b []byte) float64 {
	var s float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		s += d * d
	}
	return s / float64(len(a))
}

// matchTestPattern decodes the first n frames of a recorded file and checks that they are
// the asset's frames, in the asset's order from wherever the recording started (the sender
// loops the asset): the same bitstream decodes to the same pictures, so anything but a
// near-perfect match means the frames were damaged or not decrypted.
func matchTestPattern(t *testing.T, path, asset string, n int) {
	t.Helper()
	ref := assetGray(t, asset)
	got, err := grayFrames(timeout(t, time.Minute), path, n)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	if len(got) < min(n, 10) {
		t.Fatalf("%s: only %d frames decoded", path, len(got))
	}
	start, best := -1, 1e18
	for j, r := range ref {
		if e := mse(got[0], r); e < best {
			start, best = j, e
		}
	}
	const maxMSE = 6.5 // PSNR 40 dB
	if best > maxMSE {
		t.Fatalf("%s: the first frame is not the test pattern (closest asset frame %d, MSE %.1f)", path, start, best)
	}
	for i, g := range got {
		j := (start + i) % len(ref)
		if e := mse(g, ref[j]); e > maxMSE {
			t.Errorf("%s: frame %d is not asset frame %d (MSE %.1f)", path, i, j, e)
			return
		}
	}
}

// allTestPattern decodes every frame of a recorded file and checks that each one is a frame
// of the asset (in any order: a simulcast layer switch jumps in the looped asset).
func allTestPattern(t *testing.T, path, asset string) int {
	t.Helper()
	ref := assetGray(t, asset)
	got, err := grayFrames(timeout(t, time.Minute), path, 0)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	for i, g := range got {
		best := 1e18
		for _, r := range ref {
			best = min(best, mse(g, r))
		}
		if best > 6.5 {
			t.Errorf("%s: frame %d is not a test pattern frame (MSE %.1f)", path, i, best)
			return len(got)
		}
	}
	return len(got)
}
