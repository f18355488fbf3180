// Package activity finds when someone spoke in an audio track: from the sizes of the Opus
// packets in an Ogg Opus file (no decoder needed), or from the decoded signal's level when
// ffmpeg is installed.
package activity

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"time"

	"github.com/matrix-recorder/matrix-recorder/postcall/ffmpeg"
)

// Span is a stretch of a file's timeline.
type Span struct {
	From, To time.Duration
}

// Speech smoothing: pauses shorter than bridge between two stretches of speech count as
// speech (people breathe), and what is left shorter than minSpeech is dropped (a cough,
// a click).
const (
	bridge    = 400 * time.Millisecond
	minSpeech = 200 * time.Millisecond
)

// tinyPacket is the size up to which an Opus packet carries no sound: DTX, digital
// silence, and the concealment packets a recorder writes into gaps.
const tinyPacket = 3

// FromPackets finds speech in an Opus file by its packets' bit rates. Opus in VBR mode
// (what WebRTC sends) spends few bits on silence and background noise and many on speech,
// so the threshold sits between the track's quiet level and its busy level. A track
// whose rate never changes much is either all speech (a tone, music) or all noise,
// decided by its median rate.
func FromPackets(f *OpusFile) []Span {
	var rates []float64
	for _, p := range f.Packets {
		if d := p.End - p.Start; d > 0 && p.Bytes > tinyPacket {
			rates = append(rates, float64(p.Bytes*8)/d.Seconds())
		}
	}
	if len(rates) == 0 {
		return nil
	}
	sorted := append([]float64(nil), rates...)
	sort.Float64s(sorted)
	floor := percentile(sorted, 0.15)
	busy := percentile(sorted, 0.90)
	var threshold float64
	if busy < floor*1.4 {
		if percentile(sorted, 0.5) < steadySpeechRate {
			return nil
		}
		threshold = 0
	} else {
		threshold = floor + 0.3*(busy-floor)
	}
	var spans []Span
	for _, p := range f.Packets {
		d := p.End - p.Start
		if d <= 0 || p.Bytes <= tinyPacket || float64(p.Bytes*8)/d.Seconds() < threshold {
			continue
		}
		spans = appendSpan(spans, Span{p.Start, p.End})
	}
	return Smooth(spans)
}

// steadySpeechRate is the median bit rate above which a track with a steady rate is taken
// as sound rather than background noise (Opus spends about 6-12 kbit/s on room noise).
const steadySpeechRate = 16000

func percentile(sorted []float64, q float64) float64 {
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

// appendSpan adds s, joining it to the last span when they touch.
func appendSpan(spans []Span, s Span) []Span {
	if n := len(spans); n > 0 && s.From <= spans[n-1].To+time.Millisecond {
		spans[n-1].To = max(spans[n-1].To, s.To)
		return spans
	}
	return append(spans, s)
}

// Smooth bridges short pauses and drops short blips; spans must be sorted.
func Smooth(spans []Span) []Span {
	var out []Span
	for _, s := range spans {
		if n := len(out); n > 0 && s.From-out[n-1].To < bridge {
			out[n-1].To = max(out[n-1].To, s.To)
			continue
		}
		out = append(out, s)
	}
	kept := out[:0]
	for _, s := range out {
		if s.To-s.From >= minSpeech {
			kept = append(kept, s)
		}
	}
	return kept
}

// Level windows for FromLevels.
const (
	// Window is the length of one level measurement.
	Window = 20 * time.Millisecond
	// levelRate is the sample rate audio is decoded at for levels.
	levelRate = 16000
)

// Levels decodes an audio file with ffmpeg (mono, 16 kHz) and returns its RMS level in
// dBFS per Window. Gaps that exist only in timestamps are filled with silence, so the
// windows follow the file's timeline.
func Levels(ctx context.Context, ffmpegBin, path string) ([]float64, error) {
	args := []string{"-i", path, "-vn", "-af", "aresample=async=1", "-ac", "1", "-ar", fmt.Sprint(levelRate), "-f", "s16le", "-"}
	var levels []float64
	err := ffmpeg.Stream(ctx, ffmpegBin, args, func(r io.Reader) error {
		const n = levelRate * int(Window/time.Millisecond) / 1000
		buf := make([]byte, 2*n)
		for {
			k, err := io.ReadFull(r, buf)
			if k >= 2 {
				var sum float64
				for i := 0; i+1 < k; i += 2 {
					v := float64(int16(binary.LittleEndian.Uint16(buf[i:]))) / 32768
					sum += v * v
				}
				rms := math.Sqrt(sum / float64(k/2))
				levels = append(levels, 20*math.Log10(max(rms, 1e-6)))
				if len(levels) > maxPackets {
					return errors.New("audio longer than the level limit")
				}
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			if err != nil {
				return err
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("measure levels of %s: %w", path, err)
	}
	return levels, nil
}

// Level thresholds in dBFS: speech stands at least aboveFloor over the track's quiet
// level, and anything over loudEnough is sound even on a track with no quiet part.
const (
	aboveFloor = 10.0
	loudEnough = -35.0
	tooQuiet   = -50.0
)

// FromLevels finds speech in per-Window levels (dBFS), relative to the track's own
// quiet level so that a noisy microphone and a quiet one both work.
func FromLevels(levels []float64) []Span {
	if len(levels) == 0 {
		return nil
	}
	sorted := append([]float64(nil), levels...)
	sort.Float64s(sorted)
	floor := percentile(sorted, 0.10)
	threshold := max(tooQuiet, min(floor+aboveFloor, loudEnough))
	var spans []Span
	for i, l := range levels {
		if l >= threshold {
			from := time.Duration(i) * Window
			spans = appendSpan(spans, Span{from, from + Window})
		}
	}
	return Smooth(spans)
}

// Method says how a track's speech was found.
type Method string

// Methods.
const (
	MethodEnergy  Method = "energy"
	MethodPackets Method = "packets"
)

// Detect finds the speech in an Ogg Opus file: from decoded levels when ffmpegBin is set
// (falling back to packet sizes if decoding fails), otherwise from packet sizes.
func Detect(ctx context.Context, ffmpegBin, path string) ([]Span, Method, error) {
	if ffmpegBin != "" {
		levels, err := Levels(ctx, ffmpegBin, path)
		if err == nil {
			return FromLevels(levels), MethodEnergy, nil
		}
		if ctx.Err() != nil {
			return nil, "", err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	of, err := ReadOgg(f)
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", path, err)
	}
	return FromPackets(of), MethodPackets, nil
}
