package lifecycle

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// FormatDuration says a recording's length as a clock does: "4:05", "1:02:03".
func FormatDuration(d time.Duration) string {
	d = d.Round(time.Second)
	h := int(d / time.Hour)
	m := int(d % time.Hour / time.Minute)
	s := int(d % time.Minute / time.Second)
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}

// FormatBytes says a size the way the whole recorder does, in SI units (1 kB is 1000
// bytes): "512 B", "8.3 kB", "12 MB", "1.9 GB". It is config.Size's String.
func FormatBytes(n int64) string { return config.Size(n).String() }

// Plural says a count with its noun: "1 file", "2 files", "0 files". plural is the noun's
// plural when it is not noun+"s".
func Plural(n int, noun string, plural ...string) string {
	if n == 1 {
		return "1 " + noun
	}
	if len(plural) > 0 {
		return fmt.Sprintf("%d %s", n, plural[0])
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// Warning starts a line that warns: the one warning sign the recorder uses.
const Warning = "⚠️ "

// EscapeMarkdown makes text read literally in Markdown: every ASCII punctuation character
// is escaped (CommonMark allows that for all of them), so that names, reasons and file
// names people chose cannot make links, emphasis, lists or headings.
func EscapeMarkdown(text string) string {
	var b strings.Builder
	for _, r := range text {
		if r < 0x80 && unicode.IsPunct(r) || r < 0x80 && unicode.IsSymbol(r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// MarkdownLink is a Markdown link with text that reads literally.
func MarkdownLink(text, url string) string {
	return "[" + EscapeMarkdown(text) + "](<" + strings.NewReplacer("<", "%3C", ">", "%3E", "\n", "").Replace(url) + ">)"
}

// HumanDuration says a long duration the way people do: "7 days", "5 hours", "10 minutes".
func HumanDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return Plural(int((d+12*time.Hour)/(24*time.Hour)), "day")
	case d >= 2*time.Hour:
		return Plural(int((d+30*time.Minute)/time.Hour), "hour")
	case d >= 2*time.Minute:
		return Plural(int((d+30*time.Second)/time.Minute), "minute")
	default:
		return Plural(int((d+500*time.Millisecond)/time.Second), "second")
	}
}

// progressLine is the line a start notice gets while the recording runs.
func progressLine(elapsed time.Duration, size int64, tracks int) string {
	return fmt.Sprintf("⏺ %s recorded so far, %s, %s live.", FormatDuration(elapsed), FormatBytes(size), Plural(tracks, "track"))
}

// endedLine is the line a start notice gets when the recording has ended.
func endedLine(m recorder.Manifest) string {
	dur := time.Duration(m.DurationMs) * time.Millisecond
	return fmt.Sprintf("⏹ Recording ended after %s, %s in %s.", FormatDuration(dur), FormatBytes(manifestBytes(m)), Plural(len(m.Tracks), "file"))
}

// FolderName is a call folder's name for people ("-" for none).
func FolderName(folder string) string {
	if folder == "" {
		return "-"
	}
	return filepath.Base(folder)
}

var sourceNames = map[string]string{
	recorder.SourceMicrophone:       "microphone",
	recorder.SourceCamera:           "camera",
	recorder.SourceScreenShare:      "screen share",
	recorder.SourceScreenShareAudio: "screen share audio",
}

var codecNames = map[string]string{"opus": "Opus", "vp8": "VP8", "vp9": "VP9", "av1": "AV1", "h264": "H.264"}

// plainSummary describes a finished recording in a few lines (duration, one line per
// file), for when its rows are missing.
func plainSummary(m recorder.Manifest, folder string) string {
	var b strings.Builder
	dur := time.Duration(m.DurationMs) * time.Millisecond
	fmt.Fprintf(&b, "Recording saved: %s long, %s, %s, in the folder %s on the recorder.", FormatDuration(dur), Plural(len(m.Tracks), "file"), FormatBytes(manifestBytes(m)), FolderName(folder))
	if len(m.Tracks) == 0 && len(m.Warnings) == 0 {
		b.WriteString("\n" + noMedia)
	}
	for _, w := range m.Warnings {
		b.WriteString("\n" + Warning + w)
	}
	for _, t := range m.Tracks {
		b.WriteString("\n• " + fileLine(t))
	}
	return b.String()
}

// noMedia says that a recording has no files.
const noMedia = "No media arrived, so there is nothing to listen to."

// fileLine describes one file: who, source, part, codec, how long, from when on the
// call's timeline, size.
func fileLine(t recorder.FileEntry) string {
	src := sourceNames[t.Source]
	if src == "" {
		src = t.Kind
	}
	codec := codecNames[strings.ToLower(t.Codec)]
	if codec == "" {
		codec = strings.ToUpper(t.Codec)
	}
	if t.CodecParams.Width > 0 {
		codec += fmt.Sprintf(" %dx%d", t.CodecParams.Width, t.CodecParams.Height)
	}
	who := t.UserID
	if t.DisplayName != "" {
		who = t.DisplayName
	}
	part := ""
	if t.Part > 1 {
		part = fmt.Sprintf(" (part %d)", t.Part)
	}
	s := fmt.Sprintf("%s %s%s: %s, %s long, from %s, %s", who, src, part, codec,
		FormatDuration(time.Duration(t.DurationMs)*time.Millisecond), FormatDuration(time.Duration(t.StartOffsetMs)*time.Millisecond), FormatBytes(t.Bytes))
	if t.Stats.PacketsLost > 0 {
		s += ", " + Plural(int(t.Stats.PacketsLost), "packet") + " lost"
	}
	return s
}

// participantNames lists who was in a recording, by display name (the manifest's, else
// the room's) and id, sorted.
func participantNames(m *recorder.Manifest, names map[string]string) string {
	seen := map[string]bool{}
	var out []string
	for _, p := range m.Participants {
		if seen[p.UserID] {
			continue
		}
		seen[p.UserID] = true
		if p.DisplayName == "" {
			p.DisplayName = names[p.UserID]
		}
		if p.DisplayName != "" {
			out = append(out, p.DisplayName+" ("+p.UserID+")")
		} else {
			out = append(out, p.UserID)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// pausedContinues is the one notice of a recording a clean stop paused, once the next
// start continues it.
func pausedContinues(pausedAt, now time.Time) string {
	return fmt.Sprintf("🔁 The recorder restarted; recording continues (paused from %s to %s UTC). The files go on in the same folder, as further parts on the call's timeline.",
		pausedAt.UTC().Format("15:04:05"), now.UTC().Format("15:04:05"))
}

// pausedEnded is the headline of the summary of a paused recording whose call ended while
// the recorder was down.
func pausedEnded(pausedAt time.Time, why string) string {
	return fmt.Sprintf("The recorder restarted, and the recording could not continue: %s. It ends where it was paused, at %s UTC.",
		why, pausedAt.UTC().Format("15:04:05"))
}
