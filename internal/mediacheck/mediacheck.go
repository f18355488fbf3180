// Package mediacheck checks media files with independent tools (ffprobe,
// ffmpeg, mkvinfo, opusinfo, oggz-validate), so that tests never trust the
// code that wrote a file to also judge it.
package mediacheck

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Tool names, as found in PATH.
const (
	FFprobe      = "ffprobe"
	FFmpeg       = "ffmpeg"
	MKVInfoTool  = "mkvinfo"
	OpusInfoTool = "opusinfo"
	OggzValidate = "oggz-validate"
)

// Packages maps each tool to the Debian package that provides it.
func Packages() map[string]string {
	return map[string]string{
		FFprobe:      "ffmpeg",
		FFmpeg:       "ffmpeg",
		MKVInfoTool:  "mkvtoolnix",
		OpusInfoTool: "opus-tools",
		OggzValidate: "oggz-tools",
	}
}

// Stream is one stream as ffprobe sees it.
type Stream struct {
	Index      int
	CodecName  string // "opus", "vp8", "h264", ...
	CodecType  string // "audio", "video"
	Width      int
	Height     int
	Channels   int
	SampleRate int
	// Duration is the stream's duration, from the stream or, for Matroska,
	// its DURATION tag; 0 when the file does not say.
	Duration time.Duration
	// StartTime is the first timestamp.
	StartTime time.Duration
}

// Info is what ffprobe reports about a file.
type Info struct {
	// Format is ffprobe's format name, e.g. "ogg", "matroska,webm".
	Format   string
	Duration time.Duration
	Size     int64
	Streams  []Stream
}

// StreamsOfType returns the streams of a type ("audio", "video").
func (i Info) StreamsOfType(typ string) []Stream {
	var out []Stream
	for _, s := range i.Streams {
		if s.CodecType == typ {
			out = append(out, s)
		}
	}
	return out
}

// Probe runs ffprobe on path.
func Probe(ctx context.Context, path string) (Info, error) {
	stdout, stderr, err := run(ctx, FFprobe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", path)
	if err != nil {
		return Info{}, fmt.Errorf("ffprobe %s: %w: %s", path, err, stderr)
	}
	var raw struct {
		Format struct {
			FormatName string `json:"format_name"`
			Duration   string `json:"duration"`
			Size       string `json:"size"`
		} `json:"format"`
		Streams []struct {
			Index      int               `json:"index"`
			CodecName  string            `json:"codec_name"`
			CodecType  string            `json:"codec_type"`
			Width      int               `json:"width"`
			Height     int               `json:"height"`
			Channels   int               `json:"channels"`
			SampleRate string            `json:"sample_rate"`
			Duration   string            `json:"duration"`
			StartTime  string            `json:"start_time"`
			Tags       map[string]string `json:"tags"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(stdout, &raw); err != nil {
		return Info{}, fmt.Errorf("decoding ffprobe output for %s: %w", path, err)
	}
	info := Info{Format: raw.Format.FormatName, Duration: seconds(raw.Format.Duration)}
	info.Size, _ = strconv.ParseInt(raw.Format.Size, 10, 64)
	for _, s := range raw.Streams {
		st := Stream{
			Index: s.Index, CodecName: s.CodecName, CodecType: s.CodecType,
			Width: s.Width, Height: s.Height, Channels: s.Channels,
			Duration: seconds(s.Duration), StartTime: seconds(s.StartTime),
		}
		st.SampleRate, _ = strconv.Atoi(s.SampleRate)
		if st.Duration == 0 {
			for k, v := range s.Tags {
				if strings.EqualFold(k, "DURATION") {
					st.Duration = clock(v)
				}
			}
		}
		info.Streams = append(info.Streams, st)
	}
	return info, nil
}

// seconds parses ffprobe's "5.006500"; "N/A" and "" give 0.
func seconds(s string) time.Duration {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

// clock parses a Matroska DURATION tag, "00:00:05.006000000".
func clock(s string) time.Duration {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return 0
	}
	h, err1 := strconv.Atoi(parts[0])
	m, err2 := strconv.Atoi(parts[1])
	sec, err3 := strconv.ParseFloat(parts[2], 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec*float64(time.Second))
}

// DecodeErrors decodes every stream of path with ffmpeg and returns what it
// complained about; "" means the file decoded cleanly. The error is for
// ffmpeg failing to run or to open the file at all. The null output keeps the file's own
// time base (-enc_time_base -1): with the default one, derived from a guessed frame rate,
// ffmpeg calls two legitimately close frames of a variable-rate video (an SFU switching
// simulcast layers) "non monotonically increasing"; equal or backward timestamps are still
// reported.
func DecodeErrors(ctx context.Context, path string) (string, error) {
	_, stderr, err := run(ctx, FFmpeg, "-nostdin", "-hide_banner", "-v", "error", "-i", path, "-enc_time_base", "-1", "-f", "null", "-")
	if err != nil {
		return strings.TrimSpace(stderr), fmt.Errorf("ffmpeg decoding %s: %w: %s", path, err, stderr)
	}
	return strings.TrimSpace(stderr), nil
}

// MKVInfo runs mkvinfo on path and returns its report; an error if mkvinfo
// fails (not Matroska, unreadable) or prints an error message. mkvinfo is
// lenient about damaged clusters: pair it with DecodeErrors.
func MKVInfo(ctx context.Context, path string) (string, error) {
	stdout, stderr, err := run(ctx, MKVInfoTool, path)
	out := string(stdout) + stderr
	if err != nil {
		return out, fmt.Errorf("mkvinfo %s: %w: %s", path, err, lastLines(out, 10))
	}
	// Element lines start with "|" or "+"; messages stand on their own.
	var problems []string
	for _, l := range matching(out, "error") {
		if !strings.HasPrefix(l, "|") && !strings.HasPrefix(l, "+") {
			problems = append(problems, l)
		}
	}
	if lines := problems; len(lines) > 0 {
		return out, fmt.Errorf("mkvinfo %s reports: %s", path, strings.Join(lines, "; "))
	}
	return out, nil
}

// OpusInfo runs opusinfo on path and returns its report; an error if it
// fails or prints a WARNING or ERROR (holes in the data, granule position
// problems, a missing end of stream, ...).
func OpusInfo(ctx context.Context, path string) (string, error) {
	stdout, stderr, err := run(ctx, OpusInfoTool, path)
	out := string(stdout) + stderr
	problems := append(matching(out, "warning"), matching(out, "error")...)
	switch {
	case err != nil && len(problems) > 0:
		return out, fmt.Errorf("opusinfo %s: %w: %s", path, err, strings.Join(problems, "; "))
	case err != nil:
		return out, fmt.Errorf("opusinfo %s: %w: %s", path, err, lastLines(out, 10))
	case len(problems) > 0:
		return out, fmt.Errorf("opusinfo %s reports: %s", path, strings.Join(problems, "; "))
	}
	return out, nil
}

// OggValidate runs oggz-validate on path: page order, granule positions,
// beginning and end of stream flags.
func OggValidate(ctx context.Context, path string) error {
	stdout, stderr, err := run(ctx, OggzValidate, path)
	if err != nil {
		return fmt.Errorf("oggz-validate %s: %w: %s", path, err, strings.TrimSpace(string(stdout)+stderr))
	}
	return nil
}

// DecodePCM decodes the first audio stream of path to mono 16-bit samples at
// rate Hz (channels mixed down), for checks of what is audible: tones,
// silences, clicks.
func DecodePCM(ctx context.Context, path string, rate int) ([]int16, error) {
	stdout, stderr, err := run(ctx, FFmpeg, "-nostdin", "-hide_banner", "-v", "error", "-i", path,
		"-map", "0:a:0", "-ac", "1", "-ar", strconv.Itoa(rate), "-f", "s16le", "-acodec", "pcm_s16le", "-")
	if err != nil {
		return nil, fmt.Errorf("ffmpeg decoding audio of %s: %w: %s", path, err, stderr)
	}
	if len(stdout)%2 != 0 {
		return nil, fmt.Errorf("ffmpeg decoding audio of %s: odd byte count %d", path, len(stdout))
	}
	pcm := make([]int16, len(stdout)/2)
	if err := binary.Read(bytes.NewReader(stdout), binary.LittleEndian, pcm); err != nil {
		return nil, fmt.Errorf("reading PCM of %s: %w", path, err)
	}
	return pcm, nil
}

func run(ctx context.Context, tool string, args ...string) (stdout []byte, stderr string, err error) {
	if _, err := exec.LookPath(tool); err != nil {
		return nil, "", fmt.Errorf("%s not installed (Debian package %s): %w", tool, Packages()[tool], err)
	}
	cmd := exec.CommandContext(ctx, tool, args...)
	// Untranslated messages: the checks look for words like "error".
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	var out, errBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errBuf
	err = cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return nil, errBuf.String(), err
	}
	return out.Bytes(), errBuf.String(), err
}

func matching(out, word string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(strings.ToLower(l), word) {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return lines
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
