package transcript

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"html"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Cue is one WebVTT cue.
type Cue struct {
	Start, End time.Duration
	Speaker    string
	Text       string
}

// Limits on what is read from a hook's WebVTT.
const (
	maxCues      = 200_000
	maxCueLines  = 20
	maxLineRunes = 1000
	maxVTTBytes  = maxOutput
)

// ErrNotVTT is returned for a file that does not start with "WEBVTT".
var ErrNotVTT = errors.New("not a WebVTT file")

// ParseVTT reads the cues of a WebVTT file (W3C WebVTT: header, optional cue identifiers,
// NOTE, STYLE and REGION blocks skipped). It is lenient where transcription tools are
// sloppy: "mm:ss.ttt" and "hh:mm:ss,ttt" timestamps are accepted, and a malformed cue is
// skipped rather than failing the file.
func ParseVTT(r io.Reader) ([]Cue, error) {
	sc := bufio.NewScanner(io.LimitReader(r, maxVTTBytes))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() {
		return nil, ErrNotVTT
	}
	first := strings.TrimPrefix(sc.Text(), "\ufeff")
	if !strings.HasPrefix(first, "WEBVTT") {
		return nil, ErrNotVTT
	}
	var (
		cues  []Cue
		block []string
	)
	flush := func() {
		defer func() { block = block[:0] }()
		if len(block) == 0 || len(cues) >= maxCues {
			return
		}
		head := block[0]
		if strings.HasPrefix(head, "NOTE") || strings.HasPrefix(head, "STYLE") || strings.HasPrefix(head, "REGION") {
			return
		}
		timing := 0
		if !strings.Contains(head, "-->") {
			timing = 1 // a cue identifier first
		}
		if timing >= len(block) {
			return
		}
		start, end, ok := parseTiming(block[timing])
		if !ok {
			return
		}
		text := block[timing+1:]
		if len(text) > maxCueLines {
			text = text[:maxCueLines]
		}
		var lines []string
		for _, l := range text {
			if r := []rune(l); len(r) > maxLineRunes {
				l = string(r[:maxLineRunes])
			}
			lines = append(lines, l)
		}
		c := Cue{Start: start, End: end, Text: strings.Join(lines, "\n")}
		c.Speaker, c.Text = splitVoice(c.Text)
		if strings.TrimSpace(c.Text) == "" {
			return
		}
		cues = append(cues, c)
	}
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		block = append(block, line)
	}
	flush()
	if err := sc.Err(); err != nil {
		return cues, fmt.Errorf("read webvtt: %w", err)
	}
	return cues, nil
}

var timingRE = regexp.MustCompile(`^\s*(\S+)\s+-->\s+(\S+)`)

func parseTiming(s string) (time.Duration, time.Duration, bool) {
	m := timingRE.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, false
	}
	a, ok1 := parseTimestamp(m[1])
	b, ok2 := parseTimestamp(m[2])
	if !ok1 || !ok2 || b < a {
		return 0, 0, false
	}
	return a, b, true
}

// parseTimestamp reads "hh:mm:ss.ttt" or "mm:ss.ttt" (a comma works as well).
func parseTimestamp(s string) (time.Duration, bool) {
	s = strings.Replace(s, ",", ".", 1)
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, false
	}
	var h, m int64
	var err error
	if len(parts) == 3 {
		if h, err = strconv.ParseInt(parts[0], 10, 64); err != nil || h < 0 || h > 999 {
			return 0, false
		}
		parts = parts[1:]
	}
	if m, err = strconv.ParseInt(parts[0], 10, 64); err != nil || m < 0 || m > 59 {
		return 0, false
	}
	secs, frac, _ := strings.Cut(parts[1], ".")
	sec, err := strconv.ParseInt(secs, 10, 64)
	if err != nil || sec < 0 || sec > 59 || len(frac) > 9 {
		return 0, false
	}
	var ns int64
	if frac != "" {
		f, err := strconv.ParseInt(frac, 10, 64)
		if err != nil || f < 0 {
			return 0, false
		}
		for i := len(frac); i < 9; i++ {
			f *= 10
		}
		ns = f
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second + time.Duration(ns), true
}

var voiceRE = regexp.MustCompile(`^<v(?:\.[^\s>]*)?\s+([^>]*)>`)

// splitVoice takes a leading voice span ("<v Name>text") off a cue's text.
func splitVoice(text string) (string, string) {
	m := voiceRE.FindStringSubmatchIndex(text)
	if m == nil {
		return "", text
	}
	speaker := text[m[2]:m[3]]
	rest := strings.Replace(text[m[1]:], "</v>", "", 1)
	return strings.TrimSpace(speaker), rest
}

// FormatTimestamp writes "hh:mm:ss.ttt".
func FormatTimestamp(d time.Duration) string {
	d = max(d, 0)
	ms := d.Milliseconds()
	return fmt.Sprintf("%02d:%02d:%02d.%03d", ms/3600000, ms/60000%60, ms/1000%60, ms%1000)
}

// Source is one track's WebVTT with who spoke and where the track starts.
type Source struct {
	Cues    []Cue
	Speaker string
	Offset  time.Duration
}

// Merge puts the cues of every source on the call's timeline (each shifted by its
// track's offset), labels them with the speaker, and sorts them by start time.
func Merge(sources []Source) []Cue {
	var out []Cue
	for _, s := range sources {
		for _, c := range s.Cues {
			if len(out) >= maxCues {
				break
			}
			c.Start += s.Offset
			c.End += s.Offset
			c.Speaker = s.Speaker
			out = append(out, c)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out
}

// WriteVTT writes cues as a WebVTT file, each cue's text in a voice span of its speaker.
func WriteVTT(cues []Cue, title string) []byte {
	var b bytes.Buffer
	b.WriteString("WEBVTT")
	if t := oneLine(strings.ReplaceAll(title, "-->", "->"), 120); t != "" {
		b.WriteString(" - " + t)
	}
	b.WriteString("\n\nNOTE\nMerged by matrix-recorder from one transcript per track; times are on the call's timeline.\n")
	for _, c := range cues {
		fmt.Fprintf(&b, "\n%s --> %s\n", FormatTimestamp(c.Start), FormatTimestamp(c.End))
		lines := strings.Split(c.Text, "\n")
		for i, l := range lines {
			l = strings.ReplaceAll(l, "-->", "->")
			if strings.TrimSpace(l) == "" {
				continue // a blank line would end the cue
			}
			if i == 0 && c.Speaker != "" {
				fmt.Fprintf(&b, "<v %s>", voiceName(c.Speaker))
			}
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// voiceName escapes a speaker name for a voice span's annotation.
func voiceName(s string) string {
	return html.EscapeString(oneLine(strings.ReplaceAll(s, ">", ""), 80))
}

// PlainText renders cues as "[m:ss] Speaker: text" lines, for a preview in the room.
func PlainText(cues []Cue, maxLines int) []string {
	var out []string
	for _, c := range cues {
		if len(out) >= maxLines {
			break
		}
		text := oneLine(stripTags(c.Text), 200)
		s := c.Start.Truncate(time.Second)
		at := fmt.Sprintf("%d:%02d", int(s/time.Minute), int(s%time.Minute/time.Second))
		if c.Speaker != "" {
			out = append(out, fmt.Sprintf("[%s] %s: %s", at, c.Speaker, text))
		} else {
			out = append(out, fmt.Sprintf("[%s] %s", at, text))
		}
	}
	return out
}

var tagRE = regexp.MustCompile(`<[^>]*>`)

func stripTags(s string) string { return html.UnescapeString(tagRE.ReplaceAllString(s, "")) }
