package mediacheck

import (
	"math"
	"time"
)

// RMS returns the root mean square level of pcm, 0 (silence) to 1 (full
// scale).
func RMS(pcm []int16) float64 {
	if len(pcm) == 0 {
		return 0
	}
	var sum float64
	for _, v := range pcm {
		f := float64(v) / 32768
		sum += f * f
	}
	return math.Sqrt(sum / float64(len(pcm)))
}

// ToneLevel returns the amplitude (0 to 1 of full scale) of the hz component
// of pcm sampled at rate, by the Goertzel algorithm. A clean sine of
// amplitude a gives about a; use windows of at least a few periods.
func ToneLevel(pcm []int16, rate int, hz float64) float64 {
	n := len(pcm)
	if n == 0 || rate <= 0 {
		return 0
	}
	w := 2 * math.Pi * hz / float64(rate)
	coeff := 2 * math.Cos(w)
	var s1, s2 float64
	for _, v := range pcm {
		s := float64(v)/32768 + coeff*s1 - s2
		s2, s1 = s1, s
	}
	re := s1 - s2*math.Cos(w)
	im := s2 * math.Sin(w)
	return 2 * math.Sqrt(re*re+im*im) / float64(n)
}

// Windows splits pcm sampled at rate into consecutive windows of d (the last
// one may be shorter), for level-over-time checks.
func Windows(pcm []int16, rate int, d time.Duration) [][]int16 {
	size := int(d.Seconds() * float64(rate))
	if size <= 0 {
		return nil
	}
	var out [][]int16
	for len(pcm) > 0 {
		n := min(size, len(pcm))
		out = append(out, pcm[:n])
		pcm = pcm[n:]
	}
	return out
}

// Span is a time range of a PCM buffer.
type Span struct {
	Start, End time.Duration
}

// Silences returns the stretches of at least minLen where the RMS level of
// every window of 10 ms stays below threshold (e.g. 0.01).
func Silences(pcm []int16, rate int, threshold float64, minLen time.Duration) []Span {
	const win = 10 * time.Millisecond
	var spans []Span
	start := time.Duration(-1)
	var t time.Duration
	for _, w := range Windows(pcm, rate, win) {
		quiet := RMS(w) < threshold
		switch {
		case quiet && start < 0:
			start = t
		case !quiet && start >= 0:
			if t-start >= minLen {
				spans = append(spans, Span{start, t})
			}
			start = -1
		}
		t += time.Duration(float64(len(w)) / float64(rate) * float64(time.Second))
	}
	if start >= 0 && t-start >= minLen {
		spans = append(spans, Span{start, t})
	}
	return spans
}
