package export

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// maxMarkerText bounds a marker's text in every file it goes to.
const maxMarkerText = 200

// markers returns the manifest's markers on the call's timeline, sorted, with text safe
// for one line.
func (p *plan) markers() []recorder.Marker {
	out := make([]recorder.Marker, 0, len(p.req.Manifest.Markers))
	for _, m := range p.req.Manifest.Markers {
		m.AtMs = min(max(m.AtMs, 0), p.duration.Milliseconds())
		m.Text = oneLine(m.Text)
		out = append(out, m)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].AtMs < out[j].AtMs })
	return out
}

// oneLine makes text safe for line-based files: no control characters, bounded.
func oneLine(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			r = ' '
		}
		b.WriteRune(r)
		if n++; n >= maxMarkerText {
			break
		}
	}
	return strings.TrimSpace(b.String())
}

func metaValue(s string) string { return oneLine(s) }

// markerTitle is a marker's text, or its number when it has none.
func markerTitle(i int, m recorder.Marker) string {
	if m.Text != "" {
		return m.Text
	}
	return fmt.Sprintf("Marker %d", i+1)
}

// writeLabels writes the markers as an Audacity label file: one "start<TAB>end<TAB>text"
// line per marker, times in seconds (point labels: start = end).
func (p *plan) writeLabels() (recorder.Export, error) {
	var b strings.Builder
	for i, m := range p.markers() {
		at := float64(m.AtMs) / 1000
		fmt.Fprintf(&b, "%.6f\t%.6f\t%s\n", at, at, strings.ReplaceAll(markerTitle(i, m), "\t", " "))
	}
	name := filepath.Join(Dir, LabelsFile)
	if err := writeFileAtomic(filepath.Join(p.req.Folder, name), []byte(b.String())); err != nil {
		return recorder.Export{}, err
	}
	e, err := describe(p.req.Folder, name, p.now)
	e.Kind, e.Format = "labels", "txt"
	return e, err
}

// writeChapters writes an ffmetadata file with the call's title and one chapter per
// marker (and one from the start to the first marker); ffmpeg puts them into the mixdown.
func (p *plan) writeChapters() (string, error) {
	var b strings.Builder
	b.WriteString(";FFMETADATA1\n")
	m := p.req.Manifest
	fmt.Fprintf(&b, "title=%s\n", ffmetaEscape("Call recording "+m.StartedAt.UTC().Format("2006-01-02 15:04 UTC")))
	fmt.Fprintf(&b, "comment=%s\n", ffmetaEscape("Mixdown of every audio track, aligned on the call's timeline. Room "+m.RoomID+", call "+m.CallID+"."))
	type chapter struct {
		start, end int64
		title      string
	}
	var chs []chapter
	marks := p.markers()
	end := p.duration.Milliseconds()
	if len(marks) == 0 || marks[0].AtMs > 0 {
		chs = append(chs, chapter{start: 0, title: "Start"})
	}
	for i, mk := range marks {
		chs = append(chs, chapter{start: mk.AtMs, title: markerTitle(i, mk)})
	}
	for i := range chs {
		chs[i].end = end
		if i+1 < len(chs) {
			chs[i].end = chs[i+1].start
		}
	}
	for _, c := range chs {
		fmt.Fprintf(&b, "[CHAPTER]\nTIMEBASE=1/1000\nSTART=%d\nEND=%d\ntitle=%s\n", c.start, c.end, ffmetaEscape(c.title))
	}
	f, err := os.CreateTemp(p.dir, ".chapters-*.txt")
	if err != nil {
		return "", fmt.Errorf("write chapters: %w", err)
	}
	_, werr := f.WriteString(b.String())
	if err := f.Close(); werr != nil || err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("write chapters: %w", firstErr(werr, err))
	}
	return f.Name(), nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// ffmetaEscape escapes what the ffmetadata format treats specially.
func ffmetaEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "=", `\=`, ";", `\;`, "#", `\#`, "\n", " ")
	return r.Replace(oneLine(s))
}

// writeCue writes a cue sheet for the mixdown: one track per chapter.
func (p *plan) writeCue(mixName string) (recorder.Export, error) {
	var b strings.Builder
	q := func(s string) string { return strings.ReplaceAll(oneLine(s), `"`, "'") }
	fmt.Fprintf(&b, "TITLE \"%s\"\n", q("Call recording "+p.req.Manifest.StartedAt.UTC().Format("2006-01-02 15:04 UTC")))
	fmt.Fprintf(&b, "FILE \"%s\" WAVE\n", mixName)
	marks := p.markers()
	n := 0
	track := func(title string, atMs int64) {
		n++
		frames := atMs * 75 / 1000
		fmt.Fprintf(&b, "  TRACK %02d AUDIO\n    TITLE \"%s\"\n    INDEX 01 %02d:%02d:%02d\n", n, q(title), frames/75/60, frames/75%60, frames%75)
	}
	if len(marks) == 0 || marks[0].AtMs > 0 {
		track("Start", 0)
	}
	for i, m := range marks {
		if n >= 99 {
			break // a cue sheet holds at most 99 tracks
		}
		track(markerTitle(i, m), m.AtMs)
	}
	name := filepath.Join(Dir, CueFile)
	if err := writeFileAtomic(filepath.Join(p.req.Folder, name), []byte(b.String())); err != nil {
		return recorder.Export{}, err
	}
	e, err := describe(p.req.Folder, name, p.now)
	e.Kind, e.Format = "cue", "cue"
	return e, err
}

// describe makes the manifest entry of a file written into the call folder.
func describe(folder, rel string, now time.Time) (recorder.Export, error) {
	f, err := os.Open(filepath.Join(folder, rel))
	if err != nil {
		return recorder.Export{}, fmt.Errorf("read back %s: %w", rel, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return recorder.Export{}, fmt.Errorf("read back %s: %w", rel, err)
	}
	return recorder.Export{File: filepath.ToSlash(rel), Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil)), CreatedAt: now}, nil
}

// Describe is describe for other packages of the after-call step.
func Describe(folder, rel string, now time.Time) (recorder.Export, error) {
	return describe(folder, rel, now)
}

// writeFileAtomic writes data to path through a temporary file and a rename, synced.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	name := tmp.Name()
	// A rewrite keeps the file's mode (the recorder's recordings.file_mode); a new file
	// gets the temp file's 0600.
	mode := os.FileMode(0o600)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	_, werr := tmp.Write(data)
	if werr == nil {
		werr = tmp.Chmod(mode)
	}
	if werr == nil {
		werr = tmp.Sync()
	}
	if err := tmp.Close(); werr == nil {
		werr = err
	}
	if werr == nil {
		werr = os.Rename(name, path)
	}
	if werr != nil {
		_ = os.Remove(name)
		return fmt.Errorf("write %s: %w", filepath.Base(path), werr)
	}
	return nil
}

// WriteFileAtomic is writeFileAtomic for other packages of the after-call step.
func WriteFileAtomic(path string, data []byte) error { return writeFileAtomic(path, data) }
