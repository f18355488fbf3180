// Package export makes editor-friendly files from a finished call folder with ffmpeg:
// every audio track decoded and padded to the call's zero (FLAC or WAV, one file per
// logical track, as long as the call), a mixdown of all audio (Opus in Ogg or FLAC, with
// the markers as chapters), an aligned zip of everything, and the markers as an Audacity
// label file and a cue sheet. The original files are never changed.
package export

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/matrix-recorder/matrix-recorder/postcall/activity"
	"github.com/matrix-recorder/matrix-recorder/postcall/ffmpeg"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// Kind is one kind of export.
type Kind string

// Kinds of export.
const (
	KindMix  Kind = "mix"
	KindZip  Kind = "zip"
	KindFLAC Kind = "flac"
	KindWAV  Kind = "wav"
)

// ParseKind parses a kind as users type it.
func ParseKind(s string) (Kind, bool) {
	switch k := Kind(strings.ToLower(s)); k {
	case KindMix, KindZip, KindFLAC, KindWAV:
		return k, true
	}
	return "", false
}

// Mix formats.
const (
	MixOpus = "opus"
	MixFLAC = "flac"
)

// Dir is the folder inside a call folder where exports go.
const Dir = "exports"

// Files written next to the exports.
const (
	LabelsFile = "labels.txt"
	CueFile    = "mix.cue"
)

// sampleRate of every exported file (Opus decodes at 48 kHz).
const sampleRate = 48000

// mixBitrate is the Opus bit rate of the mixdown.
const mixBitrate = "96k"

// Request says what to export from one call folder.
type Request struct {
	Folder   string
	Manifest *recorder.Manifest
	Kinds    []Kind
	// MixFormat is MixOpus (default) or MixFLAC.
	MixFormat string
	// FFmpeg is the path of ffmpeg.
	FFmpeg string
	// Progress, if set, is called with the fraction done (0 to 1) as the work goes on.
	Progress func(done float64)
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Result lists what was made.
type Result struct {
	Files []recorder.Export
	// Skipped lists files that could not be used, with why.
	Skipped []string
}

// Errors callers tell users about.
var (
	ErrNoAudio = errors.New("the recording has no audio file to export")
)

// audioTrack is one logical audio track: its parts in order.
type audioTrack struct {
	id     string // logical track id, safe as a file name
	user   string
	source string
	parts  []part
}

type part struct {
	path     string
	offset   time.Duration // where the file's first sample sits on the call's timeline
	preSkip  int
	duration time.Duration
}

// mono says whether a track is exported as mono: microphones are; screen share audio
// keeps its two channels.
func (t audioTrack) mono() bool { return t.source != recorder.SourceScreenShareAudio }

// plan is a request checked against the files on disk.
type plan struct {
	req      Request
	dir      string
	duration time.Duration
	audio    []audioTrack
	video    []recorder.FileEntry
	skipped  []string
	now      time.Time
}

// Run makes the requested exports. Each output is written to a temporary file and renamed
// when it is complete, so a cancelled or failed export never leaves a file that looks
// finished.
func Run(ctx context.Context, req Request) (Result, error) {
	p, err := newPlan(req)
	if err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return Result{}, fmt.Errorf("create %s: %w", p.dir, err)
	}
	want := map[Kind]bool{}
	for _, k := range req.Kinds {
		want[k] = true
	}
	// Work units in ffmpeg runs, each as long as the call, for the progress fraction.
	runs := 0
	if want[KindFLAC] || want[KindZip] {
		runs += len(p.audio)
	}
	if want[KindWAV] {
		runs += len(p.audio)
	}
	if want[KindMix] {
		runs++
	}
	prog := &progress{fn: req.Progress, total: float64(max(runs, 1))}
	var res Result
	res.Skipped = p.skipped

	labels, err := p.writeLabels()
	if err != nil {
		return res, err
	}
	res.Files = append(res.Files, labels)
	if want[KindFLAC] || want[KindZip] {
		for _, t := range p.audio {
			e, err := p.alignedTrack(ctx, t, "flac", prog)
			if err != nil {
				return res, err
			}
			res.Files = append(res.Files, e)
		}
	}
	if want[KindWAV] {
		for _, t := range p.audio {
			e, err := p.alignedTrack(ctx, t, "wav", prog)
			if err != nil {
				return res, err
			}
			res.Files = append(res.Files, e)
		}
	}
	if want[KindMix] {
		files, err := p.mix(ctx, prog)
		if err != nil {
			return res, err
		}
		res.Files = append(res.Files, files...)
	}
	if want[KindZip] {
		e, err := p.zip(ctx, res.Files)
		if err != nil {
			return res, err
		}
		res.Files = append(res.Files, e)
	}
	prog.finish()
	return res, nil
}

func newPlan(req Request) (*plan, error) {
	if req.Manifest == nil {
		return nil, errors.New("no manifest")
	}
	if req.FFmpeg == "" {
		return nil, ffmpeg.ErrNotInstalled
	}
	if req.MixFormat == "" {
		req.MixFormat = MixOpus
	}
	if req.MixFormat != MixOpus && req.MixFormat != MixFLAC {
		return nil, fmt.Errorf("unknown mix format %q", req.MixFormat)
	}
	if len(req.Kinds) == 0 {
		return nil, errors.New("nothing to export")
	}
	now := time.Now
	if req.Now != nil {
		now = req.Now
	}
	m := req.Manifest
	p := &plan{req: req, dir: filepath.Join(req.Folder, Dir), now: now().UTC()}
	byID := map[string]int{}
	var end time.Duration
	for _, e := range m.Tracks {
		if !SafeName(e.File) {
			p.skipped = append(p.skipped, fmt.Sprintf("%q: not a plain file name", e.File))
			continue
		}
		path := filepath.Join(req.Folder, e.File)
		if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
			p.skipped = append(p.skipped, fmt.Sprintf("%s: not in the folder (uploaded and removed, or lost)", e.File))
			continue
		}
		off := time.Duration(max(e.StartOffsetMs, 0)) * time.Millisecond
		end = max(end, off+time.Duration(max(e.DurationMs, 0))*time.Millisecond)
		if e.Kind != "audio" {
			p.video = append(p.video, e)
			continue
		}
		if e.Codec != "opus" {
			p.skipped = append(p.skipped, fmt.Sprintf("%s: audio codec %q is not Opus", e.File, e.Codec))
			continue
		}
		pre, err := preSkip(path)
		if err != nil {
			p.skipped = append(p.skipped, fmt.Sprintf("%s: %v", e.File, err))
			continue
		}
		id := e.Track
		if !SafeName(id) {
			id = strings.TrimSuffix(e.File, filepath.Ext(e.File))
		}
		i, ok := byID[id]
		if !ok {
			i = len(p.audio)
			byID[id] = i
			p.audio = append(p.audio, audioTrack{id: id, user: e.UserID, source: e.Source})
		}
		p.audio[i].parts = append(p.audio[i].parts, part{path: path, offset: off, preSkip: pre, duration: time.Duration(e.DurationMs) * time.Millisecond})
	}
	p.duration = time.Duration(max(m.DurationMs, 0)) * time.Millisecond
	if p.duration <= 0 {
		p.duration = end
	}
	if len(p.audio) == 0 {
		if len(p.skipped) > 0 {
			return nil, fmt.Errorf("%w: %s", ErrNoAudio, strings.Join(p.skipped, "; "))
		}
		return nil, ErrNoAudio
	}
	if p.duration <= 0 {
		return nil, errors.New("the recording has no duration")
	}
	return p, nil
}

func preSkip(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	_, pre, err := activity.ReadHead(f)
	return pre, err
}

// SafeName reports whether s is a plain file name made of [A-Za-z0-9._-], as the recorder
// writes them: a manifest edited by hand must not make exports read or write elsewhere.
func SafeName(s string) bool {
	if s == "" || len(s) > 255 || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// progress adds up the fractions of the ffmpeg runs.
type progress struct {
	fn    func(float64)
	total float64
	done  float64
}

func (p *progress) run(d time.Duration, total time.Duration) {
	if p.fn == nil || total <= 0 {
		return
	}
	p.fn(min((p.done+min(float64(d)/float64(total), 1))/p.total, 1))
}

func (p *progress) next() { p.done++ }

func (p *progress) finish() {
	if p.fn != nil {
		p.fn(1)
	}
}

// samples is d in 48 kHz samples.
func samples(d time.Duration) int64 { return int64(d) * sampleRate / int64(time.Second) }

// inputFilters builds the filter chains that place each part on the call's timeline:
// timestamps gaps filled with silence, one sample format and layout, and a delay to the
// part's offset. A decoder drops the pre-skip, so the first sample it outputs sits
// pre-skip samples after the file's start.
func inputFilters(parts []part, first int, layout string) (args []string, chains []string, labels []string) {
	for i, pt := range parts {
		n := first + i
		args = append(args, "-i", pt.path)
		delay := samples(pt.offset) + int64(pt.preSkip)
		label := fmt.Sprintf("a%d", n)
		chains = append(chains, fmt.Sprintf("[%d:a]aresample=async=1:first_pts=0,aformat=sample_fmts=fltp:sample_rates=%d:channel_layouts=%s,adelay=delays=%dS:all=1[%s]",
			n, sampleRate, layout, delay, label))
		labels = append(labels, "["+label+"]")
	}
	return args, chains, labels
}

// finish ends a filter graph: mix the inputs if there are several, then pad and cut to
// exactly the call's length.
func (p *plan) finishGraph(chains, labels []string, limit bool) string {
	n := samples(p.duration)
	tail := fmt.Sprintf("apad=whole_len=%d,atrim=end_sample=%d", n, n)
	var mix string
	if len(labels) == 1 {
		mix = labels[0] + "anull"
	} else {
		mix = fmt.Sprintf("%samix=inputs=%d:normalize=0:duration=longest:dropout_transition=0", strings.Join(labels, ""), len(labels))
	}
	if limit {
		// Speakers are summed at their recorded levels; a look-ahead limiter with its
		// delay compensated keeps loud overlaps from clipping without moving anything.
		mix += ",alimiter=limit=0.98:level=0:latency=1"
	}
	return strings.Join(append(chains, mix+","+tail+"[out]"), ";")
}

// alignedTrack writes one logical track padded to the call's zero and length.
func (p *plan) alignedTrack(ctx context.Context, t audioTrack, format string, prog *progress) (recorder.Export, error) {
	layout := "stereo"
	if t.mono() {
		layout = "mono"
	}
	args, chains, labels := inputFilters(t.parts, 0, layout)
	args = append(args, "-filter_complex", p.finishGraph(chains, labels, false), "-map", "[out]",
		"-metadata", "title="+metaValue(t.id), "-metadata", "artist="+metaValue(t.user))
	name := t.id + "." + format
	switch format {
	case "flac":
		args = append(args, "-c:a", "flac", "-sample_fmt", "s16", "-f", "flac")
	default:
		args = append(args, "-c:a", "pcm_s16le", "-rf64", "auto", "-f", "wav")
	}
	e, err := p.ffmpegTo(ctx, name, args, prog)
	if err != nil {
		return e, fmt.Errorf("export %s: %w", name, err)
	}
	e.Kind, e.Format, e.Track = "track", format, t.id
	return e, nil
}

// mix writes the mixdown of every audio track, with the markers as chapters, and a cue
// sheet for it.
func (p *plan) mix(ctx context.Context, prog *progress) ([]recorder.Export, error) {
	var (
		args, chains, labels []string
		n                    int
	)
	for _, t := range p.audio {
		a, c, l := inputFilters(t.parts, n, "stereo")
		args, chains, labels = append(args, a...), append(chains, c...), append(labels, l...)
		n += len(t.parts)
	}
	meta, err := p.writeChapters()
	if err != nil {
		return nil, err
	}
	defer os.Remove(meta)
	args = append(args, "-f", "ffmetadata", "-i", meta,
		"-filter_complex", p.finishGraph(chains, labels, true), "-map", "[out]",
		"-map_metadata", fmt.Sprint(n), "-map_chapters", fmt.Sprint(n))
	name := "mix.ogg"
	format := MixOpus
	if p.req.MixFormat == MixFLAC {
		name, format = "mix.flac", MixFLAC
		args = append(args, "-c:a", "flac", "-sample_fmt", "s16", "-f", "flac")
	} else {
		args = append(args, "-c:a", "libopus", "-b:a", mixBitrate, "-f", "ogg")
	}
	e, err := p.ffmpegTo(ctx, name, args, prog)
	if err != nil {
		return nil, fmt.Errorf("export the mixdown: %w", err)
	}
	e.Kind, e.Format = "mix", format
	cue, err := p.writeCue(name)
	if err != nil {
		return nil, err
	}
	return []recorder.Export{e, cue}, nil
}

// ffmpegTo runs ffmpeg into a temporary file in the exports folder and renames it to name.
func (p *plan) ffmpegTo(ctx context.Context, name string, args []string, prog *progress) (recorder.Export, error) {
	final := filepath.Join(p.dir, name)
	tmp := filepath.Join(p.dir, "."+name+".tmp")
	_ = os.Remove(tmp)
	args = append(args, tmp)
	err := ffmpeg.Run(ctx, p.req.FFmpeg, args, func(d time.Duration) { prog.run(d, p.duration) })
	prog.next()
	if err != nil {
		_ = os.Remove(tmp)
		return recorder.Export{}, err
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.Remove(tmp)
		return recorder.Export{}, fmt.Errorf("rename %s: %w", name, err)
	}
	e, err := describe(p.req.Folder, filepath.Join(Dir, name), p.now)
	e.DurationMs = p.duration.Milliseconds()
	return e, err
}
