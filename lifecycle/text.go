package lifecycle

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

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

// FormatBytes says a size in B, kB, MB or GB (binary multiples).
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f kB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// HumanDuration says a long duration the way people do: "7 days", "5 hours", "10 minutes".
func HumanDuration(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d >= 48*time.Hour:
		return plural(int64((d+12*time.Hour)/(24*time.Hour)), "day")
	case d >= 2*time.Hour:
		return plural(int64((d+30*time.Minute)/time.Hour), "hour")
	case d >= 2*time.Minute:
		return plural(int64((d+30*time.Second)/time.Minute), "minute")
	default:
		return plural(int64((d+500*time.Millisecond)/time.Second), "second")
	}
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

// plainSummary describes a finished recording in a few lines (duration, one line per
// file), for when its rows are missing.
func plainSummary(m recorder.Manifest, folder string) string {
	var b strings.Builder
	dur := time.Duration(m.DurationMs) * time.Millisecond
	fmt.Fprintf(&b, "Recording saved: %s, %d file(s) in %s", FormatDuration(dur), len(m.Tracks), FolderName(folder))
	if len(m.Tracks) == 0 && len(m.Warnings) == 0 {
		b.WriteString("\nNo media arrived, so there is nothing to listen to.")
	}
	for _, w := range m.Warnings {
		b.WriteString("\n⚠ " + w)
	}
	for _, t := range m.Tracks {
		b.WriteString("\n• " + fileLine(t))
	}
	return b.String()
}

// fileLine describes one file: who, source, part, codec, length, place and size.
func fileLine(t recorder.FileEntry) string {
	src := sourceNames[t.Source]
	if src == "" {
		src = t.Kind
	}
	codec := strings.ToUpper(t.Codec)
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
	s := fmt.Sprintf("%s %s%s: %s, %s from %s, %s", who, src, part, codec,
		FormatDuration(time.Duration(t.DurationMs)*time.Millisecond), FormatDuration(time.Duration(t.StartOffsetMs)*time.Millisecond), FormatBytes(t.Bytes))
	if t.Stats.PacketsLost > 0 {
		s += fmt.Sprintf(", %d packets lost", t.Stats.PacketsLost)
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
