package postcall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/postcall/activity"
	"github.com/matrix-recorder/matrix-recorder/postcall/export"
	"github.com/matrix-recorder/matrix-recorder/postcall/ffmpeg"
	"github.com/matrix-recorder/matrix-recorder/postcall/picture"
	"github.com/matrix-recorder/matrix-recorder/postcall/transcript"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/roomerr"
)

// Files the after-call work writes into a call folder.
const (
	PictureFile    = "summary.png"
	TranscriptFile = "transcript.vtt"
)

// Time limits of the light jobs.
const (
	pictureTimeout = 3 * time.Minute
	roomTimeout    = 30 * time.Second
)

func folderName(folder string) string { return filepath.Base(folder) }

// roomCtx is a context for talking to the room that outlives a cancelled job, so its
// final message still goes out.
func roomCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), roomTimeout)
}

// fresh re-reads a call's manifest: markers may have been added and exports listed since
// the job was queued. A folder that is being recorded into again is left alone.
func fresh(call Call) (Call, error) {
	m, err := recorder.ReadManifest(call.Folder)
	if err != nil {
		return call, err
	}
	if m.Status == recorder.StatusRecording {
		return call, errLive
	}
	return Call{Folder: call.Folder, Manifest: m}, nil
}

// ---- Summary picture ----

func (m *Manager) postPicture(ctx context.Context, roomID string, call Call) {
	ctx, cancel := context.WithTimeout(ctx, pictureTimeout)
	defer cancel()
	log := m.log.With().Str("room_id", roomID).Str("folder", folderName(call.Folder)).Logger()
	if c, err := fresh(call); err == nil {
		call = c
	}
	in := m.pictureInput(ctx, roomID, call)
	img, _, err := m.renderer.Render(in)
	if err != nil {
		log.Error().Err(err).Msg("Could not draw the summary picture")
		return
	}
	var buf bytes.Buffer
	if err := picture.EncodePNG(&buf, img); err != nil {
		log.Error().Err(err).Msg("Could not encode the summary picture")
		return
	}
	rel := filepath.Join(export.Dir, PictureFile)
	if err := os.MkdirAll(filepath.Join(call.Folder, export.Dir), 0o755); err == nil {
		if err := export.WriteFileAtomic(filepath.Join(call.Folder, rel), buf.Bytes()); err != nil {
			log.Warn().Err(err).Msg("Could not save the summary picture")
		} else if e, err := export.Describe(call.Folder, rel, m.cfg.Now().UTC()); err == nil {
			e.Kind, e.Format, e.DurationMs = "picture", "png", call.Manifest.DurationMs
			if err := m.manifests.addExports(call.Folder, []recorder.Export{e}); err != nil {
				log.Warn().Err(err).Msg("Could not list the summary picture in the manifest")
			}
		}
	}
	name := "call-" + call.Manifest.StartedAt.UTC().Format("2006-01-02-1504") + ".png"
	rctx, rcancel := roomCtx(ctx)
	defer rcancel()
	b := img.Bounds()
	if err := m.room.SendFile(rctx, roomID, File{Name: name, MIME: "image/png", Data: buf.Bytes(), Kind: "image", Width: b.Dx(), Height: b.Dy()}); err != nil {
		log.Warn().Err(err).Msg("Could not post the summary picture")
		return
	}
	log.Info().Int("bytes", buf.Len()).Msg("Posted the summary picture")
}

// pictureInput turns a manifest (and the audio files' voice activity) into rows.
func (m *Manager) pictureInput(ctx context.Context, roomID string, call Call) picture.Input {
	man := call.Manifest
	dur := time.Duration(man.DurationMs) * time.Millisecond
	names := m.room.DisplayNames(ctx, roomID)
	bin := ""
	if m.cfg.VoiceActivity != "packets" {
		bin, _ = ffmpeg.Find(m.cfg.FFmpeg)
	}
	type row struct {
		picture.Row
		tracks int
	}
	var rows []*row
	byUser := map[string]*row{}
	get := func(user string) *row {
		if r := byUser[user]; r != nil {
			return r
		}
		r := &row{Row: picture.Row{ID: user}}
		byUser[user] = r
		rows = append(rows, r)
		return r
	}
	for _, p := range man.Participants {
		r := get(p.UserID)
		if r.Name == "" {
			r.Name = p.DisplayName
		}
	}
	for _, t := range man.Tracks {
		r := get(t.UserID)
		if r.Name == "" {
			r.Name = t.DisplayName
		}
		r.tracks++
		off := time.Duration(max(t.StartOffsetMs, 0)) * time.Millisecond
		span := picture.Span{From: off, To: off + time.Duration(max(t.DurationMs, 0))*time.Millisecond}
		switch {
		case t.Source == recorder.SourceScreenShare || t.Source == recorder.SourceScreenShareAudio:
			r.Screen = append(r.Screen, span)
		default:
			r.Present = append(r.Present, span)
		}
		if t.Kind != "audio" || t.Source == recorder.SourceScreenShareAudio || !export.SafeName(t.File) {
			continue
		}
		spans, method, err := activity.Detect(ctx, bin, filepath.Join(call.Folder, t.File))
		if err != nil {
			m.log.Warn().Err(err).Str("file", t.File).Msg("No voice activity for the summary picture")
			continue
		}
		m.log.Debug().Str("file", t.File).Str("method", string(method)).Int("spans", len(spans)).Msg("Voice activity")
		for _, s := range spans {
			r.Speech = append(r.Speech, picture.Span{From: off + s.From, To: off + s.To})
		}
	}
	in := picture.Input{Duration: dur}
	for _, r := range rows {
		if n := names[r.ID]; n != "" {
			r.Name = n
		}
		if r.Name == "" {
			r.Name = r.ID
		}
		if r.tracks == 0 {
			r.Name += " · not recorded"
		}
		if len(in.Rows) < picture.MaxRows {
			in.Rows = append(in.Rows, r.Row)
		}
	}
	for _, mk := range man.Markers {
		in.Markers = append(in.Markers, picture.Marker{At: time.Duration(mk.AtMs) * time.Millisecond, Text: mk.Text})
	}
	in.Title = "Call recording"
	if n := m.room.RoomName(ctx, roomID); n != "" {
		in.Title = "Call in " + n
	}
	parts := []string{man.StartedAt.UTC().Format("2006-01-02 15:04 UTC"), picture.Clock(dur), plural(len(rows), "person", "people")}
	if len(man.Markers) > 0 {
		parts = append(parts, plural(len(man.Markers), "marker", "markers"))
	}
	in.Subtitle = strings.Join(parts, " · ")
	return in
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// ---- Exports ----

func kindList(kinds []export.Kind) string {
	s := make([]string, len(kinds))
	for i, k := range kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

func exportStartText(call Call, kinds []export.Kind, waiting int) string {
	text := fmt.Sprintf("⏳ Exporting %s of %s: ", kindList(kinds), folderName(call.Folder))
	if waiting > 0 {
		return text + "waiting for " + plural(waiting, "other job", "other jobs") + "."
	}
	return text + "starting."
}

// status is one message kept up to date by editing it.
type status struct {
	m      *Manager
	roomID string
	// posted is closed once the first message went out (or failed).
	posted chan struct{}

	send    sync.Mutex // one message at a time, in order
	eventID string

	mu      sync.Mutex
	last    time.Time
	lastPct int
}

// set posts the message, or edits it once it exists.
func (s *status) set(ctx context.Context, text string) {
	rctx, cancel := roomCtx(ctx)
	defer cancel()
	s.send.Lock()
	defer s.send.Unlock()
	if s.eventID == "" {
		s.eventID = s.m.room.Notice(rctx, s.roomID, text)
		return
	}
	s.m.room.Edit(rctx, s.roomID, s.eventID, text)
}

// Progress edits are at most this frequent.
const progressEvery = 3 * time.Second

func (s *status) progress(ctx context.Context, prefix string, done float64) {
	pct := int(done * 100)
	s.mu.Lock()
	if pct >= 100 || pct-s.lastPct < 5 || time.Since(s.last) < progressEvery {
		s.mu.Unlock()
		return
	}
	s.last, s.lastPct = time.Now(), pct
	s.mu.Unlock()
	s.set(ctx, fmt.Sprintf("%s%d%%", prefix, pct))
}

func (m *Manager) runExport(ctx context.Context, roomID string, call Call, kinds []export.Kind, st *status) {
	log := m.log.With().Str("room_id", roomID).Str("folder", folderName(call.Folder)).Str("kinds", kindList(kinds)).Logger()
	st.mu.Lock()
	st.last = time.Now()
	st.mu.Unlock()
	name := folderName(call.Folder)
	bin, err := ffmpeg.Find(m.cfg.FFmpeg)
	if err != nil {
		log.Warn().Err(err).Msg("Export impossible without ffmpeg")
		st.set(ctx, fmt.Sprintf("❌ I cannot export %s: ffmpeg is not installed on the recorder's machine (an operator can install it, e.g. apt install ffmpeg). The recorded files are untouched.", name))
		return
	}
	c, err := fresh(call)
	if err != nil {
		st.set(ctx, fmt.Sprintf("❌ Export of %s not possible: %v.", name, err))
		return
	}
	call = c
	ctx, cancel := context.WithTimeout(ctx, m.cfg.ExportTimeout)
	defer cancel()
	started := time.Now()
	prefix := fmt.Sprintf("⏳ Exporting %s of %s: ", kindList(kinds), name)
	st.set(ctx, prefix+"0%")
	res, err := export.Run(ctx, export.Request{
		Folder: call.Folder, Manifest: call.Manifest, Kinds: kinds, MixFormat: m.cfg.MixFormat, FFmpeg: bin, Now: m.cfg.Now,
		Progress: func(done float64) { st.progress(ctx, prefix, done) },
	})
	if lerr := m.manifests.addExports(call.Folder, res.Files); lerr != nil {
		log.Warn().Err(lerr).Msg("Could not list the exports in the manifest")
	}
	if err != nil {
		var why string
		switch {
		case m.heavy.Err() != nil:
			why = fmt.Sprintf("the recorder is shutting down; type %sexport %s %s again after it restarts", m.cfg.CommandPrefix, name, kindList(kinds))
		case errors.Is(err, context.DeadlineExceeded):
			why = fmt.Sprintf("it took longer than %s (postcall.export.timeout)", m.cfg.ExportTimeout)
		case errors.Is(err, export.ErrNoAudio), errors.Is(err, ffmpeg.ErrNotInstalled):
			why = err.Error()
		default:
			// ffmpeg's own words name paths on the recorder: they stay in the log.
			why = roomerr.Clause(log, err, "Export failed")
		}
		log.Warn().Err(err).Msg("Export failed")
		st.set(ctx, fmt.Sprintf("❌ Export of %s failed: %s. The recorded files are untouched.", name, why))
		return
	}
	var lines []string
	for _, f := range res.Files {
		lines = append(lines, fmt.Sprintf("• %s (%s)", f.File, config.Size(f.Bytes)))
	}
	text := fmt.Sprintf("✅ Export of %s ready in %s (folder %s):\n%s", kindList(kinds), picture.Clock(time.Since(started)), name, strings.Join(lines, "\n"))
	if len(res.Skipped) > 0 {
		text += "\nLeft out: " + strings.Join(res.Skipped, "; ")
	}
	st.set(ctx, text)
	log.Info().Int("files", len(res.Files)).Dur("took", time.Since(started)).Msg("Export done")
	m.uploadExports(ctx, roomID, call, res.Files)
}

// maxUploads bounds how many exported files one job posts in the room.
const maxUploads = 8

// uploadExports posts the exported media files that are small enough.
func (m *Manager) uploadExports(ctx context.Context, roomID string, call Call, files []recorder.Export) {
	if m.cfg.UploadMaxBytes <= 0 {
		return
	}
	n := 0
	for _, f := range files {
		if n >= maxUploads {
			break
		}
		var kind, mime string
		switch f.Kind {
		case "mix", "track":
			kind, mime = "audio", map[string]string{"opus": "audio/ogg", "flac": "audio/flac", "wav": "audio/wav"}[f.Format]
		case "zip":
			kind, mime = "file", "application/zip"
		default:
			continue
		}
		if f.Bytes > m.cfg.UploadMaxBytes {
			continue
		}
		data, err := os.ReadFile(filepath.Join(call.Folder, f.File))
		if err != nil {
			continue
		}
		n++
		rctx, cancel := roomCtx(ctx)
		err = m.room.SendFile(rctx, roomID, File{Name: filepath.Base(f.File), MIME: mime, Data: data, Kind: kind, Duration: time.Duration(f.DurationMs) * time.Millisecond})
		cancel()
		if err != nil {
			why := roomerr.Clause(m.log.With().Str("file", f.File).Logger(), err, "Could not post an export")
			m.room.Notice(rctx, roomID, fmt.Sprintf("I could not post %s in the room: %s. It is in the call folder.", f.File, why))
		}
	}
}

// ---- Transcripts ----

// previewLines is how much of a transcript the room sees in the message.
const previewLines = 8

func (m *Manager) transcribe(ctx context.Context, roomID string, call Call, auto bool) {
	log := m.log.With().Str("room_id", roomID).Str("folder", folderName(call.Folder)).Logger()
	name := folderName(call.Folder)
	rctx, rcancel := roomCtx(ctx)
	defer rcancel()
	c, err := fresh(call)
	if err != nil {
		why := errLive.Error()
		if !errors.Is(err, errLive) {
			why = roomerr.Clause(log, err, "Could not read the recording to transcribe")
		}
		m.room.Notice(rctx, roomID, fmt.Sprintf("⚠️ No transcript for %s: %s.", name, why))
		return
	}
	call = c
	names := m.room.DisplayNames(ctx, roomID)
	var all []transcript.Track
	for _, t := range call.Manifest.Tracks {
		if t.Kind != "audio" || !export.SafeName(t.File) {
			continue
		}
		path := filepath.Join(call.Folder, t.File)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		dn := names[t.UserID]
		if dn == "" {
			dn = t.DisplayName
		}
		all = append(all, transcript.Track{File: path, Track: t.Track, UserID: t.UserID, DeviceID: t.DeviceID, DisplayName: dn,
			OffsetMs: t.StartOffsetMs, CallID: call.Manifest.CallID, RoomID: call.Manifest.RoomID, Folder: call.Folder})
	}
	// failures name the tracks; the hook's errors (which can name its URL) are logged
	// under failID.
	var failures []string
	failID := roomerr.NewID()
	ran := 0
	if m.cfg.Transcript.Enabled() {
		var todo []transcript.Track
		for _, t := range all {
			if _, err := os.Stat(transcript.VTTPath(t.File)); err != nil {
				todo = append(todo, t)
			}
		}
		ran = len(todo)
		for _, o := range m.cfg.Transcript.Run(ctx, todo) {
			if o.Err != nil {
				log.Error().Err(o.Err).Str("error_id", failID).Str("file", filepath.Base(o.Track.File)).Msg("Transcription hook failed")
				failures = append(failures, fmt.Sprintf("%s (%s)", speaker(o.Track), filepath.Base(o.Track.File)))
			}
		}
	}
	if m.heavy.Err() != nil {
		return // shutting down: nothing is merged from half the tracks
	}
	if len(failures) > 0 {
		m.room.Notice(rctx, roomID, fmt.Sprintf("⚠️ The transcription hook failed for %d of %s of %s (error %s in the operator's log):\n• %s\nThe recording is not affected.",
			len(failures), plural(ran, "track", "tracks"), name, failID, strings.Join(failures, "\n• ")))
	}
	var sources []transcript.Source
	speakers := map[string]bool{}
	for _, t := range all {
		f, err := os.Open(transcript.VTTPath(t.File))
		if err != nil {
			continue
		}
		cues, err := transcript.ParseVTT(f)
		f.Close()
		if err != nil {
			log.Error().Err(err).Str("error_id", failID).Str("file", filepath.Base(transcript.VTTPath(t.File))).Msg("Unreadable WebVTT")
			failures = append(failures, filepath.Base(transcript.VTTPath(t.File))+": not a readable WebVTT file")
			continue
		}
		if len(cues) > 0 {
			speakers[t.UserID] = true
		}
		sources = append(sources, transcript.Source{Cues: cues, Speaker: speaker(t), Offset: time.Duration(t.OffsetMs) * time.Millisecond})
	}
	merged := transcript.Merge(sources)
	if len(merged) == 0 {
		if !auto || len(failures) == 0 {
			m.room.Notice(rctx, roomID, fmt.Sprintf("No transcript of %s yet: there is no WebVTT (<track>.vtt) in its folder. When the transcription service drops them there, type %stranscript %s to merge them.", name, m.cfg.CommandPrefix, name))
		}
		return
	}
	title := "Call " + call.Manifest.StartedAt.UTC().Format("2006-01-02 15:04 UTC")
	data := transcript.WriteVTT(merged, title)
	if err := export.WriteFileAtomic(filepath.Join(call.Folder, TranscriptFile), data); err != nil {
		m.room.Notice(rctx, roomID, fmt.Sprintf("⚠️ Could not save the transcript of %s: %s.", name, roomerr.Clause(log, err, "Could not write the transcript")))
		return
	}
	if e, err := export.Describe(call.Folder, TranscriptFile, m.cfg.Now().UTC()); err == nil {
		e.Kind, e.Format, e.DurationMs = "transcript", "vtt", call.Manifest.DurationMs
		if err := m.manifests.addExports(call.Folder, []recorder.Export{e}); err != nil {
			log.Warn().Err(err).Msg("Could not list the transcript in the manifest")
		}
	}
	preview := transcript.PlainText(merged, previewLines)
	text := fmt.Sprintf("📝 Transcript of %s: %s from %s, saved as %s in the call folder.\n%s",
		name, plural(len(merged), "line", "lines"), plural(len(speakers), "speaker", "speakers"), TranscriptFile, strings.Join(preview, "\n"))
	if len(merged) > len(preview) {
		text += "\n…"
	}
	m.room.Notice(rctx, roomID, text)
	fileName := "transcript-" + call.Manifest.StartedAt.UTC().Format("2006-01-02-1504") + ".vtt"
	if err := m.room.SendFile(rctx, roomID, File{Name: fileName, MIME: "text/vtt", Data: data, Kind: "file"}); err != nil {
		log.Warn().Err(err).Msg("Could not post the transcript")
	}
	log.Info().Int("cues", len(merged)).Msg("Transcript merged")
}

func speaker(t transcript.Track) string {
	if t.DisplayName != "" {
		return t.DisplayName
	}
	return t.UserID
}
