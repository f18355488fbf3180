package integration

import (
	"math"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/mediacheck"
)

const pcmRate = 48000

// rms returns the root mean square of samples in [from, to) of a mono 48 kHz signal.
func rms(pcm []int16, from, to time.Duration) float64 {
	a := int(from.Seconds() * pcmRate)
	b := int(to.Seconds() * pcmRate)
	a = max(0, min(a, len(pcm)))
	b = max(a, min(b, len(pcm)))
	if b == a {
		return 0
	}
	var sum float64
	for _, s := range pcm[a:b] {
		sum += float64(s) * float64(s)
	}
	return math.Sqrt(sum / float64(b-a))
}

// assertSilenceAt decodes path and checks that [from, to) is near-silent while the second
// before and after it carry sound: the gap is where it happened, not collapsed.
func assertSilenceAt(t *testing.T, path string, from, to time.Duration) {
	t.Helper()
	pcm, err := mediacheck.DecodePCM(timeout(t, time.Minute), path, pcmRate)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	quiet := rms(pcm, from, to)
	before := rms(pcm, from-1500*time.Millisecond, from-500*time.Millisecond)
	after := rms(pcm, to+800*time.Millisecond, to+1800*time.Millisecond)
	t.Logf("rms before %.0f, in the gap %.0f, after %.0f", before, quiet, after)
	if before < 500 || after < 500 {
		t.Errorf("no tone around the gap (rms %.0f before, %.0f after)", before, after)
	}
	if quiet > before/20 {
		t.Errorf("the gap [%v, %v) is not silent: rms %.0f vs %.0f around it", from, to, quiet, before)
	}
}
